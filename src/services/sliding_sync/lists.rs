//! The room lists: which rooms a user's lists hold, filtered, ordered as Synapse orders
//! them (newest "bump" event first), and the windows (`ranges`) a request asks for.

use std::collections::{BTreeMap, HashMap, HashSet};

use ruma::api::client::sync::sync_events::v5::request::{List, ListFilters};
use ruma::directory::RoomTypeFilter;
use ruma::{OwnedRoomId, UserId};
use serde_json::Value;

use super::SlidingSync;
use crate::error::ApiResult;
use crate::store::{BUMP_EVENT_TYPES, Membership};

/// A room lists may show the user.
pub struct ListedRoom {
    pub room_id: OwnedRoomId,
    pub membership: Membership,
    /// The position of its newest bump event the user may see.
    pub bump_stamp: i64,
    pub is_dm: bool,
}

impl ListedRoom {
    pub fn is_joined(&self) -> bool {
        self.membership.membership == "join"
    }

    /// The newest event position the user may see: now when joined, else their
    /// membership's.
    pub fn visible_until(&self, head: i64) -> i64 {
        if self.is_joined() { head } else { self.membership.stream_ordering }
    }
}

/// The rooms of one list: how many match its filters and which are in its windows.
pub struct ListWindow {
    pub count: u64,
    pub room_ids: Vec<OwnedRoomId>,
}

impl SlidingSync {
    /// Joined, invited and knocked rooms; rooms the user was kicked or banned from until
    /// forgotten; rooms they left themselves only when they left after `since`; newest
    /// bump first.
    pub(super) async fn listed_rooms(
        &self,
        user: &UserId,
        since: Option<i64>,
        head: i64,
    ) -> ApiResult<Vec<ListedRoom>> {
        let direct = self.direct_rooms(user).await?;
        // Joined rooms' bump stamps as kept per room, in one query; the others' up to
        // their membership.
        let joined_bumps: HashMap<String, i64> =
            self.store.joined_bump_stamps(user.as_str()).await?.into_iter().collect();
        let mut rooms = Vec::new();
        for membership in self.rooms.memberships_of(user).await? {
            let shown = match membership.membership.as_str() {
                "join" | "invite" | "knock" => true,
                "leave" | "ban" if !membership.forgotten => {
                    membership.sender != user.as_str() || since.is_some_and(|since| membership.stream_ordering > since)
                }
                _ => false,
            };
            let Ok(room_id) = OwnedRoomId::try_from(membership.room_id.as_str()) else { continue };
            if !shown {
                continue;
            }
            let bump = match membership.membership.as_str() {
                // One written since `head` was read shows from the next answer.
                "join" => joined_bumps.get(room_id.as_str()).map(|bump| (*bump).min(head)),
                _ => {
                    let until = membership.stream_ordering;
                    self.store.newest_event_position(room_id.as_str(), BUMP_EVENT_TYPES, until).await?
                }
            };
            let is_dm = direct.contains(room_id.as_str()) || self.invited_as_direct(&membership).await?;
            rooms.push(ListedRoom {
                room_id,
                bump_stamp: bump.unwrap_or(membership.stream_ordering),
                membership,
                is_dm,
            });
        }
        rooms.sort_by(|a, b| b.bump_stamp.cmp(&a.bump_stamp).then_with(|| a.room_id.cmp(&b.room_id)));
        Ok(rooms)
    }

    /// The rooms `m.direct` names.
    async fn direct_rooms(&self, user: &UserId) -> ApiResult<HashSet<String>> {
        let content = self.account_data.find(user, None, "m.direct").await?.unwrap_or(Value::Null);
        let rooms = content.as_object().into_iter().flat_map(|users| users.values());
        Ok(rooms.filter_map(Value::as_array).flatten().filter_map(|r| r.as_str().map(str::to_owned)).collect())
    }

