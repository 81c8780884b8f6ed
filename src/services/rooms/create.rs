//! `POST /createRoom`: the initial events in the order the spec gives, presets as
//! Synapse applies them.

use axum::http::StatusCode;
use rand::Rng;
use rand::distributions::Alphanumeric;
use ruma::RoomVersionId;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::membership::{Change, MembershipChange};
use super::{NewEvent, Rooms};
use crate::config::SUPPORTED_ROOM_VERSIONS;
use crate::error::{ApiResult, MatrixError};
use crate::services::profiles::Profile;

#[derive(Debug, Default, Deserialize)]
pub struct CreateRoomRequest {
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub invite: Vec<String>,
    #[serde(default)]
    pub initial_state: Vec<InitialState>,
    #[serde(default)]
    pub power_level_content_override: Option<Map<String, Value>>,
    #[serde(default)]
    pub room_version: Option<String>,
    #[serde(default)]
    pub is_direct: bool,
    #[serde(default)]
    pub room_alias_name: Option<String>,
    #[serde(default)]
    pub creation_content: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
pub struct InitialState {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub state_key: String,
    pub content: Value,
}

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
        for (event_type, state_key, content) in initial_events(&create, preset, &room_version) {
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
            let extra = request.is_direct.then(|| json!({ "is_direct": true }));
            let invite =
                MembershipChange { extra, ..MembershipChange::new(&room_id, create.creator, user, Change::Invite) };
            self.change_membership(invite).await?;
        }
        if request.visibility.as_deref() == Some("public") {
            self.store.set_room_published(&room_id, true).await?;
        }
        Ok(room_id)
    }
}

/// The state events after the create event and the creator's join, in spec order.
fn initial_events(create: &CreateRoom<'_>, preset: &str, version: &RoomVersionId) -> Vec<(String, String, Value)> {
    let request = &create.request;
    let mut create_content = request.creation_content.clone().map(Value::Object).unwrap_or_else(|| json!({}));
    create_content["room_version"] = json!(version.as_str());
    if *version == RoomVersionId::V10 {
        create_content["creator"] = json!(create.creator);
    }
    let state = |event_type: &str, content: Value| (event_type.to_owned(), String::new(), content);
    let mut events = vec![state("m.room.create", create_content)];
    events.push(state("m.room.power_levels", power_levels(create, preset)));
    if let Some(alias) = &create.alias {
        events.push(state("m.room.canonical_alias", json!({ "alias": alias })));
    }
    let join_rule = if preset == "public_chat" { "public" } else { "invite" };
    events.push(state("m.room.join_rules", json!({ "join_rule": join_rule })));
    events.push(state("m.room.history_visibility", json!({ "history_visibility": "shared" })));
    if preset != "public_chat" {
        events.push(state("m.room.guest_access", json!({ "guest_access": "can_join" })));
    }
    // initial_state overrides the preset's events, but never the create event or power levels.
    for initial in &request.initial_state {
        if initial.event_type == "m.room.create" || initial.event_type == "m.room.power_levels" {
            continue;
        }
        events.retain(|(t, k, _)| !(*t == initial.event_type && *k == initial.state_key));
        events.push((initial.event_type.clone(), initial.state_key.clone(), initial.content.clone()));
    }
    if let Some(name) = &request.name {
        events.push(state("m.room.name", json!({ "name": name })));
    }
    if let Some(topic) = &request.topic {
        events.push(state("m.room.topic", json!({ "topic": topic })));
    }
    events
}

fn power_levels(create: &CreateRoom<'_>, preset: &str) -> Value {
    let mut users = json!({ create.creator: 100 });
    if preset == "trusted_private_chat" {
        for invitee in &create.request.invite {
            users[invitee] = json!(100);
        }
    }
    let mut content = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": if preset == "public_chat" { 50 } else { 0 },
    });
    if let Some(overrides) = &create.request.power_level_content_override {
        for (key, value) in overrides {
            content[key] = value.clone();
        }
    }
    content
}

fn random_localpart() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(18).map(char::from).collect()
}
