//! HTTP only: parse and authenticate a request, call one service method, map errors.

pub mod admin;
pub mod client;
pub mod extract;
pub mod federation;
pub mod keys;
pub mod media;
pub mod metrics;
pub mod validate;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::error::MatrixError;
use extract::{AppState, TrustForwardedFor};

/// JSON bodies larger than this are refused with `M_TOO_LARGE`.
pub const MAX_JSON_BODY_BYTES: usize = 1024 * 1024;

/// Which API families a listener serves, from its `resources[].names`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resources {
    pub client: bool,
    pub federation: bool,
    pub keys: bool,
}

impl Resources {
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut resources = Self::default();
        for name in names {
            match name {
                "client" => resources.client = true,
                // As in Synapse, a federation listener also serves the key API.
                "federation" => {
                    resources.federation = true;
                    resources.keys = true;
                }
                "keys" => resources.keys = true,
                _ => {}
            }
        }
        resources
    }
}

pub fn router(state: AppState, resources: Resources, x_forwarded: bool) -> Router {
    let mut router = Router::new().route("/health", get(|| async { "OK" }));
    if resources.client {
        router = router.merge(client::routes()).merge(media::routes()).merge(admin::routes());
    }
    if resources.federation {
        router = router.merge(federation::routes());
    }
    if resources.keys {
        router = router.merge(keys::routes());
    }
    router
        .fallback(|| async { MatrixError::unrecognized(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async { MatrixError::unrecognized(StatusCode::METHOD_NOT_ALLOWED) })
        .layer(axum::middleware::from_fn(validate::check_uri))
        .layer(axum::middleware::map_response(matrix_errors_only))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .layer(axum::Extension(TrustForwardedFor(x_forwarded)))
        .layer(CorsLayer::new().allow_origin(Any).allow_methods(Any).allow_headers(Any))
        .layer(CatchPanicLayer::custom(|_| MatrixError::internal("request handler", "panicked").into_response()))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::observe))
        .with_state(state)
}

/// Extractor rejections (a path or query string that does not decode, say) come from
/// axum as plain text; clients get a Matrix error for those too.
async fn matrix_errors_only(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => MatrixError::unrecognized(status),
        StatusCode::PAYLOAD_TOO_LARGE => MatrixError::body_too_large(),
        status if status.is_client_error() => MatrixError::new(status, "M_INVALID_PARAM", "Invalid request parameters"),
        status => MatrixError::new(status, "M_UNKNOWN", "Internal server error"),
    };
    error.into_response()
}
