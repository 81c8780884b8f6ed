-- Reports users make of events, rooms and other users, for the server's admins.
CREATE TABLE reports (
    report_id BIGINT PRIMARY KEY,
    reporter TEXT NOT NULL,
    room_id TEXT,
    event_id TEXT,
    reported_user TEXT,
    reason TEXT,
    score BIGINT,
    received_ts BIGINT NOT NULL
);
INSERT INTO stream_positions (stream, position) VALUES ('reports', 0);
