//! Federation: `/_synapse/admin/v1/federation/destinations`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::Params;
use crate::api::extract::{AdminUser, AppState};
use crate::error::{ApiResult, MatrixError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_synapse/admin/v1/federation/destinations", get(destinations))
        .route("/_synapse/admin/v1/federation/destinations/{destination}/reset_connection", post(reset_connection))
}

/// Destinations by name; `destination` filters by substring, as in Synapse.
pub async fn destinations(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let params = Params::new(params);
    let page = params.page()?;
    Ok(Json(state.admin.destinations(page, params.string("destination")).await?))
}

/// `POST …/destinations/{destination}/reset_connection`: try the server again now.
pub async fn reset_connection(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(destination): Path<String>,
) -> ApiResult<Json<Value>> {
    let server: ruma::OwnedServerName = crate::api::extract::parse_id(&destination, "server name")?;
    match state.sender.reset_backoff(&server).await? {
        Some(true) => Ok(Json(serde_json::json!({}))),
        Some(false) => {
            Err(MatrixError::invalid_param("The retry timing does not need to be reset for this destination"))
        }
        None => Err(MatrixError::not_found("Unknown destination")),
    }
}
