//! PDUs as ruma's state resolution and auth rules see them.

use ruma::events::TimelineEventType;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId};
use serde_json::Value;
use serde_json::value::RawValue;

/// A parsed PDU. Built from stored or incoming JSON; fields the auth rules need are
/// checked for type here so a malformed event is an error, never a panic.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    /// From v12 a create event has no `room_id`: the room id is derived from its event
    /// id, and `room_id_in_event` is false.
    pub room_id: OwnedRoomId,
    pub room_id_in_event: bool,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub rejected: bool,
}

/// Why stored or incoming JSON is not a PDU the auth rules can read.
#[derive(Debug, thiserror::Error)]
pub enum PduFormatError {
    #[error("missing or invalid `{0}`")]
    Field(&'static str),
    #[error("bad id in `{0}`")]
    BadId(&'static str),
    #[error("invalid `{0}`")]
    Invalid(&'static str),
    #[error("missing `{0}`")]
    Missing(&'static str),
    #[error("{0}")]
    Id(#[from] ruma::IdParseError),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

impl Pdu {
    pub fn from_json(event_id: &str, json: &Value, rejected: bool) -> Result<Self, PduFormatError> {
        let text = |field: &'static str| json[field].as_str().ok_or(PduFormatError::Field(field));
        let ids = |field: &'static str| -> Result<Vec<OwnedEventId>, PduFormatError> {
            json[field]
                .as_array()
                .ok_or(PduFormatError::Field(field))?
                .iter()
                .map(|id| {
                    id.as_str().and_then(|id| OwnedEventId::try_from(id).ok()).ok_or(PduFormatError::BadId(field))
                })
                .collect()
        };
        let ts =
            json["origin_server_ts"].as_u64().and_then(UInt::new).ok_or(PduFormatError::Invalid("origin_server_ts"))?;
        let redacts = json["redacts"].as_str().or_else(|| json["content"]["redacts"].as_str());
        let room_id_in_event = json.get("room_id").is_some();
        let room_id = match json.get("room_id") {
            None if json["type"] == "m.room.create" => format!("!{}", event_id.trim_start_matches('$')),
            _ => text("room_id")?.to_owned(),
        };
        Ok(Self {
            event_id: OwnedEventId::try_from(event_id)?,
            room_id: OwnedRoomId::try_from(room_id)?,
            room_id_in_event,
            sender: OwnedUserId::try_from(text("sender")?)?,
            origin_server_ts: MilliSecondsSinceUnixEpoch(ts),
            kind: TimelineEventType::from(text("type")?),
            content: RawValue::from_string(json.get("content").ok_or(PduFormatError::Missing("content"))?.to_string())?,
            state_key: json
                .get("state_key")
                .map(|k| k.as_str().map(str::to_owned).ok_or(PduFormatError::Invalid("state_key")))
                .transpose()?,
            prev_events: ids("prev_events")?,
            auth_events: ids("auth_events")?,
            redacts: redacts.and_then(|id| OwnedEventId::try_from(id).ok()),
            rejected,
        })
    }
}

impl Pdu {
    /// From v12 the room id names the create event, which is no longer an auth event; its
    /// id, for rooms whose ids carry no server name.
    pub fn create_event_id(&self) -> Option<String> {
        if self.room_id.server_name().is_some() {
            return None;
        }
        Some(format!("${}", self.room_id.as_str().trim_start_matches('!')))
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id_in_event.then_some(&*self.room_id)
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        self.rejected
    }
}

/// PDUs for unit tests, built from typed fields rather than JSON literals.
#[cfg(test)]
pub mod fixture {
    use serde::Serialize;
    use serde_json::{Map, Value};

    /// A PDU's fields; `to_value` gives its JSON as a server would send it.
    #[derive(Serialize)]
    pub struct PduFixture<'a> {
        pub room_id: &'a str,
        pub sender: &'a str,
        #[serde(rename = "type")]
        pub kind: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub state_key: Option<&'a str>,
        pub content: Value,
        pub origin_server_ts: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub depth: Option<u64>,
        pub prev_events: Vec<&'a str>,
        pub auth_events: Vec<&'a str>,
    }

    impl PduFixture<'_> {
        /// An `m.room.message` in `!r:x` by `@a:x` with empty content and no parents.
        pub fn message() -> Self {
            Self {
                room_id: "!r:x",
                sender: "@a:x",
                kind: "m.room.message",
                state_key: None,
                content: Value::Object(Map::new()),
                origin_server_ts: 1,
                depth: None,
                prev_events: Vec::new(),
                auth_events: Vec::new(),
            }
        }

        pub fn to_value(&self) -> Value {
            serde_json::to_value(self).expect("a fixture serializes")
        }
    }

    /// A JSON value written as JSON text (for shapes no type has: hostile input).
    pub fn json_text(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture JSON parses")
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{PduFixture, json_text};
    use super::*;

    #[test]
    fn hostile_pdus_are_errors_not_panics() {
        let good = PduFixture::message().to_value();
        assert!(Pdu::from_json("$e", &good, false).is_ok());
        for (field, value) in [
            ("sender", Value::from(5)),
            ("origin_server_ts", Value::from(-1)),
            ("origin_server_ts", Value::from(1e300)),
            ("prev_events", Value::from("x")),
            ("auth_events", json_text("[1]")),
            ("state_key", json_text("{}")),
            ("room_id", Value::from("not a room")),
        ] {
            let mut bad = good.clone();
            bad[field] = value;
            assert!(Pdu::from_json("$e", &bad, false).is_err(), "{field}");
        }
        assert!(Pdu::from_json("$e", &Value::Null, false).is_err());
    }
}
