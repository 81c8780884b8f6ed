-- Which rooms got receipts after a sync position, without reading every room's.
CREATE INDEX receipts_by_stream ON receipts (stream_id);
-- A user's newest own event in a room (how far they have read it), without reading the
-- room's every event.
CREATE INDEX events_by_sender ON events (room_id, sender, stream_ordering);
-- The notifications after a position, for the push-gateway sender, without reading all.
CREATE INDEX notifications_by_stream ON notifications (stream_ordering);
