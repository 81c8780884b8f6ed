//! Events from other servers, once their signatures and hashes checked out: the auth
//! rules against their auth events and against the state before them, soft-failing
//! against the current state, and the room's new current state.
//!
//! Nothing here trusts an event because it arrived: an event that fails the auth rules
//! is stored as rejected (so it is never fetched again and never becomes state), one that
//! passes them but not against the current state is soft-failed (held as an outlier, kept
//! from clients and from the forward extremities).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::OwnedEventId;
use ruma::events::StateEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::{auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules};
use serde_json::Value;

use super::Rooms;
use super::pdu::Pdu;
use crate::error::{ApiResult, MatrixError};
use crate::store::{NewCurrentState, PersistEvent, StateBefore, StateMap};

/// An event whose signatures checked out (and which was redacted if its hash did not).
#[derive(Debug, Clone)]
pub struct CheckedEvent {
    pub event_id: String,
    pub json: Value,
    pub pdu: Pdu,
}

impl CheckedEvent {
    pub fn depth(&self) -> i64 {
        self.json["depth"].as_i64().unwrap_or(0).clamp(0, i64::from(i32::MAX) * 1024)
    }

    fn persist<'a>(&'a self, prev_events: &'a [String], state_before: StateBefore<'a>) -> PersistEvent<'a> {
        PersistEvent {
            event_id: &self.event_id,
            room_id: self.pdu.room_id.as_str(),
            depth: self.depth(),
            event_type: self.json["type"].as_str().unwrap_or_default(),
            state_key: self.pdu.state_key.as_deref(),
            sender: self.pdu.sender.as_str(),
            origin_server_ts: self.json["origin_server_ts"].as_i64().unwrap_or_default(),
            json: &self.json,
            prev_events,
            rejected: false,
            outlier: false,
            state_before,
            new_current_state: None,
            client_txn: None,
            mirror_membership: false,
        }
    }

    fn prev_ids(&self) -> Vec<String> {
        self.pdu.prev_events.iter().map(ToString::to_string).collect()
    }
}

/// What became of a remote event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Allowed by the state before it but not by the room's current state.
    SoftFailed,
    Rejected(AuthFailure),
    AlreadyKnown,
}

/// Why the auth rules refuse an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("auth event {0} is missing")]
    MissingAuthEvent(OwnedEventId),
    #[error("auth event {0} was rejected")]
    RejectedAuthEvent(OwnedEventId),
    #[error("the event was rejected before")]
    RejectedBefore,
    /// ruma's auth rules say why only in words.
    #[error("{0}")]
    Rules(String),
}

/// The state before an event, as the caller knows it.
pub enum PriorState {
    /// Compute it from the event's prev events, which must all be held with state.
    FromPrevEvents,
    /// Given (state fetched from another server for missing prev events).
    Given(StateMap),
    /// The state a join of ours arrived with: it replaces whatever this server knew of
    /// the room (nothing, or the state from before it last left), so the join is not
    /// soft-failed against that and becomes the room's only forward extremity.
    Joined(StateMap),
}

impl Rooms {
    /// Stores events that are not part of the timeline (a join's state and auth chain,
    /// fetched auth events), in an order where auth events come first. Each must pass the
    /// auth rules against its own auth events or it is stored as rejected.
    pub async fn persist_outliers(&self, events: Vec<CheckedEvent>, rules: &RoomVersionRules) -> ApiResult<()> {
        let ordered = auth_order(events);
        let mut known: HashMap<String, Pdu> = HashMap::new();
        // From room version 12 the create event is named by the room id, not listed.
        let wanted = ordered
            .iter()
            .flat_map(|e| e.pdu.auth_events.iter().map(ToString::to_string).chain(e.pdu.create_event_id()));
        known.extend(self.load_events(wanted).await?);
        let mut verdicts = Vec::with_capacity(ordered.len());
        for event in &ordered {
            let allowed = check_own_auth_events(rules, &event.pdu, &known);
            let mut pdu = event.pdu.clone();
            pdu.rejected = allowed.is_err();
            if let Err(reason) = &allowed {
                tracing::info!(event_id = %event.event_id, %reason, "rejecting outlier");
            }
            known.insert(event.event_id.clone(), pdu);
            verdicts.push(allowed.is_err());
        }
        let prevs: Vec<Vec<String>> = ordered.iter().map(CheckedEvent::prev_ids).collect();
        let rows: Vec<PersistEvent<'_>> = ordered
            .iter()
            .zip(&prevs)
            .zip(verdicts)
            .map(|((event, prevs), rejected)| PersistEvent {
                rejected,
                outlier: true,
                ..event.persist(prevs, StateBefore::Unknown)
            })
            .collect();
        self.store.persist_outliers(&rows).await?;
        Ok(())
    }

