//! Login, logout and whoami.

use axum::Json;
use axum::extract::State;
use ruma::OwnedDeviceId;
use ruma::api::client::uiaa::UserIdentifier;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::{AppState, ClientIp, MatrixJson, OptionalJson, Requester};
use crate::error::{ApiResult, MatrixError};

/// The user name of an `m.id.user` identifier (or the legacy `user` field).
pub fn identified_user(identifier: Option<&UserIdentifier>, legacy_user: Option<&str>) -> ApiResult<String> {
    match identifier {
        Some(UserIdentifier::Matrix(id)) => Ok(id.user.clone()),
        Some(other) => Err(MatrixError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "M_UNKNOWN",
            format!("Unknown login identifier type {}", other.identifier_type()),
        )),
        None => legacy_user.map(str::to_owned).ok_or_else(|| MatrixError::missing_param("identifier is required")),
    }
}

/// `POST /login`. Not ruma's `login::v3::Request`: its `LoginInfo` deserializer panics
/// on a body without `type` (it indexes the map), and a login must answer hostile bodies
/// with `M_MISSING_PARAM`/`M_BAD_JSON`.
#[derive(Deserialize)]
pub struct LoginRequest {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    identifier: Option<UserIdentifier>,
    /// Deprecated top-level user name, still sent by older clients.
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    device_id: Option<OwnedDeviceId>,
    #[serde(default)]
    initial_device_display_name: Option<String>,
}

pub async fn login_flows() -> Json<Value> {
    Json(json!({ "flows": [{ "type": "m.login.password" }] }))
}

pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    MatrixJson(request): MatrixJson<LoginRequest>,
) -> ApiResult<Json<Value>> {
    state.limits.login_address.check(&ip.to_string())?;
    if request.kind != "m.login.password" {
        return Err(MatrixError::new(axum::http::StatusCode::BAD_REQUEST, "M_UNKNOWN", "Unknown login type"));
    }
    let username = identified_user(request.identifier.as_ref(), request.user.as_deref())?;
    let password = request.password.ok_or_else(|| MatrixError::missing_param("password is required"))?;
    let invalid = || MatrixError::forbidden("Invalid username or password");
    let user_id = state.accounts.local_user_id(&username.to_lowercase()).map_err(|_| invalid())?;
    if !state.limits.login_failed.would_allow(&user_id) {
        state.limits.login_failed.check(&user_id)?;
    }
    let user = match state.accounts.check_password(&user_id, &password).await {
        Ok(user) => user,
        Err(err) => {
            if err.errcode == "M_FORBIDDEN" {
                state.limits.login_failed.check(&user_id)?;
            }
            return Err(err);
        }
    };
    // Counted once the password is right, as Synapse does: guesses by someone else
    // must not use up the owner's logins.
    state.limits.login_account.check(&user_id)?;
    let session = state
        .accounts
        .new_session(
            &user.user_id,
            request.device_id.as_deref().map(|id| id.as_str()),
            request.initial_device_display_name.as_deref(),
        )
        .await?;
    Ok(Json(json!({
        "user_id": session.user_id,
        "access_token": session.access_token,
        "device_id": session.device_id,
        "home_server": state.config.server_name,
    })))
}

pub async fn whoami(Requester(owner): Requester) -> Json<Value> {
    Json(json!({ "user_id": owner.user_id, "device_id": owner.device_id, "is_guest": owner.is_guest }))
}

pub async fn logout(State(state): State<AppState>, Requester(owner): Requester) -> ApiResult<Json<Value>> {
    state.accounts.logout(&owner).await?;
    Ok(Json(json!({})))
}

pub async fn logout_all(
    State(state): State<AppState>,
    Requester(owner): Requester,
    OptionalJson(_): OptionalJson<serde_json::Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    state.accounts.logout_all(&owner.user_id).await?;
    Ok(Json(json!({})))
}
