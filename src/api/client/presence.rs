//! `/presence/{userId}/status`.

use axum::extract::State;
use ruma::api::client::presence::{get_presence, set_presence};

use crate::api::extract::{AppState, Requester, Ruma, RumaResponse};
use crate::error::ApiResult;

pub async fn get(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_presence::v3::Request>,
) -> ApiResult<RumaResponse<get_presence::v3::Response>> {
    let status = state.presence.get(&owner.user_id, &request.user_id).await?;
    let mut answer = get_presence::v3::Response::new(status.presence);
    answer.status_msg = status.status_msg;
    answer.last_active_ago = status.last_active_ago;
    answer.currently_active = status.currently_active;
    Ok(answer.into())
}

pub async fn set(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<set_presence::v3::Request>,
) -> ApiResult<RumaResponse<set_presence::v3::Response>> {
    let status_msg = request.status_msg.as_deref();
    state.presence.set(&owner.user_id, &request.user_id, &request.presence, status_msg)?;
    Ok(set_presence::v3::Response::new().into())
}
