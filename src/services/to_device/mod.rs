//! Messages sent straight to devices: `PUT /sendToDevice/{type}/{txnId}` (once per
//! transaction id), `m.direct_to_device` EDUs both ways (once per message id), and
//! each device's inbox, which `/sync` hands out and empties once acknowledged.
//!
//! Nothing is dropped silently. An inbox holds a bounded number of messages in all and
//! from each sender (a local user, or a remote server), so no sender can fill another's
//! inbox: a local sender is refused, a remote server's messages beyond its share are
//! dropped with a warning naming it. Servers kith has never dealt with cost a budget
//! per user, so one user cannot make kith keep messages for endless made-up servers;
//! and messages kept for a server that has not taken them for a week are dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::http::StatusCode;
use ruma::api::client::to_device::send_event_to_device::v3::Messages;
use ruma::api::federation::transactions::edu::{DirectDeviceContent, DirectDeviceMessages, Edu};
use ruma::serde::Raw;
use ruma::to_device::DeviceIdOrAllDevices;
use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};
use serde::Serialize;
use serde_json::value::to_raw_value;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::config::RateLimit;
use crate::error::{ApiResult, MatrixError};
use crate::services::federation::edus::{EduHandlers, EduRefused, EduResult};
use crate::services::rate_limit::RateLimiter;
use crate::services::sender::{OutgoingEdu, Sender};
use crate::services::workers::{Shutdown, Worker};
use crate::store::{Delivery, InboxLimits, KeptEdu, Store, ToDeviceMessage};
use futures_util::future::BoxFuture;

/// Messages one device may hold unread, in all and from one sender.
const INBOX_LIMITS: InboxLimits = InboxLimits { per_device: 10_000, per_sender: 1_000 };
/// Servers kith has never dealt with (no user of theirs in a room kith knows, nothing
/// sent to or heard from them since start-up) that one request may name.
const MAX_NEW_SERVERS_PER_REQUEST: usize = 10;
/// And that one user may name over time: ten at once, one more every ten minutes.
const NEW_SERVERS_PER_USER: RateLimit = RateLimit { per_second: 1.0 / 600.0, burst_count: 10.0 };
/// Messages kept for a server in backoff are dropped once they are this old.
const KEPT_FOR_MS: i64 = 7 * 24 * 3600 * 1000;
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
    new_servers: RateLimiter,
}

/// A message for the devices of one user: (user, device or `*`, content).
type Recipient = (OwnedUserId, String, Value);

impl ToDevice {
    pub fn new(store: Arc<Store>, server_name: OwnedServerName, sender: Arc<Sender>) -> Self {
        let new_servers = RateLimiter::new(NEW_SERVERS_PER_USER);
        Self { store, server_name, sender, delivered: watch::channel(0).0, new_servers }
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
        messages: &Messages,
    ) -> ApiResult<()> {
        let recipients = recipients_of(messages)?;
        let (local, remote): (Vec<_>, Vec<_>) =
            recipients.into_iter().partition(|(user, _, _)| user.server_name() == self.server_name);
        self.charge_new_servers(sender, &remote).await?;
        let mut deliveries = Vec::new();
        for (user, device, content) in &local {
            for device_id in self.devices_of(user, device).await? {
                let message = envelope(sender, event_type, content)
                    .map_err(|e| MatrixError::internal("a to-device message", e))?;
                deliveries.push(ToDeviceMessage { user_id: user.to_string(), device_id, message });
            }
        }
        // The EDUs for other servers are kept in the transaction that marks the request
        // as handled: a retry of a request that died half-way would find it handled.
        let kept = self.remote_edus(sender, event_type, remote)?;
        let txn_key = format!("{device_id}/{txn_id}");
        let dedup = (sender.as_str(), txn_key.as_str());
        let delivery =
            self.store.deliver_to_devices(sender.as_str(), dedup, &deliveries, INBOX_LIMITS, false, &kept).await?;
        let unkept = match delivery {
            Delivery::Repeated => return Ok(()), // a retry: done the first time
            Delivery::Refused(full) => return Err(inbox_full(&full)),
            Delivery::Stored { unkept, .. } => unkept,
        };
        self.delivered.send_replace(self.stream_head().await?);
        self.sender.kept(&kept, &unkept);
        Ok(())
    }

