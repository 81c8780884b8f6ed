//! The account: password change, deactivation (both behind password
//! user-interactive auth), third-party identifiers.

use axum::extract::State;
use ruma::api::client::account::change_password as ruma_change_password;
use ruma::api::client::account::deactivate as ruma_deactivate;
use ruma::api::client::account::{ThirdPartyIdRemovalStatus, get_3pids};

use super::register::{MAX_PASSWORD_BYTES, uia_challenge};
use super::session::identified_user;
use crate::api::extract::{AppState, Requester, Ruma, RumaJson, RumaResponse};
use crate::endpoints::client::uiaa::PasswordAuth;
use crate::endpoints::client::{change_password, deactivate};
use crate::error::{ApiResult, MatrixError};
use crate::services::accounts::AuthenticatedUser;

const STAGE: &str = "m.login.password";

/// `POST /account/deactivate` (the local type's comment says why not ruma's request).
pub async fn deactivate(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<deactivate::Request>,
) -> ApiResult<RumaResponse<ruma_deactivate::v3::Response>> {
    confirm_password(&state, &owner, request.auth).await?;
    state.accounts.deactivate(&owner.user_id, request.erase).await?;
    // No identity server was ever told of the account's third-party identifiers.
    Ok(ruma_deactivate::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport).into())
}

/// `POST /account/password`: the current password confirms the new one.
pub async fn change_password(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<change_password::Request>,
) -> ApiResult<RumaResponse<ruma_change_password::v3::Response>> {
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
    Ok(ruma_change_password::v3::Response::new().into())
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
