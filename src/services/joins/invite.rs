//! Invites across servers: ours to users of other servers (countersigned by their server
//! before the invite enters the room), and other servers' to our users.

use ruma::api::federation::membership::{RawStrippedState, create_invite};
use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::room::member::{MembershipState, RoomMemberEventContent};
use ruma::{OwnedUserId, RoomVersionId, ServerName, UserId};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Joins, MAX_INVITE_STATE, raw, supported_version};
use crate::endpoints::federation::create_invite as invite_endpoint;
use crate::error::{ApiResult, MatrixError};
use crate::services::inbound::parse_id;
use crate::services::rooms::create::CreateRoom;
use crate::services::rooms::remote::{CheckedEvent, Outcome};
use crate::services::rooms::{NewEvent, Rooms};

impl Joins {
    /// `createRoom`: the room is made here, with its local invitees; users of other
    /// servers are then invited through their servers, as `/invite` would. An invitee
    /// whose server cannot be reached is logged and left out: the room stays.
    pub async fn create_room(&self, create: CreateRoom<'_>) -> ApiResult<String> {
        let creator = create.creator.to_owned();
        let is_direct = create.request.is_direct;
        let remote: Vec<OwnedUserId> = create
            .request
            .invite
            .iter()
            .filter_map(|user| OwnedUserId::try_from(user.as_str()).ok())
            .filter(|user| user.server_name() != self.server_name)
            .collect();
        let room_id = self.rooms.create_room(create, self.server_name.as_str()).await?;
        for invitee in &remote {
            if let Err(err) = self.invite_remote(&room_id, &creator, invitee, None, is_direct).await {
                tracing::warn!(%room_id, %invitee, %err, "createRoom: could not invite over federation");
            }
        }
        Ok(room_id)
    }

    /// Invites a user of another server: the invite goes to their server to be
    /// countersigned before it is sent into the room.
    pub async fn invite_remote(
        &self,
        room_id: &str,
        sender: &str,
        target: &UserId,
        reason: Option<&str>,
        is_direct: bool,
    ) -> ApiResult<()> {
        let version = self.rooms.room_version(room_id).await?;
        // What kith holds of the room's state, as the invite carries it (parsed once).
        let invite_state: Vec<RawStrippedState> =
            serde_json::from_value(Value::Array(self.rooms.stripped_state(room_id).await?))
                .map_err(|err| MatrixError::internal("the invite's stripped state", err))?;
        let mut member = RoomMemberEventContent::new(MembershipState::Invite);
        member.reason = reason.map(str::to_owned);
        member.is_direct = is_direct.then_some(true);
        let content = serde_json::to_value(member).map_err(|err| MatrixError::internal("an invite", err))?;
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
                let request = create_invite::v2::Request::new(
                    parse_id(room_id)?,
                    parse_id(&event_id)?,
                    version.clone(),
                    raw(&json)?,
                    invite_state.clone(),
                );
                let answer = self.client.send(&server, request).await.map_err(|e| e.to_client_error())?;
                let event: Value =
                    serde_json::from_str(answer.event.get()).map_err(|e| MatrixError::bad_json(e.to_string()))?;
                let rules = Rooms::version_rules(&version)?;
                let signed =
                    self.inbound.check_pdu(&event, &rules).await.map_err(|e| MatrixError::bad_json(e.to_string()))?;
                if !event["signatures"][server.as_str()].is_object() {
                    return Err(MatrixError::forbidden("The invitee's server did not sign the invite"));
                }
                Ok(signed.json)
            })
            .await?;
        Ok(())
    }

    fn reference_id(&self, json: &Value, version: &RoomVersionId) -> ApiResult<String> {
        let rules = Rooms::version_rules(version)?;
        let object: CanonicalJsonObject =
            serde_json::from_value(json.clone()).map_err(|e| MatrixError::internal("pdu", e))?;
        let reference =
            ruma::signatures::reference_hash(&object, &rules).map_err(|e| MatrixError::internal("pdu", e))?;
        Ok(format!("${reference}"))
    }

    /// `PUT /v2/invite`: countersigns an invite of a local user. In a room this server is
    /// in, the invite goes through the auth rules into the room first; otherwise it is
    /// kept for the invitee with the stripped state it came with.
    pub async fn receive_invite(
        &self,
        origin: &ServerName,
        request: &invite_endpoint::Request,
    ) -> ApiResult<Box<RawValue>> {
        let (room_id, event_id) = (request.room_id.as_str(), request.event_id.as_str());
        let (version, rules) = supported_version(Some(request.room_version.as_deref().unwrap_or("1")))?;
        let pdu = match &request.event {
            Some(raw) => serde_json::from_str(raw.get()).map_err(|e| MatrixError::bad_json(e.to_string()))?,
            None => Value::Null,
        };
        let event = self.inbound.check_pdu(&pdu, &rules).await.map_err(|e| MatrixError::bad_json(e.to_string()))?;
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
        if target.server_name() != self.server_name {
            return Err(MatrixError::bad_json("The invitee is not on this server"));
        }
        self.refuse_blocked(room_id).await?;
        let account = self.store.local_account(target.as_str()).await?;
        if account.is_none_or(|a| a.deactivated) {
            return Err(MatrixError::not_found("No such user"));
        }
        let mut object: CanonicalJsonObject =
            serde_json::from_value(event.json.clone()).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        ruma::signatures::sign_event(
            self.server_name.as_str(),
            self.server_keys.key_pair(),
            &mut object,
            &rules.redaction,
        )
        .map_err(|e| MatrixError::internal("signing an invite", e))?;
        let signed = serde_json::to_value(&object).map_err(|e| MatrixError::internal("pdu", e))?;
        let checked = CheckedEvent { json: signed.clone(), ..event.clone() };
        if self.rooms.is_resident(room_id).await? {
            // The room is here: the invite joins it only if its auth rules allow, and its
            // signature goes back only then.
            if self.rooms.room_version(room_id).await? != version {
                return Err(MatrixError::bad_json("The invite is not of the room's version"));
            }
            match self.inbound.accept(origin, &rules, checked, true).await? {
                Outcome::Accepted | Outcome::AlreadyKnown => {}
                Outcome::SoftFailed => {
                    return Err(MatrixError::forbidden("The room's current state forbids the invite"));
                }
                Outcome::Rejected(reason) => return Err(MatrixError::forbidden(reason.to_string())),
            }
        } else {
            let state = invite_state(&request.invite_room_state);
            self.rooms.persist_outside_membership(&checked, Some(state)).await?;
        }
        tracing::info!(%origin, %room_id, invitee = %target, %version, "invite received");
        serde_json::value::to_raw_value(&signed).map_err(|e| MatrixError::internal("an invite", e))
    }
}

/// Up to `MAX_INVITE_STATE` stripped events, each with the keys clients need.
fn invite_state(events: &[Value]) -> Value {
    let kept = events
        .iter()
        .filter(|e| {
            e["type"].is_string() && e["state_key"].is_string() && e["sender"].is_string() && e["content"].is_object()
        })
        .take(MAX_INVITE_STATE)
        .map(|e| {
            let keys = ["type", "state_key", "sender", "content"];
            Value::Object(keys.into_iter().map(|key| (key.to_owned(), e[key].clone())).collect())
        });
    Value::Array(kept.collect())
}
