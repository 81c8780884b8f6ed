//! Delivery to push gateways (the spec's Push Gateway API, as Sygnal serves it): a worker
//! follows the notifications the evaluator records and posts each to the `http` pushers
//! of its user, with the event (or only its id, for `format: event_id_only`), the
//! user's unread count and the tweaks of the rule that matched. Push keys the gateway
//! rejects are removed; a gateway that fails is tried three times within about half a
//! minute, then the notification is dropped for it (logged). Gateways are reached only
//! at addresses `ip_range_blacklist` / `ip_range_whitelist` allow.
//!
//! A gateway is somebody else's server: its answer is read only up to a few kilobytes,
//! and pushes go out on their own tasks, a bounded number at once overall and per
//! pusher, so a slow or hostile gateway delays only its own pushes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::Push;
use crate::services::federation::discovery::{IpFilter, filtered_http_client, read_capped};
use crate::services::workers::{Shutdown, Wakeups, Worker, follow};
use crate::store::{PendingPush, StoredEvent};

const CONSUMER: &str = "push_gateway";
/// Events whose notifications one pass sends.
const BATCH: i64 = 50;
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// One request to a gateway, at most.
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits before the second and third attempts.
const RETRY_WAITS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];
/// Rooms looked at for the unread count, at most.
const MAX_UNREAD_ROOMS: i64 = 500;
/// A gateway answers `{"rejected": [...]}`; more than this is not read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Pushes on their way at once, over all pushers; past it the worker waits for one to
/// finish before reading more notifications.
const MAX_IN_FLIGHT: usize = 256;
/// Pushes on their way to one pusher; more are dropped (and logged) until its gateway
/// catches up.
const MAX_PER_PUSHER: usize = 16;

pub struct PushGateway {
    push: Arc<Push>,
    client: reqwest::Client,
    filter: Arc<IpFilter>,
    notified: watch::Receiver<i64>,
    in_flight: InFlight,
}

/// The pushes on their way, each on its own task.
struct InFlight {
    slots: Arc<Semaphore>,
    per_pusher: Arc<Mutex<HashMap<PusherKey, usize>>>,
    tasks: Mutex<JoinSet<()>>,
}

type PusherKey = (String, String, String);

/// One push to one pusher.
struct Delivery {
    user_id: String,
    app_id: String,
    pushkey: String,
    url: String,
    body: NotifyRequest,
}

impl Worker for PushGateway {
    fn name(&self) -> &'static str {
        "push gateway sender"
    }

    fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(err) = self.start_position().await {
                return tracing::error!(%err, "the push gateway sender cannot start");
            }
            let wakeups = Wakeups::default().on_position(self.notified.clone());
            follow(self.name(), wakeups, POLL_INTERVAL, stop, || self.send_pending()).await;
            self.in_flight.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).abort_all();
        })
    }
}

impl PushGateway {
    pub fn new(push: Arc<Push>, filter: Arc<IpFilter>) -> anyhow::Result<Self> {
        let client = filtered_http_client(filter.clone(), GATEWAY_TIMEOUT)?;
        let notified = push.subscribe_notifications();
        let in_flight = InFlight {
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            per_pusher: Arc::default(),
            tasks: Mutex::new(JoinSet::new()),
        };
        Ok(Self { push, client, filter, notified, in_flight })
    }

    /// A server that never pushed does not push its history.
    async fn start_position(&self) -> anyhow::Result<()> {
        let store = &self.push.store;
        store.start_consumer_at(CONSUMER, store.last_notification_ordering().await?).await?;
        Ok(())
    }

