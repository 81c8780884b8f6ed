//! `GET /profile/{userId}` and `GET/PUT/DELETE /profile/{userId}/{keyName}`.

use axum::Json;
use axum::extract::{Path, State};
use ruma::UserId;
use serde_json::{Map, Value, json};

use crate::api::extract::{AppState, MatrixJson, Requester, parse_id};
use crate::error::{ApiResult, MatrixError};
use crate::services::accounts::AuthenticatedUser;

pub async fn get_profile(State(state): State<AppState>, Path(user_id): Path<String>) -> ApiResult<Json<Value>> {
    let user_id: &UserId = parse_id(&user_id, "user ID")?;
    Ok(Json(json!(state.profiles.lookup(user_id, None).await?)))
}

pub async fn get_field(
    State(state): State<AppState>,
    Path((user_id, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id: &UserId = parse_id(&user_id, "user ID")?;
    let profile = state.profiles.lookup(user_id, Some(&key)).await?;
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
    state.limits.profile.check(owner.user_id.as_str())?;
    let value = body.remove(&key).ok_or_else(|| MatrixError::missing_param(format!("Missing key '{key}'")))?;
    // A null value clears the field, as older clients do for `displayname`.
    let value = (!value.is_null()).then_some(value);
    state.profiles.set_field(user_id, &key, value).await?;
    Ok(Json(json!({})))
}

pub async fn delete_field(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = authorised_target(&state, &owner, &user_id).await?;
    state.profiles.set_field(user_id, &key, None).await?;
    Ok(Json(json!({})))
}

/// Users change their own profile; server admins may change any local one.
async fn authorised_target<'a>(state: &AppState, owner: &AuthenticatedUser, user_id: &'a str) -> ApiResult<&'a UserId> {
    let user_id: &UserId = parse_id(user_id, "user ID")?;
    if user_id != owner.user_id && !owner.admin {
        return Err(MatrixError::forbidden("You may only change your own profile"));
    }
    if !state.profiles.is_local(user_id) {
        return Err(MatrixError::forbidden("Cannot change the profile of a user on another server"));
    }
    state.profiles.get(user_id).await?;
    Ok(user_id)
}
