//! Push: each user's push rules (the spec's server defaults, changed with `/pushrules`,
//! kept as the `m.push_rules` account data clients read from `/sync`), their evaluation
//! as events arrive ([`evaluate`]: notifications, unread counts), and pushers, to whose
//! push gateways [`gateway`] delivers the notifications.

pub mod evaluate;
pub mod gateway;
mod rules;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ruma::api::client::push::Pusher;
use ruma::api::client::push::get_notifications::v3::Notification;
use ruma::events::push_rules::PushRulesEventContent;
use ruma::push::Ruleset;
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedRoomId, OwnedServerName, UInt, UserId};
use serde_json::Value;
use tokio::sync::watch;

use super::account_data::AccountData;
use crate::endpoints::push_gateway::NOTIFY_PATH;
use crate::error::{ApiResult, MatrixError};
use crate::services::bounded::BoundedMap;
use crate::store::Store;

pub use rules::{RuleKind, RuleUpdate};

/// The account-data type holding a user's push rules.
const PUSH_RULES: &str = "m.push_rules";
/// Pushers a user may have, at most.
const MAX_PUSHERS: usize = 50;
/// `/notifications` pages hold at most this many.
const MAX_NOTIFICATIONS: i64 = 100;
/// Users whose parsed push rules the evaluator keeps.
const KEPT_RULESETS: usize = 10_000;

pub struct Push {
    store: Arc<Store>,
    server_name: OwnedServerName,
    account_data: Arc<AccountData>,
    /// The stream position of the newest notifications recorded; the gateway sender waits on it.
    notified: watch::Sender<i64>,
    /// Parsed rulesets for the evaluator, each with the generation it was read at.
    rulesets: Mutex<BoundedMap<String, (u64, Arc<Ruleset>)>>,
    /// Bumped after every change of anyone's push rules: older kept rulesets are read again.
    rules_generation: AtomicU64,
}

impl Push {
    pub fn new(store: Arc<Store>, server_name: OwnedServerName, account_data: Arc<AccountData>) -> Self {
        Self {
            store,
            server_name,
            account_data,
            notified: watch::channel(0).0,
            rulesets: Mutex::new(BoundedMap::new(KEPT_RULESETS)),
            rules_generation: AtomicU64::new(0),
        }
    }

    pub fn subscribe_notifications(&self) -> watch::Receiver<i64> {
        self.notified.subscribe()
    }

    /// The evaluator recorded notifications up to `position`.
    fn announce_notifications(&self, position: i64) {
        self.notified.send_replace(position);
    }

    /// A user's push rules: what they set, or the server defaults.
    pub async fn ruleset(&self, user_id: &UserId) -> ApiResult<Ruleset> {
        let stored = self.store.get_account_data(user_id.as_str(), "", PUSH_RULES).await?;
        let stored = stored.and_then(|content| serde_json::from_value::<Ruleset>(content["global"].clone()).ok());
        Ok(stored.unwrap_or_else(|| Ruleset::server_default(user_id)))
    }

    /// [`Self::ruleset`], parsed once and kept until someone's rules change: the
    /// evaluator runs every local member's rules for every message.
    pub(crate) async fn kept_ruleset(&self, user_id: &UserId) -> ApiResult<Arc<Ruleset>> {
        let generation = self.rules_generation.load(Ordering::Acquire);
        let kept = self.rulesets.lock().unwrap_or_else(PoisonError::into_inner).get(&user_id.to_string()).cloned();
        if let Some((read_at, ruleset)) = kept
            && read_at == generation
        {
            return Ok(ruleset);
        }
        let ruleset = Arc::new(self.ruleset(user_id).await?);
        let mut kept = self.rulesets.lock().unwrap_or_else(PoisonError::into_inner);
        kept.insert(user_id.to_string(), (generation, ruleset.clone()));
        Ok(ruleset)
    }

    async fn save(&self, user_id: &UserId, ruleset: &Ruleset) -> ApiResult<()> {
        let content = serde_json::to_value(PushRulesEventContent::new(ruleset.clone()))
            .map_err(|err| MatrixError::internal("push rules", err))?;
        let saved = self.account_data.put(user_id, None, PUSH_RULES, &content).await;
        // After the write: a ruleset read before it, kept at the older generation, is
        // read again.
        self.rules_generation.fetch_add(1, Ordering::AcqRel);
        saved
    }

    /// Makes sure a new account's `/sync` carries its push rules (clients read them
    /// there before they ask `/pushrules`).
    pub async fn ensure_rules(&self, user_id: &UserId) -> ApiResult<()> {
        if self.store.get_account_data(user_id.as_str(), "", PUSH_RULES).await?.is_none() {
            self.save(user_id, &Ruleset::server_default(user_id)).await?;
        }
        Ok(())
    }

