-- Accounts, devices, access tokens and profiles.
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT,
    admin BIGINT NOT NULL DEFAULT 0,
    is_guest BIGINT NOT NULL DEFAULT 0,
    user_type TEXT,
    deactivated BIGINT NOT NULL DEFAULT 0,
    locked BIGINT NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL
);

CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored as SHA-256 digests: a leaked database does not leak sessions.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX access_tokens_by_device ON access_tokens (user_id, device_id);

-- One row per profile field; `value` is the field's JSON.
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (user_id, field)
);

-- The profile-change stream: one row per change, written with the change itself.
CREATE TABLE profile_changes (
    stream_id BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    fields TEXT NOT NULL,
    ts BIGINT NOT NULL
);
CREATE INDEX profile_changes_by_user ON profile_changes (user_id);

-- The head of every stream. Allocating a position updates this row, so concurrent
-- writers to one stream commit in position order and a follower never skips a row.
CREATE TABLE stream_positions (
    stream TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
INSERT INTO stream_positions (stream, position) VALUES ('profile_changes', 0);
