//! Step 2: a `/send` transaction. Each transaction id is handled once (a retry gets the
//! same answer); its PDUs are answered one by one and its EDUs dispatched by type.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};

use ruma::room_version_rules::RoomVersionRules;
use ruma::{RoomVersionId, ServerName, UserId};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::Inbound;
use crate::error::{ApiResult, MatrixError};
use crate::services::rooms::remote::Outcome;

/// The spec's limits per transaction.
pub const MAX_PDUS: usize = 50;
pub const MAX_EDUS: usize = 100;
/// Transactions remembered for idempotency, across all origins.
const REMEMBERED_TXNS: usize = 10_000;

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

impl Inbound {
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
            self.receive_edu(origin, edu).await;
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
        let event = match self.check_pdu(value, &rules).await {
            Ok(event) => event,
            Err(err) => {
                tracing::info!(%origin, %err, "dropping PDU");
                return (None, Err(err));
            }
        };
        let event_id = event.event_id.clone();
        let outcome = self.accept(origin, &rules, event, true).await;
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
        if self.rooms.is_resident(room_id).await.unwrap_or(false) {
            return true;
        }
        let target = value["state_key"].as_str().and_then(|k| <&UserId>::try_from(k).ok());
        value["type"] == "m.room.member" && target.is_some_and(|t| t.server_name() == self.server_name)
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
}
