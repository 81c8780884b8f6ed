//! `GET /profile/{userId}` and `GET/PUT/DELETE /profile/{userId}/{keyName}`.

use axum::Json;
use axum::extract::{Path, State};
use ruma::UserId;
use serde_json::{Map, Value, json};

use crate::api::extract::{AppState, MatrixJson, Requester};
use crate::error::{ApiResult, MatrixError};

fn parse_user_id(user_id: &str) -> ApiResult<&UserId> {
    <&UserId>::try_from(user_id).map_err(|_| MatrixError::invalid_param(format!("Invalid user ID: {user_id}")))
}

/// Another server's user: asked with `GET /_matrix/federation/v1/query/profile`.
async fn remote_profile(state: &AppState, user_id: &UserId, field: Option<&str>) -> ApiResult<Value> {
    let mut path =
        format!("/_matrix/federation/v1/query/profile?user_id={}", crate::config::percent_encode(user_id.as_str()));
    if let Some(field) = field {
        path.push_str(&format!("&field={}", crate::config::percent_encode(field)));
    }
    let profile = state.federation.get(user_id.server_name(), &path).await.map_err(|e| e.to_client_error())?;
    if !profile.is_object() {
        return Err(MatrixError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            "Invalid profile from the remote server",
        ));
    }
    Ok(profile)
}

pub async fn get_profile(State(state): State<AppState>, Path(user_id): Path<String>) -> ApiResult<Json<Value>> {
    let user_id = parse_user_id(&user_id)?;
    if user_id.server_name() != state.config.server_name {
        return Ok(Json(remote_profile(&state, user_id, None).await?));
    }
    let profile = state.profiles.get(user_id.as_str()).await?;
    Ok(Json(json!(profile)))
}

pub async fn get_field(
    State(state): State<AppState>,
    Path((user_id, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = parse_user_id(&user_id)?;
    let profile = if user_id.server_name() != state.config.server_name {
        serde_json::from_value(remote_profile(&state, user_id, Some(&key)).await?).unwrap_or_default()
    } else {
        state.profiles.get(user_id.as_str()).await?
    };
    let value = profile.get(&key).ok_or_else(|| MatrixError::not_found(format!("The profile has no field {key}")))?;
    Ok(Json(json!({ key: value })))
}

pub async fn set_field(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, key)): Path<(String, String)>,
    MatrixJson(mut body): MatrixJson<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let user_id = authorised_target(&state, &owner, &user_id).await?;
    let value = body.remove(&key).ok_or_else(|| MatrixError::missing_param(format!("Missing key '{key}'")))?;
    // A null value clears the field, as older clients do for `displayname`.
    let value = (!value.is_null()).then_some(value);
    state.profiles.set_field(user_id.as_str(), &key, value).await?;
    Ok(Json(json!({})))
}

pub async fn delete_field(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = authorised_target(&state, &owner, &user_id).await?;
    state.profiles.set_field(user_id.as_str(), &key, None).await?;
    Ok(Json(json!({})))
}

/// Users change their own profile; server admins may change any local one.
async fn authorised_target<'a>(
    state: &AppState,
    owner: &crate::store::TokenOwner,
    user_id: &'a str,
) -> ApiResult<&'a UserId> {
    let user_id = parse_user_id(user_id)?;
    if user_id.as_str() != owner.user_id && !owner.admin {
        return Err(MatrixError::forbidden("You may only change your own profile"));
    }
    if user_id.server_name() != state.config.server_name {
        return Err(MatrixError::forbidden("Cannot change the profile of a user on another server"));
    }
    state.profiles.get(user_id.as_str()).await?;
    Ok(user_id)
}
