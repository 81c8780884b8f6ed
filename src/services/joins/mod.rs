//! Membership across servers: joining and leaving rooms hosted elsewhere
//! (`make_join`/`send_join`, `make_leave`/`send_leave` as the joining side), serving
//! those requests for rooms this server is in ([`resident`]), and invites both ways.

mod invite;
mod join;
mod leave;
mod resident;
pub use resident::SendJoinAnswer;
pub mod resync;

use std::sync::Arc;

use axum::http::StatusCode;
use ruma::canonical_json::CanonicalJsonObject;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedServerName, RoomId, RoomVersionId, UserId};
use serde_json::Value;

use super::federation::FederationClient;
use super::inbound::Inbound;
use super::profiles::Profiles;
use super::rooms::Rooms;
use super::rooms::membership::{Change, MembershipChange};
use super::sender::Sender;
use super::server_keys::ServerKeys;
use crate::config::JOINABLE_ROOM_VERSIONS;
use crate::error::{ApiResult, MatrixError};
use crate::store::Store;

/// Stripped state events kept from an invite, at most.
const MAX_INVITE_STATE: usize = 50;

pub struct Joins {
    store: Arc<Store>,
    server_name: OwnedServerName,
    server_keys: Arc<ServerKeys>,
    client: Arc<FederationClient>,
    rooms: Arc<Rooms>,
    profiles: Arc<Profiles>,
    inbound: Arc<Inbound>,
    sender: Arc<Sender>,
    /// `experimental_features.faster_joins`: join other servers' rooms with a partial state.
    faster_joins: bool,
    /// Wakes the resync worker when a partial join lands.
    resync_wanted: Arc<tokio::sync::Notify>,
}

/// A membership change a local user asks for.
pub struct MembershipRequest<'a> {
    pub room_id: &'a RoomId,
    pub sender: &'a UserId,
    pub change: Change,
    /// Whose membership changes; the sender's own for a leave.
    pub target: Option<&'a UserId>,
    pub reason: Option<&'a str>,
}

impl Joins {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        server_name: OwnedServerName,
        server_keys: Arc<ServerKeys>,
        client: Arc<FederationClient>,
        rooms: Arc<Rooms>,
        profiles: Arc<Profiles>,
        inbound: Arc<Inbound>,
        sender: Arc<Sender>,
        faster_joins: bool,
    ) -> Self {
        let resync_wanted = Arc::new(tokio::sync::Notify::new());
        Self { store, server_name, server_keys, client, rooms, profiles, inbound, sender, faster_joins, resync_wanted }
    }

    /// Invites, kicks, bans, unbans and leaves by local users: invites of other servers'
    /// users go through their server, leaves of rooms hosted elsewhere through it.
    pub async fn change_membership(&self, request: MembershipRequest<'_>) -> ApiResult<()> {
        let MembershipRequest { room_id, sender, change, target, reason } = request;
        if change == Change::Leave {
            return self.leave_room(sender, room_id, reason).await;
        }
        if change == Change::Invite {
            self.refuse_blocked(room_id.as_str()).await?;
        }
        self.rooms.room_version(room_id.as_str()).await?;
        let target = target.ok_or_else(|| MatrixError::missing_param("user_id is required"))?;
        let is_local = target.server_name() == self.server_name;
        if change == Change::Invite && !is_local {
            let current = self.rooms.membership_of(room_id.as_str(), target.as_str()).await?;
            match current.as_ref().map(|m| m.membership.as_str()) {
                Some("join") => return Err(MatrixError::forbidden("The user is already in the room")),
                Some("ban") => return Err(MatrixError::forbidden("The user is banned from the room")),
                _ => {}
            }
            return self.invite_remote(room_id.as_str(), sender.as_str(), target, reason, false).await;
        }
        let profile = if change == Change::Invite {
            Some(self.profiles.get(target).await.map_err(|_| MatrixError::not_found("Unknown user"))?)
        } else {
            None
        };
        let request = MembershipChange {
            reason,
            target_profile: profile.as_ref(),
            ..MembershipChange::new(room_id.as_str(), sender.as_str(), target.as_str(), change)
        };
        self.rooms.change_membership(request).await?;
        Ok(())
    }

    /// A room an admin blocked takes no new members or invites through this server.
    pub(super) async fn refuse_blocked(&self, room_id: &str) -> ApiResult<()> {
        if self.store.is_room_blocked(room_id).await? {
            return Err(MatrixError::forbidden("This room has been blocked on this server"));
        }
        Ok(())
    }

    /// Completes a template from another server with our origin, time, hashes and
    /// signature; returns the event id and the signed event.
    fn sign_template(&self, event: Value, rules: &RoomVersionRules) -> ApiResult<(String, Value)> {
        let mut event = event;
        let Some(fields) = event.as_object_mut() else {
            return Err(MatrixError::bad_json("The event template is not an object"));
        };
        for key in ["hashes", "signatures", "unsigned", "event_id"] {
            fields.remove(key);
        }
        fields.insert("origin".into(), self.server_name.as_str().into());
        fields.insert("origin_server_ts".into(), crate::store::now_ms().into());
        let mut object: CanonicalJsonObject =
            serde_json::from_value(event).map_err(|e| MatrixError::bad_json(format!("Invalid event template: {e}")))?;
        self.server_keys
            .hash_and_sign_event(&mut object, &rules.redaction)
            .map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let reference =
            ruma::signatures::reference_hash(&object, rules).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let json = serde_json::to_value(&object).map_err(|e| MatrixError::internal("pdu", e))?;
        Ok((format!("${reference}"), json))
    }
}

/// The room version of a template or invite, if we support it.
/// The template a remote server is asked for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Template {
    Join,
    Leave,
}

impl Template {
    fn membership(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
        }
    }
}

/// An event kith signed, as the raw JSON a typed request carries.
pub(super) fn raw(event: &Value) -> ApiResult<Box<serde_json::value::RawValue>> {
    serde_json::value::to_raw_value(event).map_err(|err| MatrixError::internal("an event to send", err))
}

/// A room version kith can join (absent means version 1, as the spec says).
pub(super) fn supported_version(version: Option<&str>) -> ApiResult<(RoomVersionId, RoomVersionRules)> {
    let version = version.unwrap_or("1");
    if !JOINABLE_ROOM_VERSIONS.contains(&version) {
        return Err(MatrixError::new(
            StatusCode::BAD_REQUEST,
            "M_INCOMPATIBLE_ROOM_VERSION",
            format!("Room version {version} is not supported"),
        )
        .with("room_version", version.into()));
    }
    let id = RoomVersionId::try_from(version).map_err(|_| MatrixError::bad_json("Invalid room version"))?;
    let rules = Rooms::version_rules(&id)?;
    Ok((id, rules))
}

/// A template must be the member event we asked for.
pub(super) fn check_template(event: &Value, room_id: &str, user_id: &str, membership: &str) -> ApiResult<()> {
    let matches = event["room_id"] == room_id
        && event["sender"] == user_id
        && event["state_key"] == user_id
        && event["type"] == "m.room.member"
        && event["content"]["membership"] == membership;
    if !matches {
        return Err(MatrixError::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", "The remote server sent a wrong template"));
    }
    Ok(())
}

/// Servers named in `server_name`/`via` query parameters, in order.
pub fn servers_from_query(query: &[(String, String)]) -> Vec<OwnedServerName> {
    query
        .iter()
        .filter(|(key, _)| key == "server_name" || key == "via")
        .filter_map(|(_, value)| OwnedServerName::try_from(value.as_str()).ok())
        .collect()
}
