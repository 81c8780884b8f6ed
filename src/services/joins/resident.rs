//! The resident side: other servers' users joining or leaving rooms this server is in
//! (`make_join`/`send_join`, `make_leave`/`send_leave`).

use std::collections::HashSet;

use axum::http::StatusCode;
use ruma::api::federation::membership::create_join_event::v2::RoomState;
use ruma::events::room::member::{MembershipState, RoomMemberEventContent};
use ruma::{OwnedServerName, RoomVersionId, ServerName, UserId};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::Joins;
use crate::error::{ApiResult, MatrixError};
use crate::services::rooms::remote::{CheckedEvent, Outcome};
use crate::services::rooms::{NewEvent, Rooms};
use crate::store::StateMap;

/// Members sent along with a partial state so the joiner can name an unnamed room.
const MAX_HEROES: usize = 5;

/// Not ruma's response: the spec's `send_join` answer also names the resident server
/// (`origin`), which ruma's `RoomState` leaves out.
#[derive(Debug, Serialize)]
pub struct SendJoinAnswer {
    pub origin: OwnedServerName,
    #[serde(flatten)]
    pub room_state: RoomState,
}

impl Joins {
    /// `make_join` / `make_leave`: a template for `user_id` of `origin`.
    pub async fn make_membership(
        &self,
        origin: &ServerName,
        room_id: &str,
        user_id: &str,
        membership: &str,
        supported: &[String],
    ) -> ApiResult<(RoomVersionId, Box<RawValue>)> {
        let user = <&UserId>::try_from(user_id).map_err(|_| MatrixError::invalid_param("Invalid user ID"))?;
        if user.server_name() != origin {
            return Err(MatrixError::forbidden("The user does not belong to the requesting server"));
        }
        self.require_full_residency(room_id, membership).await?;
        let version = self.rooms.room_version(room_id).await?;
        if membership == "join" && !supported.iter().any(|v| v == version.as_str()) {
            return Err(MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_INCOMPATIBLE_ROOM_VERSION",
                format!("Your server does not support room version {version}"),
            )
            .with("room_version", version.as_str().into()));
        }
        let event = NewEvent {
            room_id,
            sender: user_id,
            event_type: "m.room.member",
            state_key: Some(user_id),
            content: member_content(membership)?,
            txn: None,
        };
        let (version, mut template) = self.rooms.template(event).await?;
        template["origin"] = origin.as_str().into();
        let template =
            serde_json::value::to_raw_value(&template).map_err(|e| MatrixError::internal("a template", e))?;
        Ok((version, template))
    }

    /// `send_join` / `send_leave`: a signed member event from `origin`, authorised and
    /// added to the room, then passed on to the room's other servers.
    pub async fn receive_membership(
        &self,
        origin: &ServerName,
        room_id: &str,
        event_id: &str,
        membership: &str,
        body: &Value,
    ) -> ApiResult<CheckedEvent> {
        self.require_full_residency(room_id, membership).await?;
        let version = self.rooms.room_version(room_id).await?;
        let rules = Rooms::version_rules(&version)?;
        let event = self.inbound.check_pdu(body, &rules).await.map_err(|e| MatrixError::bad_json(e.to_string()))?;
        if event.event_id != event_id {
            return Err(MatrixError::bad_json("The event id does not match the event"));
        }
        let sender = &event.pdu.sender;
        let is_expected = event.pdu.room_id.as_str() == room_id
            && event.json["type"] == "m.room.member"
            && event.pdu.state_key.as_deref() == Some(sender.as_str())
            && event.json["content"]["membership"] == membership
            && sender.server_name() == origin;
        if !is_expected {
            return Err(MatrixError::bad_json(format!("Not a {membership} of a user of {origin} in this room")));
        }
        match self.inbound.accept(origin, &rules, event.clone(), true).await? {
            Outcome::Accepted | Outcome::AlreadyKnown => {}
            Outcome::SoftFailed => return Err(MatrixError::forbidden("Not allowed by the room's current state")),
            Outcome::Rejected(reason) => return Err(MatrixError::forbidden(reason.to_string())),
        }
        if let Some(stored) = self.store.get_event(event_id).await? {
            self.sender.relay(&stored, origin).await?;
        }
        Ok(event)
    }

    /// This server is in the room and, for joins, knows its whole state: a room joined
    /// with a partial state cannot be joined through us until its resync ends (404, as
    /// MSC3706 says, so the joiner tries another server).
    async fn require_full_residency(&self, room_id: &str, membership: &str) -> ApiResult<()> {
        if !self.rooms.is_resident(room_id).await? {
            return Err(MatrixError::not_found("This server is not in the room"));
        }
        if membership == "join" && self.rooms.is_partial_state(room_id).await? {
            return Err(MatrixError::not_found("This server does not know the room's full state yet"));
        }
        Ok(())
    }

    /// The `send_join` answer: the state before the join and its auth chain, events as
    /// raw JSON read in bulk. With `omit_members` (MSC3706), member events are left out
    /// but for the joiner's and, in a room without a name or canonical alias, a few
    /// heroes' (for the joiner to name the room); the auth chain then leaves out what the
    /// state already carries.
    pub async fn join_response(&self, event: &CheckedEvent, omit_members: bool) -> ApiResult<SendJoinAnswer> {
        let stored = self.rooms.require_event(&event.event_id).await?;
        let state = match stored.state_group_before {
            Some(group) => self.rooms.state_group(group).await?,
            None => return Err(MatrixError::internal("send_join", "joined event without state")),
        };
        let room_id = stored.room_id.as_str();
        let servers = self.servers_in_room(room_id).await?;
        let state_ids: Vec<String> = if omit_members {
            let joiner = event.pdu.state_key.as_deref().unwrap_or_default();
            let heroes = self.heroes(room_id, &state, joiner).await?;
            let sent =
                |(kind, key): &(String, String)| kind != "m.room.member" || key == joiner || heroes.contains(key);
            state.iter().filter(|(key, _)| sent(key)).map(|(_, id)| id.clone()).collect()
        } else {
            state.values().cloned().collect()
        };
        let mut roots = state_ids.clone();
        roots.extend(event.pdu.auth_events.iter().map(ToString::to_string));
        let mut chain = self.rooms.auth_chain_of(roots).await?;
        if omit_members {
            for sent in &state_ids {
                chain.remove(sent);
            }
        }
        let mut room_state = RoomState::new();
        room_state.state = self.rooms.pdus(&state_ids).await?;
        room_state.auth_chain = self.rooms.pdus(&chain.into_iter().collect::<Vec<_>>()).await?;
        room_state.event = self.rooms.pdus(std::slice::from_ref(&stored.event_id)).await?.pop();
        room_state.members_omitted = omit_members;
        room_state.servers_in_room = Some(servers);
        Ok(SendJoinAnswer { origin: self.server_name.clone(), room_state })
    }

    /// The servers of the room's joined members (from the membership mirror, so no
    /// member event is read), this one included.
    async fn servers_in_room(&self, room_id: &str) -> ApiResult<Vec<String>> {
        let mut servers = self.store.joined_servers(room_id).await?;
        if let Err(at) = servers.binary_search_by(|server| server.as_str().cmp(self.server_name.as_str())) {
            servers.insert(at, self.server_name.to_string());
        }
        Ok(servers)
    }

    /// Up to five members (joined or invited, longest-standing first) other than the
    /// joiner, when the room has neither a name nor a canonical alias; none otherwise.
    async fn heroes(&self, room_id: &str, state: &StateMap, joiner: &str) -> ApiResult<HashSet<String>> {
        let named = |kind: &str| state.contains_key(&(kind.to_owned(), String::new()));
        if named("m.room.name") || named("m.room.canonical_alias") {
            return Ok(HashSet::new());
        }
        Ok(self.store.oldest_members(room_id, joiner, MAX_HEROES).await?.into_iter().collect())
    }
}

/// A member event's content with only its membership (a join or leave template).
fn member_content(membership: &str) -> ApiResult<Value> {
    let content = RoomMemberEventContent::new(MembershipState::from(membership));
    serde_json::to_value(content).map_err(|err| MatrixError::internal("a member event", err))
}
