//! The media repository: uploads (at once, or to an id `create`d beforehand), downloads
//! of local and remote media (fetched once over federation, then served from the
//! store), thumbnails, and what other servers may download from us.

mod disposition;
mod files;
mod remote;
mod thumbnails;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use futures_util::Stream;
use ruma::{OwnedServerName, ServerName, UserId};
use tokio::sync::{Notify, Semaphore};

use super::federation::FederationClient;
use super::locks::KeyedLocks;
use crate::config::{Config, ThumbnailMethod, ThumbnailSize};
use crate::error::{ApiResult, MatrixError};
use crate::store::{MediaRow, Store, StoredMedia, now_ms};
pub use disposition::{content_disposition, served_content_type, upload_content_type, upload_name_from_disposition};
use files::{MediaFiles, valid_media_id};
use thumbnails::ThumbnailError;

/// A `create`d media id waits this long for its upload (Synapse's default).
const UNUSED_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);
/// A user may have this many `create`d ids waiting at once (Synapse's default).
const MAX_PENDING_UPLOADS: i64 = 5;
/// A download of media still being uploaded waits at most this long.
const MAX_UPLOAD_WAIT: Duration = Duration::from_secs(20);
/// Thumbnails made at once (decoding is CPU-bound).
const THUMBNAIL_WORKERS: usize = 2;
const MEDIA_ID_LENGTH: usize = 24;

pub struct MediaConfig {
    pub max_upload_size: u64,
    pub max_image_pixels: u64,
    pub thumbnail_sizes: Vec<ThumbnailSize>,
}

impl MediaConfig {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_upload_size: config.max_upload_size,
            max_image_pixels: config.max_image_pixels,
            thumbnail_sizes: config.thumbnail_sizes.clone(),
        }
    }
}

/// A stored file ready to be served.
#[derive(Debug, Clone)]
pub struct MediaFile {
    pub path: PathBuf,
    pub content_type: String,
    pub upload_name: Option<String>,
    pub size: u64,
}

pub struct Media {
    store: Arc<Store>,
    server_name: OwnedServerName,
    client: Arc<FederationClient>,
    config: MediaConfig,
    files: MediaFiles,
    /// One fetch per remote item, one generation per thumbnail, however many ask.
    fetches: KeyedLocks<(String, String)>,
    thumbnail_workers: Semaphore,
    uploaded: Notify,
}

impl Media {
    pub fn new(
        store: Arc<Store>,
        server_name: OwnedServerName,
        client: Arc<FederationClient>,
        config: MediaConfig,
        root: PathBuf,
    ) -> Self {
        Self {
            store,
            server_name,
            client,
            config,
            files: MediaFiles::new(root),
            fetches: KeyedLocks::new(1024),
            thumbnail_workers: Semaphore::new(THUMBNAIL_WORKERS),
            uploaded: Notify::new(),
        }
    }

    pub fn max_upload_size(&self) -> u64 {
        self.config.max_upload_size
    }

