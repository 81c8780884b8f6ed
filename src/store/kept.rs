//! Reads that every request or long poll repeats, kept in memory: access tokens' owners,
//! users' memberships, rooms' members, the partial-state rooms, the newest resync,
//! devices' key counts, which devices' to-device inboxes are empty and whether anyone
//! has a pusher.
//! A write transaction that changes one of them says so (`WriteTxn::forgets`), and what
//! is kept of that kind is dropped when it commits. A read that raced such a commit is
//! not kept (the generation moved), so nothing stale stays. One process writes.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::{Membership, PartialStateRoom, Store, TokenOwner};
use crate::services::bounded::BoundedMap;

/// How long a commit cut short is given to land (a COMMIT already sent takes
/// milliseconds) before reads are kept again.
const UNSURE_COMMIT_SETTLES: Duration = Duration::from_secs(5);
/// Access tokens whose owners are kept, at most.
const TOKEN_OWNERS: usize = 10_000;
/// Users whose memberships are kept, at most.
const USERS: usize = 2_000;
/// Rooms whose members are kept, at most.
const ROOMS: usize = 512;
/// A user's memberships or a room's members beyond this many rows are read each time,
/// so what is kept stays within tens of megabytes whatever the rooms' sizes.
const MEMBERSHIPS: usize = 5_000;
/// Partial-state rooms beyond this many are read each time.
const PARTIAL_STATE_ROOMS: usize = 1_000;
/// Devices whose key counts, and whose inboxes' emptiness, are kept, at most.
const DEVICES: usize = 10_000;

/// A device: (user id, device id).
type Device = (String, String);
/// One-time key counts by algorithm, and the algorithms of unused fallback keys.
pub type KeyCounts = (BTreeMap<String, i64>, Vec<String>);

/// What a write transaction changes among the kept reads.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Forget {
    /// Access tokens removed, or their owners' flags changed.
    pub tokens: bool,
    /// Room memberships written.
    pub memberships: bool,
    /// Partial-state rooms or resyncs written.
    pub partial_state: bool,
    /// One-time or fallback keys added or taken.
    pub keys: bool,
    /// To-device messages delivered into inboxes.
    pub inboxes: bool,
    /// Pushers added.
    pub pushers: bool,
    /// Stored events changed in place or removed (see `recent_events`).
    pub events: bool,
}

impl Forget {
    pub(super) fn everything() -> Self {
        Self {
            tokens: true,
            memberships: true,
            partial_state: true,
            keys: true,
            inboxes: true,
            pushers: true,
            events: true,
        }
    }

    fn any(self) -> bool {
        self.tokens || self.memberships || self.partial_state || self.keys || self.inboxes || self.pushers
    }
}

pub(super) struct Kept {
    /// Moves whenever something kept is dropped.
    generation: u64,
    /// Until when nothing read is kept: a commit cut short may still land meanwhile
    /// (see `forget_after_unsure_commit`).
    settling_until: Option<Instant>,
    token_owners: BoundedMap<String, TokenOwner>,
    user_memberships: BoundedMap<String, Arc<Vec<Membership>>>,
    room_members: BoundedMap<String, Arc<Vec<Membership>>>,
    partial_state_rooms: Option<Arc<Vec<PartialStateRoom>>>,
    /// The event-stream position of the newest resync (0: none).
    newest_resync: Option<i64>,
    key_counts: BoundedMap<Device, KeyCounts>,
    /// Devices whose to-device inbox was found empty.
    empty_inboxes: BoundedMap<Device, ()>,
    /// Whether any user has a pusher.
    any_pusher: Option<bool>,
}

impl Kept {
    /// Whether a read made at `generation` may be kept now.
    fn may_keep(&self, generation: u64) -> bool {
        self.generation == generation && self.settling_until.is_none_or(|until| Instant::now() >= until)
    }
}

impl Default for Kept {
    fn default() -> Self {
        Self {
            generation: 0,
            settling_until: None,
            token_owners: BoundedMap::new(TOKEN_OWNERS),
            user_memberships: BoundedMap::new(USERS),
            room_members: BoundedMap::new(ROOMS),
            partial_state_rooms: None,
            newest_resync: None,
            key_counts: BoundedMap::new(DEVICES),
            empty_inboxes: BoundedMap::new(DEVICES),
            any_pusher: None,
        }
    }
}

impl Store {
    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads `key` of a kind through memory: `get` finds it kept, `read` asks the
    /// database, `put` keeps the answer unless something changed meanwhile.
    async fn through<T: Clone>(
        &self,
        get: impl Fn(&Kept) -> Option<T>,
        read: impl Future<Output = Result<T, sqlx::Error>>,
        put: impl FnOnce(&mut Kept, T),
    ) -> Result<T, sqlx::Error> {
        let generation = {
            let kept = self.kept();
            if let Some(value) = get(&kept) {
                return Ok(value);
            }
            kept.generation
        };
        let value = read.await?;
        let mut kept = self.kept();
        if kept.may_keep(generation) {
            put(&mut kept, value.clone());
        }
        Ok(value)
    }

    /// After a commit whose caller was cancelled while it ran: it may have happened, or
    /// may still happen a moment later (the COMMIT was sent), so everything kept is
    /// dropped and, for a while, nothing read is kept, lest a read from before it lands
    /// be kept after it.
    pub(super) fn forget_after_unsure_commit(&self) {
        self.forget_kept(Forget::everything());
        self.kept().settling_until = Some(Instant::now() + UNSURE_COMMIT_SETTLES);
    }

