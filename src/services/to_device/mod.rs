//! Messages sent straight to devices: `PUT /sendToDevice/{type}/{txnId}` (once per
//! transaction id), `m.direct_to_device` EDUs both ways (once per message id), and
//! each device's inbox, which `/sync` hands out and empties once acknowledged.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::{OwnedServerName, ServerName, UserId};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::error::{ApiResult, MatrixError};
use crate::services::federation::sender::Sender;
use crate::services::workers::{Shutdown, Worker};
use crate::store::{KeptEdu, Store, ToDeviceMessage};
use futures_util::future::BoxFuture;

/// Messages one device may hold unread; more are dropped (and logged).
const INBOX_LIMIT: i64 = 10_000;
/// Recipient devices in one request, at most.
const MAX_RECIPIENTS: usize = 10_000;
/// Messages handed to one sync, at most.
pub const SYNC_BATCH: i64 = 100;
/// Handled transaction and message ids are remembered this long.
const SEEN_FOR_MS: i64 = 24 * 3600 * 1000;

/// Orders the kept EDUs of one millisecond.
static KEPT_SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub struct ToDevice {
    store: Arc<Store>,
    server_name: OwnedServerName,
    sender: Arc<Sender>,
    delivered: watch::Sender<i64>,
}

impl ToDevice {
    pub fn new(store: Arc<Store>, server_name: OwnedServerName, sender: Arc<Sender>) -> Self {
        Self { store, server_name, sender, delivered: watch::channel(0).0 }
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.delivered.subscribe()
    }

    pub async fn stream_head(&self) -> ApiResult<i64> {
        Ok(self.store.stream_head(crate::store::TO_DEVICE_STREAM).await?)
    }

    /// `PUT /sendToDevice`: local devices get it in their inbox, other servers an EDU.
    pub async fn send(
        &self,
        sender: &UserId,
        device_id: &str,
        event_type: &str,
        txn_id: &str,
        messages: &Value,
    ) -> ApiResult<()> {
        let messages = messages.as_object().ok_or_else(|| MatrixError::bad_json("messages must be an object"))?;
        let recipients = parse_recipients(messages)?;
        let (local, remote): (Vec<_>, Vec<_>) =
            recipients.into_iter().partition(|(user, _, _)| user.server_name() == self.server_name);
        let envelope = |content: &Value| json!({ "sender": sender, "type": event_type, "content": content });
        let mut deliveries = Vec::new();
        for (user, device, content) in &local {
            for device_id in self.devices_of(user, device).await? {
                deliveries.push(ToDeviceMessage { user_id: user.to_string(), device_id, message: envelope(content) });
            }
        }
        // The EDUs for other servers are kept in the transaction that marks the request
        // as handled: a retry of a request that died half-way would find it handled.
        let kept = self.remote_edus(sender, event_type, remote);
        let txn_key = format!("{device_id}/{txn_id}");
        let delivered =
            self.store.deliver_to_devices(sender.as_str(), &txn_key, &deliveries, INBOX_LIMIT, &kept).await?;
        let Some(full) = delivered else {
            return Ok(()); // a retry: done the first time
        };
        self.delivered.send_replace(self.stream_head().await?);
        self.sender.kept(&kept, &full);
        Ok(())
    }

    /// The devices `device` names: all of the user's for `*`.
    async fn devices_of(&self, user: &UserId, device: &str) -> ApiResult<Vec<String>> {
        let devices = self.store.devices(user.as_str()).await?.into_iter().map(|d| d.device_id);
        Ok(if device == "*" { devices.collect() } else { devices.filter(|d| d == device).collect() })
    }