    /// `POST /media/v1/create`: a media id to upload to later. Returns it and when it expires.
    pub async fn create(&self, uploader: &UserId) -> ApiResult<(String, i64)> {
        let now = now_ms();
        if self.store.pending_media_count(uploader.as_str(), now).await? >= MAX_PENDING_UPLOADS {
            return Err(MatrixError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "M_LIMIT_EXCEEDED",
                "Too many media ids waiting for their upload",
            ));
        }
        let media_id = random_media_id();
        let expires = now + UNUSED_EXPIRY.as_millis() as i64;
        self.store.reserve_media(self.server_name.as_str(), &media_id, uploader.as_str(), expires).await?;
        Ok((self.mxc(&media_id), expires))
    }

    /// An upload: to a new id, or to one the uploader `create`d. Returns the `mxc://` URI.
    pub async fn upload<S, E>(
        &self,
        uploader: &UserId,
        reserved: Option<(&ServerName, &str)>,
        content_type: &str,
        upload_name: Option<&str>,
        body: S,
    ) -> ApiResult<String>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if upload_name.is_some_and(|name| name.len() > 255 || name.chars().any(char::is_control)) {
            return Err(MatrixError::invalid_param("filename must be at most 255 bytes, without control characters"));
        }
        let media_id = match reserved {
            Some((server, media_id)) => self.check_reservation(uploader, server, media_id).await?,
            None => random_media_id(),
        };
        let path = self.files.original(self.server_name.as_str(), &media_id);
        let size = self.files.write(&path, body, self.config.max_upload_size).await?;
        let stored = StoredMedia {
            origin: self.server_name.as_str(),
            media_id: &media_id,
            content_type,
            upload_name,
            size: size as i64,
            uploader: Some(uploader.as_str()),
        };
        self.store.put_media(&stored).await?;
        self.uploaded.notify_waiters();
        tracing::debug!(%uploader, media_id, size, content_type, "media uploaded");
        Ok(self.mxc(&media_id))
    }

    async fn check_reservation(&self, uploader: &UserId, server: &ServerName, media_id: &str) -> ApiResult<String> {
        let not_found = || MatrixError::not_found("Unknown media id");
        if server != self.server_name || !valid_media_id(media_id) {
            return Err(not_found());
        }
        let row = self.store.media(server.as_str(), media_id).await?.ok_or_else(not_found)?;
        if row.uploader.as_deref() != Some(uploader.as_str()) {
            return Err(MatrixError::forbidden("This media id was created by another user"));
        }
        if row.size.is_some() {
            return Err(MatrixError::new(StatusCode::CONFLICT, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded"));
        }
        if row.unused_expires_ts.is_some_and(|expires| expires < now_ms()) {
            return Err(not_found());
        }
        Ok(media_id.to_owned())
    }

    /// The file of `mxc://{origin}/{media_id}`: local, cached, or fetched now when
    /// `allow_remote`. Media still being uploaded is waited for up to `wait`.
    pub async fn file(
        &self,
        origin: &ServerName,
        media_id: &str,
        allow_remote: bool,
        wait: Duration,
    ) -> ApiResult<MediaFile> {
        if !valid_media_id(media_id) {
            return Err(MatrixError::not_found("Unknown media id"));
        }
        let row = if origin == self.server_name {
            self.local(media_id, wait.min(MAX_UPLOAD_WAIT)).await?
        } else {
            self.remote(origin, media_id, allow_remote).await?
        };
        Ok(MediaFile {
            path: self.files.original(&row.origin, &row.media_id),
            content_type: row.content_type.unwrap_or_else(|| "application/octet-stream".to_owned()),
            upload_name: row.upload_name,
            size: row.size.unwrap_or_default().max(0) as u64,
        })
    }

    async fn local(&self, media_id: &str, wait: Duration) -> ApiResult<MediaRow> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let uploaded = self.uploaded.notified();
            let row = self.store.media(self.server_name.as_str(), media_id).await?;
            let Some(row) = row else { return Err(MatrixError::not_found("Media not found")) };
            if row.size.is_some() {
                return Ok(row);
            }
            if tokio::time::timeout_at(deadline, uploaded).await.is_err() {
                return Err(MatrixError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "M_NOT_YET_UPLOADED",
                    "The media has not been uploaded yet",
                ));
            }
        }
    }

    async fn remote(&self, origin: &ServerName, media_id: &str, allow_remote: bool) -> ApiResult<MediaRow> {
        if let Some(row) = self.store.media(origin.as_str(), media_id).await?.filter(|r| r.size.is_some()) {
            return Ok(row);
        }
        if !allow_remote {
            return Err(MatrixError::not_found("Media not found (remote fetching not allowed)"));
        }
        let _one_fetch = self.fetches.lock(&(origin.to_string(), media_id.to_owned())).await;
        if let Some(row) = self.store.media(origin.as_str(), media_id).await?.filter(|r| r.size.is_some()) {
            return Ok(row);
        }
        let fetched = remote::fetch(&self.client, &self.files, origin, media_id, self.config.max_upload_size).await?;
        let stored = StoredMedia {
            origin: origin.as_str(),
            media_id,
            content_type: &fetched.content_type,
            upload_name: fetched.upload_name.as_deref(),
            size: fetched.size as i64,
            uploader: None,
        };
        self.store.put_media(&stored).await?;
        tracing::debug!(%origin, media_id, size = fetched.size, "remote media cached");
        self.store.media(origin.as_str(), media_id).await?.ok_or_else(|| MatrixError::not_found("Media not found"))
    }

    /// A thumbnail of the media in the configured size nearest the request.
    pub async fn thumbnail(
        &self,
        origin: &ServerName,
        media_id: &str,
        (width, height, method): (u32, u32, ThumbnailMethod),
        allow_remote: bool,
        wait: Duration,
    ) -> ApiResult<MediaFile> {
        if width == 0 || height == 0 {
            return Err(MatrixError::invalid_param("width and height must be positive"));
        }
        let original = self.file(origin, media_id, allow_remote, wait).await?;
        let size = thumbnails::choose(&self.config.thumbnail_sizes, width, height, method)
            .ok_or_else(|| MatrixError::not_found("This server makes no thumbnails"))?;
        let name = thumbnails::cache_name(size);
        let _one_generation = self.fetches.lock(&(format!("thumbnail {origin}"), format!("{media_id} {name}"))).await;
        for (extension, content_type) in [("png", "image/png"), ("jpg", "image/jpeg")] {
            let path = self.files.thumbnail(origin.as_str(), media_id, &format!("{name}.{extension}"));
            if let Ok(metadata) = tokio::fs::metadata(&path).await {
                return Ok(MediaFile {
                    path,
                    content_type: content_type.to_owned(),
                    upload_name: None,
                    size: metadata.len(),
                });
            }
        }
        self.generate_thumbnail(origin, media_id, &original, size, &name).await
    }

    async fn generate_thumbnail(
        &self,
        origin: &ServerName,
        media_id: &str,
        original: &MediaFile,
        size: ThumbnailSize,
        name: &str,
    ) -> ApiResult<MediaFile> {
        let _permit = self.thumbnail_workers.acquire().await.map_err(|e| MatrixError::internal("thumbnails", e))?;
        let (source, max_pixels) = (original.path.clone(), self.config.max_image_pixels);
        let made = tokio::task::spawn_blocking(move || thumbnails::generate(&source, size, max_pixels))
            .await
            .map_err(|e| MatrixError::internal("thumbnail task", e))?;
        let thumbnail = made.map_err(|err| match err {
            ThumbnailError::Unsupported | ThumbnailError::TooLarge(_) => {
                MatrixError::not_found(format!("No thumbnail for this media: {err}"))
            }
            ThumbnailError::Invalid(_) => MatrixError::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", err.to_string()),
        })?;
        let extension = if thumbnail.content_type == "image/png" { "png" } else { "jpg" };
        let path = self.files.thumbnail(origin.as_str(), media_id, &format!("{name}.{extension}"));
        let size = thumbnail.bytes.len() as u64;
        let body = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(thumbnail.bytes))]);
        self.files.write(&path, body, u64::MAX).await?;
        Ok(MediaFile { path, content_type: thumbnail.content_type.to_owned(), upload_name: None, size })
    }

    /// Media other servers may download from us: only our own, already uploaded.
    pub async fn for_federation(&self, media_id: &str) -> ApiResult<MediaFile> {
        let server_name = self.server_name.clone();
        self.file(&server_name, media_id, false, Duration::ZERO).await
    }

    fn mxc(&self, media_id: &str) -> String {
        format!("mxc://{}/{media_id}", self.server_name)
    }
}

fn random_media_id() -> String {
    use rand::Rng;
    rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(MEDIA_ID_LENGTH).map(char::from).collect()
}