    /// `GET /notifications`: newest first, from a `next_token` on; the token of the
    /// next page when this one is full.
    pub async fn notifications(
        &self,
        user_id: &UserId,
        from: Option<&str>,
        limit: Option<i64>,
        highlights_only: bool,
    ) -> ApiResult<(Vec<Notification>, Option<String>)> {
        let before = match from {
            Some(token) => token.parse::<i64>().map_err(|_| MatrixError::invalid_param("Invalid from token"))?,
            None => i64::MAX,
        };
        let limit = limit.unwrap_or(20).clamp(1, MAX_NOTIFICATIONS);
        let found = self.store.notifications(user_id.as_str(), before, highlights_only, limit).await?;
        let ids: Vec<String> = found.iter().map(|n| n.event_id.clone()).collect();
        let events = self.store.events_by_id(&ids).await?;
        let mut notifications = Vec::new();
        for notification in &found {
            let Some(event) = events.iter().find(|e| e.event_id == notification.event_id) else { continue };
            let Ok(room_id) = OwnedRoomId::try_from(notification.room_id.as_str()) else { continue };
            let read =
                self.store.read_up_to(user_id.as_str(), &notification.room_id).await? >= notification.stream_ordering;
            let actions = serde_json::from_value(notification.actions.clone()).unwrap_or_default();
            let event = Raw::new(&crate::services::rooms::format::client_event(event))
                .map_err(|e| MatrixError::internal("a notification's event", e))?
                .cast_unchecked();
            let ts = MilliSecondsSinceUnixEpoch(UInt::try_from(notification.ts).unwrap_or_default());
            notifications.push(Notification::new(actions, event, read, room_id, ts));
        }
        let full = found.len() as i64 == limit;
        let next_token = found.last().filter(|_| full).map(|last| last.stream_ordering.to_string());
        Ok((notifications, next_token))
    }

    /// `(notification_count, highlight_count)` of a room since the user last read it.
    pub async fn unread_counts(&self, user_id: &str, room_id: &str) -> ApiResult<(i64, i64)> {
        Ok(self.store.unread_counts(user_id, room_id).await?)
    }

    /// The user's pushers; one stored in a shape clients cannot read is left out.
    pub async fn pushers(&self, user_id: &UserId) -> ApiResult<Vec<Pusher>> {
        let stored = self.store.pushers(user_id.as_str()).await?;
        Ok(stored.into_iter().filter_map(|pusher| serde_json::from_value(pusher).ok()).collect())
    }

    /// `POST /pushers/set`: `kind: null` removes the pusher; otherwise it is stored. An
    /// `http` pusher's `data.url` must be a push gateway's `/_matrix/push/v1/notify`
    /// over HTTP or HTTPS, as Synapse requires.
    pub async fn set_pusher(&self, user_id: &UserId, pusher: Value) -> ApiResult<()> {
        let text = |key: &str, max: usize| -> ApiResult<String> {
            let value = pusher[key].as_str().ok_or_else(|| MatrixError::missing_param(format!("{key} is required")))?;
            if value.is_empty() || value.len() > max {
                return Err(MatrixError::invalid_param(format!("{key} must be 1 to {max} bytes")));
            }
            Ok(value.to_owned())
        };
        let (app_id, pushkey) = (text("app_id", 64)?, text("pushkey", 512)?);
        if pusher.get("kind").is_some_and(Value::is_null) {
            return Ok(self.store.delete_pusher(user_id.as_str(), &app_id, &pushkey).await?);
        }
        match pusher["kind"].as_str() {
            Some("http") if pusher["data"]["url"].is_string() => check_gateway_url(&pusher["data"]["url"])?,
            Some("http") => return Err(MatrixError::missing_param("data.url is required for an http pusher")),
            Some("email") => {}
            _ => return Err(MatrixError::invalid_param("kind must be http, email or null")),
        }
        for key in ["app_display_name", "device_display_name", "lang"] {
            text(key, 255)?;
        }
        let existing = self.store.pushers(user_id.as_str()).await?;
        let replaces = existing.iter().any(|p| p["app_id"] == app_id.as_str() && p["pushkey"] == pushkey.as_str());
        if existing.len() >= MAX_PUSHERS && !replaces {
            return Err(MatrixError::new(axum::http::StatusCode::BAD_REQUEST, "M_LIMIT_EXCEEDED", "Too many pushers"));
        }
        let append = pusher["append"].as_bool().unwrap_or(false);
        let mut stored = pusher;
        if let Some(object) = stored.as_object_mut() {
            object.remove("append");
        }
        Ok(self.store.set_pusher(user_id.as_str(), &stored, append).await?)
    }
}

/// A push gateway's address: an absolute HTTP(S) URL whose path is the notify endpoint.
fn check_gateway_url(url: &Value) -> ApiResult<()> {
    let parsed = url.as_str().and_then(|url| reqwest::Url::parse(url).ok());
    let valid = parsed
        .is_some_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host() && url.path() == NOTIFY_PATH);
    if !valid {
        return Err(MatrixError::invalid_param(format!("data.url must be an http(s) URL with the path {NOTIFY_PATH}")));
    }
    Ok(())
}
