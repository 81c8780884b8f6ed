//! Where media bytes live under `media_store_path`, and how they get there: streamed
//! into a temporary file, bounded in size, then renamed into place (a reader never sees
//! half a file).

use std::path::{Path, PathBuf};

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::error::{ApiResult, MatrixError};

/// The media store's layout.
pub struct MediaFiles {
    root: PathBuf,
}

impl MediaFiles {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The file of a media item; `origin` is hex-encoded so no server name can reach
    /// outside the store, and media ids are checked by [`valid_media_id`] first.
    pub fn original(&self, origin: &str, media_id: &str) -> PathBuf {
        self.item_dir("content", origin, media_id).join("original")
    }

    /// A cached thumbnail of a media item (`name` says its size, method and format).
    pub fn thumbnail(&self, origin: &str, media_id: &str, name: &str) -> PathBuf {
        self.item_dir("content", origin, media_id).join(name)
    }

    fn item_dir(&self, kind: &str, origin: &str, media_id: &str) -> PathBuf {
        let shard = media_id.get(..2).unwrap_or("__");
        self.root.join(kind).join(hex::encode(origin)).join(shard).join(media_id)
    }

    /// Writes a stream to `destination`, refusing it past `max_bytes` with
    /// `M_TOO_LARGE`. Returns the size written.
    pub async fn write<S, E>(&self, destination: &Path, body: S, max_bytes: u64) -> ApiResult<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let directory = destination.parent().ok_or_else(|| MatrixError::internal("media path", "no parent"))?;
        tokio::fs::create_dir_all(directory).await.map_err(|e| MatrixError::internal("media directory", e))?;
        let partial = directory.join(format!(".partial-{}", rand_suffix()));
        let written = write_bounded(&partial, body, max_bytes).await;
        match written {
            Ok(size) => {
                tokio::fs::rename(&partial, destination).await.map_err(|e| MatrixError::internal("media file", e))?;
                Ok(size)
            }
            Err(err) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(err)
            }
        }
    }
}

async fn write_bounded<S, E>(path: &Path, mut body: S, max_bytes: u64) -> ApiResult<u64>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::create(path).await.map_err(|e| MatrixError::internal("media file", e))?;
    let mut size: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| MatrixError::bad_json(format!("The upload was interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > max_bytes {
            return Err(too_large(max_bytes));
        }
        file.write_all(&chunk).await.map_err(|e| MatrixError::internal("media file", e))?;
    }
    file.flush().await.map_err(|e| MatrixError::internal("media file", e))?;
    file.sync_all().await.map_err(|e| MatrixError::internal("media file", e))?;
    Ok(size)
}

pub fn too_large(max_bytes: u64) -> MatrixError {
    MatrixError::too_large(format!("Media is larger than this server's limit of {max_bytes} bytes"))
}

/// Media ids are opaque but, as the spec says, made of `[A-Za-z0-9_-]`.
pub fn valid_media_id(media_id: &str) -> bool {
    !media_id.is_empty()
        && media_id.len() <= 255
        && media_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn rand_suffix() -> String {
    use rand::Rng;
    rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(16).map(char::from).collect()
}
