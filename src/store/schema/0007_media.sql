-- The media repository: what was uploaded here and what was fetched from other
-- servers. The bytes are files under `media_store_path`; this is their metadata.

-- `size` is NULL while a `create`d media id waits for its upload (until
-- `unused_expires_ts`).
CREATE TABLE media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    content_type TEXT,
    upload_name TEXT,
    size BIGINT,
    uploader TEXT,
    created_ts BIGINT NOT NULL,
    unused_expires_ts BIGINT,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX media_pending_by_uploader ON media (uploader, unused_expires_ts);
