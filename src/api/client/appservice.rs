//! `POST /_matrix/client/v1/appservice/{appserviceId}/ping`: an application service asks
//! the server to ping it, to check both directions work.

use axum::extract::State;
use ruma::api::client::appservice::request_ping;

use crate::api::extract::{AppState, Requester, Ruma, RumaResponse};
use crate::error::ApiResult;

pub async fn ping(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<request_ping::v1::Request>,
) -> ApiResult<RumaResponse<request_ping::v1::Response>> {
    let duration = state.appservices.ping(&owner, &request.appservice_id, request.transaction_id).await?;
    Ok(request_ping::v1::Response::new(duration).into())
}