    /// One batch of notifications; true if there may be more.
    async fn send_pending(self: &Arc<Self>) -> anyhow::Result<bool> {
        let store = &self.push.store;
        let position = store.consumer_position(CONSUMER).await?;
        // With no pusher on the server, what the evaluator recorded is nobody's to push.
        if !store.any_pusher().await? {
            let recorded = *self.notified.borrow();
            if recorded > position {
                store.pass_consumer_position(CONSUMER, recorded).await?;
            }
            return Ok(false);
        }
        let pending = store.notifications_after(position, BATCH).await?;
        let Some(last) = pending.last().map(|p| p.stream_ordering) else { return Ok(false) };
        let users: Vec<&str> = pending.iter().map(|p| p.user_id.as_str()).collect();
        let pushers = store.http_pushers_of(&users).await?;
        let mut deliveries = Vec::new();
        for notification in &pending {
            if let Some(pushers) = pushers.get(&notification.user_id) {
                deliveries.extend(self.deliveries(notification, pushers).await?);
            }
        }
        for delivery in deliveries {
            self.start_delivery(delivery).await;
        }
        store.set_consumer_position(CONSUMER, last).await?;
        let events = pending.iter().map(|p| p.stream_ordering).collect::<std::collections::BTreeSet<_>>().len();
        Ok(events as i64 == BATCH)
    }

    /// The pushes one notification makes: one per `http` pusher of its user.
    async fn deliveries(&self, notification: &PendingPush, pushers: &[Value]) -> anyhow::Result<Vec<Delivery>> {
        let store = &self.push.store;
        let Some(event) = store.get_event(&notification.event_id).await? else { return Ok(Vec::new()) };
        let unread = self.unread_rooms(&notification.user_id).await?;
        let names = self.names(&event).await?;
        Ok(pushers
            .iter()
            .map(|pusher| Delivery {
                user_id: notification.user_id.clone(),
                app_id: pusher["app_id"].as_str().unwrap_or_default().to_owned(),
                pushkey: pusher["pushkey"].as_str().unwrap_or_default().to_owned(),
                url: pusher["data"]["url"].as_str().unwrap_or_default().to_owned(),
                body: notification_body(&event, notification, pusher, unread, &names),
            })
            .collect())
    }

    /// The badge: how many rooms hold notifications the user has not read (Synapse's
    /// default, `group_unread_count_by_room`).
    async fn unread_rooms(&self, user_id: &str) -> anyhow::Result<i64> {
        let mut unread = 0;
        for room_id in self.push.store.rooms_with_notifications(user_id, MAX_UNREAD_ROOMS).await? {
            if self.push.unread_counts(user_id, &room_id).await?.0 > 0 {
                unread += 1;
            }
        }
        Ok(unread)
    }

    /// The sender's display name in the room and the room's name, when there are.
    async fn names(&self, event: &StoredEvent) -> anyhow::Result<EventNames> {
        let store = &self.push.store;
        let sender = event.json["sender"].as_str().unwrap_or_default();
        let member = store.membership(&event.room_id, sender).await?;
        let name = store.current_state_event(&event.room_id, "m.room.name", "").await?;
        Ok(EventNames {
            sender_display_name: member.and_then(|m| m.displayname),
            room_name: name.and_then(|e| e.json["content"]["name"].as_str().map(str::to_owned)),
        })
    }

