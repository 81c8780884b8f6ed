//! Room upgrades (`POST /rooms/{roomId}/upgrade`), as Synapse does them: a new room of
//! the new version whose create event names its predecessor and which starts with the
//! old room's settings; then a tombstone in the old room, which is made read-only for
//! ordinary members; aliases and the public-list entry move to the new room.

use ruma::events::room::tombstone::RoomTombstoneEventContent;
use serde::Serialize;
use serde_json::{Map, Value};

use super::create::{CreateRoom, CreateRoomRequest, InitialState};
use super::membership::Profile;
use super::{NewEvent, Rooms};
use crate::error::{ApiResult, MatrixError};

/// The new room's `predecessor` (its create event's content): the old room and its last
/// event, as Synapse writes it, `null` when none (ruma's `PreviousRoom` marks `event_id`
/// deprecated and leaves it out when absent).
#[derive(Serialize)]
struct Predecessor<'a> {
    room_id: &'a str,
    event_id: Option<String>,
}

/// State the new room inherits (power levels go through the power-level override).
const INHERITED_STATE: &[&str] = &[
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.canonical_alias",
];

impl Rooms {
    /// Upgrades a room for a member allowed to send its tombstone; returns the new room.
    pub async fn upgrade(
        &self,
        room_id: &str,
        upgrader: &str,
        upgrader_profile: &Profile,
        new_version: &str,
        server_name: &str,
    ) -> ApiResult<String> {
        self.room_version(room_id).await?;
        if !self.may_send_state(room_id, upgrader, "m.room.tombstone").await? {
            return Err(MatrixError::forbidden("You are not allowed to upgrade this room"));
        }
        let request = self.successor_request(room_id, upgrader, new_version).await?;
        let create = CreateRoom { creator: upgrader, creator_profile: upgrader_profile, request, alias: None };
        let new_room = self.create_room(create, server_name).await?;
        let tombstone = NewEvent {
            room_id,
            sender: upgrader,
            event_type: "m.room.tombstone",
            state_key: Some(""),
            content: tombstone_content(&new_room)?,
            txn: None,
        };
        self.send(tombstone).await?;
        self.restrict_old_room(room_id, upgrader).await;
        let moved = self.store.move_aliases(room_id, &new_room).await?;
        if self.store.room_published(room_id).await? == Some(true) {
            self.store.set_room_published(room_id, false).await?;
            self.store.set_room_published(&new_room, true).await?;
        }
        tracing::info!(%room_id, %new_room, new_version, aliases = moved.len(), "room upgraded");
        Ok(new_room)
    }

    /// The `createRoom` request that recreates the old room's settings in the new version.
    async fn successor_request(
        &self,
        room_id: &str,
        upgrader: &str,
        new_version: &str,
    ) -> ApiResult<CreateRoomRequest> {
        let state = self.store.current_state(room_id).await?;
        let state_event = |kind: &str| state.get(&(kind.to_owned(), String::new())).cloned();
        let mut initial_state = Vec::new();
        for kind in INHERITED_STATE {
            if let Some(id) = state_event(kind) {
                let event = self.require_event(&id).await?;
                let content = event.json["content"].clone();
                initial_state.push(InitialState { event_type: (*kind).to_owned(), state_key: String::new(), content });
            }
        }
        let last_event = self.store.forward_extremities(room_id).await?.into_iter().next().map(|e| e.event_id);
        let mut creation_content = Map::new();
        let predecessor = Predecessor { room_id, event_id: last_event };
        let predecessor = serde_json::to_value(predecessor).map_err(|err| MatrixError::internal("predecessor", err))?;
        creation_content.insert("predecessor".to_owned(), predecessor);
        if let Some(id) = state_event("m.room.create") {
            let create = self.require_event(&id).await?;
            for key in ["m.federate", "type"] {
                if let Some(value) = create.json["content"].get(key) {
                    creation_content.insert(key.to_owned(), value.clone());
                }
            }
        }
        let mut power_levels = match state_event("m.room.power_levels") {
            Some(id) => self.require_event(&id).await?.json["content"].as_object().cloned().unwrap_or_default(),
            None => Map::new(),
        };
        // The upgrader sends the new room's first events, so needs the power to.
        let users = power_levels.entry("users").or_insert_with(|| Value::Object(Map::new()));
        let current = users[upgrader].as_i64().unwrap_or_default();
        users[upgrader] = Value::from(current.max(100));
        Ok(CreateRoomRequest {
            preset: Some("private_chat".to_owned()),
            room_version: Some(new_version.to_owned()),
            initial_state,
            creation_content: Some(creation_content),
            power_level_content_override: Some(power_levels),
            ..CreateRoomRequest::default()
        })
    }

    /// Ordinary members of the old room may no longer talk or invite there.
    async fn restrict_old_room(&self, room_id: &str, upgrader: &str) {
        let Ok(Some(levels)) = self.store.current_state_event(room_id, "m.room.power_levels", "").await else {
            return;
        };
        let mut content = levels.json["content"].clone();
        let restricted = (content["users_default"].as_i64().unwrap_or(0) + 1).max(50);
        let mut changed = false;
        for key in ["events_default", "invite"] {
            if content[key].as_i64().unwrap_or(0) < restricted {
                content[key] = Value::from(restricted);
                changed = true;
            }
        }
        if !changed {
            return;
        }
        let event = NewEvent {
            room_id,
            sender: upgrader,
            event_type: "m.room.power_levels",
            state_key: Some(""),
            content,
            txn: None,
        };
        if let Err(err) = self.send(event).await {
            tracing::info!(%room_id, %err, "could not restrict the upgraded room");
        }
    }
}

/// The old room's `m.room.tombstone`, naming its successor.
fn tombstone_content(new_room: &str) -> ApiResult<Value> {
    let new_room = ruma::OwnedRoomId::try_from(new_room).map_err(|err| MatrixError::internal("new room id", err))?;
    let content = RoomTombstoneEventContent::new("This room has been replaced".to_owned(), new_room);
    serde_json::to_value(content).map_err(|err| MatrixError::internal("tombstone", err))
}
