//! The media API: uploads and `create` under `/_matrix/media`, authenticated downloads
//! and thumbnails under `/_matrix/client/v1/media`, and the legacy unauthenticated
//! `/_matrix/media/v3` downloads (refused, as in Synapse, while
//! `enable_authenticated_media` is on).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ruma::api::client::authenticated_media::get_media_config;
use ruma::api::client::media::{create_content, create_mxc_uri};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, UInt};
use serde::Deserialize;

use super::extract::{AppState, Requester, RumaResponse, parse_id};
use crate::config::ThumbnailMethod;
use crate::error::{ApiResult, MatrixError};
use crate::services::media::{MediaFile, content_disposition, served_content_type, upload_content_type};

/// Media may be cached by browsers and proxies for a day (it never changes).
const CACHE_CONTROL: &str = "public, max-age=86400, s-maxage=86400";
/// Served media runs no script and loads nothing, even if a browser renders it.
const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
     style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";
/// What `timeout_ms` is when a client does not say.
const DEFAULT_WAIT_MS: u64 = 20_000;

pub fn routes() -> Router<AppState> {
    const CLIENT: &str = "/_matrix/client/v1/media";
    let mut router = Router::new()
        .route(&format!("{CLIENT}/config"), get(config))
        .route(&format!("{CLIENT}/download/{{server}}/{{media_id}}"), get(download))
        .route(&format!("{CLIENT}/download/{{server}}/{{media_id}}/{{file_name}}"), get(download_named))
        .route(&format!("{CLIENT}/thumbnail/{{server}}/{{media_id}}"), get(thumbnail))
        .route(&format!("{CLIENT}/preview_url"), get(preview_url))
        .route("/_matrix/media/v1/create", post(create));
    for version in ["v3", "r0"] {
        let legacy = format!("/_matrix/media/{version}");
        router = router
            .route(&format!("{legacy}/upload"), post(upload))
            .route(&format!("{legacy}/upload/{{server}}/{{media_id}}"), axum::routing::put(upload_to))
            .route(&format!("{legacy}/config"), get(config))
            .route(&format!("{legacy}/download/{{server}}/{{media_id}}"), get(legacy_download))
            .route(&format!("{legacy}/download/{{server}}/{{media_id}}/{{file_name}}"), get(legacy_download_named))
            .route(&format!("{legacy}/thumbnail/{{server}}/{{media_id}}"), get(legacy_thumbnail))
            .route(&format!("{legacy}/preview_url"), get(preview_url));
    }
    router
}

async fn config(
    State(state): State<AppState>,
    Requester(_): Requester,
) -> RumaResponse<get_media_config::v1::Response> {
    get_media_config::v1::Response::new(UInt::try_from(state.media.max_upload_size()).unwrap_or(UInt::MAX)).into()
}

async fn create(
    State(state): State<AppState>,
    Requester(owner): Requester,
) -> ApiResult<RumaResponse<create_mxc_uri::v1::Response>> {
    state.limits.media_create.check(owner.user_id.as_str())?;
    let (content_uri, expires) = state.media.create(&owner.user_id).await?;
    let mut answer = create_mxc_uri::v1::Response::new(content_uri.into());
    answer.unused_expires_at = UInt::try_from(expires).ok().map(MilliSecondsSinceUnixEpoch);
    Ok(answer.into())
}

#[derive(Deserialize)]
struct UploadQuery {
    filename: Option<String>,
}

