//! Room event filters (the `RoomEventFilter` of the client-server API), as far as
//! kith applies them.

use serde::Deserialize;

use crate::error::{ApiResult, MatrixError};
use crate::store::StoredEvent;

/// The `types` / `not_types` / `senders` / `not_senders` part of a room event filter.
#[derive(Default, Deserialize)]
pub struct EventFilter {
    #[serde(default)]
    types: Option<Vec<String>>,
    #[serde(default)]
    not_types: Vec<String>,
    #[serde(default)]
    senders: Option<Vec<String>>,
    #[serde(default)]
    not_senders: Vec<String>,
}

impl EventFilter {
    pub fn parse(json: Option<&str>) -> ApiResult<Self> {
        match json {
            Some(text) => {
                serde_json::from_str(text).map_err(|err| MatrixError::bad_json(format!("Invalid filter: {err}")))
            }
            None => Ok(Self::default()),
        }
    }

    pub fn matches(&self, event: &StoredEvent) -> bool {
        let event_type = event.json["type"].as_str().unwrap_or_default();
        let sender = event.json["sender"].as_str().unwrap_or_default();
        let type_ok = |pattern: &String| glob_match(pattern, event_type);
        self.types.as_ref().is_none_or(|types| types.iter().any(type_ok))
            && !self.not_types.iter().any(type_ok)
            && self.senders.as_ref().is_none_or(|senders| senders.iter().any(|s| s == sender))
            && !self.not_senders.iter().any(|s| s == sender)
    }
}

/// Filter type patterns may end in `*`.
fn glob_match(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}
