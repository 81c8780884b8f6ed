-- Rooms an admin blocked: local users may not join them or be invited into them, and
-- invites from other servers into them are refused. A room may be blocked before this
-- server knows it.
CREATE TABLE blocked_rooms (
    room_id TEXT PRIMARY KEY,
    blocked_by TEXT NOT NULL,
    blocked_ts BIGINT NOT NULL
);
