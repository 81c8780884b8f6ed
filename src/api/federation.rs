//! The server-server API (`/_matrix/federation/…`) and server keys (`/_matrix/key/…`).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::routing::get;
use ruma::{OwnedServerName, ServerName, UserId};
use serde_json::{Value, json};

use super::extract::AppState;
use crate::error::{ApiResult, MatrixError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/federation/v1/version", get(version))
        .route("/_matrix/federation/v1/query/profile", get(query_profile))
}

pub fn key_routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/key/v2/server", get(server_keys))
        .route("/_matrix/key/v2/server/{key_id}", get(server_keys))
        .route("/_matrix/key/v2/query/{server_name}", get(query_keys))
        .route("/_matrix/key/v2/query/{server_name}/{key_id}", get(query_keys_by_id))
}

/// An inbound federation request whose `X-Matrix` signature checked out.
pub struct Signed {
    pub origin: OwnedServerName,
    pub body: Bytes,
}

impl FromRequest<AppState> for Signed {
    type Rejection = MatrixError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, super::MAX_JSON_BODY_BYTES).await.map_err(|_| {
            MatrixError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", "Request body too large")
        })?;
        let origin = state.federation.authenticate(&parts.method, &parts.uri, &parts.headers, &body).await?;
        Ok(Self { origin, body })
    }
}

async fn version() -> Json<Value> {
    Json(json!({ "server": { "name": "Kith", "version": env!("CARGO_PKG_VERSION") } }))
}

/// `GET /query/profile?user_id=…[&field=…]`: a local user's public profile.
async fn query_profile(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    signed: Signed,
) -> ApiResult<Json<Value>> {
    let user_id = query.get("user_id").ok_or_else(|| MatrixError::missing_param("user_id is required"))?;
    let user_id = <&UserId>::try_from(user_id.as_str()).map_err(|_| MatrixError::invalid_param("Invalid user_id"))?;
    if user_id.server_name() != state.config.server_name {
        return Err(MatrixError::invalid_param("The user is not on this server"));
    }
    tracing::debug!(origin = %signed.origin, %user_id, "profile query");
    let mut profile = state.profiles.get(user_id.as_str()).await?;
    if let Some(field) = query.get("field") {
        profile.retain(|key, _| key == field);
        if profile.is_empty() {
            return Err(MatrixError::not_found(format!("The profile has no field {field}")));
        }
    }
    Ok(Json(json!(profile)))
}

async fn server_keys(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let body = state.keys.server_key_response().map_err(|err| MatrixError::internal("signing key response", err))?;
    Ok(Json(body))
}

async fn query_keys_by_id(
    State(state): State<AppState>,
    Path((server_name, _key_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    query_keys(State(state), Path(server_name)).await
}

/// Notary key query: our own keys, or another server's as it published them
/// (verified before they are passed on).
async fn query_keys(State(state): State<AppState>, Path(server_name): Path<String>) -> ApiResult<Json<Value>> {
    let server = <&ServerName>::try_from(server_name.as_str())
        .map_err(|_| MatrixError::invalid_param(format!("Invalid server name: {server_name}")))?;
    let response = if server == state.config.server_name {
        state.keys.server_key_response().map_err(|err| MatrixError::internal("signing key response", err))?
    } else {
        state.federation.fetch_key_response(server).await.map_err(|e| e.to_client_error())?
    };
    Ok(Json(json!({ "server_keys": [response] })))
}
