//! Membership across servers: joining and leaving rooms hosted elsewhere
//! (`make_join`/`send_join`, `make_leave`/`send_leave` as the joining side), serving
//! those requests for rooms this server is in, and invites both ways.

use std::collections::HashSet;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use ruma::canonical_json::CanonicalJsonObject;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedServerName, RoomAliasId, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::{Value, json};

use super::Services;
use super::federation::receiver::encode;
use super::federation::sender;
use super::rooms::NewEvent;
use super::rooms::membership::{Change, MembershipChange};
use super::rooms::remote::{CheckedEvent, Outcome};
use crate::config::JOINABLE_ROOM_VERSIONS;
use crate::error::{ApiResult, MatrixError};
use crate::store::{PersistEvent, StateBefore, StateMap};

/// Stripped state events kept from an invite, at most.
const MAX_INVITE_STATE: usize = 50;

impl Services {
    /// An alias's room and servers to join it through: ours from the store, others'
    /// from their server (`/query/directory`).
    pub async fn resolve_alias(&self, alias: &RoomAliasId) -> ApiResult<(String, Vec<OwnedServerName>)> {
        if alias.server_name() == self.config.server_name {
            let (room_id, _) = self
                .store
                .get_alias(alias.as_str())
                .await?
                .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
            return Ok((room_id, vec![self.config.server_name.clone()]));
        }
        let path = format!("/_matrix/federation/v1/query/directory?room_alias={}", encode(alias.as_str()));
        let body = self.federation.get(alias.server_name(), &path).await.map_err(|e| e.to_client_error())?;
        let room_id = body["room_id"].as_str().and_then(|r| <&RoomId>::try_from(r).ok());
        let room_id = room_id.ok_or_else(|| MatrixError::not_found("The alias's server gave no valid room"))?;
        let mut servers: Vec<OwnedServerName> = body["servers"]
            .as_array()
            .map(|list| list.iter().filter_map(|s| OwnedServerName::try_from(s.as_str()?).ok()).take(20).collect())
            .unwrap_or_default();
        servers.insert(0, alias.server_name().to_owned());
        Ok((room_id.to_string(), servers))
    }

    /// Whether this server takes part in a room: some local user is joined to it.
    pub async fn is_resident(&self, room_id: &str) -> ApiResult<bool> {
        Ok(self.store.room_version(room_id).await?.is_some() && self.store.has_local_member(room_id).await?)
    }

