//! Media other servers download from us (`/_matrix/federation/v1/media/…`): our own
//! uploads only, as `multipart/mixed` of an (empty) JSON part and the bytes.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use ruma::UInt;
use ruma::api::federation::authenticated_media::{get_content, get_content_thumbnail};
use ruma::media::Method;
use tokio::io::AsyncReadExt;

use super::SignedRuma;
use crate::api::extract::AppState;
use crate::api::media::{WHOLE_FILE_BYTES, file_body};
use crate::config::ThumbnailMethod;
use crate::error::{ApiResult, MatrixError};
use crate::services::media::{MediaFile, content_disposition};

pub async fn download(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRuma<get_content::v1::Request>,
) -> ApiResult<Response> {
    let media_id = request.media_id.as_str();
    tracing::debug!(origin = %signed.origin, media_id, "federation media download");
    multipart(state.media.for_federation(media_id).await?).await
}

/// `GET /v1/media/thumbnail/{mediaId}?width=…&height=…[&method=…]`: a width or height
/// that is not a whole number is `M_INVALID_PARAM` (ruma's type), as Synapse answers it.
pub async fn thumbnail(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRuma<get_content_thumbnail::v1::Request>,
) -> ApiResult<Response> {
    let media_id = request.media_id.as_str();
    tracing::debug!(origin = %signed.origin, media_id, "federation media thumbnail");
    let dimension = |value: UInt, name: &str| {
        u32::try_from(u64::from(value)).map_err(|_| MatrixError::invalid_param(format!("{name} is too large")))
    };
    let (width, height) = (dimension(request.width, "width")?, dimension(request.height, "height")?);
    let method = match request.method {
        Some(Method::Crop) => ThumbnailMethod::Crop,
        None | Some(Method::Scale) => ThumbnailMethod::Scale,
        Some(_) => return Err(MatrixError::invalid_param("method must be crop or scale")),
    };
    let server_name = state.config.server_name.clone();
    let file =
        state.media.thumbnail(&server_name, media_id, (width, height, method), false, Default::default()).await?;
    multipart(file).await
}

/// The spec's answer: the JSON metadata part, then the file (streamed).
async fn multipart(file: MediaFile) -> ApiResult<Response> {
    let opened = tokio::fs::File::open(&file.path).await.map_err(|e| MatrixError::internal("media file", e))?;
    let boundary = random_boundary();
    let disposition = content_disposition(&file.content_type, file.upload_name.as_deref());
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\nContent-Type: {}\r\nContent-Disposition: {disposition}\r\n\r\n",
        file.content_type.replace(['\r', '\n'], "")
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = opened.metadata().await.map_err(|e| MatrixError::internal("media file", e))?.len();
    let body = if length <= WHOLE_FILE_BYTES {
        // A small file goes out as one piece, with its framing.
        let mut bytes = head.into_bytes();
        let mut opened = opened;
        opened.read_to_end(&mut bytes).await.map_err(|e| MatrixError::internal("media file", e))?;
        bytes.extend_from_slice(tail.as_bytes());
        Body::from(bytes)
    } else {
        let file_bytes = file_body(opened, length).await?.into_data_stream();
        let stream = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
            .chain(file_bytes)
            .chain(futures_util::stream::once(async move { Ok(Bytes::from(tail)) }));
        Body::from_stream(stream)
    };
    let mut response = body.into_response();
    let content_type = format!("multipart/mixed; boundary={boundary}");
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).map_err(|e| MatrixError::internal("content type", e))?,
    );
    Ok(response)
}

fn random_boundary() -> String {
    use rand::Rng;
    rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(32).map(char::from).collect()
}
