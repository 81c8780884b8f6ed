//! Account deactivation, behind password user-interactive auth.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::register::uia_challenge;
use ruma::api::client::uiaa::UserIdentifier;

use super::session::identified_user;
use crate::api::extract::{AppState, MatrixJson, Requester};
use crate::error::{ApiResult, MatrixError};

#[derive(Deserialize)]
pub struct DeactivateRequest {
    #[serde(default)]
    auth: Option<PasswordAuth>,
    #[serde(default)]
    erase: bool,
}

/// Password auth as clients send it: ruma's `uiaa::Password` requires `identifier`, but
/// clients still send the legacy `user`, which Synapse accepts.
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
) -> ApiResult<Json<Value>> {
    let Some(auth) = request.auth else {
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
    if user_id.as_deref() != Some(owner.user_id.as_str()) {
        return Err(MatrixError::forbidden("Requester is not the user being authenticated"));
    }
    let password = auth.password.unwrap_or_default();
    if let Err(err) = state.accounts.check_password(owner.user_id.as_str(), &password).await {
        return Err(uia_challenge(&session, STAGE, Some(("M_FORBIDDEN", &err.message))));
    }
    state.accounts.finish_uia(&session);
    state.accounts.deactivate(&owner.user_id, request.erase).await?;
    Ok(Json(json!({ "id_server_unbind_result": "no-support" })))
}
