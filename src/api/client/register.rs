//! Open registration (`POST /register` with the `m.login.dummy` flow) and
//! `GET /register/available`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use rand::Rng;
use serde_json::{Value, json};

use ruma::api::client::account::register::{self, RegistrationKind};
use ruma::api::client::uiaa::AuthData;

use crate::api::extract::{AppState, ClientIp, Ruma};
use crate::error::{ApiResult, MatrixError};

/// Synapse refuses passwords longer than this.
pub const MAX_PASSWORD_BYTES: usize = 512;

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
    Ruma(request): Ruma<register::v3::Request>,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
            Some(user_id)
        }
        None => None,
    };
    let session = check_dummy_auth(&state, request.auth.as_ref())?;
    let user_id = match user_id {
        Some(user_id) => user_id,
        None => generated_user_id(&state).await?,
    };
    let device_id = request.device_id.as_deref().map(|id| id.as_str());
    let device = (!request.inhibit_login).then_some((device_id, request.initial_device_display_name.as_deref()));
    let created = state.accounts.register(&user_id, request.password.as_deref(), false, None, None, device).await?;
    state.accounts.finish_uia(&session);
    let body = match created {
        Some(session) => json!({
            "user_id": session.user_id,
            "access_token": session.access_token,
            "device_id": session.device_id,
            "home_server": state.config.server_name,
        }),
        None => json!({ "user_id": user_id, "home_server": state.config.server_name }),
    };
    Ok((StatusCode::OK, Json(body)))
}

/// Registration's only flow is `m.login.dummy`; returns the UIA session it completes.
fn check_dummy_auth(state: &AppState, auth: Option<&AuthData>) -> ApiResult<String> {
    let Some(auth) = auth else {
        return Err(uia_challenge(&state.accounts.start_uia(), "m.login.dummy", None));
    };
    let session = match auth.session() {
        Some(session) if state.accounts.uia_session_is_live(session) => session.to_owned(),
        Some(_) => {
            return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", "Unknown session ID"));
        }
        None => state.accounts.start_uia(),
    };
    match auth {
        AuthData::Dummy(_) => Ok(session),
        _ => Err(uia_challenge(&session, "m.login.dummy", Some(("M_UNRECOGNIZED", "Unsupported authentication type")))),
    }
}

async fn generated_user_id(state: &AppState) -> ApiResult<String> {
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
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let username = query.get("username").ok_or_else(|| MatrixError::missing_param("username is required"))?;
    let user_id = state.accounts.local_user_id(&username.to_lowercase())?;
    if !state.accounts.is_available(&user_id).await? {
        return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_USER_IN_USE", "User ID already taken."));
    }
    Ok(Json(json!({ "available": true })))
}
