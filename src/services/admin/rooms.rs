//! Rooms as admins see them, and the federation destinations in backoff.

use std::cmp::Ordering;

use ruma::RoomId;
use ruma::events::AnyStateEvent;
use ruma::serde::Raw;
use serde::Serialize;
use serde_json::Value;

use super::{Admin, Page};
use crate::error::{ApiResult, MatrixError};
use crate::services::rooms::format;
use crate::store::{AdminRoomRow, StoredEvent};

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

/// A room as the room list shows it, in Synapse's shape.
#[derive(Debug, Serialize)]
pub struct ListedRoom {
    pub room_id: String,
    pub name: Option<String>,
    pub canonical_alias: Option<String>,
    pub joined_members: i64,
    pub joined_local_members: i64,
    pub version: String,
    pub creator: String,
    pub encryption: Option<String>,
    pub federatable: bool,
    pub public: bool,
    pub join_rules: Option<String>,
    pub guest_access: Option<String>,
    pub history_visibility: Option<String>,
    pub state_events: i64,
    pub room_type: Option<String>,
}

/// A page of the room list: `next_batch` while more remain, `prev_batch` after the
/// first page (offsets).
#[derive(Debug, Serialize)]
pub struct RoomList {
    pub rooms: Vec<ListedRoom>,
    pub offset: i64,
    pub total_rooms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_batch: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_batch: Option<i64>,
}

/// One room: its summary and a few more details.
#[derive(Debug, Serialize)]
pub struct RoomDetails {
    #[serde(flatten)]
    pub summary: ListedRoom,
    pub topic: Option<String>,
    pub avatar: Option<String>,
    pub joined_local_devices: i64,
    pub forgotten: bool,
}

/// A room's joined members.
#[derive(Debug, Serialize)]
pub struct RoomMembers {
    pub members: Vec<String>,
    pub total: usize,
}

/// A room's current state, as clients see events.
#[derive(Debug, Serialize)]
pub struct RoomState {
    pub state: Vec<Raw<AnyStateEvent>>,
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

    fn listed(&self) -> ListedRoom {
        let text = |event_type, key| self.text(event_type, key).map(str::to_owned);
        ListedRoom {
            room_id: self.row.room_id.clone(),
            name: self.name().map(str::to_owned),
            canonical_alias: self.canonical_alias().map(str::to_owned),
            joined_members: self.row.joined_members,
            joined_local_members: self.row.joined_local_members,
            version: self.row.version.clone(),
            creator: self.creator().to_owned(),
            encryption: self.encryption().map(str::to_owned),
            federatable: self.federatable(),
            public: self.row.public,
            join_rules: text("m.room.join_rules", "join_rule"),
            guest_access: text("m.room.guest_access", "guest_access"),
            history_visibility: text("m.room.history_visibility", "history_visibility"),
            state_events: self.row.state_events,
            room_type: text("m.room.create", "type"),
        }
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

/// A state event in the client format, passed through as its JSON.
fn client_state_event(event: &StoredEvent) -> ApiResult<Raw<AnyStateEvent>> {
    let json = serde_json::value::to_raw_value(&format::client_event(event))
        .map_err(|err| MatrixError::internal("serializing a state event", err))?;
    Ok(Raw::from_json(json))
}

fn room_not_found() -> MatrixError {
    MatrixError::not_found("Room not found")
}

impl Admin {
    /// `GET /_synapse/admin/v1/rooms`.
    pub async fn list_rooms(&self, query: &RoomQuery) -> ApiResult<RoomList> {
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
        let page = rooms.iter().skip(from as usize).take(limit as usize).map(Summary::listed).collect();
        Ok(RoomList {
            rooms: page,
            offset: from,
            total_rooms: total,
            next_batch: (from.saturating_add(limit) < total).then(|| from + limit),
            prev_batch: (from > 0).then(|| (from - limit).max(0)),
        })
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}`.
    pub async fn room(&self, room_id: &RoomId) -> ApiResult<RoomDetails> {
        let server_name = self.server_name.as_str();
        let row = self.store.admin_rooms(server_name, Some(room_id.as_str())).await?;
        let summary = Summary { row: row.into_iter().next().ok_or_else(room_not_found)? };
        Ok(RoomDetails {
            summary: summary.listed(),
            topic: summary.text("m.room.topic", "topic").map(str::to_owned),
            avatar: summary.text("m.room.avatar", "url").map(str::to_owned),
            joined_local_devices: self.store.joined_local_devices(room_id.as_str(), server_name).await?,
            forgotten: false,
        })
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/members`: the joined members.
    pub async fn room_members(&self, room_id: &RoomId) -> ApiResult<RoomMembers> {
        self.require_room(room_id).await?;
        let members: Vec<String> = self
            .store
            .room_members(room_id.as_str())
            .await?
            .into_iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.user_id)
            .collect();
        Ok(RoomMembers { total: members.len(), members })
    }

    /// `GET /_synapse/admin/v1/rooms/{roomId}/state`: the current state, as clients
    /// see events.
    pub async fn room_state(&self, room_id: &RoomId) -> ApiResult<RoomState> {
        self.require_room(room_id).await?;
        let state = self.store.current_state(room_id.as_str()).await?;
        let events = self.rooms.state_events(&state).await?;
        let state = events.iter().map(client_state_event).collect::<ApiResult<_>>()?;
        Ok(RoomState { state })
    }

    async fn require_room(&self, room_id: &RoomId) -> ApiResult<()> {
        match self.store.room_version(room_id.as_str()).await? {
            Some(_) => Ok(()),
            None => Err(room_not_found()),
        }
    }
}
