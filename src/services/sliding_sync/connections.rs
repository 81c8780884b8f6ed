//! Sliding sync connections: what each connection of a device was sent, by position.
//!
//! A connection is named by its user, device and `conn_id`. Each answer records a
//! snapshot (the streams' positions and what each room was sent up to) under a new
//! `pos`; the next request names the `pos` it continues from. Snapshots live in memory
//! only: `pos` carries this process's random instance id, so after a restart every
//! `pos` is unknown (`M_UNKNOWN_POS`) and the client starts its connection again, with
//! nothing lost (a connection without `pos` is sent everything it asks for afresh).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use ruma::{OwnedRoomId, OwnedUserId};

use super::required_state::RequiredState;
use crate::error::{ApiResult, MatrixError};
use crate::services::sync::SyncToken;

/// Connections kept in memory, all users together; the least recently used goes first.
const MAX_CONNECTIONS: usize = 5_000;
/// Connections one user may keep (devices times `conn_id`s); their least recently used
/// goes first.
const MAX_CONNECTIONS_PER_USER: usize = 50;
/// Snapshots kept per connection: the one a request continued from and the newest
/// answers (a client retrying a request names the same `pos` again).
const MAX_POSITIONS: usize = 3;
/// A connection not used for this long is forgotten.
const IDLE_EXPIRY: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionKey {
    pub user: OwnedUserId,
    pub device: String,
    pub conn_id: String,
}

/// How a room was last sent on a connection.
#[derive(Debug, Clone)]
pub struct SentRoom {
    /// The event stream position its timeline and state were sent up to.
    pub up_to: i64,
    /// The membership it was sent with (an invite becomes a full room once joined).
    pub membership: String,
    /// The state it was sent with, to send what a grown request adds.
    pub required_state: Arc<RequiredState>,
}

/// What a connection had been sent when it answered with a `pos`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub token: SyncToken,
    pub rooms: HashMap<OwnedRoomId, SentRoom>,
    pub list_counts: BTreeMap<String, u64>,
    pub one_time_key_counts: BTreeMap<String, i64>,
}

struct Connection {
    positions: BTreeMap<u64, Arc<Snapshot>>,
    next: u64,
    last_used: Instant,
}

pub struct Connections {
    /// Random per process: positions of an earlier run are unknown.
    instance: u32,
    connections: Mutex<HashMap<ConnectionKey, Connection>>,
}

fn unknown_pos() -> MatrixError {
    MatrixError::new(
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN_POS",
        "Unknown or expired position; start the connection again",
    )
}

impl Connections {
    pub fn new() -> Self {
        Self { instance: rand::random(), connections: Mutex::new(HashMap::new()) }
    }

    /// The snapshot a request with `pos` continues from; `M_UNKNOWN_POS` when this
    /// process never gave that `pos` to that connection or has forgotten it.
    pub fn resume(&self, key: &ConnectionKey, pos: &str) -> ApiResult<(u64, Arc<Snapshot>)> {
        let number = self.parse_pos(pos).ok_or_else(unknown_pos)?;
        let mut connections = self.lock();
        let connection = connections.get_mut(key).ok_or_else(unknown_pos)?;
        if connection.last_used.elapsed() > IDLE_EXPIRY {
            connections.remove(key);
            return Err(unknown_pos());
        }
        connection.last_used = Instant::now();
        let snapshot = connection.positions.get(&number).cloned().ok_or_else(unknown_pos)?;
        // The client has what `pos` was given with, so the answers before it are not
        // asked for again.
        connection.positions.retain(|n, _| *n >= number);
        Ok((number, snapshot))
    }

