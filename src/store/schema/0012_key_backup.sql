-- Server-side key backups: each user's backup versions and the room keys stored in them.

-- A backup version. Numbers count up per user and are never reused: a deleted version
-- keeps its row (`deleted` = 1) so the next one gets a higher number. `etag` counts
-- changes to the version's keys.
CREATE TABLE key_backup_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag BIGINT NOT NULL DEFAULT 0,
    deleted BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

-- One backed-up session key; `session_data` is the client's encrypted JSON, kept as sent.
CREATE TABLE key_backup_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified BIGINT NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
