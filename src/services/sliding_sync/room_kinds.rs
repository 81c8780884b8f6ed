//! What list filters ask of a room that never changes back once known: its type (from
//! its create event) and that it is encrypted (encryption cannot be turned off). Kept so
//! that a filtered list over a thousand rooms (Element X leaves spaces out of its room
//! list) does not read one or two state events per room on every answer.

use std::collections::HashMap;
use std::sync::Mutex;

/// Rooms kept at most; all are forgotten when more are known (a few MB at most).
const MAX_KEPT_ROOMS: usize = 100_000;

#[derive(Default)]
pub(super) struct RoomKinds {
    kept: Mutex<HashMap<String, Kind>>,
}

#[derive(Clone, Default)]
struct Kind {
    /// `Some(type)` once read (`Some(None)`: an ordinary room).
    room_type: Option<Option<String>>,
    encrypted: bool,
}

impl RoomKinds {
    /// The room's type, if read before.
    pub(super) fn room_type(&self, room_id: &str) -> Option<Option<String>> {
        self.lock().get(room_id).and_then(|kind| kind.room_type.clone())
    }

    pub(super) fn set_room_type(&self, room_id: &str, room_type: Option<String>) {
        self.update(room_id, |kind| kind.room_type = Some(room_type));
    }

    /// Whether the room was seen encrypted before (`false` says nothing).
    pub(super) fn known_encrypted(&self, room_id: &str) -> bool {
        self.lock().get(room_id).is_some_and(|kind| kind.encrypted)
    }

    pub(super) fn set_encrypted(&self, room_id: &str) {
        self.update(room_id, |kind| kind.encrypted = true);
    }

    fn update(&self, room_id: &str, change: impl FnOnce(&mut Kind)) {
        let mut kept = self.lock();
        if kept.len() >= MAX_KEPT_ROOMS && !kept.contains_key(room_id) {
            kept.clear();
        }
        change(kept.entry(room_id.to_owned()).or_default());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kind>> {
        self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
