//! `GET /profile/{userId}` and `GET/PUT/DELETE /profile/{userId}/{keyName}`.

use axum::extract::State;
use axum::http::StatusCode;
use ruma::UserId;
use ruma::api::client::profile::{ProfileFieldValue, delete_profile_field, get_profile, get_profile_field};

use crate::api::extract::{AppState, Requester, Ruma, RumaResponse};
use crate::endpoints::client::set_profile_field;
use crate::error::{ApiResult, MatrixError};
use crate::services::accounts::AuthenticatedUser;

pub async fn get_profile(
    State(state): State<AppState>,
    Ruma(request): Ruma<get_profile::v3::Request>,
) -> ApiResult<RumaResponse<get_profile::v3::Response>> {
    let mut answer = get_profile::v3::Response::new();
    answer.data = state.profiles.lookup(&request.user_id, None).await?.into_iter().collect();
    Ok(answer.into())
}

pub async fn get_field(
    State(state): State<AppState>,
    Ruma(request): Ruma<get_profile_field::v3::Request>,
) -> ApiResult<RumaResponse<get_profile_field::v3::Response>> {
    let key = request.field.as_str();
    let mut profile = state.profiles.lookup(&request.user_id, Some(key)).await?;
    let value = profile.remove(key).ok_or_else(|| MatrixError::not_found(format!("The profile has no field {key}")))?;
    // Ours are checked when set; another server's may not fit the field's type.
    let value = ProfileFieldValue::new(key, value).map_err(|_| {
        MatrixError::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", "Invalid profile from the remote server")
    })?;
    Ok(get_profile_field::v3::Response::new(value).into())
}

pub async fn set_field(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(mut request): Ruma<set_profile_field::Request>,
) -> ApiResult<RumaResponse<set_profile_field::Response>> {
    authorise_change(&state, &owner, &request.user_id).await?;
    state.limits.profile.check_requester(&owner)?;
    let key = request.field;
    let value = request.body.remove(&key).ok_or_else(|| MatrixError::missing_param(format!("Missing key '{key}'")))?;
    // A null value clears the field, as older clients do for `displayname`.
    let value = (!value.is_null()).then_some(value);
    state.profiles.set_field(&request.user_id, &key, value).await?;
    Ok(set_profile_field::Response {}.into())
}

pub async fn delete_field(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<delete_profile_field::v3::Request>,
) -> ApiResult<RumaResponse<delete_profile_field::v3::Response>> {
    authorise_change(&state, &owner, &request.user_id).await?;
    state.profiles.set_field(&request.user_id, request.field.as_str(), None).await?;
    Ok(delete_profile_field::v3::Response::new().into())
}

/// Users change their own profile; server admins may change any local one.
async fn authorise_change(state: &AppState, owner: &AuthenticatedUser, user_id: &UserId) -> ApiResult<()> {
    if user_id != owner.user_id && !owner.admin {
        return Err(MatrixError::forbidden("You may only change your own profile"));
    }
    if !state.profiles.is_local(user_id) {
        return Err(MatrixError::forbidden("Cannot change the profile of a user on another server"));
    }
    state.profiles.get(user_id).await?;
    Ok(())
}
