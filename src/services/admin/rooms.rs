//! Rooms as admins see them, and the federation destinations in backoff.

use std::cmp::Ordering;

use ruma::RoomId;
use serde_json::{Value, json};

use super::{Admin, Page};
use crate::error::{ApiResult, MatrixError};
use crate::services::rooms::format;
use crate::store::AdminRoomRow;

/// The orders of `GET /_synapse/admin/v1/rooms` (Synapse's `order_by` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomOrder {
    Name,
    CanonicalAlias,
    JoinedMembers,
    JoinedLocalMembers,
    Version,
    Creator,
    Encryption,
    Federatable,
    Public,
    JoinRules,
    GuestAccess,
    HistoryVisibility,
    StateEvents,
}

impl RoomOrder {
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "name" | "alphabetical" => Self::Name,
            "canonical_alias" => Self::CanonicalAlias,
            "joined_members" | "size" => Self::JoinedMembers,
            "joined_local_members" => Self::JoinedLocalMembers,
            "version" => Self::Version,
            "creator" => Self::Creator,
            "encryption" => Self::Encryption,
            "federatable" => Self::Federatable,
            "public" => Self::Public,
            "join_rules" => Self::JoinRules,
            "guest_access" => Self::GuestAccess,
            "history_visibility" => Self::HistoryVisibility,
            "state_events" => Self::StateEvents,
            _ => return None,
        })
    }

    /// Counts and versions list largest first by default, as in Synapse.
    fn largest_first(self) -> bool {
        matches!(self, Self::JoinedMembers | Self::JoinedLocalMembers | Self::Version | Self::StateEvents)
    }
}

/// Which rooms to list, and which page.
#[derive(Debug, Clone)]
pub struct RoomQuery {
    pub page: Page,
    pub order: RoomOrder,
    /// `dir=b` reverses the order.
    pub backwards: bool,
    /// A substring of the name or canonical alias (any case), or the exact room id.
    pub search_term: Option<String>,
    /// `Some(true)`: only rooms in the public room list; `Some(false)`: only others.
    pub public_rooms: Option<bool>,
    /// `Some(true)`: only rooms nobody is joined to; `Some(false)`: only others.
    pub empty_rooms: Option<bool>,
}

/// A room's summary, read from its current state.
struct Summary {
    row: AdminRoomRow,
}

impl Summary {
    fn field(&self, event_type: &str, key: &str) -> Option<&Value> {
        self.row.state.get(event_type).and_then(|content| content.get(key)).filter(|v| !v.is_null())
    }

    fn text(&self, event_type: &str, key: &str) -> Option<&str> {
        self.field(event_type, key).and_then(Value::as_str)
    }

    fn name(&self) -> Option<&str> {
        self.text("m.room.name", "name")
    }

    fn canonical_alias(&self) -> Option<&str> {
        self.text("m.room.canonical_alias", "alias")
    }

    fn encryption(&self) -> Option<&str> {
        self.text("m.room.encryption", "algorithm")
    }

    fn federatable(&self) -> bool {
        self.field("m.room.create", "m.federate").and_then(Value::as_bool).unwrap_or(true)
    }

    /// Who created the room: the create event's `creator` (older rooms) or the
    /// creator kith recorded (its sender).
    fn creator(&self) -> &str {
        self.text("m.room.create", "creator").unwrap_or(&self.row.creator)
    }

    fn json(&self) -> Value {
        json!({
            "room_id": self.row.room_id,
            "name": self.name(),
            "canonical_alias": self.canonical_alias(),
            "joined_members": self.row.joined_members,
            "joined_local_members": self.row.joined_local_members,
            "version": self.row.version,
            "creator": self.creator(),
            "encryption": self.encryption(),
            "federatable": self.federatable(),
            "public": self.row.public,
            "join_rules": self.text("m.room.join_rules", "join_rule"),
            "guest_access": self.text("m.room.guest_access", "guest_access"),
            "history_visibility": self.text("m.room.history_visibility", "history_visibility"),
            "state_events": self.row.state_events,
            "room_type": self.text("m.room.create", "type"),
        })
    }

    /// `term` as given matches the room id; lowercased, part of the name or alias.
    fn matches(&self, term: &str, lowercase: &str) -> bool {
        let contains = |text: Option<&str>| text.is_some_and(|text| text.to_lowercase().contains(lowercase));
        self.row.room_id == term || contains(self.name()) || contains(self.canonical_alias())
    }

