-- Client connections, as Synapse's user_ips: the address and user agent each access
-- token was last used from. Written in batches from memory, so `last_seen` may lag the
-- newest request by a few seconds. Token digests, not tokens, as in access_tokens.
CREATE TABLE client_ips (
    token_hash TEXT NOT NULL,
    ip TEXT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (token_hash, ip)
);
-- A device's newest connection (device lists, whois) and a user's (the admin user list).
CREATE INDEX client_ips_by_device ON client_ips (user_id, device_id, last_seen);
CREATE INDEX client_ips_by_user ON client_ips (user_id, last_seen);
