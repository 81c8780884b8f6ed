//! Building a local PDU: prev and auth events, depth, hashes, signature, event id,
//! then the auth rules, then persistence.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::RoomVersionId;
use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::{auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::pdu::Pdu;
use super::{MAX_PDU_BYTES, NewEvent, Rooms, limits};
use crate::error::{ApiResult, MatrixError};
use crate::store::{NewCurrentState, PersistEvent, StateBefore, StateMap};

/// At most this many forward extremities become one event's `prev_events`.
const MAX_PREV_EVENTS: usize = 10;

/// A local event, built, signed and authorised, not yet persisted.
pub(crate) struct Built {
    pub event_id: String,
    pub json: Value,
    prev_events: Vec<String>,
    depth: i64,
    state_before: Arc<StateMap>,
    before_group: Option<i64>,
}

/// The unsigned event and what it was built on: a template for another server to sign
/// (`make_join`, `make_leave`) or the start of a local event.
pub(crate) struct Draft {
    pub object: CanonicalJsonObject,
    prev_events: Vec<String>,
    depth: i64,
    state_before: Arc<StateMap>,
    before_group: Option<i64>,
    auth_events: HashMap<String, Pdu>,
}

/// Chooses prev and auth events and lays out the PDU in the room version's format.
pub(super) async fn draft(rooms: &Rooms, version: &RoomVersionId, event: &NewEvent<'_>) -> ApiResult<Draft> {
    limits::check_type_and_state_key(event.event_type, event.state_key)
        .map_err(|e| MatrixError::invalid_param(e.to_string()))?;
    limits::check_local_content(event.event_type, &event.content).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    let rules = Rooms::version_rules(version)?;
    let is_create = event.event_type == "m.room.create";
    let extremities = rooms.store.forward_extremities(event.room_id).await?;
    if extremities.is_empty() && !is_create {
        return Err(MatrixError::not_found("Unknown room"));
    }
    let prev: Vec<_> = extremities.iter().rev().take(MAX_PREV_EVENTS).collect();
    let prev_events: Vec<String> = prev.iter().map(|e| e.event_id.clone()).collect();
    let depth = prev.iter().map(|e| e.depth).max().unwrap_or(0) + 1;
    let (state_before, before_group) = rooms.state_after_all(&rules, &extremities).await?;

    let auth_types = auth_types_for_event(
        &TimelineEventType::from(event.event_type),
        <&ruma::UserId>::try_from(event.sender).map_err(|_| MatrixError::invalid_param("invalid sender"))?,
        event.state_key,
        &raw(&event.content)?,
        &rules.authorization,
    )
    .map_err(MatrixError::bad_json)?;
    let auth_event_ids: Vec<String> = auth_types.iter().filter_map(|key| lookup(&state_before, key)).collect();
    // From v12 the create event is not an auth event, but the auth rules still read it.
    let create = state_before.get(&("m.room.create".to_owned(), String::new())).cloned();
    let auth_events = rooms.load_events(auth_event_ids.iter().cloned().chain(create)).await?;
    let object = pdu_object(event, &prev_events, &auth_event_ids, depth)?;
    Ok(Draft { object, prev_events, depth, state_before, before_group, auth_events })
}

impl Draft {
    /// Checks the auth rules as if the draft were signed as it is (for templates).
    pub(super) fn authorise_unsigned(&self, version: &RoomVersionId) -> ApiResult<()> {
        let rules = Rooms::version_rules(version)?;
        let reference =
            ruma::signatures::reference_hash(&self.object, &rules).map_err(|err| pdu_error(&err.to_string()))?;
        let json = serde_json::to_value(&self.object).map_err(|err| MatrixError::internal("pdu", err))?;
        let pdu =
            Pdu::from_json(&format!("${reference}"), &json, false).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        authorise(&rules, &pdu, &self.auth_events, &self.state_before)
    }
}

/// Builds, hashes, signs and authorises a local event.
pub(super) async fn build(rooms: &Rooms, version: &RoomVersionId, event: &NewEvent<'_>) -> ApiResult<Built> {
    let rules = Rooms::version_rules(version)?;
    let Draft { mut object, prev_events, depth, state_before, before_group, auth_events } =
        draft(rooms, version, event).await?;
    rooms.keys.hash_and_sign_event(&mut object, &rules.redaction).map_err(|err| pdu_error(&err.to_string()))?;
    let reference = ruma::signatures::reference_hash(&object, &rules).map_err(|err| pdu_error(&err.to_string()))?;
    let event_id = format!("${reference}");
    let json = serde_json::to_value(&object).map_err(|err| MatrixError::internal("pdu", err))?;
    if json.to_string().len() > MAX_PDU_BYTES {
        return Err(pdu_error("event too large"));
    }
    let pdu = Pdu::from_json(&event_id, &json, false).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    authorise(&rules, &pdu, &auth_events, &state_before)?;
    Ok(Built { event_id, json, prev_events, depth, state_before, before_group })
}

/// Persists a built event (whose JSON may since carry more signatures).
pub(super) async fn persist(rooms: &Rooms, built: &Built, event: &NewEvent<'_>) -> ApiResult<i64> {
    // A state event changes the current state; so does resolving several extremities.
    // The state before is shared with its kept group: the event's entry goes on top.
    let own = event.state_key.map(|state_key| (event.event_type.to_owned(), state_key.to_owned()));
    let state_after = match &own {
        Some(key) => Some(NewCurrentState { state: &built.state_before, with: Some((key, &built.event_id)) }),
        None if built.before_group.is_none() => Some(NewCurrentState::full(&built.state_before)),
        None => None,
    };
    let client_txn = event.txn.map(|(device, txn_id)| (event.sender, device, txn_id));
    let ordering = rooms
        .store
        .persist_event(PersistEvent {
            event_id: &built.event_id,
            room_id: event.room_id,
            depth: built.depth,
            event_type: event.event_type,
            state_key: event.state_key,
            sender: event.sender,
            origin_server_ts: built.json["origin_server_ts"].as_i64().unwrap_or_default(),
            json: &built.json,
            prev_events: &built.prev_events,
            rejected: false,
            outlier: false,
            state_before: match built.before_group {
                Some(group) => StateBefore::Group(group),
                None => StateBefore::Snapshot(&built.state_before),
            },
            new_current_state: state_after,
            client_txn,
            mirror_membership: false,
        })
        .await?;
    Ok(ordering)
}

fn lookup(state: &StateMap, (event_type, state_key): &(StateEventType, String)) -> Option<String> {
    state.get(&(event_type.to_string(), state_key.clone())).cloned()
}

fn raw(content: &Value) -> ApiResult<Box<RawValue>> {
    RawValue::from_string(content.to_string()).map_err(|err| MatrixError::bad_json(err.to_string()))
}

fn pdu_error(message: &str) -> MatrixError {
    if message.contains("too large") || message.contains("larger than maximum") {
        MatrixError::too_large("Event too large")
    } else {
        MatrixError::bad_json(message.to_owned())
    }
}

/// The PDU before hashing and signing, in the room version's format.
fn pdu_object(
    event: &NewEvent<'_>,
    prev_events: &[String],
    auth_events: &[String],
    depth: i64,
) -> ApiResult<CanonicalJsonObject> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    // Before v11, `redacts` is a top-level key; from v11 it lives in the content, and
    // Synapse sends both for compatibility.
    let redacts = (event.event_type == "m.room.redaction").then(|| event.content.get("redacts")).flatten();
    let pdu = UnsignedPdu {
        room_id: event.room_id,
        sender: event.sender,
        kind: event.event_type,
        content: &event.content,
        prev_events,
        auth_events,
        depth,
        origin_server_ts: now,
        state_key: event.state_key,
        redacts,
    };
    let pdu = serde_json::to_value(pdu).map_err(|err| MatrixError::internal("an event", err))?;
    serde_json::from_value(pdu).map_err(|err| MatrixError::bad_json(format!("event is not canonical JSON: {err}")))
}

/// The auth rules: against the event's auth events, then against the state before it.
fn authorise(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    auth_events: &HashMap<String, Pdu>,
    state_before: &StateMap,
) -> ApiResult<()> {
    let by_id: HashMap<&ruma::EventId, &Pdu> = auth_events.values().map(|p| (&*p.event_id, p)).collect();
    check_state_independent_auth_rules(&rules.authorization, pdu, |id| by_id.get(id).map(|p| (*p).clone()))
        .map_err(MatrixError::forbidden)?;
    check_state_dependent_auth_rules(&rules.authorization, pdu, |event_type, state_key| {
        let id = state_before.get(&(event_type.to_string(), state_key.to_owned()))?;
        auth_events.get(id).cloned()
    })
    .map_err(MatrixError::forbidden)
}

/// A local event before hashes and signatures: the fields every room version has.
#[derive(Serialize)]
struct UnsignedPdu<'a> {
    room_id: &'a str,
    sender: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    content: &'a Value,
    prev_events: &'a [String],
    auth_events: &'a [String],
    depth: i64,
    origin_server_ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redacts: Option<&'a Value>,
}
