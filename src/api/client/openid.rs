//! `POST /user/{userId}/openid/request_token`, and the federation side that third
//! parties ask: `GET /_matrix/federation/v1/openid/userinfo`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use ruma::api::client::account::request_openid_token;
use ruma::api::federation::openid::get_openid_userinfo;
use ruma::authentication::TokenType;

use crate::api::extract::{AppState, Requester, Ruma, RumaResponse};
use crate::error::{ApiResult, MatrixError};

pub async fn request_token(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<request_openid_token::v3::Request>,
) -> ApiResult<RumaResponse<request_openid_token::v3::Response>> {
    let token = state.openid.issue(&owner.user_id, &request.user_id)?;
    let server_name = state.config.server_name.clone();
    let answer =
        request_openid_token::v3::Response::new(token.access_token, TokenType::Bearer, server_name, token.expires_in);
    Ok(answer.into())
}

/// Not signed: the caller is a third party holding the token, not a homeserver. Not
/// ruma's request: without a token Synapse answers 401 `M_MISSING_TOKEN`, where a missing
/// query parameter in ruma's is a bad request.
pub async fn userinfo(
    State(state): State<AppState>,
    Query(mut query): Query<HashMap<String, String>>,
) -> ApiResult<RumaResponse<get_openid_userinfo::v1::Response>> {
    let token = query.remove("access_token").ok_or_else(|| {
        MatrixError::new(axum::http::StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "access_token is required")
    })?;
    Ok(get_openid_userinfo::v1::Response::new(state.openid.user_of(&token)?).into())
}
