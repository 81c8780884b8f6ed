//! Step 2: a `/send` transaction. Each transaction id is handled once (a retry gets the
//! same answer); its PDUs are answered one by one, rooms side by side, and its EDUs
//! dispatched by type.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex};

use futures_util::StreamExt;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedEventId, RoomVersionId, ServerName, UserId};
use serde_json::Value;

use super::Inbound;
use super::check_pdu::{PduCheckError, event_id_of};
use crate::endpoints::federation::send_transaction_message::Transaction;
use crate::error::{ApiResult, MatrixError};
use crate::services::bounded::BoundedMap;
use crate::services::locks::KeyedLocks;
use crate::services::rooms::remote::{AuthFailure, Outcome};

/// The spec's limits per transaction.
pub const MAX_PDUS: usize = 50;
pub const MAX_EDUS: usize = 100;
/// Transactions remembered for idempotency, across all origins.
const REMEMBERED_TXNS: usize = 10_000;
/// Rooms of one transaction handled at the same time.
const ROOMS_AT_ONCE: usize = 8;

/// What became of one PDU: its event id (when it has one) and an error if it was refused.
type PduResult = (Option<String>, Result<(), PduRefusal>);

/// Why a PDU of a transaction was refused: the `error` of its entry in the answer.
/// Shared (`Arc`) where the cause is not `Clone`: answers are remembered for retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PduRefusal {
    #[error("the PDU has no room_id")]
    NoRoomId,
    #[error("this server is not in {0}")]
    NotInRoom(String),
    #[error("unsupported room version")]
    UnsupportedRoomVersion,
    #[error("{0}")]
    Storage(Arc<sqlx::Error>),
    #[error(transparent)]
    Invalid(Arc<PduCheckError>),
    #[error(transparent)]
    Rejected(AuthFailure),
    #[error("{}", .0.message)]
    Failed(MatrixError),
}

/// `(origin, txn id)` of a transaction.
type TxnKey = (String, String);

/// The answer to a transaction: what became of each PDU whose id is known.
pub type PduResults = BTreeMap<OwnedEventId, Result<(), PduRefusal>>;

/// Transactions already answered, a lock per transaction (a retry that comes while the
/// first attempt is being handled waits for its answer), and a lock per room (one room's
/// events are handled in the order they came, whatever transaction brought them).
pub struct TransactionLog {
    answered: StdMutex<BoundedMap<TxnKey, PduResults>>,
    transactions: KeyedLocks<TxnKey>,
    rooms: KeyedLocks<String>,
}

impl Default for TransactionLog {
    fn default() -> Self {
        Self {
            answered: StdMutex::new(BoundedMap::new(REMEMBERED_TXNS)),
            transactions: KeyedLocks::new(REMEMBERED_TXNS),
            rooms: KeyedLocks::new(REMEMBERED_TXNS),
        }
    }
}

impl TransactionLog {
    fn answer(&self, key: &TxnKey) -> Option<PduResults> {
        self.answered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key).cloned()
    }

    fn remember(&self, key: TxnKey, response: &PduResults) {
        self.answered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key, response.clone());
    }
}

/// The PDUs and EDUs of a `/send` body from `origin`, within the spec's limits.
pub fn split_transaction<'t>(origin: &ServerName, body: &'t Transaction) -> ApiResult<(&'t [Value], &'t [Value])> {
    if body.pdus.len() > MAX_PDUS || body.edus.len() > MAX_EDUS {
        return Err(MatrixError::bad_json(format!("At most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs per transaction")));
    }
    if body.origin.as_deref().is_some_and(|o| o != origin.as_str()) {
        return Err(MatrixError::bad_json("The transaction's origin is not the signing server"));
    }
    Ok((&body.pdus, &body.edus))
}

impl Inbound {
    /// Handles `PUT /send/{txnId}` from `origin`; answers with a result per PDU.
    pub async fn receive_transaction(
        &self,
        origin: &ServerName,
        txn_id: &str,
        body: &Transaction,
    ) -> ApiResult<PduResults> {
        let (pdus, edus) = split_transaction(origin, body)?;
        let key = (origin.to_string(), txn_id.to_owned());
        let _transaction = self.transactions.transactions.lock(&key).await;
        if let Some(answer) = self.transactions.answer(&key) {
            return Ok(answer);
        }
        // A retry waiting above takes no turn from its origin; the rate limit applies here.
        let _turn = self.admit(origin).await?;
        let results = self.receive_pdus(origin, pdus).await;
        for edu in edus {
            self.receive_edu(origin, edu).await;
        }
        self.transactions.remember(key, &results);
        Ok(results)
    }

