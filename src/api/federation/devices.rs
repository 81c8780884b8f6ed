//! Devices and keys over federation: `/user/keys/query`, `/user/keys/claim` and
//! `/user/devices/{userId}` for our users.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use super::Signed;
use crate::api::extract::AppState;
use crate::error::ApiResult;

pub async fn query_keys(State(state): State<AppState>, signed: Signed) -> ApiResult<Json<Value>> {
    Ok(Json(state.keys.serve_query(&signed.json()?).await?))
}

pub async fn claim_keys(State(state): State<AppState>, signed: Signed) -> ApiResult<Json<Value>> {
    Ok(Json(state.keys.serve_claim(&signed.json()?).await?))
}

pub async fn user_devices(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    _signed: Signed,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.keys.serve_user_devices(&user_id).await?))
}
