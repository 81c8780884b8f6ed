//! Inbound transactions (`PUT /send/{txnId}`): PDUs, each checked and added to its room
//! after fetching what it refers to and we lack, and EDUs (typing, receipts; presence and
//! unknown types are accepted and ignored).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use axum::http::Method;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{RoomVersionId, ServerName, UserId};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::error::{ApiResult, MatrixError};
use crate::services::Services;
use crate::services::rooms::remote::{CheckedEvent, Outcome, PriorState};
use crate::store::StateMap;

/// The spec's limits per transaction.
pub const MAX_PDUS: usize = 50;
pub const MAX_EDUS: usize = 100;
/// Transactions remembered for idempotency, across all origins.
const REMEMBERED_TXNS: usize = 10_000;
/// How many missing events one `/get_missing_events` asks for.
const MISSING_EVENTS_LIMIT: usize = 20;
/// A fetched state or auth chain larger than this is refused.
const MAX_FETCHED_EVENTS: usize = 50_000;
/// Remote typing notifications last this long unless renewed (as in Synapse).
const REMOTE_TYPING_TIMEOUT: Duration = Duration::from_secs(30);

/// `(origin, txn id)` of a transaction.
type TxnKey = (String, String);

/// Answers by transaction, and the order they came in (oldest forgotten first).
#[derive(Default)]
struct Answered(HashMap<TxnKey, Value>, VecDeque<TxnKey>);

