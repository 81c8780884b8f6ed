//! Federation: `/_synapse/admin/v1/federation/destinations`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::Params;
use crate::api::extract::{AdminUser, AppState};
use crate::error::ApiResult;

pub fn routes() -> Router<AppState> {
    Router::new().route("/_synapse/admin/v1/federation/destinations", get(destinations))
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
