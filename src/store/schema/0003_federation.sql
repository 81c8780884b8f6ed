-- Federation: events outside the timeline, the federation sender's outbox and the
-- per-destination backoff.

-- An outlier is held for reference but is not part of the room's timeline: the state
-- and auth chain received with a join, auth events fetched for an incoming event,
-- soft-failed events and invites to rooms this server is not in.
ALTER TABLE events ADD COLUMN outlier BIGINT NOT NULL DEFAULT 0;
CREATE INDEX event_edges_by_prev ON event_edges (prev_event_id);

-- PDUs owed to each destination. The sender's fan-out writes them in the same
-- transaction as its stream position; a row goes once the destination accepted it.
CREATE TABLE federation_outbox (
    destination TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (destination, stream_ordering)
);

-- Destinations that failed: when to try next, so a restart neither hammers a dead
-- server nor forgets one.
CREATE TABLE federation_destinations (
    destination TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    retry_last_ts BIGINT NOT NULL,
    retry_interval_ms BIGINT NOT NULL
);
