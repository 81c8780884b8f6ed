//! Typing notifications: in memory, expiring, with a serial `/sync` compares.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Clients may ask for at most this long; Synapse caps the same way.
const MAX_TYPING_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct TypingState {
    /// room -> user -> when the notification expires
    rooms: HashMap<String, HashMap<String, Instant>>,
    /// room -> serial of its last change
    changed_at: HashMap<String, u64>,
    serial: u64,
}

pub struct Typing {
    state: Mutex<TypingState>,
    serial: watch::Sender<u64>,
}

impl Default for Typing {
    fn default() -> Self {
        Self { state: Mutex::new(TypingState::default()), serial: watch::channel(0).0 }
    }
}

impl Typing {
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.serial.subscribe()
    }

    pub fn serial(&self) -> u64 {
        *self.serial.borrow()
    }

    pub fn set(&self, room_id: &str, user_id: &str, typing: bool, timeout: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let users = state.rooms.entry(room_id.to_owned()).or_default();
        let changed = if typing {
            users.insert(user_id.to_owned(), Instant::now() + timeout.min(MAX_TYPING_TIMEOUT)).is_none()
        } else {
            users.remove(user_id).is_some()
        };
        if users.is_empty() {
            state.rooms.remove(room_id);
        }
        if changed {
            bump(&mut state, room_id, &self.serial);
        }
    }

    /// Drops expired notifications; run periodically so clients see typing stop.
    pub fn expire(&self) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut expired_rooms = Vec::new();
        for (room_id, users) in state.rooms.iter_mut() {
            let before = users.len();
            users.retain(|_, expires| *expires > now);
            if users.len() != before {
                expired_rooms.push(room_id.clone());
            }
        }
        state.rooms.retain(|_, users| !users.is_empty());
        for room_id in expired_rooms {
            bump(&mut state, &room_id, &self.serial);
        }
    }

    /// Who is typing in a room, and whether that changed after serial `since`.
    pub fn typing_in(&self, room_id: &str, since: u64) -> (Vec<String>, bool) {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut users: Vec<String> = state.rooms.get(room_id).map(|u| u.keys().cloned().collect()).unwrap_or_default();
        users.sort();
        let changed = state.changed_at.get(room_id).is_some_and(|at| *at > since) || since > state.serial;
        (users, changed)
    }

    /// The rooms whose typing changed after serial `since`, with who types there now,
    /// and the serial this answer is as of.
    pub fn changed_since(&self, since: u64) -> (u64, Vec<(String, Vec<String>)>) {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let rooms = state.changed_at.iter().filter(|(_, at)| **at > since).map(|(room_id, _)| {
            let mut users: Vec<String> =
                state.rooms.get(room_id).map(|u| u.keys().cloned().collect()).unwrap_or_default();
            users.sort();
            (room_id.clone(), users)
        });
        (state.serial, rooms.collect())
    }
}

fn bump(state: &mut TypingState, room_id: &str, serial: &watch::Sender<u64>) {
    state.serial += 1;
    let now = state.serial;
    state.changed_at.insert(room_id.to_owned(), now);
    // Rooms whose last change is long past need no serial: forget them to stay bounded.
    if state.changed_at.len() > 100_000 {
        let rooms = &state.rooms;
        state.changed_at.retain(|room, _| rooms.contains_key(room));
    }
    serial.send_replace(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_starts_stops_and_expires() {
        let typing = Typing::default();
        typing.set("!r:x", "@a:x", true, Duration::from_secs(30));
        let (users, changed) = typing.typing_in("!r:x", 0);
        assert_eq!((users, changed), (vec!["@a:x".to_owned()], true));
        let serial = typing.serial();
        assert!(!typing.typing_in("!r:x", serial).1);
        typing.set("!r:x", "@a:x", false, Duration::ZERO);
        assert_eq!(typing.typing_in("!r:x", serial), (vec![], true));
        assert_eq!(typing.changed_since(serial), (typing.serial(), vec![("!r:x".to_owned(), vec![])]));
        assert!(typing.changed_since(typing.serial()).1.is_empty());
        typing.set("!r:x", "@b:x", true, Duration::ZERO);
        typing.expire();
        assert!(typing.typing_in("!r:x", 0).0.is_empty());
    }
}
