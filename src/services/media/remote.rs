//! Media of other servers, fetched over federation
//! (`GET /_matrix/federation/v1/media/download/{mediaId}`: a `multipart/mixed` answer of
//! a JSON part and the bytes) and streamed into the store within the upload limit.

use futures_util::StreamExt;
use ruma::ServerName;
use ruma::api::federation::authenticated_media::get_content;

use super::files::MediaFiles;
use crate::error::{ApiResult, MatrixError};
use crate::services::federation::{FederationClient, FederationError};

/// What a remote server said about its media.
pub struct Fetched {
    pub content_type: String,
    pub upload_name: Option<String>,
    pub size: u64,
}

/// Fetches `mxc://{origin}/{media_id}` into the store.
pub async fn fetch(
    client: &FederationClient,
    files: &MediaFiles,
    origin: &ServerName,
    media_id: &str,
    max_bytes: u64,
) -> ApiResult<Fetched> {
    let request = get_content::v1::Request::new(media_id.to_owned());
    // Streamed, not ruma's response: that would hold the whole file in memory.
    let response = client.send_streamed(origin, request).await.map_err(|err| remote_error(origin, &err))?;
    let header = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let boundary = header
        .parse::<mime::Mime>()
        .ok()
        .filter(|mime| mime.type_() == mime::MULTIPART)
        .and_then(|mime| mime.get_param(mime::BOUNDARY).map(|b| b.to_string()))
        .ok_or_else(|| bad_answer(origin, "not multipart/mixed"))?;
    // The JSON part is small; the whole answer is bounded by the media limit.
    let limits = multer::SizeLimit::new().whole_stream(max_bytes.saturating_add(64 * 1024));
    let mut parts = multer::Multipart::with_constraints(
        response.bytes_stream(),
        boundary,
        multer::Constraints::new().size_limit(limits),
    );
    // The metadata part says nothing kith uses yet; read past it.
    let metadata = parts.next_field().await.map_err(|e| bad_answer(origin, &e.to_string()))?;
    drop(metadata);
    let media = parts.next_field().await.map_err(|e| bad_answer(origin, &e.to_string()))?;
    let Some(media) = media else { return Err(bad_answer(origin, "no media part")) };
    if media.headers().contains_key(reqwest::header::LOCATION) {
        return Err(bad_answer(origin, "redirects to another location, which kith does not follow"));
    }
    let content_type = media.content_type().map_or("application/octet-stream".to_owned(), ToString::to_string);
    let upload_name = media
        .headers()
        .get(reqwest::header::CONTENT_DISPOSITION)
        .and_then(|value| value.to_str().ok())
        .and_then(super::disposition::upload_name_from_disposition);
    let destination = files.original(origin.as_str(), media_id);
    let size = files.write(&destination, media.boxed(), max_bytes).await?;
    Ok(Fetched { content_type, upload_name, size })
}

fn remote_error(origin: &ServerName, err: &FederationError) -> MatrixError {
    tracing::debug!(%origin, %err, "remote media fetch failed");
    match err {
        FederationError::Remote { status, .. } if status.is_client_error() => {
            MatrixError::not_found("The remote server does not have this media")
        }
        _ => MatrixError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            format!("Could not fetch the media from {origin}: {err}"),
        ),
    }
}

fn bad_answer(origin: &ServerName, why: &str) -> MatrixError {
    MatrixError::new(
        axum::http::StatusCode::BAD_GATEWAY,
        "M_UNKNOWN",
        format!("{origin} answered the media request badly: {why}"),
    )
}