    /// Joins a local user to a room: locally when this server is in it, else through one
    /// of `servers` (tried in order).
    pub async fn join_room(
        self: &Arc<Self>,
        user_id: &str,
        room_id: &str,
        servers: &[OwnedServerName],
    ) -> ApiResult<()> {
        let profile = self.profiles.get(user_id).await?;
        if self.is_resident(room_id).await? {
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
    async fn candidate_servers(
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
        servers.retain(|s| s.as_str() != self.config.server_name.as_str() && seen.insert(s.clone()));
        Ok(servers)
    }

    async fn join_through(
        &self,
        server: &ServerName,
        user_id: &str,
        room_id: &str,
        profile: &super::profiles::Profile,
    ) -> ApiResult<()> {
        let mut content = serde_json::Map::new();
        for key in ["displayname", "avatar_url"] {
            if let Some(value) = profile.get(key) {
                content.insert(key.to_owned(), value.clone());
            }
        }
        let (version, rules, event_id, signed) =
            self.sign_remote_template(server, room_id, user_id, "join", content).await?;
        let path = format!("/_matrix/federation/v2/send_join/{}/{}", encode(room_id), encode(&event_id));
        let response = self
            .federation
            .request(Method::PUT, server, &path, Some(&signed))
            .await
            .map_err(|e| e.to_client_error())?;
        // The resident server may have added its signature (restricted rooms).
        let joined = match &response["event"] {
            Value::Object(_) => response["event"].clone(),
            _ => signed,
        };
        let join = self.federation.check_pdu(&joined, &rules).await.map_err(MatrixError::bad_json)?;
        if join.event_id != event_id {
            return Err(MatrixError::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", "The resident server changed the join"));
        }
        self.complete_join(version, &rules, join, &response).await
    }

    /// Stores the room's state and auth chain from a `send_join` response and the join on
    /// top of that state.
    async fn complete_join(
        &self,
        version: RoomVersionId,
        rules: &RoomVersionRules,
        join: CheckedEvent,
        response: &Value,
    ) -> ApiResult<()> {
        let room_id = join.pdu.room_id.to_string();
        let mut events = self.check_fetched(rules, &room_id, &response["auth_chain"]).await;
        let state = self.check_fetched(rules, &room_id, &response["state"]).await;
        let create = state.iter().find(|e| e.json["type"] == "m.room.create" && e.json["state_key"] == "");
        let creator = create.map(|e| e.pdu.sender.to_string()).ok_or_else(|| {
            MatrixError::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", "The room state has no create event")
        })?;
        let state_ids: Vec<String> = state.iter().map(|e| e.event_id.clone()).collect();
        events.extend(state);
        self.rooms.persist_outliers(events, rules).await?;
        let mut state_map = StateMap::new();
        for event in self.store.events_by_id(&state_ids).await? {
            if event.rejected {
                continue;
            }
            if let (Some(kind), Some(key)) = (event.json["type"].as_str(), event.json["state_key"].as_str()) {
                state_map.insert((kind.to_owned(), key.to_owned()), event.event_id.clone());
            }
        }
        self.store.create_remote_room_record(&room_id, version.as_str(), &creator).await?;
        let outcome =
            self.rooms.persist_remote(rules, &join, super::rooms::remote::PriorState::Joined(state_map)).await?;
        match outcome {
            Outcome::Accepted | Outcome::AlreadyKnown => Ok(()),
            Outcome::SoftFailed => Err(MatrixError::forbidden("The join is not allowed by the room's current state")),
            Outcome::Rejected(reason) => Err(MatrixError::forbidden(format!("The join was rejected: {reason}"))),
        }
    }

    /// Asks `server` for a join or leave template (`make_join`/`make_leave`), checks it is
    /// the event asked for, adds `content` and signs it: (version, rules, event id, event).
    async fn sign_remote_template(
        &self,
        server: &ServerName,
        room_id: &str,
        user_id: &str,
        membership: &str,
        content: serde_json::Map<String, Value>,
    ) -> ApiResult<(RoomVersionId, RoomVersionRules, String, Value)> {
        let mut path = format!("/_matrix/federation/v1/make_{membership}/{}/{}", encode(room_id), encode(user_id));
        if membership == "join" {
            let versions: Vec<String> = JOINABLE_ROOM_VERSIONS.iter().map(|v| format!("ver={v}")).collect();
            path = format!("{path}?{}", versions.join("&"));
        }
        let template = self.federation.get(server, &path).await.map_err(|e| e.to_client_error())?;
        let (version, rules) = supported_version(&template["room_version"])?;
        let mut event = template["event"].clone();
        check_template(&event, room_id, user_id, membership)?;
        for (key, value) in content {
            event["content"][key] = value;
        }
        let (event_id, signed) = self.sign_template(event, &rules)?;
        Ok((version, rules, event_id, signed))
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
        fields.insert("origin".into(), json!(self.config.server_name));
        fields.insert("origin_server_ts".into(), json!(crate::store::now_ms()));
        let mut object: CanonicalJsonObject =
            serde_json::from_value(event).map_err(|e| MatrixError::bad_json(format!("Invalid event template: {e}")))?;
        self.keys
            .hash_and_sign_event(&mut object, &rules.redaction)
            .map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let reference =
            ruma::signatures::reference_hash(&object, rules).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        let json = serde_json::to_value(&object).map_err(|e| MatrixError::internal("pdu", e))?;
        Ok((format!("${reference}"), json))
    }

    /// Leaves a room: locally when this server is in it, else (an invite to decline)
    /// through the inviting server.
    pub async fn leave_room(&self, user_id: &str, room_id: &str, reason: Option<&str>) -> ApiResult<()> {
        if self.is_resident(room_id).await? {
            let leave = MembershipChange { reason, ..MembershipChange::new(room_id, user_id, user_id, Change::Leave) };
            self.rooms.change_membership(leave).await?;
            return Ok(());
        }
        let membership = self.store.membership(room_id, user_id).await?;
        let Some(invite) = membership.filter(|m| m.membership == "invite") else {
            return Err(MatrixError::forbidden("You are not a member of this room"));
        };
        let candidates = self.candidate_servers(room_id, user_id, &[]).await?;
        let mut last_error = MatrixError::not_found("No server to leave the room through");
        for server in candidates {
            match self.leave_through(&server, user_id, room_id, reason).await {
                Ok(()) => return Ok(()),
                Err(err) => last_error = err,
            }
        }
        tracing::info!(%room_id, %user_id, invite = %invite.event_id, %last_error, "could not decline remotely");
        Err(last_error)
    }

    async fn leave_through(
        &self,
        server: &ServerName,
        user_id: &str,
        room_id: &str,
        reason: Option<&str>,
    ) -> ApiResult<()> {
        let mut content = serde_json::Map::new();
        if let Some(reason) = reason {
            content.insert("reason".into(), json!(reason));
        }
        let (_, rules, event_id, signed) =
            self.sign_remote_template(server, room_id, user_id, "leave", content).await?;
        let path = format!("/_matrix/federation/v2/send_leave/{}/{}", encode(room_id), encode(&event_id));
        self.federation.request(Method::PUT, server, &path, Some(&signed)).await.map_err(|e| e.to_client_error())?;
        let leave = self.federation.check_pdu(&signed, &rules).await.map_err(MatrixError::bad_json)?;
        self.store_outside_membership(&leave, None).await
    }

    /// Keeps a member event of a room this server is not in (an invite, a declined
    /// invite) as an outlier that the user's membership points at.
    async fn store_outside_membership(&self, event: &CheckedEvent, invite_state: Option<Value>) -> ApiResult<()> {
        let mut json = event.json.clone();
        if let Some(state) = invite_state {
            json["unsigned"] = json!({ "invite_room_state": state });
        }
        let prevs: Vec<String> = event.pdu.prev_events.iter().map(ToString::to_string).collect();
        let ordering = self
            .store
            .persist_event(PersistEvent {
                event_id: &event.event_id,
                room_id: event.pdu.room_id.as_str(),
                depth: event.depth(),
                event_type: "m.room.member",
                state_key: event.pdu.state_key.as_deref(),
                sender: event.pdu.sender.as_str(),
                origin_server_ts: json["origin_server_ts"].as_i64().unwrap_or_default(),
                json: &json,
                prev_events: &prevs,
                rejected: false,
                outlier: true,
                state_before: StateBefore::Unknown,
                new_current_state: None,
                client_txn: None,
                mirror_membership: true,
            })
            .await?;
        self.rooms.events_written.send_replace(ordering);
        Ok(())
    }

    /// Invites a user of another server: the invite goes to their server to be
    /// countersigned before it is sent into the room.
    pub async fn invite_remote(
        &self,
        room_id: &str,
        sender: &str,
        target: &UserId,
        reason: Option<&str>,
    ) -> ApiResult<()> {
        let version = self.rooms.room_version(room_id).await?;
        let invite_state = self.stripped_state(room_id).await?;
        let mut content = json!({ "membership": "invite" });
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        let event = NewEvent {
            room_id,
            sender,
            event_type: "m.room.member",
            state_key: Some(target.as_str()),
            content,
            txn: None,
        };
        let server = target.server_name().to_owned();
        self.rooms
            .send_countersigned(event, async |json: Value| {
                let event_id = self.reference_id(&json, &version)?;
                let path = format!("/_matrix/federation/v2/invite/{}/{}", encode(room_id), encode(&event_id));
                let body =
                    json!({ "event": json, "room_version": version.as_str(), "invite_room_state": invite_state });
                let response = self
                    .federation
                    .request(Method::PUT, &server, &path, Some(&body))
                    .await
                    .map_err(|e| e.to_client_error())?;
                let rules = super::rooms::Rooms::version_rules(&version)?;
                let signed =
                    self.federation.check_pdu(&response["event"], &rules).await.map_err(MatrixError::bad_json)?;
                if !response["event"]["signatures"][server.as_str()].is_object() {
                    return Err(MatrixError::forbidden("The invitee's server did not sign the invite"));
                }
                Ok(signed.json)
            })
            .await?;
        Ok(())
    }

    fn reference_id(&self, json: &Value, version: &RoomVersionId) -> ApiResult<String> {
        let rules = super::rooms::Rooms::version_rules(version)?;
        let object: CanonicalJsonObject =
            serde_json::from_value(json.clone()).map_err(|e| MatrixError::internal("pdu", e))?;
        let reference =
            ruma::signatures::reference_hash(&object, &rules).map_err(|e| MatrixError::internal("pdu", e))?;
        Ok(format!("${reference}"))
    }

    /// The stripped state an invitee sees (name, avatar, join rules…).
    pub async fn stripped_state(&self, room_id: &str) -> ApiResult<Vec<Value>> {
        let mut state = self.store.current_state(room_id).await?;
        state.retain(|(kind, key), _| {
            super::rooms::format::STRIPPED_STATE_TYPES.contains(&kind.as_str()) && key.is_empty()
        });
        let events = self.rooms.state_events(&state).await?;
        Ok(events.iter().map(super::rooms::format::stripped_event).collect())
    }
}

/// Serving other servers' membership requests.
impl Services {
    /// `make_join` / `make_leave`: a template for `user_id` of `origin`.
    pub async fn make_membership(
        &self,
        origin: &ServerName,
        room_id: &str,
        user_id: &str,
        membership: &str,
        supported: &[String],
    ) -> ApiResult<Value> {
        let user = <&UserId>::try_from(user_id).map_err(|_| MatrixError::invalid_param("Invalid user ID"))?;
        if user.server_name() != origin {
            return Err(MatrixError::forbidden("The user does not belong to the requesting server"));
        }
        if !self.is_resident(room_id).await? {
            return Err(MatrixError::not_found("This server is not in the room"));
        }
        let version = self.rooms.room_version(room_id).await?;
        if membership == "join" && !supported.iter().any(|v| v == version.as_str()) {
            return Err(MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_INCOMPATIBLE_ROOM_VERSION",
                format!("Your server does not support room version {version}"),
            )
            .with("room_version", json!(version.as_str())));
        }
        let event = NewEvent {
            room_id,
            sender: user_id,
            event_type: "m.room.member",
            state_key: Some(user_id),
            content: json!({ "membership": membership }),
            txn: None,
        };
        let (version, mut template) = self.rooms.template(event).await?;
        template["origin"] = json!(origin);
        Ok(json!({ "room_version": version.as_str(), "event": template }))
    }

    /// `send_join` / `send_leave`: a signed member event from `origin`, authorised and
    /// added to the room, then passed on to the room's other servers.
    pub async fn receive_membership(
        self: &Arc<Self>,
        origin: &ServerName,
        room_id: &str,
        event_id: &str,
        membership: &str,
        body: &Value,
    ) -> ApiResult<CheckedEvent> {
        if !self.is_resident(room_id).await? {
            return Err(MatrixError::not_found("This server is not in the room"));
        }
        let version = self.rooms.room_version(room_id).await?;
        let rules = super::rooms::Rooms::version_rules(&version)?;
        let event = self.federation.check_pdu(body, &rules).await.map_err(MatrixError::bad_json)?;
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
        match self.accept_remote_event(origin, &rules, event.clone(), true).await? {
            Outcome::Accepted | Outcome::AlreadyKnown => {}
            Outcome::SoftFailed => return Err(MatrixError::forbidden("Not allowed by the room's current state")),
            Outcome::Rejected(reason) => return Err(MatrixError::forbidden(reason)),
        }
        if let Some(stored) = self.store.get_event(event_id).await? {
            sender::relay(self, &stored, origin).await?;
        }
        Ok(event)
    }

    /// The `send_join` answer: the state before the join and its auth chain.
    pub async fn join_response(&self, event: &CheckedEvent) -> ApiResult<Value> {
        let stored = self.rooms.require_event(&event.event_id).await?;
        let state = match stored.state_group_before {
            Some(group) => self.store.state_group(group).await?,
            None => return Err(MatrixError::internal("send_join", "joined event without state")),
        };
        let state_events = self.rooms.state_events(&state).await?;
        let mut roots: Vec<String> = state.values().cloned().collect();
        roots.extend(event.pdu.auth_events.iter().map(ToString::to_string));
        let chain = self.rooms.auth_chain_of(roots).await?;
        let chain_events = self.store.events_by_id(&chain.into_iter().collect::<Vec<_>>()).await?;
        let mut servers: HashSet<String> = HashSet::new();
        for ((kind, user), id) in &state {
            if kind == "m.room.member"
                && let Some(e) = state_events.iter().find(|e| &e.event_id == id)
                && e.json["content"]["membership"] == "join"
                && let Ok(user) = <&UserId>::try_from(user.as_str())
            {
                servers.insert(user.server_name().to_string());
            }
        }
        servers.insert(self.config.server_name.to_string());
        Ok(json!({
            "origin": self.config.server_name,
            "event": stored.json,
            "state": state_events.iter().map(|e| pdu_json(&e.json)).collect::<Vec<_>>(),
            "auth_chain": chain_events.iter().map(|e| pdu_json(&e.json)).collect::<Vec<_>>(),
            "members_omitted": false,
            "servers_in_room": servers,
        }))
    }

    /// `PUT /v2/invite`: countersigns an invite of a local user, and keeps it for the
    /// invitee when this server is not in the room.
    pub async fn receive_invite(
        &self,
        origin: &ServerName,
        room_id: &str,
        event_id: &str,
        body: &Value,
    ) -> ApiResult<Value> {
        let version = body["room_version"].as_str().unwrap_or("1");
        let (version, rules) = supported_version(&json!(version))?;
        let event = self.federation.check_pdu(&body["event"], &rules).await.map_err(MatrixError::bad_json)?;
        if event.event_id != event_id || event.pdu.room_id.as_str() != room_id {
            return Err(MatrixError::bad_json("The event does not match the request path"));
        }
        let target = event.pdu.state_key.as_deref().and_then(|k| <&UserId>::try_from(k).ok());
        let is_invite = event.json["type"] == "m.room.member" && event.json["content"]["membership"] == "invite";
        let Some(target) = target.filter(|_| is_invite) else {
            return Err(MatrixError::bad_json("Not an invite"));
        };
        if event.pdu.sender.server_name() != origin {
            return Err(MatrixError::forbidden("The inviter does not belong to the requesting server"));
        }
        if target.server_name() != self.config.server_name {
            return Err(MatrixError::bad_json("The invitee is not on this server"));
        }
        let account = self.store.local_account(target.as_str()).await?;
        if account.is_none_or(|a| a.deactivated) {
            return Err(MatrixError::not_found("No such user"));
        }
        let mut object: CanonicalJsonObject =
            serde_json::from_value(event.json.clone()).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        ruma::signatures::sign_event(
            self.config.server_name.as_str(),
            self.keys.key_pair(),
            &mut object,
            &rules.redaction,
        )
        .map_err(|e| MatrixError::internal("signing an invite", e))?;
        let signed = serde_json::to_value(&object).map_err(|e| MatrixError::internal("pdu", e))?;
        if !self.is_resident(room_id).await? {
            let checked = CheckedEvent { json: signed.clone(), ..event.clone() };
            let state = invite_state(&body["invite_room_state"]);
            self.store_outside_membership(&checked, Some(state)).await?;
        }
        tracing::info!(%origin, %room_id, invitee = %target, %version, "invite received");
        Ok(json!({ "event": signed }))
    }
}

/// The room version of a template or invite, if we support it.
fn supported_version(value: &Value) -> ApiResult<(RoomVersionId, RoomVersionRules)> {
    let version = value.as_str().unwrap_or("1");
    if !JOINABLE_ROOM_VERSIONS.contains(&version) {
        return Err(MatrixError::new(
            StatusCode::BAD_REQUEST,
            "M_INCOMPATIBLE_ROOM_VERSION",
            format!("Room version {version} is not supported"),
        )
        .with("room_version", json!(version)));
    }
    let id = RoomVersionId::try_from(version).map_err(|_| MatrixError::bad_json("Invalid room version"))?;
    let rules = super::rooms::Rooms::version_rules(&id)?;
    Ok((id, rules))
}

/// A template must be the member event we asked for.
fn check_template(event: &Value, room_id: &str, user_id: &str, membership: &str) -> ApiResult<()> {
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

/// Up to `MAX_INVITE_STATE` stripped events, each with the keys clients need.
fn invite_state(value: &Value) -> Value {
    let events = value.as_array().map(Vec::as_slice).unwrap_or_default();
    let kept: Vec<Value> = events
        .iter()
        .filter(|e| e["type"].is_string() && e["state_key"].is_string() && e["sender"].is_string() && e["content"].is_object())
        .take(MAX_INVITE_STATE)
        .map(|e| json!({ "type": e["type"], "state_key": e["state_key"], "sender": e["sender"], "content": e["content"] }))
        .collect();
    json!(kept)
}

/// A stored PDU as another server should see it.
pub fn pdu_json(json: &Value) -> Value {
    let mut json = json.clone();
    if let Some(object) = json.as_object_mut() {
        object.remove("unsigned");
    }
    json
}

/// Servers named in `server_name`/`via` query parameters, in order.
pub fn servers_from_query(query: &[(String, String)]) -> Vec<OwnedServerName> {
    query
        .iter()
        .filter(|(key, _)| key == "server_name" || key == "via")
        .filter_map(|(_, value)| OwnedServerName::try_from(value.as_str()).ok())
        .collect()
}
