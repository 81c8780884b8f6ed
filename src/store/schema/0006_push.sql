-- Push: what each event's push rules decided for each local member, and pushers.

-- An event that notifies a user (its push rules' actions hold `notify`). Counts since
-- the user's read receipt are a room's unread notifications in `/sync`.
CREATE TABLE notifications (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    highlight BIGINT NOT NULL,
    actions TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX notifications_by_room ON notifications (user_id, room_id, stream_ordering);
CREATE INDEX notifications_by_time ON notifications (user_id, stream_ordering);

-- Pushers clients registered (`/pushers/set`): kept and listed.
CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    pusher TEXT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
