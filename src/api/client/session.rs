//! Login, logout and whoami.

use axum::extract::State;
use ruma::api::client::account::whoami;
use ruma::api::client::session::get_login_types::v3::{LoginType, PasswordLoginType};
use ruma::api::client::session::{get_login_types, login, logout, logout_all};
use ruma::api::client::uiaa::UserIdentifier;

use crate::api::extract::{AppState, ClientIp, Requester, Ruma, RumaJson, RumaResponse};
use crate::endpoints::client::login as local_login;
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

pub async fn login_flows() -> RumaResponse<get_login_types::v3::Response> {
    get_login_types::v3::Response::new(vec![LoginType::Password(PasswordLoginType::new())]).into()
}

/// `POST /login` with a password (the local type's comment says why not ruma's request).
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Ruma(request): RumaJson<local_login::Request>,
) -> ApiResult<RumaResponse<login::v3::Response>> {
    state.limits.login_address.check(&ip.to_string())?;
    if request.kind != "m.login.password" {
        return Err(MatrixError::new(axum::http::StatusCode::BAD_REQUEST, "M_UNKNOWN", "Unknown login type"));
    }
    let username = identified_user(request.identifier.as_ref(), request.user.as_deref())?;
    let password = request.password.ok_or_else(|| MatrixError::missing_param("password is required"))?;
    let invalid = || MatrixError::forbidden("Invalid username or password");
    let user_id = state.accounts.local_user_id(&username.to_lowercase()).map_err(|_| invalid())?;
    let limit_key = user_id.as_str();
    if !state.limits.login_failed.would_allow(limit_key) {
        state.limits.login_failed.check(limit_key)?;
    }
    if let Err(err) = state.accounts.check_password(&user_id, &password).await {
        if err.errcode == "M_FORBIDDEN" {
            state.limits.login_failed.check(limit_key)?;
        }
        return Err(err);
    }
    // Counted once the password is right, as Synapse does: guesses by someone else
    // must not use up the owner's logins.
    state.limits.login_account.check(limit_key)?;
    let device_name = request.initial_device_display_name.as_deref();
    let session = state.accounts.new_session(&user_id, request.device_id.as_deref(), device_name).await?;
    let mut answer = login::v3::Response::new(session.user_id, session.access_token, session.device_id);
    #[allow(deprecated)] // still read by older clients
    {
        answer.home_server = Some(state.config.server_name.clone());
    }
    Ok(answer.into())
}

pub async fn whoami(Requester(owner): Requester) -> RumaResponse<whoami::v3::Response> {
    let mut answer = whoami::v3::Response::new(owner.user_id, owner.is_guest);
    answer.device_id = Some(owner.device_id.into());
    answer.into()
}

/// No request type: logging out takes no body, whatever is sent.
pub async fn logout(
    State(state): State<AppState>,
    Requester(owner): Requester,
) -> ApiResult<RumaResponse<logout::v3::Response>> {
    state.accounts.logout(&owner).await?;
    Ok(logout::v3::Response::new().into())
}

pub async fn logout_all(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(_): Ruma<logout_all::v3::Request>,
) -> ApiResult<RumaResponse<logout_all::v3::Response>> {
    state.accounts.logout_all(&owner.user_id).await?;
    Ok(logout_all::v3::Response::new().into())
}
