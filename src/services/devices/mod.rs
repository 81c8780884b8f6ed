//! Devices: what `/devices` lists, renames and logs out. Each login is a device with
//! its own access token; removing a device ends its session.

use std::sync::Arc;

use ruma::api::client::device::Device;
use ruma::{DeviceId, MilliSecondsSinceUnixEpoch, OwnedDeviceId, UInt, UserId};

use super::client_ips::ClientIps;
use crate::error::{ApiResult, MatrixError};
pub use crate::services::accounts::MAX_DISPLAY_NAME_CHARS;
use crate::store::{SeenDeviceRow, Store};

/// At most this many devices go in one `delete_devices` call.
const MAX_DEVICES_PER_DELETE: usize = 1000;

pub struct Devices {
    store: Arc<Store>,
    client_ips: Arc<ClientIps>,
}

impl Devices {
    pub fn new(store: Arc<Store>, client_ips: Arc<ClientIps>) -> Self {
        Self { store, client_ips }
    }

    pub async fn list(&self, user_id: &UserId) -> ApiResult<Vec<Device>> {
        Ok(self.seen(user_id).await?.into_iter().map(device).collect())
    }

    pub async fn get(&self, user_id: &UserId, device_id: &DeviceId) -> ApiResult<Device> {
        let devices = self.seen(user_id).await?;
        devices.into_iter().find(|d| d.device_id == device_id.as_str()).map(device).ok_or_else(not_found)
    }

    /// A user's devices with where and when each was last used.
    pub async fn seen(&self, user_id: &UserId) -> ApiResult<Vec<SeenDeviceRow>> {
        Ok(self.client_ips.devices(user_id.as_str()).await?)
    }

    /// `PUT /devices/{id}`: only the display name can change; null clears it.
    pub async fn rename(&self, user_id: &UserId, device_id: &DeviceId, name: Option<&str>) -> ApiResult<()> {
        if name.is_some_and(|name| name.chars().count() > MAX_DISPLAY_NAME_CHARS) {
            return Err(MatrixError::field_too_large(format!(
                "The device display name is longer than {MAX_DISPLAY_NAME_CHARS} characters"
            )));
        }
        if !self.store.rename_device(user_id.as_str(), device_id.as_str(), name).await? {
            return Err(not_found());
        }
        Ok(())
    }

    /// Logs devices out (their access tokens stop working at once).
    pub async fn delete_devices(&self, user_id: &UserId, device_ids: &[OwnedDeviceId]) -> ApiResult<()> {
        if device_ids.len() > MAX_DEVICES_PER_DELETE {
            return Err(MatrixError::invalid_param(format!("At most {MAX_DEVICES_PER_DELETE} devices at once")));
        }
        let device_ids: Vec<String> = device_ids.iter().map(|id| id.as_str().to_owned()).collect();
        self.store.remove_devices(user_id.as_str(), &device_ids).await?;
        tracing::info!(%user_id, count = device_ids.len(), "devices deleted");
        Ok(())
    }

    /// [`Self::delete_devices`] for device IDs given as text (the admin API's).
    pub async fn delete(&self, user_id: &UserId, device_ids: &[String]) -> ApiResult<()> {
        let device_ids: Vec<OwnedDeviceId> = device_ids.iter().map(|id| id.as_str().into()).collect();
        self.delete_devices(user_id, &device_ids).await
    }

    pub async fn exists(&self, user_id: &UserId, device_id: &DeviceId) -> ApiResult<bool> {
        Ok(self.store.devices(user_id.as_str()).await?.iter().any(|d| d.device_id == device_id.as_str()))
    }
}

/// A device as its owner lists it.
fn device(row: SeenDeviceRow) -> Device {
    let mut device = Device::new(row.device_id.into());
    device.display_name = row.display_name;
    device.last_seen_ip = row.last_seen_ip;
    device.last_seen_ts = row.last_seen_ts.and_then(|ts| UInt::try_from(ts).ok()).map(MilliSecondsSinceUnixEpoch);
    device
}

fn not_found() -> MatrixError {
    MatrixError::not_found("Device not found")
}
