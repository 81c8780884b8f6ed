//! Synapse's admin API shapes: shared-secret registration, so Synapse's
//! `register_new_matrix_user` script works against kith.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{AppState, MatrixJson, Requester};
use crate::error::{ApiResult, MatrixError};
use crate::services::accounts::SharedSecretRegistration;

pub async fn registration_nonce(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "nonce": state.accounts.registration_nonce()? })))
}

#[derive(Deserialize)]
pub struct SharedSecretRequest {
    nonce: String,
    username: String,
    password: String,
    mac: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    user_type: Option<String>,
    #[serde(default)]
    displayname: Option<String>,
}

pub async fn register(
    State(state): State<AppState>,
    MatrixJson(request): MatrixJson<SharedSecretRequest>,
) -> ApiResult<Json<Value>> {
    let session = state
        .accounts
        .register_with_shared_secret(SharedSecretRegistration {
            nonce: &request.nonce,
            username: &request.username,
            password: &request.password,
            admin: request.admin,
            user_type: request.user_type.as_deref(),
            displayname: request.displayname.as_deref(),
            mac: &request.mac,
        })
        .await?;
    Ok(Json(json!({
        "access_token": session.access_token,
        "user_id": session.user_id,
        "home_server": state.config.server_name,
        "device_id": session.device_id,
    })))
}

#[derive(Deserialize)]
pub struct StartJob {
    job_name: String,
}

/// Synapse's `background_updates/start_job`; kith knows `regenerate_directory`.
pub async fn start_background_job(
    State(state): State<AppState>,
    Requester(owner): Requester,
    MatrixJson(request): MatrixJson<StartJob>,
) -> ApiResult<Json<Value>> {
    if !owner.admin {
        return Err(MatrixError::forbidden("You are not a server admin"));
    }
    match request.job_name.as_str() {
        "regenerate_directory" => {
            state.directory.request_rebuild();
            Ok(Json(json!({})))
        }
        other => Err(MatrixError::invalid_param(format!("Invalid job_name: {other}"))),
    }
}
