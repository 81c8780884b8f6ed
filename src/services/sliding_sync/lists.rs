//! The room lists: which rooms a user's lists hold, filtered, ordered as Synapse orders
//! them (newest "bump" event first), and the windows (`ranges`) a request asks for.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ruma::api::client::sync::sync_events::v5::request::{List, ListFilters};
use ruma::directory::RoomTypeFilter;
use ruma::{OwnedRoomId, UserId};
use serde_json::Value;

use super::user_rooms::{MAX_CATCH_UP, UserRooms, sort};
use super::{ListSpaces, SlidingSync};
use crate::error::ApiResult;
use crate::services::sync::SyncToken;
use crate::store::{BUMP_EVENT_TYPES, Membership};

/// A room lists may show the user.
#[derive(Clone)]
pub struct ListedRoom {
    pub room_id: OwnedRoomId,
    /// Shared with the kept list's copies.
    pub membership: Arc<Membership>,
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

    /// Whether an answer continuing from `since` shows it: a room the user left
    /// themselves only when they left after `since`.
    fn shown_since(&self, user: &UserId, since: Option<i64>) -> bool {
        let membership = &self.membership;
        !matches!(membership.membership.as_str(), "leave" | "ban")
            || membership.sender != user.as_str()
            || since.is_some_and(|since| membership.stream_ordering > since)
    }
}

/// The rooms the lists of one answer may show, newest bump first.
pub struct Listed {
    kept: Arc<UserRooms>,
    since: Option<i64>,
    user: ruma::OwnedUserId,
}

impl Listed {
    pub fn iter(&self) -> impl Iterator<Item = &ListedRoom> {
        self.kept.rooms.iter().filter(|room| room.shown_since(&self.user, self.since))
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
    /// bump first. From the user's kept list, brought up to `head`.
    pub(super) async fn listed_rooms(&self, user: &UserId, since: Option<i64>, head: SyncToken) -> ApiResult<Listed> {
        let memberships = self.store.shared_memberships_of_user(user.as_str()).await?;
        let kept = match self.kept_lists.get(user) {
            Some(kept) if kept.made_from(&memberships) && head.events - kept.events <= MAX_CATCH_UP => {
                self.caught_up(user, kept, head).await?
            }
            _ => None,
        };
        let kept = match kept {
            Some(kept) => kept,
            None => {
                let fresh = Arc::new(self.read_user_rooms(user, memberships, head).await?);
                self.kept_lists.put(user, fresh.clone());
                fresh
            }
        };
        Ok(Listed { kept, since, user: user.to_owned() })
    }

    /// A kept list brought up to `head` (kept again when it moved), or None when it
    /// must be read afresh (`m.direct` changed).
    async fn caught_up(
        &self,
        user: &UserId,
        kept: Arc<UserRooms>,
        head: SyncToken,
    ) -> ApiResult<Option<Arc<UserRooms>>> {
        let mut moved: Option<UserRooms> = None;
        if head.account_data > kept.account_data {
            if self.direct_rooms(user).await? != kept.direct {
                return Ok(None);
            }
            moved.get_or_insert_with(|| kept.as_ref().clone()).account_data = head.account_data;
        }
        if head.events > kept.events {
            let bumps = self.store.bump_stamps_between(kept.events, head.events).await?;
            moved.get_or_insert_with(|| kept.as_ref().clone()).bump(&bumps, head.events);
        }
        Ok(Some(match moved {
            Some(moved) => {
                let moved = Arc::new(moved);
                self.kept_lists.put(user, moved.clone());
                moved
            }
            None => kept,
        }))
    }

    /// The user's list read from their memberships and the rooms' bump stamps.
    async fn read_user_rooms(
        &self,
        user: &UserId,
        memberships: Arc<Vec<Membership>>,
        head: SyncToken,
    ) -> ApiResult<UserRooms> {
        let direct = self.direct_rooms(user).await?;
        // Joined rooms' bump stamps as kept per room, in one query; the others' up to
        // their membership.
        let joined_bumps: HashMap<String, i64> =
            self.store.joined_bump_stamps(user.as_str()).await?.into_iter().collect();
        let mut rooms = Vec::new();
        for membership in memberships.iter() {
            let kept = match membership.membership.as_str() {
                "join" | "invite" | "knock" => true,
                "leave" | "ban" => !membership.forgotten,
                _ => false,
            };
            let Ok(room_id) = OwnedRoomId::try_from(membership.room_id.as_str()) else { continue };
            if !kept {
                continue;
            }
            let bump = match membership.membership.as_str() {
                // One written since `head` was read shows from the next answer.
                "join" => joined_bumps.get(room_id.as_str()).map(|bump| (*bump).min(head.events)),
                _ => {
                    let until = membership.stream_ordering;
                    self.store.newest_event_position(room_id.as_str(), BUMP_EVENT_TYPES, until).await?
                }
            };
            let is_dm = direct.contains(room_id.as_str()) || self.invited_as_direct(membership).await?;
            rooms.push(ListedRoom {
                room_id,
                bump_stamp: bump.unwrap_or(membership.stream_ordering),
                membership: Arc::new(membership.clone()),
                is_dm,
            });
        }
        sort(&mut rooms);
        Ok(UserRooms { events: head.events, account_data: head.account_data, memberships, direct, rooms })
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

    /// The rooms each list that filters by space may hold: the children the spaces
    /// name (`m.space.child`), of the spaces the user is joined to, not their subspaces'
    /// (MSC4186; Synapse 1.163 does not implement this filter and answers 500).
    pub(super) async fn rooms_in_spaces(
        &self,
        spaces: &ListSpaces,
        rooms: &Listed,
    ) -> ApiResult<HashMap<String, HashSet<OwnedRoomId>>> {
        let joined: HashSet<&OwnedRoomId> = rooms.iter().filter(|r| r.is_joined()).map(|r| &r.room_id).collect();
        let mut children_of: HashMap<&OwnedRoomId, Vec<OwnedRoomId>> = HashMap::new();
        let mut in_spaces = HashMap::new();
        for (list, list_spaces) in spaces {
            let mut allowed = HashSet::new();
            for space in list_spaces.iter().filter(|space| joined.contains(space)) {
                if !children_of.contains_key(space) {
                    children_of.insert(space, self.spaces.child_room_ids(space).await?);
                }
                allowed.extend(children_of[space].iter().cloned());
            }
            in_spaces.insert(list.clone(), allowed);
        }
        Ok(in_spaces)
    }

    /// Each list's count and the rooms in its ranges.
    pub(super) async fn windows(
        &self,
        lists: &BTreeMap<String, List>,
        rooms: &Listed,
        in_spaces: &HashMap<String, HashSet<OwnedRoomId>>,
    ) -> ApiResult<BTreeMap<String, ListWindow>> {
        let mut windows = BTreeMap::new();
        for (name, list) in lists {
            let mut matching = Vec::new();
            let space_rooms = in_spaces.get(name);
            for room in rooms.iter() {
                if space_rooms.is_some_and(|allowed| !allowed.contains(&room.room_id)) {
                    continue;
                }
                if self.matches(list.filters.as_ref(), room).await? {
                    matching.push(&room.room_id);
                }
            }
            let mut in_ranges = Vec::new();
            for (start, end) in &list.ranges {
                let (start, end) = (u64::from(*start) as usize, u64::from(*end) as usize);
                for room_id in matching.iter().skip(start).take(end.saturating_sub(start).saturating_add(1)) {
                    if !in_ranges.contains(*room_id) {
                        in_ranges.push((*room_id).clone());
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
