//! Events as clients see them (the client-server "ClientEvent" format).

use std::collections::BTreeMap;

use ruma::serde::Raw;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::error::{ApiResult, MatrixError};
use crate::store::StoredEvent;

pub fn client_event(event: &StoredEvent) -> Value {
    let pdu = &event.json;
    let mut out = json!({
        "event_id": event.event_id,
        "room_id": event.room_id,
        "type": pdu["type"],
        "sender": pdu["sender"],
        "content": pdu.get("content").cloned().unwrap_or_else(|| json!({})),
        "origin_server_ts": pdu["origin_server_ts"],
        "unsigned": unsigned(pdu),
    });
    if let Some(state_key) = pdu.get("state_key") {
        out["state_key"] = state_key.clone();
    }
    if let Some(redacts) = pdu.get("redacts") {
        out["redacts"] = redacts.clone();
    }
    out
}

/// The state an invitee sees of a room before joining (with the inviter's membership).
pub const STRIPPED_STATE_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.topic",
];

/// Stripped state for invites: only type, state key, sender and content.
pub fn stripped_event(event: &StoredEvent) -> Value {
    let pdu = &event.json;
    json!({
        "type": pdu["type"],
        "state_key": pdu["state_key"],
        "sender": pdu["sender"],
        "content": pdu["content"],
    })
}

fn unsigned(pdu: &Value) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let age = pdu["origin_server_ts"].as_i64().map(|ts| now.saturating_sub(ts).max(0)).unwrap_or_default();
    let mut unsigned = pdu.get("unsigned").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    unsigned["age"] = json!(age);
    unsigned
}

/// A stored event as clients see it, as ruma's raw event of the kind the caller needs.
pub fn raw_client_event<T>(event: &StoredEvent) -> ApiResult<Raw<T>> {
    raw_event(&client_event(event))
}

/// Event JSON as ruma's raw event of the kind the caller needs.
pub fn raw_event<T>(event: &Value) -> ApiResult<Raw<T>> {
    let json = serde_json::value::to_raw_value(event).map_err(|err| MatrixError::internal("an event", err))?;
    Ok(Raw::from_json(json))
}

/// A stored PDU's JSON text as other servers see it, without parsing more than its top
/// level, and only when it holds local annotations (`unsigned`) to leave out.
pub fn pdu_raw(json: String) -> serde_json::Result<Box<RawValue>> {
    if !json.contains("\"unsigned\"") {
        return RawValue::from_string(json);
    }
    let mut fields: BTreeMap<String, Box<RawValue>> = serde_json::from_str(&json)?;
    fields.remove("unsigned");
    serde_json::value::to_raw_value(&fields)
}

/// A stored PDU as other servers see it: local annotations (`unsigned`) stay here.
pub fn pdu_json(json: &Value) -> Value {
    let mut json = json.clone();
    if let Some(object) = json.as_object_mut() {
        object.remove("unsigned");
    }
    json
}
