//! `/thirdparty/*`: the third-party networks the application services bridge to,
//! asked of the services that list the protocol (`services/appservices/thirdparty.rs`).

use axum::extract::State;
use ruma::api::client::thirdparty::{get_location_for_protocol, get_protocol, get_protocols, get_user_for_protocol};

use crate::api::extract::{AppState, Requester, Ruma, RumaResponse};
use crate::error::{ApiResult, MatrixError};

pub async fn protocols(
    State(state): State<AppState>,
    Requester(_): Requester,
) -> RumaResponse<get_protocols::v3::Response> {
    get_protocols::v3::Response::new(state.appservices.protocols().await).into()
}

pub async fn protocol(
    State(state): State<AppState>,
    Requester(_): Requester,
    Ruma(request): Ruma<get_protocol::v3::Request>,
) -> ApiResult<RumaResponse<get_protocol::v3::Response>> {
    let protocol = state.appservices.protocol(&request.protocol).await.ok_or_else(|| {
        MatrixError::not_found(format!("No application service answers for the protocol {}", request.protocol))
    })?;
    Ok(get_protocol::v3::Response::new(protocol).into())
}

pub async fn users(
    State(state): State<AppState>,
    Requester(_): Requester,
    Ruma(request): Ruma<get_user_for_protocol::v3::Request>,
) -> RumaResponse<get_user_for_protocol::v3::Response> {
    let users = state.appservices.thirdparty_users(&request.protocol, &request.fields).await;
    get_user_for_protocol::v3::Response::new(users).into()
}

pub async fn locations(
    State(state): State<AppState>,
    Requester(_): Requester,
    Ruma(request): Ruma<get_location_for_protocol::v3::Request>,
) -> RumaResponse<get_location_for_protocol::v3::Response> {
    let locations = state.appservices.thirdparty_locations(&request.protocol, &request.fields).await;
    get_location_for_protocol::v3::Response::new(locations).into()
}
