//! Devices and keys over federation: `/user/keys/query`, `/user/keys/claim` and
//! `/user/devices/{userId}` for our users.

use axum::extract::{Path, State};
use ruma::UserId;
use ruma::api::federation::device::get_devices;
use ruma::api::federation::keys::{claim_keys, get_keys};

use super::Signed;
use crate::api::extract::{AppState, RumaResponse, parse_id};
use crate::error::ApiResult;

pub async fn query_keys(
    State(state): State<AppState>,
    signed: Signed,
) -> ApiResult<RumaResponse<get_keys::v1::Response>> {
    let request: get_keys::v1::Request = signed.ruma(&[])?;
    Ok(state.keys.serve_query(request.device_keys).await?.into())
}

pub async fn claim_keys(
    State(state): State<AppState>,
    signed: Signed,
) -> ApiResult<RumaResponse<claim_keys::v1::Response>> {
    let request: claim_keys::v1::Request = signed.ruma(&[])?;
    Ok(state.keys.serve_claim(request.one_time_keys).await?.into())
}

pub async fn user_devices(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    _signed: Signed,
) -> ApiResult<RumaResponse<get_devices::v1::Response>> {
    let user_id: &UserId = parse_id(&user_id, "user ID")?;
    Ok(state.keys.serve_user_devices(user_id).await?.into())
}
