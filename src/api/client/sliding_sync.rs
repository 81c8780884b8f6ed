//! Simplified sliding sync (MSC4186), the sync Element X uses.

use axum::extract::State;
use ruma::api::client::sync::sync_events::v5;

use crate::api::extract::{AppState, Requester, Ruma, RumaResponse};
use crate::error::ApiResult;

pub async fn sync(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<v5::Request>,
) -> ApiResult<RumaResponse<v5::Response>> {
    Ok(state.sliding_sync.sync(&owner.user_id, &owner.device_id, request).await?.into())
}