    /// Checks a remote event and adds it to the room's DAG. The caller has fetched its
    /// auth events (and, when its prev events are missing, the state before it).
    pub async fn persist_remote(
        &self,
        rules: &RoomVersionRules,
        event: &CheckedEvent,
        prior: PriorState,
    ) -> ApiResult<Outcome> {
        let _guard = self.lock_room(event.pdu.room_id.as_str()).await;
        let existing = self.store.get_event(&event.event_id).await?;
        match &existing {
            Some(known) if !known.outlier => return Ok(Outcome::AlreadyKnown),
            // A retry gets the answer the first attempt got.
            Some(known) if known.rejected => return Ok(Outcome::Rejected(AuthFailure::RejectedBefore)),
            // Held as an outlier (an auth event, a join's state, soft-failed): checked again.
            _ => {}
        }
        let held_as_outlier = existing.is_some();
        let auth_ids = event.pdu.auth_events.iter().map(ToString::to_string).chain(event.pdu.create_event_id());
        let auth_events = self.load_events(auth_ids).await?;
        let prevs = event.prev_ids();
        let joined = matches!(prior, PriorState::Joined(_));
        let (state_before, before_group) = match prior {
            PriorState::Given(state) | PriorState::Joined(state) => (Arc::new(state), None),
            PriorState::FromPrevEvents => self.state_from_prev_events(rules, &prevs).await?,
        };
        // While the room's state is partial, the event's own auth events stand in for
        // what the partial state lacks (its sender's membership).
        let partial = self.is_partial_state(event.pdu.room_id.as_str()).await?;
        let verdict = match check_own_auth_events(rules, &event.pdu, &auth_events) {
            Ok(()) if partial => {
                let augmented = self.with_auth_events(&event.pdu, &state_before).await?;
                self.check_against_state(rules, &event.pdu, &augmented).await?
            }
            Ok(()) => self.check_against_state(rules, &event.pdu, &state_before).await?,
            Err(reason) => Err(reason),
        };
        let state_ref = match before_group {
            Some(group) => StateBefore::Group(group),
            None => StateBefore::Snapshot(&state_before),
        };
        if let Err(reason) = verdict {
            tracing::info!(event_id = %event.event_id, %reason, "rejecting event");
            if !held_as_outlier {
                let row = PersistEvent { rejected: true, outlier: true, ..event.persist(&prevs, state_ref) };
                self.store.persist_event(row).await?;
            }
            return Ok(Outcome::Rejected(reason));
        }
        let soft_fail = match joined || partial {
            true => Ok(()),
            false => {
                let current = self.current_auth_state(rules, &event.pdu).await?;
                self.check_against_state(rules, &event.pdu, &current).await?
            }
        };
        if let Err(reason) = soft_fail {
            tracing::info!(event_id = %event.event_id, %reason, "soft-failing event");
            if !held_as_outlier {
                let row = PersistEvent { outlier: true, ..event.persist(&prevs, state_ref) };
                self.store.persist_event(row).await?;
            }
            return Ok(Outcome::SoftFailed);
        }
        if joined {
            self.store.clear_forward_extremities(event.pdu.room_id.as_str()).await?;
        }
        let own = event.pdu.state_key.as_ref().map(|key| ((event.pdu.kind.to_string(), key.clone()), &event.event_id));
        let resolved = self.resolved_current_state(rules, event, &state_before, &prevs).await?;
        let new_current = match &resolved {
            Some(state) => NewCurrentState::full(state),
            None => NewCurrentState { state: &state_before, with: own.as_ref().map(|(key, id)| (key, *id)) },
        };
        let row = PersistEvent { new_current_state: Some(new_current), ..event.persist(&prevs, state_ref) };
        let ordering = self.store.persist_event(row).await?;
        if partial && event.pdu.kind.to_string() == "m.room.member" && event.json["content"]["membership"] == "join" {
            let server = event.pdu.sender.server_name().to_string();
            self.store.add_partial_state_server(event.pdu.room_id.as_str(), &server).await?;
        }
        if event.pdu.kind.to_string() == "m.room.redaction" {
            self.apply_redaction(&event.event_id).await?;
        }
        self.events_written.send_replace(ordering);
        Ok(Outcome::Accepted)
    }

