-- Relations between events (`content.m.relates_to`: threads, edits, reactions, replies
-- in threads), for `/relations` and `/threads`. Filled as events are stored; a
-- redacted event loses its relation.
CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY,
    relates_to_id TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    sender TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX event_relations_by_parent ON event_relations (relates_to_id, stream_ordering);
CREATE INDEX event_relations_by_room ON event_relations (room_id, rel_type, stream_ordering);