    /// Sends one push on its own task once a slot is free, unless its pusher already
    /// has `MAX_PER_PUSHER` on their way.
    async fn start_delivery(self: &Arc<Self>, delivery: Delivery) {
        let key = (delivery.user_id.clone(), delivery.app_id.clone(), delivery.pushkey.clone());
        let Some(pusher_turn) = PusherTurn::take(&self.in_flight.per_pusher, key) else {
            return tracing::warn!(user_id = %delivery.user_id, url = %delivery.url, "push dropped: its gateway is behind");
        };
        let Ok(slot) = self.in_flight.slots.clone().acquire_owned().await else { return };
        let gateway = self.clone();
        let mut tasks = self.in_flight.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            gateway.deliver(&delivery).await;
            drop((pusher_turn, slot));
        });
    }

    /// Posts one push, up to three times; removes the pusher if the gateway rejects its
    /// push key.
    async fn deliver(&self, delivery: &Delivery) {
        if let Err(reason) = self.check_address(&delivery.url) {
            return tracing::info!(url = %delivery.url, %reason, "push gateway not allowed");
        }
        for attempt in 0..=RETRY_WAITS.len() {
            match self.post(delivery).await {
                Ok(rejected) => {
                    if rejected.contains(&delivery.pushkey) {
                        tracing::info!(user_id = %delivery.user_id, app_id = %delivery.app_id, "push key rejected; pusher removed");
                        let store = &self.push.store;
                        if let Err(err) =
                            store.delete_pusher(&delivery.user_id, &delivery.app_id, &delivery.pushkey).await
                        {
                            tracing::warn!(%err, "could not remove a rejected pusher");
                        }
                    }
                    return;
                }
                Err(err) => {
                    tracing::info!(url = %delivery.url, attempt, %err, "push failed");
                    if let Some(wait) = RETRY_WAITS.get(attempt) {
                        tokio::time::sleep(*wait).await;
                    }
                }
            }
        }
        tracing::warn!(url = %delivery.url, user_id = %delivery.user_id, "push dropped after three attempts");
    }

    /// The push keys the gateway rejected.
    async fn post(&self, delivery: &Delivery) -> Result<Vec<String>, PushFailed> {
        let mut response = self.client.post(&delivery.url).json(&delivery.body).send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(PushFailed::Refused(status));
        }
        // An answer too large to be one is taken as accepting the push.
        let answer = read_capped(&mut response, MAX_ANSWER_BYTES).await.unwrap_or_default();
        let answer: NotifyAnswer = serde_json::from_slice(&answer).unwrap_or_default();
        Ok(answer.rejected)
    }

    /// A gateway named by an IP address must be allowed by the IP filters (host names
    /// are checked as they resolve).
    fn check_address(&self, url: &str) -> Result<(), BadAddress> {
        let parsed = reqwest::Url::parse(url).map_err(|e| BadAddress::NotAUrl(e.to_string()))?;
        let host = parsed.host_str().ok_or(BadAddress::NoHost)?;
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) if !self.filter.allows(ip) => Err(BadAddress::Blacklisted(ip)),
            _ => Ok(()),
        }
    }
}

/// Why a push did not reach the gateway, or was not taken.
#[derive(Debug, thiserror::Error)]
enum PushFailed {
    #[error(transparent)]
    Unreachable(#[from] reqwest::Error),
    #[error("the gateway answered {0}")]
    Refused(reqwest::StatusCode),
}

/// Why a gateway's address is not one pushes go to.
#[derive(Debug, thiserror::Error)]
enum BadAddress {
    #[error("not a URL: {0}")]
    NotAUrl(String),
    #[error("no host")]
    NoHost,
    #[error("{0} is a blacklisted address")]
    Blacklisted(IpAddr),
}

/// A pusher's share of the pushes on their way; given back when dropped.
struct PusherTurn {
    counts: Arc<Mutex<HashMap<PusherKey, usize>>>,
    key: PusherKey,
}

impl PusherTurn {
    fn take(counts: &Arc<Mutex<HashMap<PusherKey, usize>>>, key: PusherKey) -> Option<Self> {
        let mut all = counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = all.entry(key.clone()).or_default();
        if *count >= MAX_PER_PUSHER {
            return None;
        }
        *count += 1;
        Some(Self { counts: counts.clone(), key })
    }
}

impl Drop for PusherTurn {
    fn drop(&mut self) {
        let mut all = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = all.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                all.remove(&self.key);
            }
        }
    }
}

/// What names an event in a push.
struct EventNames {
    sender_display_name: Option<String>,
    room_name: Option<String>,
}

/// The body of `POST /_matrix/push/v1/notify`. Local rather than ruma's
/// `push_gateway::send_event_notification::v1` types, which cannot carry `membership`
/// (Synapse sends it with member events; gateways may read it) nor a pusher's `data`
/// as the client stored it.
#[derive(Debug, Serialize)]
struct NotifyRequest {
    notification: Notification,
}