    /// Servers kith has never dealt with cost the sender a token each (see
    /// `NEW_SERVERS_PER_USER`); a server is known when the sender dealt with it since
    /// start-up or a recipient of it is or was in a room kith knows.
    async fn charge_new_servers(&self, sender: &UserId, remote: &[Recipient]) -> ApiResult<()> {
        let unknown: BTreeSet<&ServerName> =
            remote.iter().map(|(user, _, _)| user.server_name()).filter(|server| !self.sender.knows(server)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let users: BTreeSet<&str> = remote
            .iter()
            .filter(|(user, _, _)| unknown.contains(user.server_name()))
            .map(|(u, _, _)| u.as_str())
            .collect();
        let seen = self.store.users_seen_in_rooms(&users.into_iter().collect::<Vec<_>>()).await?;
        let seen_servers: BTreeSet<&str> =
            seen.iter().filter_map(|user| user.split_once(':').map(|(_, s)| s)).collect();
        let new = unknown.iter().filter(|server| !seen_servers.contains(server.as_str())).count();
        if new > MAX_NEW_SERVERS_PER_REQUEST {
            return Err(MatrixError::invalid_param(format!(
                "At most {MAX_NEW_SERVERS_PER_REQUEST} servers this server has never dealt with in one request"
            )));
        }
        if new > 0 {
            self.new_servers.check_many(sender.as_str(), new as u32)?;
        }
        Ok(())
    }

    /// The devices `device` names: all of the user's for `*`.
    async fn devices_of(&self, user: &UserId, device: &str) -> ApiResult<Vec<String>> {
        let devices = self.store.devices(user.as_str()).await?.into_iter().map(|d| d.device_id);
        Ok(if device == "*" { devices.collect() } else { devices.filter(|d| d == device).collect() })
    }

    /// One `m.direct_to_device` EDU per server, to be kept until the server takes it.
    fn remote_edus(&self, sender: &UserId, event_type: &str, remote: Vec<Recipient>) -> ApiResult<Vec<KeptEdu>> {
        let mut by_server: BTreeMap<OwnedServerName, DirectDeviceMessages> = BTreeMap::new();
        for (user, device, content) in remote {
            let device = DeviceIdOrAllDevices::try_from(device.as_str())
                .map_err(|_| MatrixError::invalid_param(format!("Invalid device ID: {device}")))?;
            let content = to_raw_value(&content).map_err(|e| MatrixError::internal("a to-device message", e))?;
            let users = by_server.entry(user.server_name().to_owned()).or_default();
            users.entry(user).or_default().insert(device, Raw::from_json(content));
        }
        let mut kept = Vec::new();
        for (server, messages) in by_server {
            let message_id = crate::services::accounts::random_string(24);
            let mut content =
                DirectDeviceContent::new(sender.to_owned(), event_type.into(), message_id.as_str().into());
            content.messages = messages;
            let edu = OutgoingEdu::from(Edu::DirectToDevice(content));
            // Kept EDUs go out in key order: the time, then a counter for those of one
            // millisecond, keeps them in the order they were sent.
            let sequence = KEPT_SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let key = format!("{:020} {sequence:020} m.direct_to_device {message_id}", crate::store::now_ms());
            kept.extend(self.sender.durable_edu_rows(&[server], &key, &edu)?);
        }
        Ok(kept)
    }

    /// Registers the handler of `m.direct_to_device`.
    pub fn register_edus(self: &Arc<Self>, edus: &mut EduHandlers) {
        let to_device = self.clone();
        edus.register("m.direct_to_device", move |origin, content: Value| {
            let to_device = to_device.clone();
            async move { to_device.receive_remote(&origin, &content).await }
        });
    }

    /// An `m.direct_to_device` EDU: delivered to our users' devices once per message id.
    pub async fn receive_remote(&self, origin: &ServerName, content: &Value) -> EduResult {
        let RemoteMessages { sender, event_type, message_id, recipients } = parse_remote(origin, content)?;
        let mut deliveries = Vec::new();
        for (user, device, message) in recipients.iter().filter(|(user, _, _)| user.server_name() == self.server_name) {
            for device_id in self.devices_of(user, device).await? {
                let message = envelope(sender, event_type, message)
                    .map_err(|e| MatrixError::internal("a to-device message", e))?;
                deliveries.push(ToDeviceMessage { user_id: user.to_string(), device_id, message });
            }
        }
        // A server's share of each inbox is bounded: what is past it is dropped, loudly.
        let dedup = (origin.as_str(), message_id);
        let delivery =
            self.store.deliver_to_devices(origin.as_str(), dedup, &deliveries, INBOX_LIMITS, true, &[]).await;
        match delivery? {
            Delivery::Repeated => return Ok(()),
            Delivery::Stored { refused, .. } | Delivery::Refused(refused) if !refused.is_empty() => {
                tracing::warn!(%origin, %sender, devices = refused.len(), "to-device messages dropped: the devices' inboxes are full or hold too many from this server");
            }
            _ => {}
        }
        self.delivered.send_replace(self.stream_head().await?);
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

    /// Forgets old transaction and message ids, and drops the messages kept for servers
    /// that have not taken them for `KEPT_FOR_MS`.
    pub async fn prune(&self) -> ApiResult<u64> {
        let now = crate::store::now_ms();
        let expired = self.store.expire_durable_edus(now - KEPT_FOR_MS).await?;
        if expired > 0 {
            tracing::warn!(expired, "dropped EDUs that servers in backoff did not take within a week");
        }
        Ok(self.store.prune_to_device_seen(now - SEEN_FOR_MS).await?)
    }
}

/// The refusal of a local sender whose messages some devices cannot take now.
fn inbox_full(devices: &[(String, String)]) -> MatrixError {
    let which = devices.first().map_or_else(
        || "A recipient device".to_owned(),
        |(user, device)| format!("The inbox of device {device} of {user}"),
    );
    MatrixError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "M_LIMIT_EXCEEDED",
        format!("{which} holds too many undelivered messages (from you, or in all)"),
    )
}

/// An `m.direct_to_device` EDU's content, checked: a sender of the origin, the type,
/// the message id and the recipients.
pub struct RemoteMessages<'a> {
    pub sender: &'a UserId,
    pub event_type: &'a str,
    pub message_id: &'a str,
    pub recipients: Vec<Recipient>,
}