async fn upload(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<RumaResponse<create_content::v3::Response>> {
    let content_type = checked_upload(&state, &headers)?;
    let stream = body.into_data_stream();
    let uri = state.media.upload(&owner.user_id, None, &content_type, query.filename.as_deref(), stream).await?;
    Ok(create_content::v3::Response::new(uri.into()).into())
}

async fn upload_to(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((server, media_id)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<axum::Json<serde_json::Map<String, serde_json::Value>>> {
    let server: OwnedServerName = parse_id(&server, "server name")?;
    let content_type = checked_upload(&state, &headers)?;
    let reserved = Some((server.as_ref(), media_id.as_str()));
    let stream = body.into_data_stream();
    state.media.upload(&owner.user_id, reserved, &content_type, query.filename.as_deref(), stream).await?;
    // Empty; ruma's response type for it cannot be built outside ruma.
    Ok(axum::Json(serde_json::Map::new()))
}

/// Refuses an upload whose declared length is over the limit before reading it.
fn checked_upload(state: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.media.max_upload_size()) {
        return Err(MatrixError::too_large(format!(
            "Media is larger than this server's limit of {} bytes",
            state.media.max_upload_size()
        )));
    }
    Ok(upload_content_type(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())))
}

#[derive(Deserialize)]
struct DownloadQuery {
    #[serde(default)]
    allow_remote: Option<String>,
    #[serde(default)]
    timeout_ms: Option<String>,
}

impl DownloadQuery {
    fn allow_remote(&self) -> ApiResult<bool> {
        flag(self.allow_remote.as_deref(), "allow_remote", true)
    }

    fn wait(&self) -> ApiResult<Duration> {
        let ms = match &self.timeout_ms {
            Some(ms) => ms.parse::<u64>().map_err(|_| MatrixError::invalid_param("timeout_ms must be a number"))?,
            None => DEFAULT_WAIT_MS,
        };
        Ok(Duration::from_millis(ms))
    }
}

fn flag(value: Option<&str>, name: &str, default: bool) -> ApiResult<bool> {
    match value {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(MatrixError::invalid_param(format!("{name} must be true or false"))),
    }
}

async fn download(
    State(state): State<AppState>,
    Requester(_): Requester,
    Path((server, media_id)): Path<(String, String)>,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    serve_download(&state, &server, &media_id, None, &query).await
}

async fn download_named(
    State(state): State<AppState>,
    Requester(_): Requester,
    Path((server, media_id, file_name)): Path<(String, String, String)>,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    serve_download(&state, &server, &media_id, Some(file_name), &query).await
}

async fn serve_download(
    state: &AppState,
    server: &str,
    media_id: &str,
    file_name: Option<String>,
    query: &DownloadQuery,
) -> ApiResult<Response> {
    let server: OwnedServerName = parse_id(server, "server name")?;
    let mut file = state.media.file(&server, media_id, query.allow_remote()?, query.wait()?).await?;
    if file_name.is_some() {
        file.upload_name = file_name;
    }
    serve_file(file).await
}

#[derive(Deserialize)]
struct ThumbnailQuery {
    width: Option<String>,
    height: Option<String>,
    method: Option<String>,
    #[serde(flatten)]
    download: DownloadQuery,
}

impl ThumbnailQuery {
    fn size(&self) -> ApiResult<(u32, u32, ThumbnailMethod)> {
        let dimension = |value: &Option<String>, name: &str| -> ApiResult<u32> {
            let value = value.as_deref().ok_or_else(|| MatrixError::missing_param(format!("{name} is required")))?;
            value
                .parse::<u32>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| MatrixError::invalid_param(format!("{name} must be a positive whole number")))
        };
        let method = match self.method.as_deref() {
            None | Some("scale") => ThumbnailMethod::Scale,
            Some("crop") => ThumbnailMethod::Crop,
            Some(_) => return Err(MatrixError::invalid_param("method must be crop or scale")),
        };
        Ok((dimension(&self.width, "width")?, dimension(&self.height, "height")?, method))
    }
}

async fn thumbnail(
    State(state): State<AppState>,
    Requester(_): Requester,
    Path((server, media_id)): Path<(String, String)>,
    Query(query): Query<ThumbnailQuery>,
) -> ApiResult<Response> {
    serve_thumbnail(&state, &server, &media_id, &query).await
}

async fn serve_thumbnail(
    state: &AppState,
    server: &str,
    media_id: &str,
    query: &ThumbnailQuery,
) -> ApiResult<Response> {
    let server: OwnedServerName = parse_id(server, "server name")?;
    let size = query.size()?;
    let file =
        state.media.thumbnail(&server, media_id, size, query.download.allow_remote()?, query.download.wait()?).await?;
    serve_file(file).await
}

/// The legacy endpoints, unauthenticated: refused while authenticated media is on.
fn legacy_allowed(state: &AppState) -> ApiResult<()> {
    if state.config.enable_authenticated_media {
        return Err(MatrixError::not_found("Not found"));
    }
    Ok(())
}

async fn legacy_download(
    State(state): State<AppState>,
    Path((server, media_id)): Path<(String, String)>,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    legacy_allowed(&state)?;
    serve_download(&state, &server, &media_id, None, &query).await
}

async fn legacy_download_named(
    State(state): State<AppState>,
    Path((server, media_id, file_name)): Path<(String, String, String)>,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    legacy_allowed(&state)?;
    serve_download(&state, &server, &media_id, Some(file_name), &query).await
}

async fn legacy_thumbnail(
    State(state): State<AppState>,
    Path((server, media_id)): Path<(String, String)>,
    Query(query): Query<ThumbnailQuery>,
) -> ApiResult<Response> {
    legacy_allowed(&state)?;
    serve_thumbnail(&state, &server, &media_id, &query).await
}

/// kith does not fetch web pages for link previews.
async fn preview_url(Requester(_): Requester) -> MatrixError {
    MatrixError::new(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "URL previews are not enabled on this server")
}

/// Files up to this size are answered in one piece (no pause between headers and
/// body); larger ones are streamed in chunks of the same size.
pub const WHOLE_FILE_BYTES: u64 = 1024 * 1024;

/// A file's bytes as a body: read at once when small, streamed otherwise.
pub async fn file_body(mut file: tokio::fs::File, length: u64) -> ApiResult<Body> {
    if length <= WHOLE_FILE_BYTES {
        use tokio::io::AsyncReadExt;
        let mut bytes = Vec::with_capacity(length as usize);
        file.read_to_end(&mut bytes).await.map_err(|e| MatrixError::internal("media file", e))?;
        return Ok(Body::from(bytes));
    }
    Ok(Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, WHOLE_FILE_BYTES as usize)))
}

/// A stored file as an HTTP answer, streamed, with headers that keep browsers from
/// running it.
pub async fn serve_file(file: MediaFile) -> ApiResult<Response> {
    let opened = tokio::fs::File::open(&file.path).await.map_err(|e| MatrixError::internal("media file", e))?;
    let length = opened.metadata().await.map_err(|e| MatrixError::internal("media file", e))?.len();
    let body = file_body(opened, length).await?;
    let mut response = body.into_response();
    let headers = response.headers_mut();
    let value =
        |text: &str| HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, value(&served_content_type(&file.content_type)));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let disposition = content_disposition(&file.content_type, file.upload_name.as_deref());
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    Ok(response)
}
