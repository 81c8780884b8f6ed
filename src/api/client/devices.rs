//! `/devices` and `/delete_devices`: list, rename and log out a user's devices.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::account::{PasswordAuth, confirm_password};
use crate::api::extract::{AppState, MatrixJson, OptionalJson, Requester};
use crate::error::{ApiResult, MatrixError};

pub async fn list(State(state): State<AppState>, Requester(owner): Requester) -> ApiResult<Json<Value>> {
    Ok(Json(state.devices.list(&owner.user_id).await?))
}

pub async fn get(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(device_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.devices.get(&owner.user_id, &device_id).await?))
}

#[derive(Deserialize)]
pub struct Rename {
    #[serde(default)]
    display_name: Option<String>,
}

pub async fn rename(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(device_id): Path<String>,
    MatrixJson(request): MatrixJson<Rename>,
) -> ApiResult<Json<Value>> {
    state.devices.rename(&owner.user_id, &device_id, request.display_name.as_deref()).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
pub struct Delete {
    #[serde(default)]
    auth: Option<PasswordAuth>,
}

/// `DELETE /devices/{id}`: the password confirms it (user-interactive auth).
pub async fn delete(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(device_id): Path<String>,
    OptionalJson(request): OptionalJson<Delete>,
) -> ApiResult<Json<Value>> {
    if !state.devices.exists(&owner.user_id, &device_id).await? {
        return Err(MatrixError::not_found("Device not found"));
    }
    confirm_password(&state, &owner, request.auth).await?;
    state.devices.delete(&owner.user_id, &[device_id]).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct DeleteMany {
    #[serde(default)]
    auth: Option<PasswordAuth>,
    devices: Option<Vec<String>>,
}

pub async fn delete_many(
    State(state): State<AppState>,
    Requester(owner): Requester,
    MatrixJson(request): MatrixJson<DeleteMany>,
) -> ApiResult<Json<Value>> {
    let devices = request.devices.ok_or_else(|| MatrixError::missing_param("devices is required"))?;
    confirm_password(&state, &owner, request.auth).await?;
    state.devices.delete(&owner.user_id, &devices).await?;
    Ok(Json(json!({})))
}
