//! The background resync of rooms joined with a partial state (MSC3902): the full state
//! at the join is asked of the server joined through (then of the other servers in the
//! room), in one `/state` answer (or, from a server that does not give it, `/state_ids`
//! and each missing event), checked and stored, and `Rooms` re-checks every event
//! since the join against it. Resumes after a restart (the partial flag is persisted;
//! the resync starts over, which is idempotent); a room the local users left is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use ruma::api::federation::event::{get_room_state, get_room_state_ids};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedEventId, OwnedServerName, ServerName};

use super::Joins;
use crate::error::{ApiResult, MatrixError};
use crate::services::federation::client::FederationError;
use crate::services::inbound::parse_id;
use crate::services::workers::{Shutdown, Wakeups, Worker, follow};
use crate::store::{PartialStateRoom, StateMap};

/// Events asked of `/event` at the same time, when `/state` was not answered.
const EVENT_FETCHES_AT_ONCE: usize = 8;
/// The whole state of a big room may be this large.
const MAX_STATE_BYTES: usize = 512 * 1024 * 1024;
/// Ids in a `/state_ids` answer, at most...
const MAX_STATE_IDS: usize = 500_000;
/// ...which take up to about this much JSON.
const MAX_STATE_IDS_BYTES: usize = 64 * 1024 * 1024;
/// A failed resync is tried again after this, doubling up to an hour.
const FIRST_RETRY: Duration = Duration::from_secs(10);
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// How often rooms waiting for a retry are looked at (a cheap query of a small table).
const POLL_INTERVAL: Duration = Duration::from_secs(5);

pub struct PartialStateResync {
    joins: Arc<Joins>,
    /// Rooms whose last attempt failed: when to try again, and the current wait.
    retries: Mutex<HashMap<String, (Instant, Duration)>>,
}

impl Worker for PartialStateResync {
    fn name(&self) -> &'static str {
        "partial state resync"
    }

    fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let wakeups = Wakeups::default().on_notify(self.joins.resync_wanted.clone());
            follow(self.name(), wakeups, POLL_INTERVAL, stop, || self.resync_due()).await;
        })
    }
}

impl PartialStateResync {
    pub fn new(joins: Arc<Joins>) -> Self {
        Self { joins, retries: Mutex::new(HashMap::new()) }
    }

    /// Resyncs every partial-state room not waiting for a retry.
    async fn resync_due(&self) -> anyhow::Result<bool> {
        for room in self.joins.store.partial_state_rooms().await? {
            let waiting = self.retries.lock().unwrap_or_else(|p| p.into_inner()).get(&room.room_id).copied();
            if waiting.is_some_and(|(at, _)| at > Instant::now()) {
                continue;
            }
            match self.joins.resync(&room).await {
                Ok(()) => {
                    self.retries.lock().unwrap_or_else(|p| p.into_inner()).remove(&room.room_id);
                }
                Err(err) => {
                    let wait = waiting.map_or(FIRST_RETRY, |(_, wait)| (wait * 2).min(MAX_RETRY));
                    tracing::warn!(room_id = %room.room_id, %err, retry_in = ?wait, "partial-state resync failed");
                    let mut retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
                    retries.insert(room.room_id.clone(), (Instant::now() + wait, wait));
                }
            }
        }
        Ok(false)
    }
}

impl Joins {
    /// Completes one partial-state room, or drops it when no local user is in it.
    async fn resync(&self, room: &PartialStateRoom) -> ApiResult<()> {
        let started = Instant::now();
        let members = self.store.joined_user_ids(&room.room_id).await?;
        if !members.iter().any(|user| user.ends_with(&format!(":{}", self.server_name))) {
            tracing::info!(room_id = %room.room_id, "left a partial-state room; its resync stops");
            return Ok(self.store.clear_partial_state(&room.room_id).await?);
        }
        let version = self.rooms.room_version(&room.room_id).await?;
        let rules = super::Rooms::version_rules(&version)?;
        let mut last_error = MatrixError::not_found("No server to resync the room from");
        for server in self.resync_servers(room) {
            match self.full_state_from(&server, &rules, room).await {
                Ok(state) => {
                    let size = state.len();
                    let corrected = self.rooms.complete_partial_state(&rules, room, state).await?;
                    tracing::info!(
                        room_id = %room.room_id, via = %server, state_events = size, corrected,
                        took_ms = started.elapsed().as_millis() as u64, "partial-state resync complete"
                    );
                    return Ok(());
                }
                Err(err) => {
                    tracing::info!(room_id = %room.room_id, %server, %err, "could not resync from this server");
                    last_error = err;
                }
            }
        }
        Err(last_error)
    }

