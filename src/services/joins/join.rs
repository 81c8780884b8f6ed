//! Joining a room hosted elsewhere: `make_join` for a template, signed and sent with
//! `send_join`; the room's state and auth chain from the answer are checked and stored,
//! then the join on top of them.

use std::collections::HashSet;

use axum::http::StatusCode;
use ruma::api::federation::membership::create_join_event::{self, v2::RoomState};
use ruma::api::federation::membership::{prepare_join_event, prepare_leave_event};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::Value;

use super::{Joins, Template, check_template, raw, supported_version};
use crate::config::JOINABLE_ROOM_VERSIONS;
use crate::error::{ApiResult, MatrixError};
use crate::services::inbound::parse_id;
use crate::services::rooms::membership::{Change, MembershipChange};
use crate::services::rooms::remote::{CheckedEvent, Outcome, PriorState};
use crate::store::PartialStateRoom;

/// A full `send_join` answer carries the whole state (Matrix HQ's was 24 MB).
const MAX_SEND_JOIN_BYTES: usize = 512 * 1024 * 1024;
/// `servers_in_room` entries kept from a partial join, at most.
const MAX_SERVERS_IN_ROOM: usize = 10_000;

impl Joins {
    /// Joins a local user to a room: locally when this server is in it, else through one
    /// of `servers` (tried in order).
    pub async fn join_room(&self, user: &UserId, room: &RoomId, servers: &[OwnedServerName]) -> ApiResult<()> {
        let (user_id, room_id) = (user.as_str(), room.as_str());
        self.refuse_blocked(room_id).await?;
        let profile = self.profiles.get(user).await?;
        if self.rooms.is_resident(room_id).await? {
            let join = MembershipChange {
                target_profile: Some(&profile),
                ..MembershipChange::new(room_id, user_id, user_id, Change::Join)
            };
            self.rooms.change_membership(join).await?;
            return Ok(());
        }
        let candidates = self.candidate_servers(room_id, user_id, servers).await?;
        if candidates.is_empty() {
            return Err(MatrixError::not_found("No known servers to join the room through"));
        }
        let mut last_error = MatrixError::not_found("Could not join the room");
        for server in candidates {
            match self.join_through(&server, user_id, room_id, &profile).await {
                Ok(()) => return Ok(()),
                Err(err) => {
                    tracing::info!(%server, %room_id, %err, "remote join failed");
                    last_error = err;
                }
            }
        }
        Err(last_error)
    }

    /// Where to ask: the given servers, the server of whoever invited the user, the
    /// server in the room id; never ourselves.
    pub(super) async fn candidate_servers(
        &self,
        room_id: &str,
        user_id: &str,
        given: &[OwnedServerName],
    ) -> ApiResult<Vec<OwnedServerName>> {
        let mut servers: Vec<OwnedServerName> = given.to_vec();
        if let Some(invite) = self.store.membership(room_id, user_id).await?
            && let Ok(sender) = <&UserId>::try_from(invite.sender.as_str())
        {
            servers.push(sender.server_name().to_owned());
        }
        if let Ok(room) = <&RoomId>::try_from(room_id)
            && let Some(server) = room.server_name()
        {
            servers.push(server.to_owned());
        }
        let mut seen = HashSet::new();
        servers.retain(|s| s.as_str() != self.server_name.as_str() && seen.insert(s.clone()));
        Ok(servers)
    }

