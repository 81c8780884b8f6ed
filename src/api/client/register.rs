//! Open registration (`POST /register` with the `m.login.dummy` flow, or
//! `m.login.registration_token` when `registration_requires_token` is set),
//! `GET /register/available` and the registration token validity check.

use axum::extract::State;
use axum::http::StatusCode;
use rand::Rng;
use ruma::OwnedUserId;
use ruma::api::client::account::register::{self, LoginType, RegistrationKind};
use ruma::api::client::account::{check_registration_token_validity, get_username_availability};
use ruma::api::client::uiaa::AuthData;
use serde_json::json;

use crate::api::extract::{AppState, BearerToken, ClientIp, Ruma, RumaResponse};
use crate::error::{ApiResult, MatrixError};
use crate::services::accounts::NewAccount;

/// Synapse refuses passwords longer than this.
pub const MAX_PASSWORD_BYTES: usize = 512;

const DUMMY_STAGE: &str = "m.login.dummy";
const TOKEN_STAGE: &str = "m.login.registration_token";

/// The 401 that starts (or, with the failure that stopped it, continues)
/// user-interactive auth with a single one-stage flow.
pub fn uia_challenge(session: &str, stage: &str, failure: Option<(&'static str, &str)>) -> MatrixError {
    let (errcode, message) = failure.unwrap_or(("", ""));
    MatrixError::new(StatusCode::UNAUTHORIZED, errcode, message)
        .with("session", json!(session))
        .with("flows", json!([{ "stages": [stage] }]))
        .with("params", json!({}))
}

pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    BearerToken(token): BearerToken,
    Ruma(request): Ruma<register::v3::Request>,
) -> ApiResult<RumaResponse<register::v3::Response>> {
    // Application services register their users whatever the registration settings.
    if request.login_type == Some(LoginType::ApplicationService) {
        return register_for_appservice(&state, token, request).await.map(Into::into);
    }
    if request.kind == RegistrationKind::Guest {
        return Err(MatrixError::new(StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled"));
    }
    if !state.config.enable_registration {
        return Err(MatrixError::forbidden("Registration has been disabled"));
    }
    state.limits.registration.check(&ip.to_string())?;
    if request.password.as_ref().is_some_and(|p| p.len() > MAX_PASSWORD_BYTES) {
        return Err(MatrixError::invalid_param("Password too long"));
    }
    let user_id = match &request.username {
        Some(username) => {
            let user_id = state.accounts.local_user_id(&username.to_lowercase())?;
            if !state.accounts.is_available(&user_id).await? {
                return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_USER_IN_USE", "User ID already taken."));
            }
            state.appservices.check_user_not_reserved(&user_id, None)?;
            Some(user_id)
        }
        None => None,
    };
    let requires_token = state.config.registration_requires_token;
    let session = if requires_token {
        check_token_auth(&state, request.auth.as_ref()).await?
    } else {
        check_dummy_auth(&state, request.auth.as_ref())?
    };
    let user_id = match user_id {
        Some(user_id) => user_id,
        None => generated_user_id(&state).await?,
    };
    let device_name = request.initial_device_display_name.as_deref();
    let device = (!request.inhibit_login).then_some((request.device_id.as_deref(), device_name));
    // One registration per session, however many race on it.
    let claim = state.accounts.claim_uia(&session)?;
    let password = request.password.as_deref();
    let created = state.accounts.register_user(&user_id, password, NewAccount::default(), device).await?;
    claim.complete();
    if requires_token {
        state.registration_tokens.complete(&session).await?;
    }
    let answer = match created {
        Some(session) => {
            let mut answer = register::v3::Response::new(session.user_id);
            answer.access_token = Some(session.access_token);
            answer.device_id = Some(session.device_id);
            answer
        }
        None => register::v3::Response::new(user_id),
    };
    Ok(answer.into())
}

/// `type: m.login.application_service`: a user of the namespaces of the service whose
/// `as_token` the request carries.
async fn register_for_appservice(
    state: &AppState,
    token: Option<String>,
    request: register::v3::Request,
) -> ApiResult<register::v3::Response> {
    let token =
        token.ok_or_else(|| MatrixError::new(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "Missing access token."))?;
    let username = request.username.as_deref().ok_or_else(|| MatrixError::missing_param("Missing username"))?;
    let device_name = request.initial_device_display_name.as_deref();
    let device = (!request.inhibit_login).then_some((request.device_id.as_deref(), device_name));
    let (user_id, session) = state.appservices.register_user(&token, username, device).await?;
    let mut answer = register::v3::Response::new(user_id);
    if let Some(session) = session {
        answer.access_token = Some(session.access_token);
        answer.device_id = Some(session.device_id);
    }
    Ok(answer)
}

/// The live UIA session `auth` names, or a new one when it names none.
fn uia_session(state: &AppState, auth: &AuthData) -> ApiResult<String> {
    match auth.session() {
        Some(session) if state.accounts.uia_session_is_live(session) => Ok(session.to_owned()),
        Some(_) => Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", "Unknown session ID")),
        None => Ok(state.accounts.start_uia()),
    }
}

fn unsupported_auth(session: &str, stage: &str) -> MatrixError {
    uia_challenge(session, stage, Some(("M_UNRECOGNIZED", "Unsupported authentication type")))
}

/// Open registration's flow is `m.login.dummy`; returns the UIA session it completes.
fn check_dummy_auth(state: &AppState, auth: Option<&AuthData>) -> ApiResult<String> {
    let Some(auth) = auth else {
        return Err(uia_challenge(&state.accounts.start_uia(), DUMMY_STAGE, None));
    };
    let session = uia_session(state, auth)?;
    match auth {
        AuthData::Dummy(_) => Ok(session),
        _ => Err(unsupported_auth(&session, DUMMY_STAGE)),
    }
}

/// With `registration_requires_token`, the flow is `m.login.registration_token`;
/// returns the UIA session it completes. A session that passed the stage (and then,
/// say, asked for a taken username) may go on without repeating it.
async fn check_token_auth(state: &AppState, auth: Option<&AuthData>) -> ApiResult<String> {
    let Some(auth) = auth else {
        return Err(uia_challenge(&state.accounts.start_uia(), TOKEN_STAGE, None));
    };
    let session = uia_session(state, auth)?;
    let Some(token) = registration_token(auth) else {
        if state.registration_tokens.session_holds_token(&session).await? {
            return Ok(session);
        }
        return Err(unsupported_auth(&session, TOKEN_STAGE));
    };
    match state.registration_tokens.use_in_session(&session, &token).await {
        Ok(()) => Ok(session),
        // A refused token is a failed stage: the challenge again, with the reason.
        Err(err) if err.status.is_client_error() => {
            Err(uia_challenge(&session, TOKEN_STAGE, Some((err.errcode, &err.message))))
        }
        Err(err) => Err(err),
    }
}

/// The token of an `m.login.registration_token` stage. Ruma parses only the older
/// `m.registration_token` spelling into its own variant; the spec's arrives as custom
/// auth data.
fn registration_token(auth: &AuthData) -> Option<String> {
    match auth {
        AuthData::RegistrationToken(stage) => Some(stage.token.clone()),
        AuthData::_Custom(_) if auth.auth_type().is_some_and(|kind| kind.as_str() == TOKEN_STAGE) => {
            Some(auth.data().get("token").and_then(|token| token.as_str()).unwrap_or_default().to_owned())
        }
        _ => None,
    }
}

async fn generated_user_id(state: &AppState) -> ApiResult<OwnedUserId> {
    for _ in 0..10 {
        let localpart: u64 = rand::thread_rng().gen_range(100_000_000..1_000_000_000_000);
        let user_id = state.accounts.local_user_id(&localpart.to_string())?;
        if state.accounts.is_available(&user_id).await? {
            return Ok(user_id);
        }
    }
    Err(MatrixError::internal("registration", "could not generate a free user id"))
}

pub async fn available(
    State(state): State<AppState>,
    Ruma(request): Ruma<get_username_availability::v3::Request>,
) -> ApiResult<RumaResponse<get_username_availability::v3::Response>> {
    let user_id = state.accounts.local_user_id(&request.username.to_lowercase())?;
    if !state.accounts.is_available(&user_id).await? {
        return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_USER_IN_USE", "User ID already taken."));
    }
    state.appservices.check_user_not_reserved(&user_id, None)?;
    Ok(get_username_availability::v3::Response::new(true).into())
}

/// `GET /_matrix/client/v1/register/m.login.registration_token/validity`: whether a
/// token would be accepted now. No token is valid while registration is closed.
pub async fn token_validity(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Ruma(request): Ruma<check_registration_token_validity::v1::Request>,
) -> ApiResult<RumaResponse<check_registration_token_validity::v1::Response>> {
    if !state.config.enable_registration {
        return Err(MatrixError::forbidden("Registration is disabled"));
    }
    // Guessing tokens one check at a time is slow (`rc_registration_token_validity`).
    state.limits.registration_token_validity.check(&ip.to_string())?;
    let valid = state.registration_tokens.is_valid(&request.token).await?;
    Ok(check_registration_token_validity::v1::Response::new(valid).into())
}
