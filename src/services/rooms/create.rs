//! `POST /createRoom`: the initial events in the order the spec gives, presets as
//! Synapse applies them.

use axum::http::StatusCode;
use rand::Rng;
use rand::distributions::Alphanumeric;
use ruma::RoomVersionId;
use ruma::events::room::canonical_alias::RoomCanonicalAliasEventContent;
use ruma::events::room::guest_access::{GuestAccess, RoomGuestAccessEventContent};
use ruma::events::room::history_visibility::{HistoryVisibility, RoomHistoryVisibilityEventContent};
use ruma::events::room::join_rules::{JoinRule, RoomJoinRulesEventContent};
use ruma::events::room::name::RoomNameEventContent;
use ruma::events::room::topic::{RoomTopicEventContent, TopicContentBlock};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

use super::membership::Profile;
use super::membership::{Change, MembershipChange};
use super::{NewEvent, Rooms};
use crate::config::SUPPORTED_ROOM_VERSIONS;
use crate::error::{ApiResult, MatrixError};

pub use crate::endpoints::client::create_room::{CreateRoomRequest, InitialState};

/// Who created the room and what they asked for.
pub struct CreateRoom<'a> {
    pub creator: &'a str,
    pub creator_profile: &'a Profile,
    pub request: CreateRoomRequest,
    /// The alias to claim, already validated and known to be free.
    pub alias: Option<String>,
}

impl Rooms {
    pub async fn create_room(&self, create: CreateRoom<'_>, server_name: &str) -> ApiResult<String> {
        let request = &create.request;
        let version = request.room_version.clone().unwrap_or_else(|| self.default_version.clone());
        if !SUPPORTED_ROOM_VERSIONS.contains(&version.as_str()) {
            return Err(MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_UNSUPPORTED_ROOM_VERSION",
                format!("Room version {version} is not supported"),
            ));
        }
        let preset = match (request.preset.as_deref(), request.visibility.as_deref()) {
            (Some(preset @ ("private_chat" | "public_chat" | "trusted_private_chat")), _) => preset,
            (Some(other), _) => return Err(MatrixError::invalid_param(format!("Unknown preset {other}"))),
            (None, Some("public")) => "public_chat",
            (None, _) => "private_chat",
        };
        if let Some(visibility) = request.visibility.as_deref()
            && !["public", "private"].contains(&visibility)
        {
            return Err(MatrixError::invalid_param("visibility must be public or private"));
        }
        for user in &request.invite {
            if <&ruma::UserId>::try_from(user.as_str()).is_err() {
                return Err(MatrixError::invalid_param(format!("Invalid user ID to invite: {user}")));
            }
        }
        let room_id = format!("!{}:{server_name}", random_localpart());
        self.store.create_room_record(&room_id, &version, create.creator).await?;
        let room_version =
            RoomVersionId::try_from(version.as_str()).map_err(|e| MatrixError::internal("version", e))?;
        for (event_type, state_key, content) in initial_events(&create, preset, &room_version)? {
            let new = NewEvent {
                room_id: &room_id,
                sender: create.creator,
                event_type: &event_type,
                state_key: Some(&state_key),
                content,
                txn: None,
            };
            self.send(new).await?;
            if event_type == "m.room.create" {
                let join = MembershipChange {
                    target_profile: Some(create.creator_profile),
                    ..MembershipChange::new(&room_id, create.creator, create.creator, Change::Join)
                };
                self.change_membership(join).await?;
            }
        }
        if let Some(alias) = &create.alias {
            self.store.put_alias(alias, &room_id, create.creator).await?;
        }
        // Users of other servers are invited through their server by the caller.
        for user in request.invite.iter().filter(|user| user.ends_with(&format!(":{server_name}"))) {
            let is_direct = request.is_direct;
            let invite =
                MembershipChange { is_direct, ..MembershipChange::new(&room_id, create.creator, user, Change::Invite) };
            self.change_membership(invite).await?;
        }
        if request.visibility.as_deref() == Some("public") {
            self.store.set_room_published(&room_id, true).await?;
        }
        Ok(room_id)
    }
}

/// The state events after the create event and the creator's join, in spec order.
type InitialEvent = (String, String, Value);

