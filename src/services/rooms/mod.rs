//! Rooms: building, authorising and persisting events; room state; membership.
//!
//! Local events into one room are built one at a time (a lock per room), each on top of
//! all the room's forward extremities, so concurrent senders never fork the DAG; when a
//! room nevertheless has several extremities (events from elsewhere), the state before
//! the new event is their resolution with state resolution v2.

pub mod auth_chains;
mod build;
pub mod create;
pub mod filter;
pub mod format;
pub mod history;
pub mod limits;
mod members;
pub mod membership;
mod partial_state;
pub mod pdu;
mod pdu_cache;
mod purge;
mod redaction;
pub mod remote;
mod state;
mod state_groups;
mod summary;
pub mod timeline;
mod upgrade;
mod visibility;

use std::sync::Arc;

use axum::http::StatusCode;
use ruma::RoomVersionId;
use ruma::room_version_rules::RoomVersionRules;
use serde_json::Value;
use tokio::sync::watch;

use crate::error::{ApiResult, MatrixError};
use crate::services::bounded::BoundedMap;
use crate::services::locks::KeyedLocks;
use crate::services::server_keys::ServerKeys;
use crate::store::{StateMap, Store, StoredEvent};

/// Locks kept for rooms with no sender at the moment are dropped beyond this many.
const MAX_IDLE_ROOM_LOCKS: usize = 10_000;
/// Room versions kept in memory.
const KEPT_ROOM_VERSIONS: usize = 100_000;
/// A PDU may not exceed this (spec: 65536 bytes).
pub const MAX_PDU_BYTES: usize = 65_536;

pub struct Rooms {
    pub(crate) store: Arc<Store>,
    pub(crate) keys: Arc<ServerKeys>,
    pub(crate) default_version: String,
    room_locks: KeyedLocks<String>,
    /// The newest event stream position; `/sync` long-polls wait on it.
    pub(crate) events_written: watch::Sender<i64>,
    auth_chains: auth_chains::AuthChains,
    state_groups: state_groups::StateGroups,
    pdu_cache: pdu_cache::PduCache,
    verdicts: visibility::Verdicts,
    /// Room versions, kept: a room's version never changes, and every send reads it.
    versions: std::sync::Mutex<BoundedMap<String, RoomVersionId>>,
}

/// What a client asks to send.
pub struct NewEvent<'a> {
    pub room_id: &'a str,
    pub sender: &'a str,
    pub event_type: &'a str,
    pub state_key: Option<&'a str>,
    pub content: Value,
    /// `(device, txn id)` for idempotent client sends.
    pub txn: Option<(&'a str, &'a str)>,
}

