//! `/devices` and `/delete_devices`: list, rename and log out a user's devices.

use axum::extract::State;
use ruma::api::client::device::{delete_device, delete_devices, get_device, get_devices, update_device};

use super::account::confirm_password;
use crate::api::extract::{AppState, Requester, Ruma, RumaJson, RumaResponse};
use crate::endpoints::client::{delete_device as local_delete_device, delete_devices as local_delete_devices};
use crate::error::{ApiResult, MatrixError};

pub async fn list(
    State(state): State<AppState>,
    Requester(owner): Requester,
) -> ApiResult<RumaResponse<get_devices::v3::Response>> {
    Ok(get_devices::v3::Response::new(state.devices.list(&owner.user_id).await?).into())
}

pub async fn get(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_device::v3::Request>,
) -> ApiResult<RumaResponse<get_device::v3::Response>> {
    Ok(get_device::v3::Response::new(state.devices.get(&owner.user_id, &request.device_id).await?).into())
}

pub async fn rename(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<update_device::v3::Request>,
) -> ApiResult<RumaResponse<update_device::v3::Response>> {
    state.devices.rename(&owner.user_id, &request.device_id, request.display_name.as_deref()).await?;
    Ok(update_device::v3::Response::new().into())
}

/// `DELETE /devices/{id}`: the password confirms it (user-interactive auth; the local
/// type's comment says why not ruma's request).
pub async fn delete(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<local_delete_device::Request>,
) -> ApiResult<RumaResponse<delete_device::v3::Response>> {
    if !state.devices.exists(&owner.user_id, &request.device_id).await? {
        return Err(MatrixError::not_found("Device not found"));
    }
    confirm_password(&state, &owner, request.auth).await?;
    state.devices.delete_devices(&owner.user_id, &[request.device_id]).await?;
    Ok(delete_device::v3::Response::new().into())
}

/// `POST /delete_devices`, confirmed as [`delete`] is.
pub async fn delete_many(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<local_delete_devices::Request>,
) -> ApiResult<RumaResponse<delete_devices::v3::Response>> {
    let devices = request.devices.ok_or_else(|| MatrixError::missing_param("devices is required"))?;
    confirm_password(&state, &owner, request.auth).await?;
    state.devices.delete_devices(&owner.user_id, &devices).await?;
    Ok(delete_devices::v3::Response::new().into())
}