    async fn invited_as_direct(&self, membership: &Membership) -> ApiResult<bool> {
        if membership.membership != "invite" {
            return Ok(false);
        }
        let invite = self.rooms.require_event(&membership.event_id).await?;
        Ok(invite.json["content"]["is_direct"].as_bool() == Some(true))
    }

    /// Each list's count and the rooms in its ranges.
    pub(super) async fn windows(
        &self,
        lists: &BTreeMap<String, List>,
        rooms: &[ListedRoom],
    ) -> ApiResult<BTreeMap<String, ListWindow>> {
        let mut windows = BTreeMap::new();
        for (name, list) in lists {
            let mut matching = Vec::new();
            for room in rooms {
                if self.matches(list.filters.as_ref(), room).await? {
                    matching.push(room.room_id.clone());
                }
            }
            let mut in_ranges = Vec::new();
            for (start, end) in &list.ranges {
                let (start, end) = (u64::from(*start) as usize, u64::from(*end) as usize);
                for room_id in matching.iter().skip(start).take(end.saturating_sub(start).saturating_add(1)) {
                    if !in_ranges.contains(room_id) {
                        in_ranges.push(room_id.clone());
                    }
                }
            }
            windows.insert(name.clone(), ListWindow { count: matching.len() as u64, room_ids: in_ranges });
        }
        Ok(windows)
    }

    async fn matches(&self, filters: Option<&ListFilters>, room: &ListedRoom) -> ApiResult<bool> {
        let Some(filters) = filters else { return Ok(true) };
        if filters.is_dm.is_some_and(|dm| dm != room.is_dm)
            || filters.is_invite.is_some_and(|invite| invite != (room.membership.membership == "invite"))
        {
            return Ok(false);
        }
        if let Some(encrypted) = filters.is_encrypted
            && encrypted != self.is_encrypted(room).await?
        {
            return Ok(false);
        }
        if filters.room_types.is_empty() && filters.not_room_types.is_empty() {
            return Ok(true);
        }
        let room_type = self.room_type(room).await?;
        let is = |filter: &RoomTypeFilter| filter.as_str() == room_type.as_deref();
        Ok((filters.room_types.is_empty() || filters.room_types.iter().any(is))
            && !filters.not_room_types.iter().any(is))
    }

    /// Whether the room is encrypted; once seen encrypted (not through an invite's
    /// stripped state), it stays so.
    async fn is_encrypted(&self, room: &ListedRoom) -> ApiResult<bool> {
        let invited = room.membership.membership == "invite";
        if !invited && self.room_kinds.known_encrypted(room.room_id.as_str()) {
            return Ok(true);
        }
        let encrypted = self.room_state_content(room, "m.room.encryption").await?.is_some();
        if encrypted && !invited {
            self.room_kinds.set_encrypted(room.room_id.as_str());
        }
        Ok(encrypted)
    }

    /// The room's type from its create event (read once for a room the user is in).
    async fn room_type(&self, room: &ListedRoom) -> ApiResult<Option<String>> {
        let invited = room.membership.membership == "invite";
        if !invited && let Some(known) = self.room_kinds.room_type(room.room_id.as_str()) {
            return Ok(known);
        }
        let Some(create) = self.room_state_content(room, "m.room.create").await? else { return Ok(None) };
        let room_type = create["type"].as_str().map(str::to_owned);
        if !invited {
            self.room_kinds.set_room_type(room.room_id.as_str(), room_type.clone());
        }
        Ok(room_type)
    }

    /// The content of a state event with an empty state key, as the user may know it:
    /// the invite's stripped state for an invite.
    async fn room_state_content(&self, room: &ListedRoom, kind: &str) -> ApiResult<Option<Value>> {
        if room.membership.membership == "invite" {
            let stripped = self.client_sync.invite_state(&room.membership).await?;
            return Ok(stripped
                .into_iter()
                .find(|e| e["type"] == kind && e["state_key"] == "")
                .map(|e| e["content"].clone()));
        }
        let event = self.store.current_state_event(room.room_id.as_str(), kind, "").await?;
        Ok(event.map(|e| e.json["content"].clone()))
    }
}