    async fn join_through(
        &self,
        server: &ServerName,
        user_id: &str,
        room_id: &str,
        profile: &crate::services::profiles::Profile,
    ) -> ApiResult<()> {
        let mut content = serde_json::Map::new();
        for key in ["displayname", "avatar_url"] {
            if let Some(value) = profile.get(key) {
                content.insert(key.to_owned(), value.clone());
            }
        }
        let (version, rules, event_id, signed) =
            self.sign_remote_template(server, room_id, user_id, Template::Join, content).await?;
        let mut request = create_join_event::v2::Request::new(parse_id(room_id)?, parse_id(&event_id)?, raw(&signed)?);
        request.omit_members = self.faster_joins;
        let answer = self
            .client
            .send_with_limit(server, request, MAX_SEND_JOIN_BYTES)
            .await
            .map_err(|e| e.to_client_error())?
            .room_state;
        // The resident server may have added its signature (restricted rooms).
        let joined = match answer.event.as_deref().map(|event| serde_json::from_str::<Value>(event.get())) {
            Some(Ok(event)) if event.is_object() => event,
            _ => signed,
        };
        let join = self.inbound.check_pdu(&joined, &rules).await.map_err(|e| MatrixError::bad_json(e.to_string()))?;
        if join.event_id != event_id {
            return Err(MatrixError::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", "The resident server changed the join"));
        }
        // Marked before the join is stored, so that nothing arriving after it is judged
        // against the partial state as if it were whole.
        let partial = self.faster_joins && answer.members_omitted;
        if partial {
            let servers = answer.servers_in_room.as_deref().unwrap_or_default();
            self.mark_partial(server, room_id, &join.event_id, servers).await?;
        }
        let joined = self.complete_join(version, &rules, join, &answer).await;
        match (&joined, partial) {
            (Ok(()), true) => {
                tracing::info!(%room_id, via = %server, "joined with a partial state; resyncing in the background");
                self.resync_wanted.notify_one();
            }
            (Err(_), true) => self.store.clear_partial_state(room_id).await?,
            _ => {}
        }
        joined
    }

    /// Records a join that comes with a partial state, for the resync worker.
    async fn mark_partial(
        &self,
        via: &ServerName,
        room_id: &str,
        join_event_id: &str,
        servers: &[String],
    ) -> ApiResult<()> {
        let servers: Vec<String> = servers
            .iter()
            .filter(|s| <&ServerName>::try_from(s.as_str()).is_ok())
            .take(MAX_SERVERS_IN_ROOM)
            .cloned()
            .collect();
        let room = PartialStateRoom {
            room_id: room_id.to_owned(),
            join_event_id: join_event_id.to_owned(),
            joined_via: via.to_string(),
            servers,
        };
        Ok(self.store.mark_partial_state(&room).await?)
    }

    /// Stores the room's state and auth chain from a `send_join` response and the join on
    /// top of that state.
    async fn complete_join(
        &self,
        version: RoomVersionId,
        rules: &RoomVersionRules,
        join: CheckedEvent,
        answer: &RoomState,
    ) -> ApiResult<()> {
        let room_id = join.pdu.room_id.to_string();
        let mut events = self.inbound.check_fetched(rules, &room_id, &answer.auth_chain).await;
        let state = self.inbound.check_fetched(rules, &room_id, &answer.state).await;
        let create = state.iter().find(|e| e.json["type"] == "m.room.create" && e.json["state_key"] == "");
        let creator = create.map(|e| e.pdu.sender.to_string()).ok_or_else(|| {
            MatrixError::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", "The room state has no create event")
        })?;
        let state_ids: Vec<String> = state.iter().map(|e| e.event_id.clone()).collect();
        events.extend(state);
        self.rooms.persist_outliers(events, rules).await?;
        let state_map = self.rooms.state_map_of(&state_ids).await?;
        self.store.create_remote_room_record(&room_id, version.as_str(), &creator).await?;
        let outcome = self.rooms.persist_remote(rules, &join, PriorState::Joined(state_map)).await?;
        match outcome {
            Outcome::Accepted | Outcome::AlreadyKnown => Ok(()),
            Outcome::SoftFailed => Err(MatrixError::forbidden("The join is not allowed by the room's current state")),
            Outcome::Rejected(reason) => Err(MatrixError::forbidden(format!("The join was rejected: {reason}"))),
        }
    }

    /// Asks `server` for a join or leave template (`make_join`/`make_leave`), checks it is
    /// the event asked for, adds `content` and signs it: (version, rules, event id, event).
    pub(super) async fn sign_remote_template(
        &self,
        server: &ServerName,
        room_id: &str,
        user_id: &str,
        template: Template,
        content: serde_json::Map<String, Value>,
    ) -> ApiResult<(RoomVersionId, RoomVersionRules, String, Value)> {
        let (room, user) = (parse_id::<OwnedRoomId>(room_id)?, parse_id::<OwnedUserId>(user_id)?);
        let (room_version, event) = match template {
            Template::Join => {
                let mut request = prepare_join_event::v1::Request::new(room, user);
                request.ver = JOINABLE_ROOM_VERSIONS.iter().filter_map(|v| RoomVersionId::try_from(*v).ok()).collect();
                let answer = self.client.send(server, request).await.map_err(|e| e.to_client_error())?;
                (answer.room_version, answer.event)
            }
            Template::Leave => {
                let request = prepare_leave_event::v1::Request::new(room, user);
                let answer = self.client.send(server, request).await.map_err(|e| e.to_client_error())?;
                (answer.room_version, answer.event)
            }
        };
        let (version, rules) = supported_version(room_version.as_ref().map(RoomVersionId::as_str))?;
        let mut event: Value = serde_json::from_str(event.get()).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        check_template(&event, room_id, user_id, template.membership())?;
        for (key, value) in content {
            event["content"][key] = value;
        }
        let (event_id, signed) = self.sign_template(event, &rules)?;
        Ok((version, rules, event_id, signed))
    }
}