/// Transactions already answered, and one lock per origin so an origin's transactions
/// are processed one at a time and in order.
#[derive(Default)]
pub struct TransactionLog {
    answered: StdMutex<Answered>,
    origins: StdMutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl TransactionLog {
    fn answer(&self, origin: &str, txn_id: &str) -> Option<Value> {
        let answered = self.answered.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        answered.0.get(&(origin.to_owned(), txn_id.to_owned())).cloned()
    }

    fn remember(&self, origin: &str, txn_id: &str, response: &Value) {
        let mut answered = self.answered.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (origin.to_owned(), txn_id.to_owned());
        if answered.0.insert(key.clone(), response.clone()).is_none() {
            answered.1.push_back(key);
        }
        while answered.1.len() > REMEMBERED_TXNS {
            if let Some(oldest) = answered.1.pop_front() {
                answered.0.remove(&oldest);
            }
        }
    }

    fn origin_lock(&self, origin: &str) -> Arc<Mutex<()>> {
        let mut origins = self.origins.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if origins.len() > REMEMBERED_TXNS {
            origins.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        origins.entry(origin.to_owned()).or_default().clone()
    }
}

impl Services {
    /// Handles `PUT /send/{txnId}` from `origin`; answers with a result per PDU.
    pub async fn receive_transaction(&self, origin: &ServerName, txn_id: &str, body: &Value) -> ApiResult<Value> {
        let pdus = body.get("pdus").map(|p| p.as_array().ok_or_else(|| MatrixError::bad_json("`pdus` must be a list")));
        let pdus = pdus.transpose()?.cloned().unwrap_or_default();
        let edus = body.get("edus").map(|e| e.as_array().ok_or_else(|| MatrixError::bad_json("`edus` must be a list")));
        let edus = edus.transpose()?.cloned().unwrap_or_default();
        if pdus.len() > MAX_PDUS || edus.len() > MAX_EDUS {
            return Err(MatrixError::bad_json(format!("At most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs per transaction")));
        }
        if body.get("origin").and_then(Value::as_str).is_some_and(|o| o != origin.as_str()) {
            return Err(MatrixError::bad_json("The transaction's origin is not the signing server"));
        }
        let lock = self.transactions.origin_lock(origin.as_str());
        let _guard = lock.lock().await;
        if let Some(answer) = self.transactions.answer(origin.as_str(), txn_id) {
            return Ok(answer);
        }
        let mut results = serde_json::Map::new();
        for pdu in &pdus {
            let (event_id, result) = self.receive_pdu(origin, pdu).await;
            if let Some(event_id) = event_id {
                results.insert(event_id, result.map_or_else(|error| json!({ "error": error }), |()| json!({})));
            }
        }
        for edu in &edus {
            if let Err(err) = self.receive_edu(origin, edu).await {
                tracing::debug!(%origin, %err, "ignoring EDU");
            }
        }
        let answer = json!({ "pdus": results });
        self.transactions.remember(origin.as_str(), txn_id, &answer);
        Ok(answer)
    }

    /// One PDU of a transaction: its event id (when it has one) and what became of it.
    async fn receive_pdu(&self, origin: &ServerName, value: &Value) -> (Option<String>, Result<(), String>) {
        let Some(room_id) = value.get("room_id").and_then(Value::as_str) else {
            return (None, Err("the PDU has no room_id".into()));
        };
        let rules = match self.known_room_rules(room_id).await {
            Ok(rules) => rules,
            Err(err) => return (None, Err(err)),
        };
        if !self.wants_events_of(room_id, value).await {
            return (None, Err(format!("this server is not in {room_id}")));
        }
        let event = match self.federation.check_pdu(value, &rules).await {
            Ok(event) => event,
            Err(err) => {
                tracing::info!(%origin, %err, "dropping PDU");
                return (None, Err(err));
            }
        };
        let event_id = event.event_id.clone();
        let outcome = self.accept_remote_event(origin, &rules, event, true).await;
        let result = match outcome {
            Ok(Outcome::Accepted | Outcome::AlreadyKnown | Outcome::SoftFailed) => Ok(()),
            Ok(Outcome::Rejected(reason)) => Err(reason),
            Err(err) => Err(err.message),
        };
        (Some(event_id), result)
    }

    /// Events of rooms this server is in, and member events about its users in rooms it
    /// left (a kick or ban that follows them out).
    async fn wants_events_of(&self, room_id: &str, value: &Value) -> bool {
        if self.is_resident(room_id).await.unwrap_or(false) {
            return true;
        }
        let target = value["state_key"].as_str().and_then(|k| <&UserId>::try_from(k).ok());
        value["type"] == "m.room.member" && target.is_some_and(|t| t.server_name() == self.config.server_name)
    }

    /// The room version rules of a room this server knows.
    async fn known_room_rules(&self, room_id: &str) -> Result<RoomVersionRules, String> {
        let version = self.store.room_version(room_id).await.map_err(|e| e.to_string())?;
        let version = version.ok_or_else(|| format!("this server is not in {room_id}"))?;
        RoomVersionId::try_from(version.as_str())
            .ok()
            .and_then(|v| v.rules())
            .ok_or_else(|| "unsupported room version".to_owned())
    }

    /// Adds a checked remote event to its room: fetches missing auth events, then missing
    /// prev events (or the state before the event), then applies the auth rules.
    pub async fn accept_remote_event(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        event: CheckedEvent,
        fetch_prev_events: bool,
    ) -> ApiResult<Outcome> {
        if let Some(existing) = self.store.get_event(&event.event_id).await?
            && !existing.outlier
        {
            return Ok(Outcome::AlreadyKnown);
        }
        let room_id = event.pdu.room_id.to_string();
        self.fetch_auth_events(origin, rules, &room_id, &event).await?;
        let prevs: Vec<String> = event.pdu.prev_events.iter().map(ToString::to_string).collect();
        let mut missing = self.rooms.missing_prev_events(&prevs).await?;
        if !missing.is_empty() && fetch_prev_events {
            self.fetch_missing_events(origin, rules, &room_id, &event).await;
            missing = self.rooms.missing_prev_events(&prevs).await?;
        }
        let prior = if missing.is_empty() {
            PriorState::FromPrevEvents
        } else {
            tracing::info!(event_id = %event.event_id, missing = missing.len(), "prev events still missing: asking for the state at them");
            PriorState::Given(self.state_before_from_remote(origin, rules, &room_id, &prevs, &missing).await?)
        };
        self.rooms.persist_remote(rules, &event, prior).await
    }

    /// Fetches auth events we do not hold (their whole auth chain, from `origin`).
    async fn fetch_auth_events(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        room_id: &str,
        event: &CheckedEvent,
    ) -> ApiResult<()> {
        let wanted: Vec<String> = event.pdu.auth_events.iter().map(ToString::to_string).collect();
        let held = self.store.events_by_id(&wanted).await?;
        if held.len() == wanted.len() {
            return Ok(());
        }
        let path = format!("/_matrix/federation/v1/event_auth/{}/{}", encode(room_id), encode(&event.event_id));
        let body = self.federation.get(origin, &path).await.map_err(|e| e.to_client_error())?;
        let chain = self.check_fetched(rules, room_id, &body["auth_chain"]).await;
        self.rooms.persist_outliers(chain, rules).await
    }

    /// Asks `origin` for the events between our forward extremities and `event`, and
    /// adds them oldest first.
    async fn fetch_missing_events(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        room_id: &str,
        event: &CheckedEvent,
    ) {
        let earliest: Vec<String> = match self.store.forward_extremities(room_id).await {
            Ok(events) => events.into_iter().map(|e| e.event_id).collect(),
            Err(err) => return tracing::warn!(%err, "cannot read forward extremities"),
        };
        let request = json!({
            "earliest_events": earliest,
            "latest_events": [event.event_id],
            "limit": MISSING_EVENTS_LIMIT,
            "min_depth": 0,
        });
        let path = format!("/_matrix/federation/v1/get_missing_events/{}", encode(room_id));
        let body = match self.federation.request(Method::POST, origin, &path, Some(&request)).await {
            Ok(body) => body,
            Err(err) => return tracing::info!(%origin, %err, "get_missing_events failed"),
        };
        let mut events = self.check_fetched(rules, room_id, &body["events"]).await;
        events.sort_by_key(CheckedEvent::depth);
        for missing in events {
            let event_id = missing.event_id.clone();
            if let Err(err) = Box::pin(self.accept_remote_event(origin, rules, missing, false)).await {
                tracing::info!(%event_id, %err, "could not add a missing event");
            }
        }
    }

    /// The state before an event whose prev events we lack: for each missing one, the
    /// state `origin` says it had (its state before, plus itself), resolved together with
    /// the states after the prev events we hold.
    async fn state_before_from_remote(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        room_id: &str,
        prevs: &[String],
        missing: &[String],
    ) -> ApiResult<StateMap> {
        let mut maps = Vec::new();
        for prev in missing {
            maps.push(self.remote_state_after(origin, rules, room_id, prev).await?);
        }
        let held: Vec<String> = prevs.iter().filter(|p| !missing.contains(p)).cloned().collect();
        for event in self.store.events_by_id(&held).await? {
            if let Some(group) = event.state_group_after {
                maps.push(self.store.state_group(group).await?);
            }
        }
        self.rooms.resolve(rules, maps).await
    }

    /// The state after `event_id` according to `origin`, with every event of it checked
    /// and held as an outlier.
    async fn remote_state_after(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        room_id: &str,
        event_id: &str,
    ) -> ApiResult<StateMap> {
        let path = format!("/_matrix/federation/v1/state/{}?event_id={}", encode(room_id), encode(event_id));
        let body = self.federation.get(origin, &path).await.map_err(|e| e.to_client_error())?;
        let mut events = self.check_fetched(rules, room_id, &body["auth_chain"]).await;
        let state = self.check_fetched(rules, room_id, &body["pdus"]).await;
        let mut state_ids: Vec<String> = state.iter().map(|e| e.event_id.clone()).collect();
        events.extend(state);
        if let Some(prev) = self.fetch_event(origin, rules, room_id, event_id).await? {
            if prev.pdu.state_key.is_some() {
                state_ids.push(prev.event_id.clone());
            }
            events.push(prev);
        }
        self.rooms.persist_outliers(events, rules).await?;
        let held = self.store.events_by_id(&state_ids).await?;
        let mut map = StateMap::new();
        // Later entries (the event itself) replace earlier ones for the same key.
        for id in &state_ids {
            let Some(event) = held.iter().find(|e| &e.event_id == id && !e.rejected) else { continue };
            if let (Some(kind), Some(key)) = (event.json["type"].as_str(), event.json["state_key"].as_str()) {
                map.insert((kind.to_owned(), key.to_owned()), id.clone());
            }
        }
        Ok(map)
    }

    /// One event by id from `origin`, checked to be the event asked for.
    pub async fn fetch_event(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        room_id: &str,
        event_id: &str,
    ) -> ApiResult<Option<CheckedEvent>> {
        let path = format!("/_matrix/federation/v1/event/{}", encode(event_id));
        let body = self.federation.get(origin, &path).await.map_err(|e| e.to_client_error())?;
        let found = self.check_fetched(rules, room_id, &body["pdus"]).await;
        Ok(found.into_iter().find(|e| e.event_id == event_id))
    }

    /// Checks a list of PDUs another server returned; drops (and logs) bad ones, those of
    /// another room, and everything past the size bound.
    pub async fn check_fetched(&self, rules: &RoomVersionRules, room_id: &str, list: &Value) -> Vec<CheckedEvent> {
        let Some(list) = list.as_array() else { return Vec::new() };
        let mut checked = Vec::new();
        let mut seen = HashSet::new();
        for value in list.iter().take(MAX_FETCHED_EVENTS) {
            match self.federation.check_pdu(value, rules).await {
                Ok(event) if event.pdu.room_id.as_str() == room_id => {
                    if seen.insert(event.event_id.clone()) {
                        checked.push(event);
                    }
                }
                Ok(event) => tracing::info!(event_id = %event.event_id, "dropping a fetched event of another room"),
                Err(err) => tracing::info!(%err, "dropping a fetched event"),
            }
        }
        checked
    }

    async fn receive_edu(&self, origin: &ServerName, edu: &Value) -> Result<(), String> {
        let content = &edu["content"];
        match edu["edu_type"].as_str().unwrap_or_default() {
            "m.typing" => self.receive_typing(origin, content).await,
            "m.receipt" => self.receive_receipts(origin, content).await,
            // Presence, device lists, to-device messages and unknown types are accepted
            // and ignored.
            _ => Ok(()),
        }
    }

    async fn receive_typing(&self, origin: &ServerName, content: &Value) -> Result<(), String> {
        let (Some(room_id), Some(user_id)) = (content["room_id"].as_str(), content["user_id"].as_str()) else {
            return Err("m.typing without room_id or user_id".into());
        };
        self.require_remote_member(origin, room_id, user_id).await?;
        let typing = content["typing"].as_bool().unwrap_or(false);
        self.typing.set(room_id, user_id, typing, REMOTE_TYPING_TIMEOUT);
        Ok(())
    }

    async fn receive_receipts(&self, origin: &ServerName, content: &Value) -> Result<(), String> {
        let rooms = content.as_object().ok_or("m.receipt content must be an object")?;
        for (room_id, types) in rooms {
            let Some(users) = types["m.read"].as_object() else { continue };
            for (user_id, receipt) in users {
                if self.require_remote_member(origin, room_id, user_id).await.is_err() {
                    continue;
                }
                let Some(event_id) = receipt["event_ids"].as_array().and_then(|ids| ids.first()?.as_str()) else {
                    continue;
                };
                let known = self.store.get_event(event_id).await.map_err(|e| e.to_string())?;
                if known.is_some_and(|e| e.room_id == *room_id) {
                    self.store.put_receipt(room_id, user_id, "m.read", event_id).await.map_err(|e| e.to_string())?;
                    self.notify_change();
                }
            }
        }
        Ok(())
    }

    /// An EDU about a user counts only if the user belongs to the sending server and is
    /// joined to the room.
    async fn require_remote_member(&self, origin: &ServerName, room_id: &str, user_id: &str) -> Result<(), String> {
        let user = <&UserId>::try_from(user_id).map_err(|_| format!("invalid user id {user_id}"))?;
        if user.server_name() != origin {
            return Err(format!("{origin} cannot speak for {user_id}"));
        }
        let membership = self.store.membership(room_id, user_id).await.map_err(|e| e.to_string())?;
        if membership.is_none_or(|m| m.membership != "join") {
            return Err(format!("{user_id} is not joined to {room_id}"));
        }
        Ok(())
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(text: &str) -> String {
    crate::config::percent_encode(text)
}
