//! Presence of local users (`/presence/{userId}/status`): what they set, seen by
//! themselves and by users who share a room with them. Kept in memory (it is
//! ephemeral by nature), bounded. With `presence.enabled: false` every user reads as
//! offline and updates are accepted and dropped, as in Synapse.
//!
//! Changes are numbered, for application services that receive them.
//!
//! Not yet: presence in `/sync` and `m.presence` EDUs to and from other servers.

use std::sync::Mutex;
use std::time::Duration;

use ruma::UserId;
use ruma::presence::PresenceState;

use super::bounded::BoundedMap;
use super::rooms::Rooms;
use crate::error::{ApiResult, MatrixError};
use crate::store::now_ms;
use std::sync::Arc;
use tokio::sync::watch;

/// Users whose presence is remembered, at most (the oldest settings are forgotten).
const MAX_TRACKED_USERS: usize = 100_000;
/// Status messages are bounded like other short texts.
const MAX_STATUS_BYTES: usize = 1024;

#[derive(Clone)]
struct Status {
    presence: PresenceState,
    status_msg: Option<String>,
    last_active_ts: i64,
    /// When it was set, on the serial application services follow.
    serial: u64,
}

impl Status {
    fn as_seen(&self) -> UserPresence {
        let ago = u64::try_from(now_ms() - self.last_active_ts).unwrap_or_default();
        UserPresence {
            currently_active: Some(self.presence == PresenceState::Online),
            presence: self.presence.clone(),
            status_msg: self.status_msg.clone(),
            last_active_ago: Some(Duration::from_millis(ago)),
        }
    }
}

/// A user's presence as others read it.
#[derive(Debug, Clone)]
pub struct UserPresence {
    pub presence: PresenceState,
    pub status_msg: Option<String>,
    /// Since the user last set it; unknown for users who never did.
    pub last_active_ago: Option<Duration>,
    pub currently_active: Option<bool>,
}

impl UserPresence {
    fn offline() -> Self {
        Self { presence: PresenceState::Offline, status_msg: None, last_active_ago: None, currently_active: None }
    }
}

pub struct Presence {
    rooms: Arc<Rooms>,
    enabled: bool,
    states: Mutex<BoundedMap<String, Status>>,
    /// Bumped on every change, under the `states` lock.
    serial: watch::Sender<u64>,
}

impl Presence {
    pub fn new(rooms: Arc<Rooms>, enabled: bool) -> Self {
        let states = Mutex::new(BoundedMap::new(MAX_TRACKED_USERS));
        Self { rooms, enabled, states, serial: watch::channel(0).0 }
    }

    /// `PUT`: only one's own presence, `online`, `unavailable` or `offline`.
    pub fn set(
        &self,
        requester: &UserId,
        target: &UserId,
        presence: &PresenceState,
        status_msg: Option<&str>,
    ) -> ApiResult<()> {
        if requester != target {
            return Err(MatrixError::forbidden("Can only set your own presence state"));
        }
        if !matches!(presence, PresenceState::Online | PresenceState::Unavailable | PresenceState::Offline) {
            return Err(MatrixError::invalid_param("presence must be online, unavailable or offline"));
        }
        if status_msg.is_some_and(|msg| msg.len() > MAX_STATUS_BYTES) {
            return Err(MatrixError::invalid_param(format!("status_msg must be at most {MAX_STATUS_BYTES} bytes")));
        }
        if !self.enabled {
            return Ok(());
        }
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let serial = *self.serial.borrow() + 1;
        let status_msg = status_msg.map(str::to_owned);
        let status = Status { presence: presence.clone(), status_msg, last_active_ts: now_ms(), serial };
        states.insert(target.to_string(), status);
        self.serial.send_replace(serial);
        Ok(())
    }

    /// `GET`: one's own, or of someone sharing a room with the requester.
    pub async fn get(&self, requester: &UserId, target: &UserId) -> ApiResult<UserPresence> {
        if !self.enabled {
            return Ok(UserPresence::offline());
        }
        if requester != target && !self.share_a_room(requester, target).await? {
            return Err(MatrixError::forbidden("You are not allowed to see their presence"));
        }
        let status = self.states.lock().unwrap_or_else(|p| p.into_inner()).get(&target.to_string()).cloned();
        Ok(status.map_or_else(UserPresence::offline, |status| status.as_seen()))
    }

    /// Wakes when someone's presence changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.serial.subscribe()
    }

    pub fn serial(&self) -> u64 {
        *self.serial.borrow()
    }

    /// Whose presence changed after serial `since`, as it is now, and the serial this
    /// is as of: what application services are pushed.
    pub fn changed_since(&self, since: u64) -> (u64, Vec<(String, UserPresence)>) {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let changed = states.iter().filter(|(_, status)| status.serial > since);
        let changed = changed.map(|(user, status)| (user.clone(), status.as_seen())).collect();
        (*self.serial.borrow(), changed)
    }

    async fn share_a_room(&self, a: &UserId, b: &UserId) -> ApiResult<bool> {
        let rooms_of_a = self.rooms.joined_rooms(a).await?;
        let rooms_of_b = self.rooms.joined_rooms(b).await?;
        Ok(rooms_of_a.iter().any(|room| rooms_of_b.contains(room)))
    }
}