    /// The state before an event from its prev events' states, with the state group to
    /// reuse when they share one.
    async fn state_from_prev_events(
        &self,
        rules: &RoomVersionRules,
        prevs: &[String],
    ) -> ApiResult<(Arc<StateMap>, Option<i64>)> {
        let events = self.store.events_by_id(prevs).await?;
        if let Some(missing) = prevs.iter().find(|id| !events.iter().any(|e| &e.event_id == *id)) {
            return Err(MatrixError::internal("remote event", format!("no state known at {missing}")));
        }
        self.state_after_all(rules, &events).await
    }

    /// Keeps a member event of a room this server is not in (an invite, a declined
    /// invite) as an outlier that the user's membership points at.
    /// Idempotent: a retried invite finds its event stored and changes nothing.
    pub async fn persist_outside_membership(&self, event: &CheckedEvent, invite_state: Option<Value>) -> ApiResult<()> {
        let _guard = self.lock_room(event.pdu.room_id.as_str()).await;
        if self.store.get_event(&event.event_id).await?.is_some() {
            return Ok(());
        }
        let mut json = event.json.clone();
        if let Some(state) = invite_state {
            json["unsigned"] = Value::Object(serde_json::Map::from_iter([("invite_room_state".to_owned(), state)]));
        }
        let prevs: Vec<String> = event.pdu.prev_events.iter().map(ToString::to_string).collect();
        let ordering = self
            .store
            .persist_event(PersistEvent {
                event_id: &event.event_id,
                room_id: event.pdu.room_id.as_str(),
                depth: event.depth(),
                event_type: "m.room.member",
                state_key: event.pdu.state_key.as_deref(),
                sender: event.pdu.sender.as_str(),
                origin_server_ts: json["origin_server_ts"].as_i64().unwrap_or_default(),
                json: &json,
                prev_events: &prevs,
                rejected: false,
                outlier: true,
                state_before: StateBefore::Unknown,
                new_current_state: None,
                client_txn: None,
                mirror_membership: true,
            })
            .await?;
        self.events_written.send_replace(ordering);
        Ok(())
    }

    /// Whether every prev event of an event is held with known state.
    pub async fn missing_prev_events(&self, prevs: &[String]) -> ApiResult<Vec<String>> {
        let events = self.store.events_by_id(prevs).await?;
        let known: HashSet<&str> =
            events.iter().filter(|e| e.state_group_after.is_some()).map(|e| e.event_id.as_str()).collect();
        Ok(prevs.iter().filter(|id| !known.contains(id.as_str())).cloned().collect())
    }

    /// The room's current state once `event` is a forward extremity, when other
    /// extremities remain: its state after resolved with theirs. `None` when it follows
    /// every current extremity: the current state is then its own state after, which the
    /// caller passes on as the state before plus the event, without copying the state.
    async fn resolved_current_state(
        &self,
        rules: &RoomVersionRules,
        event: &CheckedEvent,
        state_before: &StateMap,
        prevs: &[String],
    ) -> ApiResult<Option<StateMap>> {
        let extremities = self.store.forward_extremities(event.pdu.room_id.as_str()).await?;
        let others: Vec<_> = extremities.iter().filter(|e| !prevs.contains(&e.event_id)).collect();
        if others.is_empty() {
            return Ok(None);
        }
        let mut state_after = state_before.clone();
        if let Some(state_key) = &event.pdu.state_key {
            state_after.insert((event.pdu.kind.to_string(), state_key.clone()), event.event_id.clone());
        }
        let mut maps = vec![state_after];
        for other in others {
            if let Some(group) = other.state_group_after {
                maps.push(StateMap::clone(&*self.state_group(group).await?));
            }
        }
        Ok(Some(self.resolve_with_pending(rules, maps, Some(&event.pdu)).await?))
    }
}

