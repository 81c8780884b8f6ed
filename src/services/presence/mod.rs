//! Presence of local users (`/presence/{userId}/status`): what they set, seen by
//! themselves and by users who share a room with them. Kept in memory (it is
//! ephemeral by nature), bounded. With `presence.enabled: false` every user reads as
//! offline and updates are accepted and dropped, as in Synapse.
//!
//! Not yet: presence in `/sync` and `m.presence` EDUs to and from other servers.

use std::sync::Mutex;

use ruma::UserId;
use serde_json::{Value, json};

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
    presence: String,
    status_msg: Option<String>,
    last_active_ts: i64,
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
    pub fn set(&self, requester: &UserId, target: &UserId, presence: &str, status_msg: Option<&str>) -> ApiResult<()> {
        if requester != target {
            return Err(MatrixError::forbidden("Can only set your own presence state"));
        }
        if !["online", "unavailable", "offline"].contains(&presence) {
            return Err(MatrixError::invalid_param("presence must be online, unavailable or offline"));
        }
        if status_msg.is_some_and(|msg| msg.len() > MAX_STATUS_BYTES) {
            return Err(MatrixError::invalid_param(format!("status_msg must be at most {MAX_STATUS_BYTES} bytes")));
        }
        if !self.enabled {
            return Ok(());
        }
        let status = Status {
            presence: presence.to_owned(),
            status_msg: status_msg.map(str::to_owned),
            last_active_ts: now_ms(),
        };
        self.states.lock().unwrap_or_else(|p| p.into_inner()).insert(target.to_string(), status);
        Ok(())
    }

    /// `GET`: one's own, or of someone sharing a room with the requester.
    pub async fn get(&self, requester: &UserId, target: &UserId) -> ApiResult<Value> {
        if !self.enabled {
            return Ok(json!({ "presence": "offline" }));
        }
        if requester != target && !self.share_a_room(requester, target).await? {
            return Err(MatrixError::forbidden("You are not allowed to see their presence"));
        }
        let status = self.states.lock().unwrap_or_else(|p| p.into_inner()).get(&target.to_string()).cloned();
        let Some(status) = status else { return Ok(json!({ "presence": "offline" })) };
        let mut answer = json!({
            "presence": status.presence,
            "last_active_ago": (now_ms() - status.last_active_ts).max(0),
            "currently_active": status.presence == "online",
        });
        if let Some(message) = status.status_msg {
            answer["status_msg"] = json!(message);
        }
        Ok(answer)
    }

    async fn share_a_room(&self, a: &UserId, b: &UserId) -> ApiResult<bool> {
        let rooms_of_a = self.rooms.joined_rooms(a).await?;
        let rooms_of_b = self.rooms.joined_rooms(b).await?;
        Ok(rooms_of_a.iter().any(|room| rooms_of_b.contains(room)))
    }
}