#[derive(Debug, Serialize)]
struct Notification {
    event_id: String,
    room_id: String,
    prio: &'static str,
    counts: Counts,
    devices: Vec<Device>,
    /// The event itself, left out for `format: event_id_only`.
    #[serde(flatten)]
    event: Option<NotifiedEvent>,
}

#[derive(Debug, Serialize)]
struct Counts {
    unread: i64,
}

#[derive(Debug, Serialize)]
struct Device {
    app_id: Value,
    pushkey: Value,
    data: Value,
    tweaks: serde_json::Map<String, Value>,
}

#[derive(Debug, Serialize)]
struct NotifiedEvent {
    #[serde(rename = "type")]
    kind: Value,
    sender: Value,
    content: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    membership: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_is_target: Option<bool>,
}

/// The Push Gateway API's `notification` for one pusher.
fn notification_body(
    event: &StoredEvent,
    notification: &PendingPush,
    pusher: &Value,
    unread: i64,
    names: &EventNames,
) -> NotifyRequest {
    let json = &event.json;
    let kind = json["type"].as_str().unwrap_or_default();
    let is_invite = kind == "m.room.member" && json["content"]["membership"] == "invite";
    let high = matches!(kind, "m.room.message" | "m.room.encrypted") || is_invite;
    let mut data = pusher["data"].clone();
    if let Some(data) = data.as_object_mut() {
        data.remove("url");
    }
    let device = Device {
        app_id: pusher["app_id"].clone(),
        pushkey: pusher["pushkey"].clone(),
        data,
        tweaks: tweaks(&notification.actions),
    };
    let member = kind == "m.room.member";
    let event_fields = (pusher["data"]["format"] != "event_id_only").then(|| NotifiedEvent {
        kind: json["type"].clone(),
        sender: json["sender"].clone(),
        content: json["content"].clone(),
        sender_display_name: names.sender_display_name.clone(),
        room_name: names.room_name.clone(),
        membership: member.then(|| json["content"]["membership"].clone()),
        user_is_target: member.then(|| json["state_key"] == notification.user_id.as_str()),
    });
    NotifyRequest {
        notification: Notification {
            event_id: event.event_id.clone(),
            room_id: event.room_id.clone(),
            prio: if high { "high" } else { "low" },
            counts: Counts { unread },
            devices: vec![device],
            event: event_fields,
        },
    }
}

/// The `set_tweak` actions as the gateway's `tweaks` (a tweak without a value is true).
fn tweaks(actions: &Value) -> serde_json::Map<String, Value> {
    let mut tweaks = serde_json::Map::new();
    for action in actions.as_array().into_iter().flatten() {
        if let Some(name) = action["set_tweak"].as_str() {
            tweaks.insert(name.to_owned(), action.get("value").cloned().unwrap_or(Value::Bool(true)));
        }
    }
    tweaks
}

/// A gateway's answer: the push keys it rejected.
#[derive(Debug, Default, Deserialize)]
struct NotifyAnswer {
    #[serde(default)]
    rejected: Vec<String>,
}

#[cfg(test)]
mod tests {
    use ruma::push::{Action, HighlightTweakValue, SoundTweakValue, Tweak};

    use super::*;

    #[test]
    fn tweaks_come_from_set_tweak_actions() {
        let actions = [
            Action::Notify,
            Action::SetTweak(Tweak::Sound(SoundTweakValue::Default)),
            Action::SetTweak(Tweak::Highlight(HighlightTweakValue::Yes)),
        ];
        let expected = [("sound", Value::from("default")), ("highlight", Value::from(true))];
        let expected: serde_json::Map<String, Value> = expected.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        assert_eq!(tweaks(&serde_json::to_value(actions).unwrap()), expected);
        assert!(tweaks(&serde_json::to_value([Action::Notify]).unwrap()).is_empty());
    }
}
