//! `POST /user/{userId}/openid/request_token`, and the federation side that third
//! parties ask: `GET /_matrix/federation/v1/openid/userinfo`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use ruma::UserId;
use serde_json::{Value, json};

use crate::api::extract::{AppState, OptionalJson, Requester, parse_id};
use crate::error::{ApiResult, MatrixError};
use crate::services::openid::TOKEN_LIFETIME_SECS;

pub async fn request_token(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(user_id): Path<String>,
    OptionalJson(_): OptionalJson<Value>,
) -> ApiResult<Json<Value>> {
    let user_id: &UserId = parse_id(&user_id, "user ID")?;
    let token = state.openid.issue(&owner.user_id, user_id)?;
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "matrix_server_name": state.config.server_name,
        "expires_in": TOKEN_LIFETIME_SECS,
    })))
}

/// Not signed: the caller is a third party holding the token, not a homeserver.
pub async fn userinfo(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let token = query.get("access_token").ok_or_else(|| {
        MatrixError::new(axum::http::StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "access_token is required")
    })?;
    Ok(Json(json!({ "sub": state.openid.user_of(token)? })))
}
