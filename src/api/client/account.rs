//! The account: password change, deactivation (both behind password
//! user-interactive auth), third-party identifiers.

use axum::extract::State;
use ruma::api::client::account::{ThirdPartyIdRemovalStatus, change_password, deactivate, get_3pids};
use ruma::api::client::uiaa::UserIdentifier;
use serde::Deserialize;

use super::register::{MAX_PASSWORD_BYTES, uia_challenge};
use super::session::identified_user;
use crate::api::extract::{AppState, MatrixJson, Requester, RumaResponse};
use crate::error::{ApiResult, MatrixError};
use crate::services::accounts::AuthenticatedUser;

/// Not ruma's request: its `auth` is ruma's `AuthData`, which refuses the password
/// auth clients still send (see [`PasswordAuth`]).
#[derive(Deserialize)]
pub struct DeactivateRequest {
    #[serde(default)]
    auth: Option<PasswordAuth>,
    #[serde(default)]
    erase: bool,
}

/// Password auth as clients send it: ruma's `uiaa::Password` requires `identifier` and
/// `password`, but clients still send the legacy `user`, which Synapse accepts, and a
/// stage without a password is a failed stage (401 with the flow), not a bad request.
#[derive(Deserialize)]
pub struct PasswordAuth {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    identifier: Option<UserIdentifier>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

const STAGE: &str = "m.login.password";

pub async fn deactivate(
    State(state): State<AppState>,
    Requester(owner): Requester,
    MatrixJson(request): MatrixJson<DeactivateRequest>,
) -> ApiResult<RumaResponse<deactivate::v3::Response>> {
    confirm_password(&state, &owner, request.auth).await?;
    state.accounts.deactivate(&owner.user_id, request.erase).await?;
    // No identity server was ever told of the account's third-party identifiers.
    Ok(deactivate::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport).into())
}

/// Not ruma's request: the password auth of [`DeactivateRequest`].
#[derive(Deserialize)]
pub struct PasswordChange {
    #[serde(default)]
    auth: Option<PasswordAuth>,
    new_password: Option<String>,
    #[serde(default = "logout_devices_by_default")]
    logout_devices: bool,
}

fn logout_devices_by_default() -> bool {
    true
}

/// `POST /account/password`: the current password confirms the new one.
pub async fn change_password(
    State(state): State<AppState>,
    Requester(owner): Requester,
    MatrixJson(request): MatrixJson<PasswordChange>,
) -> ApiResult<RumaResponse<change_password::v3::Response>> {
    let new_password = request.new_password.ok_or_else(|| MatrixError::missing_param("new_password is required"))?;
    if new_password.is_empty() || new_password.len() > MAX_PASSWORD_BYTES {
        return Err(MatrixError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "M_WEAK_PASSWORD",
            format!("The password must be 1 to {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    confirm_password(&state, &owner, request.auth).await?;
    state.accounts.change_password(&owner, &new_password, !request.logout_devices).await?;
    Ok(change_password::v3::Response::new().into())
}

/// `GET /account/3pid`: kith binds no email addresses or phone numbers.
pub async fn threepids(Requester(_): Requester) -> RumaResponse<get_3pids::v3::Response> {
    get_3pids::v3::Response::new(Vec::new()).into()
}

/// User-interactive auth with the account's password, for what needs the user's
/// confirmation (deactivation, password change, deleting devices). Answers 401 with
/// the flow until the password is right.
pub async fn confirm_password(
    state: &AppState,
    owner: &AuthenticatedUser,
    auth: Option<PasswordAuth>,
) -> ApiResult<()> {
    let Some(auth) = auth else {
        return Err(uia_challenge(&state.accounts.start_uia(), STAGE, None));
    };
    let session = match &auth.session {
        Some(session) if state.accounts.uia_session_is_live(session) => session.clone(),
        Some(_) => {
            return Err(MatrixError::new(axum::http::StatusCode::BAD_REQUEST, "M_UNKNOWN", "Unknown session ID"));
        }
        None => state.accounts.start_uia(),
    };
    if auth.kind.as_deref() != Some(STAGE) {
        return Err(uia_challenge(&session, STAGE, Some(("M_UNRECOGNIZED", "Unsupported authentication type"))));
    }
    let username = identified_user(auth.identifier.as_ref(), auth.user.as_deref())?;
    let user_id = state.accounts.local_user_id(&username.to_lowercase()).ok();
    if user_id.as_ref() != Some(&owner.user_id) {
        return Err(MatrixError::forbidden("Requester is not the user being authenticated"));
    }
    let password = auth.password.unwrap_or_default();
    if let Err(err) = state.accounts.check_password(&owner.user_id, &password).await {
        return Err(uia_challenge(&session, STAGE, Some(("M_FORBIDDEN", &err.message))));
    }
    state.accounts.finish_uia(&session);
    Ok(())
}