impl Rooms {
    pub async fn new(store: Arc<Store>, keys: Arc<ServerKeys>, default_version: String) -> anyhow::Result<Self> {
        let head = store.max_event_ordering().await?;
        Ok(Self {
            store,
            keys,
            default_version,
            room_locks: KeyedLocks::new(MAX_IDLE_ROOM_LOCKS),
            events_written: watch::channel(head).0,
            auth_chains: auth_chains::AuthChains::default(),
            state_groups: state_groups::StateGroups::default(),
            pdu_cache: pdu_cache::PduCache::default(),
            verdicts: visibility::Verdicts::default(),
            versions: std::sync::Mutex::new(BoundedMap::new(KEPT_ROOM_VERSIONS)),
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.events_written.subscribe()
    }

    /// Events of one room are built and persisted one at a time.
    async fn lock_room(&self, room_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.room_locks.lock(&room_id.to_owned()).await
    }

    /// Builds, authorises and persists a local event; returns its id.
    pub async fn send(&self, event: NewEvent<'_>) -> ApiResult<String> {
        self.send_countersigned(event, async |json| Ok(json)).await
    }

    /// Like `send`, but `countersign` sees the signed event before it is persisted and
    /// may return it with more signatures (an invite signed by the invitee's server).
    /// The event it returns must have the same event id.
    pub async fn send_countersigned(
        &self,
        event: NewEvent<'_>,
        countersign: impl AsyncFnOnce(Value) -> ApiResult<Value>,
    ) -> ApiResult<String> {
        let _guard = self.lock_room(event.room_id).await;
        if let Some((device, txn_id)) = event.txn
            && let Some(existing) = self.store.event_for_txn(event.sender, device, event.room_id, txn_id).await?
        {
            return Ok(existing);
        }
        let version = self.room_version(event.room_id).await?;
        let mut built = build::build(self, &version, &event).await?;
        let signed = countersign(built.json.clone()).await?;
        if signed != built.json {
            let rules = Self::version_rules(&version)?;
            let object: ruma::canonical_json::CanonicalJsonObject =
                serde_json::from_value(signed.clone()).map_err(|err| MatrixError::bad_json(err.to_string()))?;
            let reference = ruma::signatures::reference_hash(&object, &rules)
                .map_err(|err| MatrixError::bad_json(err.to_string()))?;
            if format!("${reference}") != built.event_id {
                return Err(MatrixError::new(
                    StatusCode::BAD_GATEWAY,
                    "M_UNKNOWN",
                    "The remote server returned a different event",
                ));
            }
            built.json = signed;
        }
        let ordering = build::persist(self, &built, &event).await?;
        self.events_written.send_replace(ordering);
        Ok(built.event_id)
    }

    /// An unsigned event template for another server to complete (`make_join`,
    /// `make_leave`), checked against the auth rules as it stands.
    pub async fn template(&self, event: NewEvent<'_>) -> ApiResult<(RoomVersionId, Value)> {
        let version = self.room_version(event.room_id).await?;
        let draft = build::draft(self, &version, &event).await?;
        draft.authorise_unsigned(&version)?;
        let json = serde_json::to_value(&draft.object).map_err(|err| MatrixError::internal("pdu", err))?;
        Ok((version, json))
    }

    pub async fn room_version(&self, room_id: &str) -> ApiResult<RoomVersionId> {
        let versions = || self.versions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(version) = versions().get(&room_id.to_owned()) {
            return Ok(version.clone());
        }
        let version = self.store.room_version(room_id).await?.ok_or_else(|| MatrixError::not_found("Unknown room"))?;
        let version = RoomVersionId::try_from(version.as_str())
            .map_err(|err| MatrixError::internal("stored room version", err))?;
        versions().insert(room_id.to_owned(), version.clone());
        Ok(version)
    }

    pub fn version_rules(version: &RoomVersionId) -> ApiResult<RoomVersionRules> {
        version.rules().ok_or_else(|| {
            MatrixError::new(StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION", "Unsupported room version")
        })
    }

    /// The state a user may see: the current state if joined, the state when they left
    /// if they were a member once; otherwise `M_FORBIDDEN`.
    pub async fn visible_state(&self, room_id: &str, user_id: &str) -> ApiResult<StateMap> {
        let membership = self.store.membership(room_id, user_id).await?;
        match membership.as_ref().map(|m| m.membership.as_str()) {
            Some("join") => Ok(self.store.current_state(room_id).await?),
            Some("leave") | Some("ban") => {
                let membership = membership.ok_or_else(|| MatrixError::forbidden("not in room"))?;
                let event = self.require_event(&membership.event_id).await?;
                let group = event.state_group_after.ok_or_else(|| MatrixError::forbidden("not in room"))?;
                Ok(self.store.state_group(group).await?)
            }
            _ => Err(MatrixError::forbidden("You are not a member of this room")),
        }
    }

    /// The newest stream position up to which a user may read a room: now if joined,
    /// the moment they left otherwise.
    pub async fn visible_until(&self, room_id: &str, user_id: &str) -> ApiResult<i64> {
        let membership = self.store.membership(room_id, user_id).await?;
        match membership {
            Some(m) if m.membership == "join" => Ok(self.store.max_event_ordering().await?),
            Some(m) if m.membership == "leave" || m.membership == "ban" => Ok(m.stream_ordering),
            _ => Err(MatrixError::forbidden("You are not a member of this room")),
        }
    }

    /// The room state as of a stream position (after the newest event at or before it).
    pub async fn state_at(&self, room_id: &str, position: i64) -> ApiResult<Arc<StateMap>> {
        let newest = self.store.room_events(room_id, 0, position, false, 1).await?;
        match newest.first().and_then(|event| event.state_group_after) {
            Some(group) => self.state_group(group).await,
            None => Ok(Arc::default()),
        }
    }

    /// The full state a group stands for, shared (groups never change).
    pub async fn state_group(&self, group: i64) -> ApiResult<Arc<StateMap>> {
        self.state_groups.get(&self.store, group).await
    }

    /// The entries of a group's state whose key `wanted` accepts.
    pub async fn state_group_select(
        &self,
        group: i64,
        wanted: impl Fn(&(String, String)) -> bool,
    ) -> ApiResult<StateMap> {
        self.state_groups.select(&self.store, group, wanted).await
    }

    pub async fn require_event(&self, event_id: &str) -> ApiResult<StoredEvent> {
        self.store.get_event(event_id).await?.ok_or_else(|| MatrixError::not_found("Event not found"))
    }

    /// Events as other servers get them, raw JSON read in bulk, in stream order (for
    /// answers of thousands of events: nothing is parsed but each one's top level).
    pub async fn pdus(&self, event_ids: &[String]) -> ApiResult<Vec<Box<serde_json::value::RawValue>>> {
        let mark = self.pdu_cache.mark();
        let (mut found, missing) = self.pdu_cache.get_many(event_ids);
        for (event_id, ordering, json) in self.store.event_json_by_id(&missing).await? {
            let pdu = format::pdu_raw(json).map_err(|err| MatrixError::internal("stored event", err))?;
            self.pdu_cache.put(mark, &event_id, ordering, &pdu);
            found.push((ordering, pdu));
        }
        found.sort_unstable_by_key(|(ordering, _)| *ordering);
        Ok(found.into_iter().map(|(_, pdu)| pdu).collect())
    }

    pub async fn state_events(&self, state: &StateMap) -> ApiResult<Vec<StoredEvent>> {
        let ids: Vec<String> = state.values().cloned().collect();
        let mut events = self.store.events_by_id(&ids).await?;
        events.sort_by_key(|e| e.stream_ordering);
        Ok(events)
    }
}

impl Rooms {
    /// The stripped state an invitee sees (name, avatar, join rules…).
    pub async fn stripped_state(&self, room_id: &str) -> ApiResult<Vec<Value>> {
        let mut state = self.store.current_state(room_id).await?;
        state.retain(|(kind, key), _| format::STRIPPED_STATE_TYPES.contains(&kind.as_str()) && key.is_empty());
        let events = self.state_events(&state).await?;
        Ok(events.iter().map(format::stripped_event).collect())
    }
}
