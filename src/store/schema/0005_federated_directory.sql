-- The federated user directory: trusted peers' users, pulled from them.

-- A peer's user, as the peer exported them: found by every local searcher.
CREATE TABLE federated_users (
    user_id TEXT PRIMARY KEY,
    server_name TEXT NOT NULL,
    displayname TEXT,
    avatar_url TEXT,
    updated_ts BIGINT NOT NULL
);
CREATE INDEX federated_users_by_server ON federated_users (server_name);

-- The federated-user stream: one row per change of `federated_users` (a removal
-- included), written with it; the user directory follows it.
CREATE TABLE federated_user_changes (
    stream_id BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL
);
INSERT INTO stream_positions (stream, position) VALUES ('federated_user_changes', 0);

-- How far kith has followed each peer's directory: the peer's token (opaque), and how
-- the peer was last pulled (`kith` changes, or `bwi` full lists).
CREATE TABLE federated_peers (
    server_name TEXT PRIMARY KEY,
    token TEXT,
    mode TEXT NOT NULL,
    synced_ts BIGINT NOT NULL
);
