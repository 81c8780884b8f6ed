//! Media metadata: uploads, `create`d ids waiting for their upload, cached remote media.

use sqlx::Row;

use super::{Store, now_ms};

/// A media item's metadata. `size` is `None` while it waits for its upload.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRow {
    pub origin: String,
    pub media_id: String,
    pub content_type: Option<String>,
    pub upload_name: Option<String>,
    pub size: Option<i64>,
    pub uploader: Option<String>,
    pub unused_expires_ts: Option<i64>,
}

/// What is known of media once its bytes are stored.
pub struct StoredMedia<'a> {
    pub origin: &'a str,
    pub media_id: &'a str,
    pub content_type: &'a str,
    pub upload_name: Option<&'a str>,
    pub size: i64,
    pub uploader: Option<&'a str>,
}

impl Store {
    pub async fn media(&self, origin: &str, media_id: &str) -> Result<Option<MediaRow>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT origin, media_id, content_type, upload_name, size, uploader, unused_expires_ts \
             FROM media WHERE origin = $1 AND media_id = $2",
        )
        .bind(origin)
        .bind(media_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(MediaRow {
                origin: row.try_get(0)?,
                media_id: row.try_get(1)?,
                content_type: row.try_get(2)?,
                upload_name: row.try_get(3)?,
                size: row.try_get(4)?,
                uploader: row.try_get(5)?,
                unused_expires_ts: row.try_get(6)?,
            })
        })
        .transpose()
    }

    /// Records stored media (an upload, a completed `create`, or a fetched remote file).
    pub async fn put_media(&self, media: &StoredMedia<'_>) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO media (origin, media_id, content_type, upload_name, size, uploader, created_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (origin, media_id) DO UPDATE SET \
             content_type = excluded.content_type, upload_name = excluded.upload_name, size = excluded.size, \
             unused_expires_ts = NULL",
        )
        .bind(media.origin)
        .bind(media.media_id)
        .bind(media.content_type)
        .bind(media.upload_name)
        .bind(media.size)
        .bind(media.uploader)
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await
    }

    /// Reserves a media id for a later upload by `uploader`.
    pub async fn reserve_media(
        &self,
        origin: &str,
        media_id: &str,
        uploader: &str,
        expires_ts: i64,
    ) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO media (origin, media_id, uploader, created_ts, unused_expires_ts) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(origin)
        .bind(media_id)
        .bind(uploader)
        .bind(now_ms())
        .bind(expires_ts)
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await
    }

    /// How many reserved ids of a user still wait for their upload.
    pub async fn pending_media_count(&self, uploader: &str, now: i64) -> Result<i64, sqlx::Error> {
        let row =
            sqlx::query("SELECT COUNT(*) FROM media WHERE uploader = $1 AND size IS NULL AND unused_expires_ts > $2")
                .bind(uploader)
                .bind(now)
                .fetch_one(self.pool())
                .await?;
        row.try_get(0)
    }
}
