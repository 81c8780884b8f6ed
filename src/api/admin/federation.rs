//! Federation: `/_synapse/admin/v1/federation/destinations`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::Params;
use crate::api::extract::{AdminUser, AppState};
use crate::error::ApiResult;
use crate::services::admin::Destinations;

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
) -> ApiResult<Json<Destinations>> {
    let params = Params::new(params);
    let page = params.page()?;
    Ok(Json(state.admin.destinations(page, params.string("destination")).await?))
}

/// `POST …/destinations/{destination}/reset_connection`: try the server again now.
pub async fn reset_connection(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(destination): Path<String>,
) -> ApiResult<Json<Empty>> {
    let server: ruma::OwnedServerName = crate::api::extract::parse_id(&destination, "server name")?;
    state.admin.reset_connection(&server).await?;
    Ok(Json(Empty {}))
}

/// `{}`.
#[derive(serde::Serialize)]
pub struct Empty {}
