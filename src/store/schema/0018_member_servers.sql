-- The server of each member, so that the servers in a room (where to send its events,
-- who may join through it) are read from an index instead of every member's row.
-- Filled for existing rows at start-up (`rooms::backfill_member_servers`).
ALTER TABLE room_memberships ADD COLUMN server_name TEXT NOT NULL DEFAULT '';
CREATE INDEX room_memberships_servers ON room_memberships (room_id, membership, server_name);
-- Heroes and other oldest-first member lists of a room.
CREATE INDEX room_memberships_by_age ON room_memberships (room_id, stream_ordering);
-- The last change of each room's current state (what a writer's kept copy is checked
-- against).
CREATE INDEX current_state_deltas_by_room ON current_state_deltas (room_id, stream_id);
-- The position of each room's newest event that moves it up a room list (sliding
-- sync's bump stamp; `rooms::BUMP_EVENT_TYPES`), kept by the writer so that a user's
-- room list is not an aggregate over every event of every room they are in.
ALTER TABLE rooms ADD COLUMN bump_stamp BIGINT;
UPDATE rooms SET bump_stamp = (SELECT MAX(e.stream_ordering) FROM events e WHERE e.room_id = rooms.room_id
    AND e.rejected = 0 AND e.outlier = 0 AND e.event_type IN ('m.room.create', 'm.room.message',
    'm.room.encrypted', 'm.sticker', 'm.call.invite', 'm.poll.start', 'm.beacon_info'));
