-- Transactions for application services, in order of txn_id per service. A row is
-- written in the same database transaction that moves the service's position on the
-- event stream (consumer `appservice:<id>`), and removed once the service took it, so
-- a restart sends what it finds here again with the same transaction id.
CREATE TABLE appservice_transactions (
    appservice_id TEXT NOT NULL,
    txn_id BIGINT NOT NULL,
    events_json TEXT NOT NULL,
    -- Receipts and typing for services that receive ephemeral data (a JSON array).
    ephemeral_json TEXT,
    -- To-device messages for the service's users, with MSC2409's to-device part on.
    to_device_json TEXT,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (appservice_id, txn_id)
);
-- Each service's last transaction id: ids are never reused, even once sent.
CREATE TABLE appservice_state (
    appservice_id TEXT PRIMARY KEY,
    last_txn_id BIGINT NOT NULL
);
-- Services receiving ephemeral data follow the receipts of every room by position, with
-- migration 19's index on receipts (stream_id).
