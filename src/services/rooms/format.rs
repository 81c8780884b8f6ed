//! Events as clients see them (the client-server "ClientEvent" format).

use std::collections::BTreeMap;

use ruma::serde::Raw;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{ApiResult, MatrixError};
use crate::store::StoredEvent;

/// A stored event as clients see it (the spec's ClientEvent), borrowed from the stored
/// JSON and serialised from there: nothing is copied into an intermediate `Value`.
#[derive(Serialize)]
pub struct ClientEvent<'a> {
    event_id: &'a str,
    room_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a Value,
    sender: &'a Value,
    content: &'a Value,
    origin_server_ts: &'a Value,
    unsigned: Unsigned<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_key: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redacts: Option<&'a Value>,
}

static EMPTY_OBJECT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| Value::Object(Map::new()));

impl<'a> ClientEvent<'a> {
    pub fn of(event: &'a StoredEvent) -> Self {
        let pdu = &event.json;
        Self {
            event_id: &event.event_id,
            room_id: &event.room_id,
            kind: &pdu["type"],
            sender: &pdu["sender"],
            content: pdu.get("content").unwrap_or(&EMPTY_OBJECT),
            origin_server_ts: &pdu["origin_server_ts"],
            unsigned: Unsigned::of(pdu),
            state_key: pdu.get("state_key"),
            redacts: pdu.get("redacts"),
        }
    }
}

/// The stored `unsigned` with the event's age as of now.
struct Unsigned<'a> {
    stored: Option<&'a Map<String, Value>>,
    age: i64,
}

impl<'a> Unsigned<'a> {
    fn of(pdu: &'a Value) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let age = pdu["origin_server_ts"].as_i64().map(|ts| now.saturating_sub(ts).max(0)).unwrap_or_default();
        Self { stored: pdu.get("unsigned").and_then(Value::as_object), age }
    }
}

impl Serialize for Unsigned<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let stored = self.stored.into_iter().flatten().filter(|(key, _)| *key != "age");
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in stored {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("age", &self.age)?;
        map.end()
    }
}

/// A stored event as clients see it, as JSON to amend (bundled relations, redactions).
pub fn client_event(event: &StoredEvent) -> Value {
    serde_json::to_value(ClientEvent::of(event)).unwrap_or_default()
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
#[derive(Serialize)]
pub struct StrippedEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a Value,
    state_key: &'a Value,
    sender: &'a Value,
    content: &'a Value,
}

impl<'a> StrippedEvent<'a> {
    pub fn of(event: &'a StoredEvent) -> Self {
        let pdu = &event.json;
        Self { kind: &pdu["type"], state_key: &pdu["state_key"], sender: &pdu["sender"], content: &pdu["content"] }
    }
}

/// Stripped state for invites, as JSON (kept with the invite, compared by type).
pub fn stripped_event(event: &StoredEvent) -> Value {
    serde_json::to_value(StrippedEvent::of(event)).unwrap_or_default()
}

/// A stored event as clients see it, as ruma's raw event of the kind the caller needs.
pub fn raw_client_event<T>(event: &StoredEvent) -> ApiResult<Raw<T>> {
    raw_event(&ClientEvent::of(event))
}

/// Event JSON as ruma's raw event of the kind the caller needs.
pub fn raw_event<T>(event: &impl serde::Serialize) -> ApiResult<Raw<T>> {
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
