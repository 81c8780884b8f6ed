//! Federation: `/_synapse/admin/v1/federation/destinations`.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::Empty;
use super::query::{AdminQuery, count, page};
use crate::api::extract::{AdminUser, AppState};
use crate::error::ApiResult;
use crate::services::admin::Destinations;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_synapse/admin/v1/federation/destinations", get(destinations))
        .route("/_synapse/admin/v1/federation/destinations/{destination}/reset_connection", post(reset_connection))
}

#[derive(Deserialize)]
pub struct DestinationsQuery {
    #[serde(default, deserialize_with = "count")]
    from: Option<i64>,
    #[serde(default, deserialize_with = "count")]
    limit: Option<i64>,
    #[serde(default)]
    destination: Option<String>,
}

/// Destinations by name; `destination` filters by substring, as in Synapse.
pub async fn destinations(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    AdminQuery(query): AdminQuery<DestinationsQuery>,
) -> ApiResult<Json<Destinations>> {
    let page = page(query.from, query.limit);
    Ok(Json(state.admin.destinations(page, query.destination.as_deref()).await?))
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