    /// The server joined through first, then the others in the room; never ourselves.
    fn resync_servers(&self, room: &PartialStateRoom) -> Vec<OwnedServerName> {
        let mut seen = HashSet::new();
        std::iter::once(&room.joined_via)
            .chain(&room.servers)
            .filter_map(|name| OwnedServerName::try_from(name.as_str()).ok())
            .filter(|server| *server != self.server_name && seen.insert(server.clone()))
            .collect()
    }

    /// The full state before the join, from `server`, fetched once. After a partial
    /// join most of it is missing (the members), so `/state` is asked first: the state
    /// and its auth chain in one answer. A resident that answers it with anything but
    /// the state (a 404, an answer too big) is asked `/state_ids`, then each event this
    /// server lacks on its own.
    async fn full_state_from(
        &self,
        server: &ServerName,
        rules: &RoomVersionRules,
        room: &PartialStateRoom,
    ) -> ApiResult<StateMap> {
        let (room_id, join) = (room.room_id.as_str(), room.join_event_id.as_str());
        let request = get_room_state::v1::Request::new(parse_id(join)?, parse_id(room_id)?);
        let state_ids = match self.client.send_with_limit(server, request, MAX_STATE_BYTES).await {
            Ok(answer) => self.store_whole_state(rules, room, answer).await?,
            Err(err) if !err.is_down() && !matches!(err, FederationError::NotAllowed(_)) => {
                tracing::info!(%room_id, %server, %err, "no state answer; asking state ids");
                self.fetch_missing_state(server, rules, room).await?
            }
            Err(err) => return Err(err.to_client_error()),
        };
        let state = self.rooms.state_map_of(&state_ids).await?;
        if !state.contains_key(&("m.room.create".to_owned(), String::new())) {
            return Err(MatrixError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "M_UNKNOWN",
                "The state has no create event",
            ));
        }
        Ok(state)
    }

    /// The `/state` answer (every state event before the join and their auth chain),
    /// checked and stored; the ids of the state events.
    async fn store_whole_state(
        &self,
        rules: &RoomVersionRules,
        room: &PartialStateRoom,
        answer: get_room_state::v1::Response,
    ) -> ApiResult<Vec<String>> {
        let (room_id, join) = (room.room_id.as_str(), room.join_event_id.as_str());
        let mut events = self.inbound.check_fetched(rules, room_id, &answer.auth_chain).await;
        let state = self.inbound.check_fetched(rules, room_id, &answer.pdus).await;
        let state_ids = state.iter().map(|e| e.event_id.clone()).filter(|id| id != join).collect();
        events.extend(state);
        self.rooms.persist_outliers(events, rules).await?;
        Ok(state_ids)
    }

    /// `GET /state_ids`, then each event this server lacks from `/event`, a few at a
    /// time; the ids of the state events.
    async fn fetch_missing_state(
        &self,
        server: &ServerName,
        rules: &RoomVersionRules,
        room: &PartialStateRoom,
    ) -> ApiResult<Vec<String>> {
        let (room_id, join) = (room.room_id.as_str(), room.join_event_id.as_str());
        let request = get_room_state_ids::v1::Request::new(parse_id(join)?, parse_id(room_id)?);
        let answer =
            self.client.send_with_limit(server, request, MAX_STATE_IDS_BYTES).await.map_err(|e| e.to_client_error())?;
        let mut state_ids = id_list(&answer.pdu_ids)?;
        state_ids.retain(|id| id != join);
        let chain_ids = id_list(&answer.auth_chain_ids)?;
        let wanted: Vec<String> = state_ids.iter().chain(&chain_ids).cloned().collect();
        let held: HashSet<String> = self.store.events_by_id(&wanted).await?.into_iter().map(|e| e.event_id).collect();
        let missing: Vec<String> = wanted.into_iter().filter(|id| !held.contains(id)).collect();
        let mut fetched = Vec::with_capacity(missing.len());
        for batch in missing.chunks(EVENT_FETCHES_AT_ONCE) {
            // A loop, not a closure: the futures must stay `Send` for the worker.
            let mut asks = Vec::with_capacity(batch.len());
            for id in batch {
                asks.push(self.inbound.fetch_event(server, rules, room_id, id));
            }
            for answer in futures_util::future::join_all(asks).await {
                fetched.extend(answer?);
            }
        }
        self.rooms.persist_outliers(fetched, rules).await?;
        Ok(state_ids)
    }
}

fn id_list(ids: &[OwnedEventId]) -> ApiResult<Vec<String>> {
    if ids.len() > MAX_STATE_IDS || ids.iter().any(|id| id.as_str().len() > 255) {
        return Err(MatrixError::new(axum::http::StatusCode::BAD_GATEWAY, "M_UNKNOWN", "Invalid /state_ids answer"));
    }
    Ok(ids.iter().map(ToString::to_string).collect())
}
