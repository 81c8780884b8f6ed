//! The shape every event must have, local or remote: the spec's size limits on `type`
//! and `state_key` (255 bytes), no empty type, and no U+0000 where a value is stored as
//! text of its own. Local events also get the content checks Synapse makes on the state
//! events clients show.

use serde_json::Value;

/// The spec's limit on an event's `type` and `state_key`.
pub const MAX_ID_BYTES: usize = 255;

/// Why an event's type or state key does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("The event type may not be empty")]
    EmptyType,
    #[error("The event type is longer than {MAX_ID_BYTES} bytes")]
    TypeTooLong,
    #[error("The state key is longer than {MAX_ID_BYTES} bytes")]
    StateKeyTooLong,
    #[error("The event type and state key may not contain U+0000")]
    Nul,
}

/// A well-known state event whose field has the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event_type}: `{field}` must be a string")]
pub struct ContentError {
    pub event_type: String,
    pub field: &'static str,
}

/// Checks an event's type and state key; the reason when they do not fit.
pub fn check_type_and_state_key(event_type: &str, state_key: Option<&str>) -> Result<(), ShapeError> {
    if event_type.is_empty() {
        return Err(ShapeError::EmptyType);
    }
    if event_type.len() > MAX_ID_BYTES {
        return Err(ShapeError::TypeTooLong);
    }
    if let Some(state_key) = state_key
        && state_key.len() > MAX_ID_BYTES
    {
        return Err(ShapeError::StateKeyTooLong);
    }
    if event_type.contains('\0') || state_key.is_some_and(|k| k.contains('\0')) {
        return Err(ShapeError::Nul);
    }
    Ok(())
}

/// The content checks of well-known state events a local client sends.
pub fn check_local_content(event_type: &str, content: &Value) -> Result<(), ContentError> {
    let must_be_string = |field: &'static str| match content.get(field) {
        None | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(ContentError { event_type: event_type.to_owned(), field }),
    };
    match event_type {
        "m.room.name" => must_be_string("name"),
        "m.room.topic" => must_be_string("topic"),
        "m.room.avatar" => must_be_string("url"),
        "m.room.canonical_alias" => must_be_string("alias"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use ruma::events::room::name::RoomNameEventContent;

    use super::*;
    use crate::services::rooms::pdu::fixture::json_text;

    #[test]
    fn types_and_state_keys_are_bounded_and_non_empty() {
        assert!(check_type_and_state_key("m.room.message", None).is_ok());
        assert!(check_type_and_state_key(&"t".repeat(255), Some(&"k".repeat(255))).is_ok());
        assert!(check_type_and_state_key("", None).is_err());
        assert!(check_type_and_state_key(&"t".repeat(256), None).is_err());
        assert!(check_type_and_state_key("m.x", Some(&"k".repeat(256))).is_err());
        assert!(check_type_and_state_key("m.\0", None).is_err());
        assert!(check_type_and_state_key("m.x", Some("\0")).is_err());
    }

    #[test]
    fn known_state_content_is_type_checked() {
        let name = serde_json::to_value(RoomNameEventContent::new("Room".to_owned())).unwrap();
        assert!(check_local_content("m.room.name", &name).is_ok());
        assert!(check_local_content("m.room.name", &json_text("{}")).is_ok());
        assert!(check_local_content("m.room.name", &json_text(r#"{ "name": 5 }"#)).is_err());
        assert!(check_local_content("m.room.topic", &json_text(r#"{ "topic": ["x"] }"#)).is_err());
        assert!(check_local_content("org.example", &json_text(r#"{ "name": 5 }"#)).is_ok());
    }
}