/// Checks the content of an `m.direct_to_device` EDU from `origin`.
pub fn parse_remote<'a>(origin: &ServerName, content: &'a Value) -> Result<RemoteMessages<'a>, EduRefused> {
    let invalid = |what: &str| EduRefused::Invalid(what.to_owned());
    let sender = content["sender"].as_str().and_then(|s| <&UserId>::try_from(s).ok()).ok_or(invalid("no sender"))?;
    EduRefused::unless_own_user(origin, sender)?;
    let (Some(event_type), Some(message_id)) = (content["type"].as_str(), content["message_id"].as_str()) else {
        return Err(invalid("no type or message_id"));
    };
    let messages = content["messages"].as_object().ok_or(invalid("no messages"))?;
    let recipients = parse_recipients(messages).map_err(|e| EduRefused::Invalid(e.message))?;
    Ok(RemoteMessages { sender, event_type, message_id, recipients })
}

/// `{ user: { device or "*": content } }` flattened, checked and bounded.
fn parse_recipients(messages: &Map<String, Value>) -> ApiResult<Vec<Recipient>> {
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

/// A to-device event as a device's inbox keeps it.
#[derive(Serialize)]
struct Envelope<'a> {
    sender: &'a UserId,
    #[serde(rename = "type")]
    event_type: &'a str,
    content: &'a Value,
}

fn envelope(sender: &UserId, event_type: &str, content: &Value) -> Result<Value, serde_json::Error> {
    serde_json::to_value(Envelope { sender, event_type, content })
}

/// A `/sendToDevice` request's messages flattened, checked and bounded.
fn recipients_of(messages: &Messages) -> ApiResult<Vec<Recipient>> {
    let mut recipients = Vec::new();
    for (user, devices) in messages {
        for (device, content) in devices {
            let content: Value = content.deserialize_as().map_err(|e| MatrixError::bad_json(e.to_string()))?;
            if !content.is_object() {
                return Err(MatrixError::bad_json("Each message must be an object"));
            }
            recipients.push((user.clone(), device.to_string(), content));
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
