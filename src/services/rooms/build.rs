//! Building a local PDU: prev and auth events, depth, hashes, signature, event id,
//! then the auth rules, then persistence.

use std::collections::HashMap;

use ruma::RoomVersionId;
use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::{auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::pdu::Pdu;
use super::{MAX_PDU_BYTES, NewEvent, Rooms, state};
use crate::error::{ApiResult, MatrixError};
use crate::store::{PersistEvent, StateBefore, StateMap};

/// At most this many forward extremities become one event's `prev_events`.
const MAX_PREV_EVENTS: usize = 10;

pub(super) async fn build_and_persist(
    rooms: &Rooms,
    version: &RoomVersionId,
    event: NewEvent<'_>,
) -> ApiResult<(String, i64)> {
    let rules = Rooms::version_rules(version)?;
    let is_create = event.event_type == "m.room.create";
    let extremities = rooms.store.forward_extremities(event.room_id).await?;
    if extremities.is_empty() && !is_create {
        return Err(MatrixError::not_found("Unknown room"));
    }
    let prev: Vec<_> = extremities.iter().rev().take(MAX_PREV_EVENTS).collect();
    let prev_events: Vec<String> = prev.iter().map(|e| e.event_id.clone()).collect();
    let depth = prev.iter().map(|e| e.depth).max().unwrap_or(0) + 1;
    let (state_before, before_group) = state::state_before(rooms, &rules, &extremities).await?;

    let auth_types = auth_types_for_event(
        &TimelineEventType::from(event.event_type),
        <&ruma::UserId>::try_from(event.sender).map_err(|_| MatrixError::invalid_param("invalid sender"))?,
        event.state_key,
        &raw(&event.content)?,
        &rules.authorization,
    )
    .map_err(MatrixError::bad_json)?;
    let auth_events = state::load_events(rooms, auth_types.iter().filter_map(|key| lookup(&state_before, key))).await?;
    let auth_event_ids: Vec<String> = auth_events.keys().cloned().collect();

    let mut object = pdu_object(&event, &prev_events, &auth_event_ids, depth)?;
    rooms.keys.hash_and_sign_event(&mut object, &rules.redaction).map_err(|err| pdu_error(&err.to_string()))?;
    let reference = ruma::signatures::reference_hash(&object, &rules).map_err(|err| pdu_error(&err.to_string()))?;
    let event_id = format!("${reference}");
    let json = serde_json::to_value(&object).map_err(|err| MatrixError::internal("pdu", err))?;
    if json.to_string().len() > MAX_PDU_BYTES {
        return Err(pdu_error("event too large"));
    }

    let pdu = Pdu::from_json(&event_id, &json, false).map_err(MatrixError::bad_json)?;
    authorise(&rules, &pdu, &auth_events, &state_before)?;

    // A state event changes the current state; so does resolving several extremities.
    let state_after = match event.state_key {
        Some(state_key) => {
            let mut state = state_before.clone();
            state.insert((event.event_type.to_owned(), state_key.to_owned()), event_id.clone());
            Some(state)
        }
        None if before_group.is_none() => Some(state_before.clone()),
        None => None,
    };
    let client_txn = event.txn.map(|(device, txn_id)| (event.sender, device, txn_id));
    let ordering = rooms
        .store
        .persist_event(PersistEvent {
            event_id: &event_id,
            room_id: event.room_id,
            depth,
            event_type: event.event_type,
            state_key: event.state_key,
            sender: event.sender,
            origin_server_ts: json["origin_server_ts"].as_i64().unwrap_or_default(),
            json: &json,
            prev_events: &prev_events,
            rejected: false,
            outlier: false,
            state_before: match before_group {
                Some(group) => StateBefore::Group(group),
                None => StateBefore::Snapshot(&state_before),
            },
            new_current_state: state_after.as_ref(),
            client_txn,
            mirror_membership: false,
        })
        .await?;
    Ok((event_id, ordering))
}

fn lookup(state: &StateMap, (event_type, state_key): &(StateEventType, String)) -> Option<String> {
    state.get(&(event_type.to_string(), state_key.clone())).cloned()
}

fn raw(content: &Value) -> ApiResult<Box<RawValue>> {
    RawValue::from_string(content.to_string()).map_err(|err| MatrixError::bad_json(err.to_string()))
}

fn pdu_error(message: &str) -> MatrixError {
    if message.contains("too large") || message.contains("larger than maximum") {
        MatrixError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", "Event too large")
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
    let mut pdu = json!({
        "room_id": event.room_id,
        "sender": event.sender,
        "type": event.event_type,
        "content": event.content,
        "prev_events": prev_events,
        "auth_events": auth_events,
        "depth": depth,
        "origin_server_ts": now,
    });
    if let Some(state_key) = event.state_key {
        pdu["state_key"] = json!(state_key);
    }
    // Before v11, `redacts` is a top-level key; from v11 it lives in the content, and
    // Synapse sends both for compatibility.
    if event.event_type == "m.room.redaction"
        && let Some(redacts) = event.content.get("redacts")
    {
        pdu["redacts"] = redacts.clone();
    }
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
