-- Rooms joined with a partial state (MSC3706): the state a resident sent left the
-- members out. Every event of the room from the join on has partial state until the
-- resync completes and the row goes.
CREATE TABLE partial_state_rooms (
    room_id TEXT PRIMARY KEY,
    join_event_id TEXT NOT NULL,
    joined_via TEXT NOT NULL,
    servers TEXT NOT NULL,
    joined_ts BIGINT NOT NULL
);

-- When a room's resync completed, as a position on the event stream: a `/sync` from
-- before it treats the room as newly joined (eager syncs left it out until then).
CREATE TABLE room_resyncs (
    room_id TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
