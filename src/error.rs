//! Matrix error responses: every failure a client sees is `{"errcode", "error"}` with
//! the status the spec gives, never a bare 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone)]
pub struct MatrixError {
    pub status: StatusCode,
    pub errcode: &'static str,
    pub message: String,
    /// Extra fields merged into the body (`retry_after_ms`, `soft_logout`, UIA flows…).
    pub extra: Map<String, Value>,
}

pub type ApiResult<T> = Result<T, MatrixError>;

impl MatrixError {
    pub fn new(status: StatusCode, errcode: &'static str, message: impl Into<String>) -> Self {
        Self { status, errcode, message: message.into(), extra: Map::new() }
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "M_NOT_FOUND", message)
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_BAD_JSON", message)
    }

    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_NOT_JSON", message)
    }

    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_MISSING_PARAM", message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", message)
    }

    /// `M_TOO_LARGE` for a body, an upload or an event past its limit (413).
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", message)
    }

    /// A request body past the listener's or the endpoint's limit.
    pub fn body_too_large() -> Self {
        Self::too_large("Request body too large")
    }

    /// `M_TOO_LARGE` for one field of an otherwise readable request: 400, as Synapse
    /// answers for long device names, filters and key backup uploads.
    pub fn field_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_TOO_LARGE", message)
    }

    pub fn unrecognized(status: StatusCode) -> Self {
        Self::new(status, "M_UNRECOGNIZED", "Unrecognized request")
    }

    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED", "Too many requests")
            .with("retry_after_ms", json!(retry_after_ms))
    }

    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(%err, "{context}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "Internal server error")
    }

    pub fn body(&self) -> Value {
        let mut body = self.extra.clone();
        // A first user-interactive-auth challenge is a 401 with flows and no error.
        if !self.errcode.is_empty() {
            body.insert("errcode".into(), json!(self.errcode));
            body.insert("error".into(), json!(self.message));
        }
        Value::Object(body)
    }
}

impl std::fmt::Display for MatrixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.errcode, self.message)
    }
}

impl std::error::Error for MatrixError {}

impl From<sqlx::Error> for MatrixError {
    fn from(err: sqlx::Error) -> Self {
        Self::internal("database error", err)
    }
}

impl IntoResponse for MatrixError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}
