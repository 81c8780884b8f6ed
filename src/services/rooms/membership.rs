//! Membership changes: join, invite, leave, kick, ban, unban. The auth rules decide what
//! is allowed; this module builds the member events.

use serde_json::{Value, json};

use super::{NewEvent, Rooms};
use crate::error::{ApiResult, MatrixError};
use crate::services::profiles::Profile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Join,
    Invite,
    Leave,
    Kick,
    Ban,
    Unban,
}

/// One membership change: `sender` changes `target`'s membership in `room_id`.
pub struct MembershipChange<'a> {
    pub room_id: &'a str,
    pub sender: &'a str,
    pub target: &'a str,
    pub change: Change,
    pub reason: Option<&'a str>,
    /// The target's global profile, copied into joins and invites.
    pub target_profile: Option<&'a Profile>,
    /// Extra content keys (`is_direct`).
    pub extra: Option<Value>,
}

impl<'a> MembershipChange<'a> {
    pub fn new(room_id: &'a str, sender: &'a str, target: &'a str, change: Change) -> Self {
        Self { room_id, sender, target, change, reason: None, target_profile: None, extra: None }
    }
}

impl Rooms {
    /// Sends a member event for `target` with `sender`'s authority. Joins and invites
    /// carry the target's global display name and avatar, as the spec asks.
    pub async fn change_membership(&self, request: MembershipChange<'_>) -> ApiResult<String> {
        let MembershipChange { room_id, sender, target, change, reason, target_profile, extra } = request;
        let current = self.store.membership(room_id, target).await?;
        let current = current.as_ref().map(|m| m.membership.as_str());
        let membership = match change {
            Change::Join => "join",
            Change::Invite => "invite",
            Change::Leave | Change::Kick | Change::Unban => "leave",
            Change::Ban => "ban",
        };
        match (change, current) {
            (Change::Leave, None | Some("leave")) => {
                return Err(MatrixError::forbidden("You are not a member of this room"));
            }
            (Change::Kick, None | Some("leave") | Some("ban")) => {
                return Err(MatrixError::forbidden("The user is not in the room"));
            }
            (Change::Unban, current) if current != Some("ban") => {
                return Err(MatrixError::forbidden("The user is not banned"));
            }
            (Change::Invite, Some("join")) => return Err(MatrixError::forbidden("The user is already in the room")),
            (Change::Invite, Some("ban")) => return Err(MatrixError::forbidden("The user is banned from the room")),
            (Change::Join, Some("join")) => {
                // Joining again is a no-op in Synapse unless the profile changed; keep it simple.
                if let Some(existing) = self.store.membership(room_id, target).await? {
                    return Ok(existing.event_id);
                }
            }
            _ => {}
        }
        let mut content = json!({ "membership": membership });
        if matches!(change, Change::Join | Change::Invite)
            && let Some(profile) = target_profile
        {
            for key in ["displayname", "avatar_url"] {
                if let Some(value) = profile.get(key) {
                    content[key] = value.clone();
                }
            }
        }
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        if let Some(Value::Object(extra)) = extra {
            for (key, value) in extra {
                content[key] = value;
            }
        }
        self.send(NewEvent {
            room_id,
            sender,
            event_type: "m.room.member",
            state_key: Some(target),
            content,
            txn: None,
        })
        .await
    }
}
