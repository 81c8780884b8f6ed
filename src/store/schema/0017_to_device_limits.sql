-- Who sent each message waiting in a device's inbox (a local user, or the server a
-- remote message came from), so that one sender's share of an inbox is bounded.
ALTER TABLE to_device_inbox ADD COLUMN sender TEXT NOT NULL DEFAULT '';
CREATE INDEX to_device_inbox_by_sender ON to_device_inbox (user_id, device_id, sender);
-- When a kept EDU was queued (0: before this column existed), so that what a
-- destination never takes expires.
ALTER TABLE federation_edu_outbox ADD COLUMN queued_ts BIGINT NOT NULL DEFAULT 0;