    pub(super) fn forget_kept(&self, forget: Forget) {
        if !forget.any() {
            return;
        }
        let mut kept = self.kept();
        kept.generation += 1;
        if forget.tokens {
            kept.token_owners.clear();
        }
        if forget.memberships {
            kept.user_memberships.clear();
            kept.room_members.clear();
        }
        if forget.partial_state {
            kept.partial_state_rooms = None;
            kept.newest_resync = None;
        }
        if forget.keys {
            kept.key_counts.clear();
        }
        if forget.inboxes {
            kept.empty_inboxes.clear();
        }
        if forget.pushers {
            kept.any_pusher = None;
        }
    }

    /// Who holds a token (hashed), if anyone: every request asks.
    pub async fn token_owner(&self, token_hash: &str) -> Result<Option<TokenOwner>, sqlx::Error> {
        let key = token_hash.to_owned();
        self.through(
            |kept| kept.token_owners.get(&key).cloned().map(Some),
            self.read_token_owner(token_hash),
            |kept, owner| {
                if let Some(owner) = owner {
                    kept.token_owners.insert(key.clone(), owner);
                }
            },
        )
        .await
    }

    /// Every room a user has a membership in (any state), newest change last.
    pub async fn memberships_of_user(&self, user_id: &str) -> Result<Vec<Membership>, sqlx::Error> {
        Ok(self.shared_memberships_of_user(user_id).await?.as_ref().clone())
    }

    /// [`Self::memberships_of_user`] without a copy: the same `Arc` while nothing changed.
    pub async fn shared_memberships_of_user(&self, user_id: &str) -> Result<Arc<Vec<Membership>>, sqlx::Error> {
        let key = user_id.to_owned();
        let read =
            async { Ok(Arc::new(self.memberships_where("user_id = $1 ORDER BY stream_ordering", user_id).await?)) };
        let found = self
            .through(
                |kept| kept.user_memberships.get(&key).cloned(),
                read,
                |kept, found| {
                    if found.len() <= MEMBERSHIPS {
                        kept.user_memberships.insert(key.clone(), found);
                    }
                },
            )
            .await?;
        Ok(found)
    }

    /// A room's memberships (any state), by user id.
    pub async fn room_members(&self, room_id: &str) -> Result<Vec<Membership>, sqlx::Error> {
        Ok(self.shared_room_members(room_id).await?.as_ref().clone())
    }

    /// As `room_members`, shared with what is kept: every woken long poll of a big room
    /// counts its members, and copying them each time cost more than the counting.
    pub async fn shared_room_members(&self, room_id: &str) -> Result<Arc<Vec<Membership>>, sqlx::Error> {
        let key = room_id.to_owned();
        let read = async { Ok(Arc::new(self.memberships_where("room_id = $1 ORDER BY user_id", room_id).await?)) };
        self.through(
            |kept| kept.room_members.get(&key).cloned(),
            read,
            |kept, found| {
                if found.len() <= MEMBERSHIPS {
                    kept.room_members.insert(key.clone(), found);
                }
            },
        )
        .await
    }

    /// Rooms whose state is still partial, oldest join first.
    pub async fn partial_state_rooms(&self) -> Result<Vec<PartialStateRoom>, sqlx::Error> {
        let read = async { Ok(Arc::new(self.read_partial_state_rooms().await?)) };
        let found = self
            .through(
                |kept| kept.partial_state_rooms.clone(),
                read,
                |kept, found| {
                    if found.len() <= PARTIAL_STATE_ROOMS {
                        kept.partial_state_rooms = Some(found);
                    }
                },
            )
            .await?;
        Ok(found.as_ref().clone())
    }

    /// Rooms whose resync completed after the event-stream position `since`: none
    /// without a statement when the newest resync is older.
    pub async fn rooms_resynced_after(&self, since: i64) -> Result<Vec<String>, sqlx::Error> {
        let newest = self
            .through(
                |kept| kept.newest_resync,
                self.read_newest_resync(),
                |kept, newest| kept.newest_resync = Some(newest),
            )
            .await?;
        if newest <= since {
            return Ok(Vec::new());
        }
        self.read_rooms_resynced_after(since).await
    }

    /// A device's one-time key counts by algorithm and the algorithms of its unused
    /// fallback keys (sorted): every `/sync` asks for both.
    pub async fn device_key_counts(&self, user_id: &str, device_id: &str) -> Result<KeyCounts, sqlx::Error> {
        let key = (user_id.to_owned(), device_id.to_owned());
        self.through(
            |kept| kept.key_counts.get(&key).cloned(),
            self.read_device_key_counts(user_id, device_id),
            |kept, counts| kept.key_counts.insert(key.clone(), counts),
        )
        .await
    }

    /// Whether a device's to-device inbox was found empty since the last delivery.
    pub(super) fn inbox_known_empty(&self, user_id: &str, device_id: &str) -> bool {
        self.kept().empty_inboxes.get(&(user_id.to_owned(), device_id.to_owned())).is_some()
    }

    /// Notes a device's inbox empty, as read when the generation was `generation`.
    pub(super) fn note_inbox_empty(&self, user_id: &str, device_id: &str, generation: u64) {
        let mut kept = self.kept();
        if kept.may_keep(generation) {
            kept.empty_inboxes.insert((user_id.to_owned(), device_id.to_owned()), ());
        }
    }

    /// Whether any user has a pusher (most servers' gateway sender has nothing to do).
    pub async fn any_pusher(&self) -> Result<bool, sqlx::Error> {
        self.through(|kept| kept.any_pusher, self.read_any_pusher(), |kept, any| kept.any_pusher = Some(any)).await
    }

    pub(super) fn kept_generation(&self) -> u64 {
        self.kept().generation
    }

    /// Whether a read made at `generation` may be kept now (nothing dropped since, no
    /// commit cut short settling).
    pub(super) fn may_keep_read(&self, generation: u64) -> bool {
        self.kept().may_keep(generation)
    }
}
