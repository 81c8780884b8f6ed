//! Membership changes: join, invite, leave, kick, ban, unban. The auth rules decide what
//! is allowed; this module builds the member events.

use ruma::events::room::member::{MembershipState, RoomMemberEventContent};
use serde_json::Value;

use super::{NewEvent, Rooms};
use crate::error::{ApiResult, MatrixError};

/// A user's global profile (`displayname`, `avatar_url`, custom fields), which member
/// events copy. Defined here, below `services::profiles` (which owns profiles), since
/// rooms only carries it.
pub type Profile = std::collections::BTreeMap<String, Value>;

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
    /// An invite to a direct chat.
    pub is_direct: bool,
}

impl<'a> MembershipChange<'a> {
    pub fn new(room_id: &'a str, sender: &'a str, target: &'a str, change: Change) -> Self {
        Self { room_id, sender, target, change, reason: None, target_profile: None, is_direct: false }
    }
}

impl Rooms {
    /// Sends a member event for `target` with `sender`'s authority. Joins and invites
    /// carry the target's global display name and avatar, as the spec asks.
    pub async fn change_membership(&self, request: MembershipChange<'_>) -> ApiResult<String> {
        let MembershipChange { room_id, sender, target, change, reason, target_profile, is_direct } = request;
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
        let mut member = RoomMemberEventContent::new(MembershipState::from(membership));
        if matches!(change, Change::Join | Change::Invite)
            && let Some(profile) = target_profile
        {
            member.displayname = profile.get("displayname").and_then(Value::as_str).map(str::to_owned);
            member.avatar_url = profile.get("avatar_url").and_then(Value::as_str).map(Into::into);
        }
        member.reason = reason.map(str::to_owned);
        member.is_direct = is_direct.then_some(true);
        let content = serde_json::to_value(member).map_err(|err| MatrixError::internal("a member event", err))?;
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