    /// One `m.direct_to_device` EDU per server, to be kept until the server takes it.
    fn remote_edus(
        &self,
        sender: &UserId,
        event_type: &str,
        remote: Vec<(ruma::OwnedUserId, String, Value)>,
    ) -> Vec<KeptEdu> {
        let mut by_server: BTreeMap<OwnedServerName, Map<String, Value>> = BTreeMap::new();
        for (user, device, content) in remote {
            let users = by_server.entry(user.server_name().to_owned()).or_default();
            let devices = users.entry(user.to_string()).or_insert_with(|| json!({}));
            devices[device] = content;
        }
        let mut kept = Vec::new();
        for (server, messages) in by_server {
            let message_id = crate::services::accounts::random_string(24);
            let edu = json!({ "edu_type": "m.direct_to_device", "content": {
                "sender": sender, "type": event_type, "message_id": message_id, "messages": messages,
            }});
            // Kept EDUs go out in key order: the time, then a counter for those of one
            // millisecond, keeps them in the order they were sent.
            let sequence = KEPT_SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let key = format!("{:020} {sequence:020} m.direct_to_device {message_id}", crate::store::now_ms());
            kept.extend(self.sender.durable_edu_rows(&[server], &key, &edu));
        }
        kept
    }

    /// An `m.direct_to_device` EDU: delivered to our users' devices once per message id.
    pub async fn receive_remote(&self, origin: &ServerName, content: &Value) -> Result<(), String> {
        let sender = content["sender"].as_str().and_then(|s| <&UserId>::try_from(s).ok()).ok_or("no sender")?;
        if sender.server_name() != origin {
            return Err(format!("{origin} cannot speak for {sender}"));
        }
        let (Some(event_type), Some(message_id)) = (content["type"].as_str(), content["message_id"].as_str()) else {
            return Err("no type or message_id".into());
        };
        let messages = content["messages"].as_object().ok_or("no messages")?;
        let recipients = parse_recipients(messages).map_err(|e| e.message)?;
        let mut deliveries = Vec::new();
        for (user, device, message) in recipients.iter().filter(|(user, _, _)| user.server_name() == self.server_name) {
            for device_id in self.devices_of(user, device).await.map_err(|e| e.message)? {
                let message = json!({ "sender": sender, "type": event_type, "content": message });
                deliveries.push(ToDeviceMessage { user_id: user.to_string(), device_id, message });
            }
        }
        let delivered = self
            .store
            .deliver_to_devices(origin.as_str(), message_id, &deliveries, INBOX_LIMIT, &[])
            .await
            .map_err(|e| e.to_string())?;
        if delivered.is_some() {
            self.delivered.send_replace(self.stream_head().await.map_err(|e| e.message)?);
        }
        Ok(())
    }

    /// A device's messages after what it acknowledged (which are deleted now) and up to
    /// `until`.
    pub async fn inbox(
        &self,
        user: &UserId,
        device_id: &str,
        acknowledged: i64,
        until: i64,
    ) -> ApiResult<Vec<(i64, Value)>> {
        Ok(self.store.to_device_inbox(user.as_str(), device_id, (acknowledged, until), SYNC_BATCH).await?)
    }

    /// Forgets old transaction and message ids.
    pub async fn prune(&self) -> ApiResult<u64> {
        Ok(self.store.prune_to_device_seen(crate::store::now_ms() - SEEN_FOR_MS).await?)
    }
}

/// `{ user: { device or "*": content } }` flattened, checked and bounded.
fn parse_recipients(messages: &Map<String, Value>) -> ApiResult<Vec<(ruma::OwnedUserId, String, Value)>> {
    let mut recipients = Vec::new();
    for (user, devices) in messages {
        let user = ruma::OwnedUserId::try_from(user.as_str())
            .map_err(|_| MatrixError::invalid_param(format!("Invalid user ID: {user}")))?;
        let devices = devices.as_object().ok_or_else(|| MatrixError::bad_json("Each user maps devices to messages"))?;
        for (device, content) in devices {
            if !content.is_object() {
                return Err(MatrixError::bad_json("Each message must be an object"));
            }
            recipients.push((user.clone(), device.clone(), content.clone()));
            if recipients.len() > MAX_RECIPIENTS {
                return Err(MatrixError::invalid_param(format!("At most {MAX_RECIPIENTS} devices at once")));
            }
        }
    }
    Ok(recipients)
}

/// Forgets handled transaction and message ids once a day's retries are over.
impl Worker for ToDevice {
    fn name(&self) -> &'static str {
        "to-device id expiry"
    }

    fn run(self: Arc<Self>, mut stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            while stop.unless_stopped(tick.tick()).await.is_some() {
                if let Err(err) = self.prune().await {
                    tracing::warn!(%err, "could not prune to-device ids");
                }
            }
        })
    }
}