    /// The PDUs of a transaction: rooms side by side (a slow room does not hold up the
    /// others), each room's PDUs in order. A result for every PDU whose id is known.
    async fn receive_pdus(&self, origin: &ServerName, pdus: &[Value]) -> PduResults {
        let mut by_room: Vec<(String, Vec<&Value>)> = Vec::new();
        for pdu in pdus {
            let room = pdu.get("room_id").and_then(Value::as_str).unwrap_or_default().to_owned();
            match by_room.iter_mut().find(|(r, _)| *r == room) {
                Some((_, list)) => list.push(pdu),
                None => by_room.push((room, vec![pdu])),
            }
        }
        let rooms: Vec<_> =
            by_room.into_iter().map(|(room, pdus)| self.receive_room_pdus(origin, room, pdus)).collect();
        let answered: Vec<_> = futures_util::stream::iter(rooms).buffer_unordered(ROOMS_AT_ONCE).collect().await;
        let known = answered
            .into_iter()
            .flatten()
            .filter_map(|(event_id, result)| Some((OwnedEventId::try_from(event_id?).ok()?, result)));
        known.collect()
    }

    /// One room's PDUs of a transaction, in order, after those of earlier transactions.
    async fn receive_room_pdus(&self, origin: &ServerName, room: String, pdus: Vec<&Value>) -> Vec<PduResult> {
        let _room = self.transactions.rooms.lock(&room).await;
        let mut results = Vec::with_capacity(pdus.len());
        for pdu in pdus {
            results.push(self.receive_pdu(origin, pdu).await);
        }
        results
    }

    /// One PDU of a transaction: its event id (when it has one) and what became of it.
    async fn receive_pdu(&self, origin: &ServerName, value: &Value) -> PduResult {
        let Some(room_id) = value.get("room_id").and_then(Value::as_str) else {
            return (None, Err(PduRefusal::NoRoomId));
        };
        let rules = match self.known_room_rules(room_id).await {
            Ok(rules) => rules,
            Err(err) => return (None, Err(err)),
        };
        if !self.wants_events_of(room_id, value).await {
            return (event_id_of(value, &rules), Err(PduRefusal::NotInRoom(room_id.to_owned())));
        }
        let event = match self.check_pdu(value, &rules).await {
            Ok(event) => event,
            Err(err) => {
                tracing::info!(%origin, %err, "dropping PDU");
                return (event_id_of(value, &rules), Err(PduRefusal::Invalid(Arc::new(err))));
            }
        };
        let event_id = event.event_id.clone();
        let outcome = self.accept(origin, &rules, event, true).await;
        let result = match outcome {
            Ok(Outcome::Accepted | Outcome::AlreadyKnown | Outcome::SoftFailed) => Ok(()),
            Ok(Outcome::Rejected(reason)) => Err(PduRefusal::Rejected(reason)),
            Err(err) => Err(PduRefusal::Failed(err)),
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
    async fn known_room_rules(&self, room_id: &str) -> Result<RoomVersionRules, PduRefusal> {
        let version = self.store.room_version(room_id).await.map_err(|e| PduRefusal::Storage(Arc::new(e)))?;
        let version = version.ok_or_else(|| PduRefusal::NotInRoom(room_id.to_owned()))?;
        RoomVersionId::try_from(version.as_str()).ok().and_then(|v| v.rules()).ok_or(PduRefusal::UnsupportedRoomVersion)
    }
}

impl Inbound {
    /// One EDU of a transaction, to the handler registered for its type.
    async fn receive_edu(&self, origin: &ServerName, edu: &Value) {
        let result = match self.edu_handlers.handle(origin, edu) {
            Ok(Some(work)) => work.await,
            Ok(None) => Ok(()),
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            tracing::debug!(%origin, %err, "ignoring EDU");
        }
    }
}
