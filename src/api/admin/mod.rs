//! Synapse's admin API (`/_synapse/admin/...`), same paths, shapes and status codes:
//! shared-secret registration (so Synapse's `register_new_matrix_user` works against
//! kith), background jobs, and in `users.rs`, `rooms.rs`, `federation.rs`,
//! `registration_tokens.rs` and `reports.rs` what admins manage. Everything but
//! registration and the server version needs an admin's access token.

mod federation;
mod query;
mod registration_tokens;
mod reports;
mod room_deletion;
mod rooms;
mod users;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId};
use serde::{Deserialize, Serialize};

use super::extract::{AdminUser, AppState, MatrixJson};
use crate::error::{ApiResult, MatrixError};
use crate::services::accounts::SharedSecretRegistration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_synapse/admin/v1/register", get(registration_nonce).post(register))
        .route("/_synapse/admin/v1/server_version", get(server_version))
        .route("/_synapse/admin/v1/background_updates/start_job", post(start_background_job))
        .route("/_synapse/admin/v1/background_updates/status", get(background_updates_status))
        .merge(users::routes())
        .merge(rooms::routes())
        .merge(room_deletion::routes())
        .merge(federation::routes())
        .merge(registration_tokens::routes())
        .merge(reports::routes())
}

/// `{}`, the answer of changes that have nothing to tell.
#[derive(Serialize)]
pub struct Empty {}

#[derive(Serialize)]
pub struct ServerVersion {
    server_version: &'static str,
}

/// `GET /_synapse/admin/v1/server_version`, open to anyone as in Synapse.
pub async fn server_version() -> Json<ServerVersion> {
    Json(ServerVersion { server_version: env!("CARGO_PKG_VERSION") })
}

/// Synapse's background updates: whether they run, and the one running per database.
#[derive(Serialize)]
pub struct BackgroundUpdatesStatus {
    enabled: bool,
    current_updates: BTreeMap<String, Empty>,
}

/// Synapse's `background_updates/status`: kith migrates its schema at start-up, so no
/// update ever runs in the background.
pub async fn background_updates_status(AdminUser(_): AdminUser) -> Json<BackgroundUpdatesStatus> {
    Json(BackgroundUpdatesStatus { enabled: true, current_updates: BTreeMap::new() })
}

#[derive(Serialize)]
pub struct RegistrationNonce {
    nonce: String,
}

pub async fn registration_nonce(State(state): State<AppState>) -> ApiResult<Json<RegistrationNonce>> {
    Ok(Json(RegistrationNonce { nonce: state.accounts.registration_nonce()? }))
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

/// The new account's session, as Synapse's `register_new_matrix_user` expects it.
#[derive(Serialize)]
pub struct SharedSecretRegistered {
    access_token: String,
    user_id: OwnedUserId,
    home_server: OwnedServerName,
    device_id: OwnedDeviceId,
}

pub async fn register(
    State(state): State<AppState>,
    MatrixJson(request): MatrixJson<SharedSecretRequest>,
) -> ApiResult<Json<SharedSecretRegistered>> {
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
    Ok(Json(SharedSecretRegistered {
        access_token: session.access_token,
        user_id: session.user_id,
        home_server: state.config.server_name.clone(),
        device_id: session.device_id,
    }))
}

#[derive(Deserialize)]
pub struct StartJob {
    job_name: String,
}

/// Synapse's `background_updates/start_job`; kith knows `regenerate_directory`.
pub async fn start_background_job(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    MatrixJson(request): MatrixJson<StartJob>,
) -> ApiResult<Json<Empty>> {
    match request.job_name.as_str() {
        "regenerate_directory" => {
            state.directory.request_rebuild();
            Ok(Json(Empty {}))
        }
        other => Err(MatrixError::invalid_param(format!("Invalid job_name: {other}"))),
    }
}
