//! Telling other servers about our users' device changes: a worker follows the
//! device-list stream from a persisted position and sends each local change to the
//! servers sharing a room with the user (for a room whose state is still partial, the
//! servers the resident named), as `m.device_list_update` (a device added,
//! changed or deleted, with `prev_id` naming the user's previous device change so a
//! server that missed one resyncs with `/user/devices`) or `m.signing_key_update`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use ruma::api::federation::transactions::edu::{DeviceListUpdateContent, Edu, SigningKeyUpdateContent};
use ruma::serde::Raw;
use ruma::{OwnedServerName, OwnedUserId, UInt, UserId};
use serde_json::Value;
use serde_json::value::to_raw_value;

use super::Keys;
use crate::services::sender::{OutgoingEdu, Sender};
use crate::services::workers::{Shutdown, Wakeups, Worker, follow};
use crate::store::DeviceListChange;

const CONSUMER: &str = "device_list_federation";
const BATCH: i64 = 100;
/// Logouts change the stream from the accounts side without a wake-up; a small query
/// this often finds them.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

pub struct DeviceListSender {
    keys: Arc<Keys>,
    sender: Arc<Sender>,
}

impl Worker for DeviceListSender {
    fn name(&self) -> &'static str {
        "device list federation"
    }

    fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let wakeups = Wakeups::default().on_position(self.keys.subscribe());
            follow(self.name(), wakeups, POLL_INTERVAL, stop, || self.send_batch()).await;
        })
    }
}

impl DeviceListSender {
    pub fn new(keys: Arc<Keys>, sender: Arc<Sender>) -> Self {
        Self { keys, sender }
    }

    /// Sends the next batch of local changes; true while more wait.
    async fn send_batch(&self) -> anyhow::Result<bool> {
        let store = &self.keys.store;
        let from = store.consumer_position(CONSUMER).await?;
        let head = store.stream_head(crate::store::DEVICE_LIST_STREAM).await?;
        let changes = store.device_list_changes(from, head, BATCH).await?;
        let Some(last) = changes.last().map(|c| c.stream_id) else { return Ok(false) };
        for change in &changes {
            let Ok(user) = <&UserId>::try_from(change.user_id.as_str()) else { continue };
            if !self.keys.is_local(user) {
                continue;
            }
            let servers = self.servers_for(user).await?;
            if servers.is_empty() {
                continue;
            }
            let (key, edu) = self.edu_for(change).await?;
            self.sender.send_durable_edu_to(&servers, &key, &edu).await?;
        }
        store.set_consumer_position(CONSUMER, last).await?;
        Ok(changes.len() as i64 == BATCH)
    }

    /// The servers sharing a room with `user`: of the joined members, and for rooms
    /// joined with a partial state (whose members are not known yet) the servers the
    /// resident named.
    async fn servers_for(&self, user: &UserId) -> anyhow::Result<Vec<OwnedServerName>> {
        let store = &self.keys.store;
        let mut names = store.servers_sharing_rooms_with(user.as_str()).await?;
        for room in store.partial_state_rooms().await? {
            let joined = store.membership(&room.room_id, user.as_str()).await?.is_some_and(|m| m.membership == "join");
            if joined {
                names.extend(room.servers.into_iter().chain([room.joined_via]));
            }
        }
        let mut servers: Vec<OwnedServerName> =
            names.into_iter().filter_map(|s| OwnedServerName::try_from(s).ok()).collect();
        servers.sort();
        servers.dedup();
        servers.retain(|server| *server != self.keys.server_name);
        Ok(servers)
    }

    async fn edu_for(&self, change: &DeviceListChange) -> anyhow::Result<(String, OutgoingEdu)> {
        let store = &self.keys.store;
        let user_id = change.user_id.as_str();
        let user = OwnedUserId::try_from(user_id)?;
        let Some(device_id) = &change.device_id else {
            let keys = store.cross_signing_keys(user_id).await?;
            let mut content = SigningKeyUpdateContent::new(user);
            content.master_key = keys.get("master").map(raw).transpose()?;
            content.self_signing_key = keys.get("self_signing").map(raw).transpose()?;
            let edu = Edu::SigningKeyUpdate(content).into();
            return Ok((format!("{:020} m.signing_key_update {user_id}", change.stream_id), edu));
        };
        let keys = store.device_keys(user_id, std::slice::from_ref(device_id)).await?;
        let previous = store.previous_device_list_change(user_id, change.stream_id).await?;
        let mut content =
            DeviceListUpdateContent::new(user, device_id.as_str().into(), UInt::try_from(change.stream_id)?);
        content.prev_id = previous.into_iter().map(UInt::try_from).collect::<Result<_, _>>()?;
        content.deleted = Some(!store.devices(user_id).await?.iter().any(|d| d.device_id == *device_id));
        content.keys = keys.get(device_id).map(raw).transpose()?;
        let edu = Edu::DeviceListUpdate(content).into();
        Ok((format!("{:020} m.device_list_update {user_id}", change.stream_id), edu))
    }
}

/// Keys as stored, passed on as they are.
fn raw<T>(value: &Value) -> serde_json::Result<Raw<T>> {
    Ok(Raw::from_json(to_raw_value(value)?))
}
