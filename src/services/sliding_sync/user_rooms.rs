//! Each user's rooms as their lists see them (membership, bump stamp, DM), kept between
//! answers so that an answer does not read and sort a thousand rooms again. A kept list
//! is brought up to the head from the bump events written since (one range read on the
//! event stream), and read afresh only when the user's memberships or `m.direct`
//! changed, or when it fell far behind.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use ruma::{OwnedUserId, UserId};

use super::lists::ListedRoom;
use crate::store::Membership;

/// Rooms kept in all users' lists together (about 200 bytes each beside the memberships
/// the store keeps: 40 MB at most); past it every list is dropped and read again.
const MAX_KEPT_ROOMS: usize = 200_000;
/// A list further behind the head than this many events is read afresh, not caught up.
pub(super) const MAX_CATCH_UP: i64 = 10_000;

/// One user's rooms, exact at an event-stream and an account-data position.
#[derive(Clone)]
pub(super) struct UserRooms {
    /// The event-stream position the bump stamps are exact up to.
    pub events: i64,
    /// The account-data position `m.direct` was read at.
    pub account_data: i64,
    /// The memberships the list was made from.
    pub memberships: Arc<Vec<Membership>>,
    /// The rooms `m.direct` names.
    pub direct: HashSet<String>,
    /// Newest bump first, ties by room ID; rooms the user left themselves included
    /// (an answer shows them only right after they left).
    pub rooms: Vec<ListedRoom>,
}

impl UserRooms {
    /// What the list counts for against [`MAX_KEPT_ROOMS`]: its rooms and the
    /// memberships it holds on to (at least one, so that empty lists count too).
    fn weight(&self) -> usize {
        (self.rooms.len() + self.memberships.len()).max(1)
    }

    /// Whether the list was made from these memberships.
    pub fn made_from(&self, memberships: &Arc<Vec<Membership>>) -> bool {
        Arc::ptr_eq(&self.memberships, memberships) || self.memberships == *memberships
    }

    /// Moves the joined rooms that had bump events, up to `head`.
    pub fn bump(&mut self, bumps: &[(String, i64)], head: i64) {
        self.events = head;
        if bumps.is_empty() {
            return;
        }
        let bumps: HashMap<&str, i64> = bumps.iter().map(|(room, at)| (room.as_str(), *at)).collect();
        let mut moved = false;
        for room in self.rooms.iter_mut().filter(|room| room.is_joined()) {
            if let Some(at) = bumps.get(room.room_id.as_str()).filter(|at| **at > room.bump_stamp) {
                room.bump_stamp = *at;
                moved = true;
            }
        }
        if moved {
            sort(&mut self.rooms);
        }
    }
}

pub(super) fn sort(rooms: &mut [ListedRoom]) {
    rooms.sort_by(|a, b| b.bump_stamp.cmp(&a.bump_stamp).then_with(|| a.room_id.cmp(&b.room_id)));
}

/// The kept lists, by user.
#[derive(Default)]
pub(super) struct KeptLists {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    lists: HashMap<OwnedUserId, Arc<UserRooms>>,
    rooms: usize,
}

impl KeptLists {
    pub fn get(&self, user: &UserId) -> Option<Arc<UserRooms>> {
        self.lock().lists.get(user).cloned()
    }

    /// Keeps a user's list, unless a newer one was kept meanwhile.
    pub fn put(&self, user: &UserId, list: Arc<UserRooms>) {
        let mut kept = self.lock();
        if kept.lists.get(user).is_some_and(|old| old.events > list.events) {
            return;
        }
        let added = list.weight();
        if let Some(old) = kept.lists.insert(user.to_owned(), list) {
            kept.rooms = kept.rooms.saturating_sub(old.weight());
        }
        kept.rooms += added;
        if kept.rooms > MAX_KEPT_ROOMS {
            kept.lists.clear();
            kept.rooms = 0;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use ruma::OwnedRoomId;

    use super::*;

    fn room(room_id: &str, membership: &str, bump_stamp: i64) -> ListedRoom {
        ListedRoom {
            room_id: OwnedRoomId::try_from(room_id).unwrap(),
            membership: Arc::new(Membership {
                room_id: room_id.into(),
                user_id: "@u:x".into(),
                membership: membership.into(),
                event_id: "$e".into(),
                sender: "@u:x".into(),
                displayname: None,
                avatar_url: None,
                stream_ordering: 1,
                forgotten: false,
            }),
            bump_stamp,
            is_dm: false,
        }
    }

    #[test]
    fn bump_events_move_only_joined_rooms_up() {
        let rooms = vec![room("!a:x", "join", 9), room("!b:x", "join", 5), room("!c:x", "invite", 3)];
        let mut list =
            UserRooms { events: 10, account_data: 0, memberships: Arc::default(), direct: HashSet::new(), rooms };
        let bumps = [("!b:x".to_owned(), 12), ("!c:x".to_owned(), 13), ("!z:x".to_owned(), 14)];
        list.bump(&bumps, 14);
        let order: Vec<(&str, i64)> = list.rooms.iter().map(|r| (r.room_id.as_str(), r.bump_stamp)).collect();
        assert_eq!(order, [("!b:x", 12), ("!a:x", 9), ("!c:x", 3)], "an invite shows up to the invite");
        assert_eq!(list.events, 14);
    }

    #[test]
    fn kept_lists_stay_bounded_and_never_go_back() {
        let lists = KeptLists::default();
        let user = ruma::owned_user_id!("@u:x");
        let list = |events| {
            Arc::new(UserRooms {
                events,
                account_data: 0,
                memberships: Arc::default(),
                direct: HashSet::new(),
                rooms: vec![room("!a:x", "join", 1)],
            })
        };
        lists.put(&user, list(5));
        lists.put(&user, list(3));
        assert_eq!(lists.get(&user).map(|l| l.events), Some(5), "an older list is not kept over a newer one");
        assert_eq!(lists.lock().rooms, 1);
    }
}
