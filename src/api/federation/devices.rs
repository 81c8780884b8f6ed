//! Devices and keys over federation: `/user/keys/query`, `/user/keys/claim` and
//! `/user/devices/{userId}` for our users.

use axum::extract::State;
use ruma::api::federation::device::get_devices;
use ruma::api::federation::keys::{claim_keys, get_keys};

use super::{SignedRuma, SignedRumaJson};
use crate::api::extract::{AppState, RumaResponse};
use crate::error::ApiResult;

pub async fn query_keys(
    State(state): State<AppState>,
    SignedRuma { request, .. }: SignedRumaJson<get_keys::v1::Request>,
) -> ApiResult<RumaResponse<get_keys::v1::Response>> {
    Ok(state.keys.serve_query(request.device_keys).await?.into())
}

pub async fn claim_keys(
    State(state): State<AppState>,
    SignedRuma { request, .. }: SignedRumaJson<claim_keys::v1::Request>,
) -> ApiResult<RumaResponse<claim_keys::v1::Response>> {
    Ok(state.keys.serve_claim(request.one_time_keys).await?.into())
}

pub async fn user_devices(
    State(state): State<AppState>,
    SignedRuma { request, .. }: SignedRuma<get_devices::v1::Request>,
) -> ApiResult<RumaResponse<get_devices::v1::Response>> {
    Ok(state.keys.serve_user_devices(&request.user_id).await?.into())
}