    /// Compares by the listed key only; rooms without a value sort last.
    fn compare(&self, other: &Self, order: RoomOrder) -> Ordering {
        fn texts(a: Option<&str>, b: Option<&str>) -> Ordering {
            match (a, b) {
                (Some(a), Some(b)) => a.cmp(b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        }
        let (a, b) = (&self.row, &other.row);
        match order {
            RoomOrder::Name => texts(self.name(), other.name()),
            RoomOrder::CanonicalAlias => texts(self.canonical_alias(), other.canonical_alias()),
            RoomOrder::JoinedMembers => a.joined_members.cmp(&b.joined_members),
            RoomOrder::JoinedLocalMembers => a.joined_local_members.cmp(&b.joined_local_members),
            RoomOrder::Version => a.version.cmp(&b.version),
            RoomOrder::Creator => self.creator().cmp(other.creator()),
            RoomOrder::Encryption => texts(self.encryption(), other.encryption()),
            RoomOrder::Federatable => self.federatable().cmp(&other.federatable()),
            RoomOrder::Public => a.public.cmp(&b.public),
            RoomOrder::JoinRules => {
                texts(self.text("m.room.join_rules", "join_rule"), other.text("m.room.join_rules", "join_rule"))
            }
            RoomOrder::GuestAccess => texts(
                self.text("m.room.guest_access", "guest_access"),
                other.text("m.room.guest_access", "guest_access"),
            ),
            RoomOrder::HistoryVisibility => texts(
                self.text("m.room.history_visibility", "history_visibility"),
                other.text("m.room.history_visibility", "history_visibility"),
            ),
            RoomOrder::StateEvents => a.state_events.cmp(&b.state_events),
        }
    }
}

fn room_not_found() -> MatrixError {
    MatrixError::not_found("Room not found")
}

impl Admin {
    /// `GET /_synapse/admin/v1/rooms`.
    pub async fn list_rooms(&self, query: &RoomQuery) -> ApiResult<Value> {
        let rows = self.store.admin_rooms(self.server_name.as_str(), None).await?;
        let term = query.search_term.as_deref().map(|term| (term, term.to_lowercase()));
        let mut rooms: Vec<Summary> = rows
            .into_iter()
            .map(|row| Summary { row })
            .filter(|room| term.as_ref().is_none_or(|(term, lowercase)| room.matches(term, lowercase)))
            .filter(|room| query.public_rooms.is_none_or(|public| room.row.public == public))
            .filter(|room| query.empty_rooms.is_none_or(|empty| (room.row.joined_members == 0) == empty))
            .collect();
        let reverse = query.order.largest_first() != query.backwards;
        rooms.sort_by(|a, b| {
            let by_key = a.compare(b, query.order);
            let by_key = if reverse { by_key.reverse() } else { by_key };
            by_key.then_with(|| a.row.room_id.cmp(&b.row.room_id))
        });
        let total = rooms.len() as i64;
        let Page { from, limit } = query.page;
        let page: Vec<Value> = rooms.iter().skip(from as usize).take(limit as usize).map(Summary::json).collect();
        let mut answer = json!({ "rooms": page, "offset": from, "total_rooms": total });
        if from.saturating_add(limit) < total {
            answer["next_batch"] = json!(from + limit);
        }
        if from > 0 {
            answer["prev_batch"] = json!((from - limit).max(0));
        }
        Ok(answer)
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}`.
    pub async fn room(&self, room_id: &RoomId) -> ApiResult<Value> {
        let server_name = self.server_name.as_str();
        let row = self.store.admin_rooms(server_name, Some(room_id.as_str())).await?;
        let summary = Summary { row: row.into_iter().next().ok_or_else(room_not_found)? };
        let mut answer = summary.json();
        answer["topic"] = json!(summary.text("m.room.topic", "topic"));
        answer["avatar"] = json!(summary.text("m.room.avatar", "url"));
        answer["joined_local_devices"] = json!(self.store.joined_local_devices(room_id.as_str(), server_name).await?);
        answer["forgotten"] = json!(false);
        Ok(answer)
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/members`: the joined members.
    pub async fn room_members(&self, room_id: &RoomId) -> ApiResult<Value> {
        self.require_room(room_id).await?;
        let members: Vec<String> = self
            .store
            .room_members(room_id.as_str())
            .await?
            .into_iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.user_id)
            .collect();
        Ok(json!({ "total": members.len(), "members": members }))
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/state`: the current state, as clients
    /// see events.
    pub async fn room_state(&self, room_id: &RoomId) -> ApiResult<Value> {
        self.require_room(room_id).await?;
        let state = self.store.current_state(room_id.as_str()).await?;
        let events = self.rooms.state_events(&state).await?;
        Ok(json!({ "state": events.iter().map(format::client_event).collect::<Vec<_>>() }))
    }

    async fn require_room(&self, room_id: &RoomId) -> ApiResult<()> {
        match self.store.room_version(room_id.as_str()).await? {
            Some(_) => Ok(()),
            None => Err(room_not_found()),
        }
    }
}