    /// Records what an answer sent and returns its `pos`. Without `from` the connection
    /// starts again.
    pub fn record(&self, key: &ConnectionKey, from: Option<u64>, snapshot: Snapshot) -> String {
        let mut connections = self.lock();
        if from.is_none() || !connections.contains_key(key) {
            make_room_for(&mut connections, key);
            connections
                .insert(key.clone(), Connection { positions: BTreeMap::new(), next: 1, last_used: Instant::now() });
        }
        let Some(connection) = connections.get_mut(key) else {
            return self.format_pos(0);
        };
        let number = connection.next;
        connection.next += 1;
        connection.positions.insert(number, Arc::new(snapshot));
        while connection.positions.len() > MAX_POSITIONS {
            // The newest answers and the one continued from stay.
            let drop = connection.positions.keys().copied().find(|n| Some(*n) != from);
            match drop {
                Some(n) => connection.positions.remove(&n),
                None => break,
            };
        }
        connection.last_used = Instant::now();
        self.format_pos(number)
    }

    /// Connections held now (for the memory figures).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionKey, Connection>> {
        self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn format_pos(&self, number: u64) -> String {
        format!("{:08x}_{number}", self.instance)
    }

    fn parse_pos(&self, pos: &str) -> Option<u64> {
        let (instance, number) = pos.split_once('_')?;
        (u32::from_str_radix(instance, 16).ok()? == self.instance).then_some(())?;
        number.parse().ok()
    }
}

/// Forgets idle connections, then the user's and everyone's least recently used ones
/// while over the bounds, before `key` is added.
fn make_room_for(connections: &mut HashMap<ConnectionKey, Connection>, key: &ConnectionKey) {
    connections.retain(|_, c| c.last_used.elapsed() <= IDLE_EXPIRY);
    let least_recent = |connections: &HashMap<ConnectionKey, Connection>, user: Option<&OwnedUserId>| {
        connections
            .iter()
            .filter(|(k, _)| user.is_none_or(|user| &k.user == user) && *k != key)
            .min_by_key(|(_, c)| c.last_used)
            .map(|(k, _)| k.clone())
    };
    while connections.keys().filter(|k| k.user == key.user && *k != key).count() >= MAX_CONNECTIONS_PER_USER {
        match least_recent(connections, Some(&key.user)) {
            Some(oldest) => connections.remove(&oldest),
            None => break,
        };
    }
    while connections.len() >= MAX_CONNECTIONS {
        match least_recent(connections, None) {
            Some(oldest) => connections.remove(&oldest),
            None => break,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(conn_id: &str) -> ConnectionKey {
        ConnectionKey {
            user: OwnedUserId::try_from("@a:example.org").unwrap(),
            device: "D".into(),
            conn_id: conn_id.into(),
        }
    }

    #[test]
    fn positions_resume_until_superseded_and_are_unknown_elsewhere() {
        let connections = Connections::new();
        let first = connections.record(&key("room-list"), None, Snapshot::default());
        let (number, _) = connections.resume(&key("room-list"), &first).unwrap();
        let second = connections.record(&key("room-list"), Some(number), Snapshot::default());
        // A retry of the same request names the same position again.
        assert!(connections.resume(&key("room-list"), &first).is_ok());
        assert!(connections.resume(&key("encryption"), &first).is_err());
        let (number, _) = connections.resume(&key("room-list"), &second).unwrap();
        assert!(connections.resume(&key("room-list"), &first).is_err(), "superseded");
        connections.record(&key("room-list"), Some(number), Snapshot::default());
        // Another process (a restart) never gave this position.
        assert!(Connections::new().resume(&key("room-list"), &second).is_err());
        for garbage in ["", "x", "_", "00000000_", "zz_1"] {
            assert!(connections.resume(&key("room-list"), garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn a_user_keeps_a_bounded_number_of_connections() {
        let connections = Connections::new();
        for i in 0..MAX_CONNECTIONS_PER_USER + 10 {
            connections.record(&key(&format!("c{i}")), None, Snapshot::default());
        }
        assert_eq!(connections.len(), MAX_CONNECTIONS_PER_USER);
    }

    #[test]
    fn a_connection_keeps_a_bounded_number_of_positions() {
        let connections = Connections::new();
        let mut from = None;
        let mut positions = Vec::new();
        for _ in 0..10 {
            positions.push(connections.record(&key("c"), from, Snapshot::default()));
            from = Some(1);
        }
        let known = positions.iter().filter(|p| connections.resume(&key("c"), p).is_ok()).count();
        assert!(known <= MAX_POSITIONS, "{known}");
    }
}
