//! Presence of local users (`/presence/{userId}/status`): what they set, seen by
//! themselves and by users who share a room with them. Kept in memory (it is
//! ephemeral by nature), bounded. With `presence.enabled: false` every user reads as
//! offline and updates are accepted and dropped, as in Synapse.
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

/// Users whose presence is remembered, at most (the oldest settings are forgotten).
const MAX_TRACKED_USERS: usize = 100_000;
/// Status messages are bounded like other short texts.
const MAX_STATUS_BYTES: usize = 1024;

#[derive(Clone)]
struct Status {
    presence: PresenceState,
    status_msg: Option<String>,
    last_active_ts: i64,
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
}

impl Presence {
    pub fn new(rooms: Arc<Rooms>, enabled: bool) -> Self {
        Self { rooms, enabled, states: Mutex::new(BoundedMap::new(MAX_TRACKED_USERS)) }
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
        let status =
            Status { presence: presence.clone(), status_msg: status_msg.map(str::to_owned), last_active_ts: now_ms() };
        self.states.lock().unwrap_or_else(|p| p.into_inner()).insert(target.to_string(), status);
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
        let Some(status) = status else { return Ok(UserPresence::offline()) };
        let ago = u64::try_from(now_ms() - status.last_active_ts).unwrap_or_default();
        Ok(UserPresence {
            currently_active: Some(status.presence == PresenceState::Online),
            presence: status.presence,
            status_msg: status.status_msg,
            last_active_ago: Some(Duration::from_millis(ago)),
        })
    }

    async fn share_a_room(&self, a: &UserId, b: &UserId) -> ApiResult<bool> {
        let rooms_of_a = self.rooms.joined_rooms(a).await?;
        let rooms_of_b = self.rooms.joined_rooms(b).await?;
        Ok(rooms_of_a.iter().any(|room| rooms_of_b.contains(room)))
    }
}
