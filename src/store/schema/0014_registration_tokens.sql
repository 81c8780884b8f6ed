-- Registration tokens (Synapse's admin API, MSC3231). `completed` counts registrations
-- finished with a token; sessions that passed the token stage and may still finish are
-- rows of registration_token_sessions, counted as `pending` until they expire.
CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed BIGINT,
    completed BIGINT NOT NULL DEFAULT 0,
    expiry_time BIGINT
);
CREATE TABLE registration_token_sessions (
    session_id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX registration_token_sessions_token ON registration_token_sessions (token, expires_ts);
