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
