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

/// Profiles of other servers' users come with federation; until then they are not found.
fn require_local(state: &AppState, user_id: &UserId) -> ApiResult<()> {
    if user_id.server_name() != state.config.server_name {
        return Err(MatrixError::not_found("Profile was not found"));
    }
    Ok(())
}

pub async fn get_profile(State(state): State<AppState>, Path(user_id): Path<String>) -> ApiResult<Json<Value>> {
    let user_id = parse_user_id(&user_id)?;
    require_local(&state, user_id)?;
    let profile = state.profiles.get(user_id.as_str()).await?;
    Ok(Json(json!(profile)))
}

pub async fn get_field(
    State(state): State<AppState>,
    Path((user_id, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = parse_user_id(&user_id)?;
    require_local(&state, user_id)?;
    let profile = state.profiles.get(user_id.as_str()).await?;
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
