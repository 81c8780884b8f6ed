//! The server-server API (`/_matrix/federation/…`) and server keys (`/_matrix/key/…`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use super::extract::AppState;
use crate::error::{ApiResult, MatrixError};

pub fn routes() -> Router<AppState> {
    Router::new().route("/_matrix/federation/v1/version", get(version))
}

pub fn key_routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/key/v2/server", get(server_keys))
        .route("/_matrix/key/v2/server/{key_id}", get(server_keys))
}

async fn version() -> Json<Value> {
    Json(json!({ "server": { "name": "Kith", "version": env!("CARGO_PKG_VERSION") } }))
}

async fn server_keys(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let body = state.keys.server_key_response().map_err(|err| MatrixError::internal("signing key response", err))?;
    Ok(Json(body))
}
