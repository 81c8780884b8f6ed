-- What the admin API reports of an account: whether deactivation erased it.
ALTER TABLE users ADD COLUMN erased BIGINT NOT NULL DEFAULT 0;