fn initial_events(create: &CreateRoom<'_>, preset: &str, version: &RoomVersionId) -> ApiResult<Vec<InitialEvent>> {
    let request = &create.request;
    let mut create_content = request.creation_content.clone().unwrap_or_default();
    create_content.insert("room_version".into(), version.as_str().into());
    if *version == RoomVersionId::V10 {
        create_content.insert("creator".into(), create.creator.into());
    }
    let state = |event_type: &str, content: Value| (event_type.to_owned(), String::new(), content);
    let mut events = vec![state("m.room.create", Value::Object(create_content))];
    events.push(state("m.room.power_levels", power_levels(create, preset)?));
    if let Some(alias) = &create.alias {
        let mut content = RoomCanonicalAliasEventContent::new();
        content.alias = Some(alias.as_str().try_into().map_err(|_| MatrixError::invalid_param("Invalid alias"))?);
        events.push(state("m.room.canonical_alias", to_content(content)?));
    }
    let join_rule = if preset == "public_chat" { JoinRule::Public } else { JoinRule::Invite };
    events.push(state("m.room.join_rules", to_content(RoomJoinRulesEventContent::new(join_rule))?));
    let shared = RoomHistoryVisibilityEventContent::new(HistoryVisibility::Shared);
    events.push(state("m.room.history_visibility", to_content(shared)?));
    if preset != "public_chat" {
        let guests = RoomGuestAccessEventContent::new(GuestAccess::CanJoin);
        events.push(state("m.room.guest_access", to_content(guests)?));
    }
    // initial_state overrides the preset's events, but never the create event or power levels.
    for initial in &request.initial_state {
        if initial.event_type == "m.room.create" || initial.event_type == "m.room.power_levels" {
            continue;
        }
        events.retain(|(kind, key, _)| !(*kind == initial.event_type && *key == initial.state_key));
        events.push((initial.event_type.clone(), initial.state_key.clone(), initial.content.clone()));
    }
    if let Some(name) = &request.name {
        events.push(state("m.room.name", to_content(RoomNameEventContent::new(name.clone()))?));
    }
    if let Some(topic) = &request.topic {
        let mut content = RoomTopicEventContent::new(topic.clone());
        // The topic alone, as before MSC3765's `m.topic` block.
        content.topic_block = TopicContentBlock::default();
        events.push(state("m.room.topic", to_content(content)?));
    }
    Ok(events)
}

fn to_content(content: impl Serialize) -> ApiResult<Value> {
    serde_json::to_value(content).map_err(|err| MatrixError::internal("event content", err))
}

/// The power levels a new room starts with, every level written out as Synapse writes
/// them (ruma's `RoomPowerLevelsEventContent` leaves out those at their defaults).
#[derive(Serialize)]
struct InitialPowerLevels {
    users: BTreeMap<String, i64>,
    users_default: i64,
    events: BTreeMap<&'static str, i64>,
    events_default: i64,
    state_default: i64,
    ban: i64,
    kick: i64,
    redact: i64,
    invite: i64,
}

fn power_levels(create: &CreateRoom<'_>, preset: &str) -> ApiResult<Value> {
    let mut users = BTreeMap::from([(create.creator.to_owned(), 100)]);
    if preset == "trusted_private_chat" {
        users.extend(create.request.invite.iter().map(|invitee| (invitee.clone(), 100)));
    }
    let events = BTreeMap::from([
        ("m.room.name", 50),
        ("m.room.power_levels", 100),
        ("m.room.history_visibility", 100),
        ("m.room.canonical_alias", 50),
        ("m.room.avatar", 50),
        ("m.room.tombstone", 100),
        ("m.room.server_acl", 100),
        ("m.room.encryption", 100),
    ]);
    let levels = InitialPowerLevels {
        users,
        users_default: 0,
        events,
        events_default: 0,
        state_default: 50,
        ban: 50,
        kick: 50,
        redact: 50,
        invite: if preset == "public_chat" { 50 } else { 0 },
    };
    let mut content = to_content(levels)?;
    if let (Some(overrides), Some(content)) = (&create.request.power_level_content_override, content.as_object_mut()) {
        content.extend(overrides.clone());
    }
    Ok(content)
}

fn random_localpart() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(18).map(char::from).collect()
}
