-- Rooms: the event DAG, state groups, current state and its delta stream.

CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT NOT NULL,
    published BIGINT NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL
);

-- Every PDU we hold, local or remote. `json` is the full signed PDU (redacted in place
-- when a redaction applies). `stream_ordering` is the position on the event stream.
CREATE TABLE events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL UNIQUE,
    depth BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    json TEXT NOT NULL,
    rejected BIGINT NOT NULL DEFAULT 0,
    redacted_by TEXT,
    state_group_before BIGINT,
    state_group_after BIGINT
);
CREATE INDEX events_by_room ON events (room_id, stream_ordering);

CREATE TABLE event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);

CREATE TABLE forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- A state group is a full room state, stored as a delta on `prev_group` (or in full
-- when `prev_group` is NULL). Chains are capped in length; see store/rooms.rs.
CREATE TABLE state_groups (
    group_id BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    prev_group BIGINT,
    chain_length BIGINT NOT NULL
);

CREATE TABLE state_group_entries (
    group_id BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (group_id, event_type, state_key)
);

CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_type, state_key)
);

-- The current-state-delta stream: one row per change of a room's current state.
CREATE TABLE current_state_deltas (
    stream_id BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    prev_event_id TEXT
);

-- Current membership of every user in every room, mirrored from current state. The
-- name and avatar are the member event's (room-specific), never the global profile.
CREATE TABLE room_memberships (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    displayname TEXT,
    avatar_url TEXT,
    stream_ordering BIGINT NOT NULL,
    forgotten BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_memberships_by_user ON room_memberships (user_id, membership);

CREATE TABLE room_aliases (
    alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);

-- Client transaction ids, so a retried PUT /send returns the first event. Scoped to
-- the device and the room, as the request path is.
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, room_id, txn_id)
);

-- Client filters (POST /user/{userId}/filter).
CREATE TABLE filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

-- Global (room_id = '') and per-room account data; `stream_id` orders changes for /sync.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);

-- The newest receipt of each type per user and room.
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    event_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type)
);

-- How far each background consumer has processed the stream it follows.
CREATE TABLE consumer_positions (
    consumer TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);

INSERT INTO stream_positions (stream, position) VALUES ('account_data', 0);
INSERT INTO stream_positions (stream, position) VALUES ('receipts', 0);
INSERT INTO stream_positions (stream, position) VALUES ('filters', 0);
INSERT INTO stream_positions (stream, position) VALUES ('events', 0);
INSERT INTO stream_positions (stream, position) VALUES ('current_state_deltas', 0);
INSERT INTO stream_positions (stream, position) VALUES ('state_groups', 0);