/// Orders events so that each comes after the auth events it names from the same set;
/// events in an auth cycle (which no honest server produces) keep their relative order.
fn auth_order(events: Vec<CheckedEvent>) -> Vec<CheckedEvent> {
    let mut by_id: HashMap<String, CheckedEvent> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for event in events {
        if !by_id.contains_key(&event.event_id) {
            order.push(event.event_id.clone());
            by_id.insert(event.event_id.clone(), event);
        }
    }
    let mut placed: HashSet<String> = HashSet::new();
    let mut result = Vec::with_capacity(order.len());
    while placed.len() < order.len() {
        let before = placed.len();
        for id in &order {
            if placed.contains(id) {
                continue;
            }
            let event = &by_id[id];
            let mut needs = event.pdu.auth_events.iter().map(ToString::to_string).chain(event.pdu.create_event_id());
            let ready = needs.all(|a| a == *id || !by_id.contains_key(&a) || placed.contains(&a));
            if ready {
                placed.insert(id.clone());
                result.push(id.clone());
            }
        }
        if placed.len() == before {
            // A cycle: place the rest as they came.
            result.extend(order.iter().filter(|id| !placed.contains(*id)).cloned());
            break;
        }
    }
    result.into_iter().filter_map(|id| by_id.remove(&id)).collect()
}

/// The auth rules that need only the event and its own auth events.
fn check_own_auth_events(rules: &RoomVersionRules, pdu: &Pdu, known: &HashMap<String, Pdu>) -> Result<(), AuthFailure> {
    for auth in &pdu.auth_events {
        match known.get(auth.as_str()) {
            None => return Err(AuthFailure::MissingAuthEvent(auth.clone())),
            Some(event) if event.rejected => return Err(AuthFailure::RejectedAuthEvent(auth.clone())),
            Some(_) => {}
        }
    }
    check_state_independent_auth_rules(&rules.authorization, pdu, |id| known.get(id.as_str()).cloned())
        .map_err(|e| AuthFailure::Rules(e.to_string()))?;
    // Against the auth events as the state: each must be the one of its kind it claims.
    let by_key: HashMap<(String, String), &Pdu> = pdu
        .auth_events
        .iter()
        .map(ToString::to_string)
        .chain(pdu.create_event_id())
        .filter_map(|id| known.get(&id))
        .filter_map(|p| Some(((p.kind.to_string(), p.state_key.clone()?), p)))
        .collect();
    check_state_dependent_auth_rules(&rules.authorization, pdu, |event_type, state_key| {
        by_key.get(&(event_type.to_string(), state_key.to_owned())).map(|p| (*p).clone())
    })
    .map_err(|e| AuthFailure::Rules(e.to_string()))
}

impl Rooms {
    /// The auth rules against a room state (the state before the event, or the current
    /// state for soft-failing). The outer error is a storage failure, the inner one the
    /// reason the event is not allowed.
    /// What the auth rules read of the room's current state for `pdu` (not the whole
    /// state: a big room's is 100,000 entries).
    async fn current_auth_state(&self, rules: &RoomVersionRules, pdu: &Pdu) -> ApiResult<StateMap> {
        let types =
            auth_types_for_event(&pdu.kind, &pdu.sender, pdu.state_key.as_deref(), &pdu.content, &rules.authorization)
                .unwrap_or_default();
        let mut keys: Vec<(String, String)> = types.into_iter().map(|(kind, key)| (kind.to_string(), key)).collect();
        keys.push(("m.room.create".to_owned(), String::new()));
        Ok(self.store.current_state_entries(pdu.room_id.as_str(), &keys).await?)
    }

    pub(super) async fn check_against_state(
        &self,
        rules: &RoomVersionRules,
        pdu: &Pdu,
        state: &StateMap,
    ) -> ApiResult<Result<(), AuthFailure>> {
        let types = match auth_types_for_event(
            &pdu.kind,
            &pdu.sender,
            pdu.state_key.as_deref(),
            &pdu.content,
            &rules.authorization,
        ) {
            Ok(types) => types,
            Err(err) => return Ok(Err(AuthFailure::Rules(err.to_string()))),
        };
        let key = |(event_type, state_key): &(StateEventType, String)| (event_type.to_string(), state_key.clone());
        let create = state.get(&("m.room.create".to_owned(), String::new())).cloned();
        let ids = types.iter().filter_map(|k| state.get(&key(k)).cloned()).chain(create);
        let events = self.load_events(ids).await?;
        Ok(check_state_dependent_auth_rules(&rules.authorization, pdu, |event_type, state_key| {
            state.get(&(event_type.to_string(), state_key.to_owned())).and_then(|id| events.get(id)).cloned()
        })
        .map_err(|e| AuthFailure::Rules(e.to_string())))
    }
}
