-- End-to-end encryption: the keys devices publish, the messages they send each other,
-- and the stream of users whose devices or keys changed.
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
-- One fallback key per device and algorithm, handed out (and marked used) when the
-- one-time keys run out.
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);
-- master, self_signing and user_signing keys, with the signatures their owner added.
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);
-- A user's signature of another user's master key: shown to the signer only.
CREATE TABLE e2e_user_signatures (
    signer TEXT NOT NULL,
    target_user TEXT NOT NULL,
    target_key TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (signer, target_user, target_key, key_id)
);
-- Users (local and remote) whose device list or keys changed, in stream order.
CREATE TABLE device_list_changes (
    stream_id BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT
);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_id);
CREATE TABLE to_device_inbox (
    stream_id BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    message_json TEXT NOT NULL
);
CREATE INDEX to_device_inbox_recipient ON to_device_inbox (user_id, device_id, stream_id);
-- Transaction ids of sendToDevice (per device) and message ids of m.direct_to_device
-- EDUs (per origin) already handled, so that retries deliver once.
CREATE TABLE to_device_seen (
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (sender, message_id)
);
INSERT INTO stream_positions (stream, position) VALUES ('device_lists', 0);
INSERT INTO stream_positions (stream, position) VALUES ('to_device', 0);
-- EDUs that must survive a restart (to-device messages, device-list updates) until the
-- destination took them; typing and receipts stay in memory.
CREATE TABLE federation_edu_outbox (
    destination TEXT NOT NULL,
    edu_key TEXT NOT NULL,
    edu_json TEXT NOT NULL,
    PRIMARY KEY (destination, edu_key)
);
-- Other servers' users' keys (devices and cross-signing), kept while they share a room
-- with a local user; an m.device_list_update or m.signing_key_update drops the entry.
CREATE TABLE remote_device_keys (
    user_id TEXT PRIMARY KEY,
    keys_json TEXT NOT NULL,
    fetched_ts BIGINT NOT NULL
);
