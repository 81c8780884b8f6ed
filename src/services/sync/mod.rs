//! `/sync`: initial and incremental, long-polling on the event, typing, receipt and
//! account-data streams.
//!
//! A sync token is `s{events}_{account_data}_{receipts}_{typing}_{to_device}_{device_lists}`:
//! the position reached on each stream (missing parts of older tokens are 0).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ruma::api::client::sync::sync_events::UnreadNotificationsCount;
use ruma::api::client::sync::sync_events::v3::{
    self, InviteState, InvitedRoom, JoinedRoom, LeftRoom, Response, RoomAccountData, RoomSummary, State, StateEvents,
    Timeline,
};
use ruma::events::push_rules::PushRulesEventContent;
use ruma::events::receipt::{Receipt, ReceiptEventContent, ReceiptType};
use ruma::events::typing::TypingEventContent;
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, UInt, UserId};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use super::account_data::AccountData;
use super::ephemeral::Ephemeral;
use super::keys::Keys;
use super::push::Push;
use super::rooms::Rooms;
use super::rooms::filter::EventFilter;
use super::rooms::format::{STRIPPED_STATE_TYPES, raw_client_event, raw_event, stripped_event};
use super::to_device::{SYNC_BATCH, ToDevice};
use crate::error::{ApiResult, MatrixError};
use crate::store::{Membership, StateMap, Store, StoredEvent};

/// Long polls wait at most this long, whatever the client asks.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_TIMELINE_LIMIT: i64 = 10;
/// An incremental sync first asks which rooms moved when its token is at most this many
/// positions behind on a stream; further behind, it reads every room as an initial
/// sync would (a range that long costs more to scan than the rooms).
const MOVED_ROOMS_WINDOW: i64 = 10_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncToken {
    pub events: i64,
    pub account_data: i64,
    pub receipts: i64,
    pub typing: u64,
    pub to_device: i64,
    pub device_lists: i64,
}

impl SyncToken {
    pub fn parse(token: &str) -> ApiResult<Self> {
        let invalid = || MatrixError::invalid_param(format!("Invalid since token: {token}"));
        let parts: Vec<&str> = token.strip_prefix('s').ok_or_else(invalid)?.split('_').collect();
        let number = |i: usize| -> ApiResult<i64> {
            parts.get(i).map_or(Ok(0), |p| p.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(invalid))
        };
        Ok(Self {
            events: number(0)?,
            account_data: number(1)?,
            receipts: number(2)?,
            typing: number(3)? as u64,
            to_device: number(4)?,
            device_lists: number(5)?,
        })
    }

    pub fn format(&self) -> String {
        let Self { events, account_data, receipts, typing, to_device, device_lists } = self;
        format!("s{events}_{account_data}_{receipts}_{typing}_{to_device}_{device_lists}")
    }
}

/// An event of any type as `{type, content}`: account data (of any type, stored as the
/// client sent it) and ephemeral events, serialised straight into ruma's raw events.
#[derive(Serialize)]
struct TypeAndContent<'a, C> {
    #[serde(rename = "type")]
    kind: &'a str,
    content: C,
}

pub(crate) fn raw_type_and_content<T, C: Serialize>(kind: &str, content: C) -> ApiResult<Raw<T>> {
    raw_event(&TypeAndContent { kind, content })
}

fn count(n: impl TryInto<UInt>) -> UInt {
    n.try_into().unwrap_or_default()
}

/// IDs read from the store, those that parse (the store holds only valid ones).
fn parse_ids<'a, T: TryFrom<&'a str>>(ids: impl IntoIterator<Item = &'a String>) -> Vec<T> {
    ids.into_iter().filter_map(|id| T::try_from(id.as_str()).ok()).collect()
}

/// What the client asked for, with its filter resolved.
pub struct SyncParams {
    /// The syncing device: its to-device inbox and key counts.
    pub device_id: String,
    pub since: Option<SyncToken>,
    pub full_state: bool,
    pub timeout: Duration,
    pub filter: Value,
}

struct RoomFilter {
    timeline_limit: i64,
    timeline: EventFilter,
    lazy_load_members: bool,
    /// Rooms whose state is partial (read once per sync, and only when a joined room is
    /// looked at), and rooms whose resync completed since the token.
    partial_state: Option<HashSet<String>>,
    resynced: HashSet<String>,
}

impl RoomFilter {
    fn from(filter: &Value) -> Self {
        let room = &filter["room"];
        Self {
            timeline_limit: room["timeline"]["limit"].as_i64().unwrap_or(DEFAULT_TIMELINE_LIMIT).clamp(0, 100),
            timeline: serde_json::from_value(room["timeline"].clone()).unwrap_or_default(),
            lazy_load_members: room["state"]["lazy_load_members"].as_bool().unwrap_or(false),
            partial_state: None,
            resynced: HashSet::new(),
        }
    }
}

/// What moved on the streams between an incremental sync's token and the heads: the
/// rooms of the user that nothing touched are not read at all.
struct Changes {
    /// Rooms with events since the token; `None` when the token is too far behind to ask.
    rooms_with_events: Option<HashSet<String>>,
    rooms_with_receipts: Option<HashSet<String>>,
    typing_since: Option<u64>,
    /// Whether a membership event is among the new events (or may be).
    memberships_moved: bool,
}

impl Changes {
    fn nothing(&self) -> bool {
        let empty = |rooms: &Option<HashSet<String>>| rooms.as_ref().is_some_and(HashSet::is_empty);
        empty(&self.rooms_with_events) && empty(&self.rooms_with_receipts) && self.typing_since.is_none()
    }
}

/// `/sync` for local clients.
pub struct ClientSync {
    store: Arc<Store>,
    rooms: Arc<Rooms>,
    ephemeral: Arc<Ephemeral>,
    account_data: Arc<AccountData>,
    push: Arc<Push>,
    keys: Arc<Keys>,
    to_device: Arc<ToDevice>,
    /// Set at shutdown: long polls answer at once with what they have.
    stopping: watch::Sender<bool>,
}

/// What a long poll (`/sync`, sliding sync) waits on: the streams whose moves may be
/// news for a client, and the server stopping.
pub(crate) struct Wakers {
    events: watch::Receiver<i64>,
    typing: watch::Receiver<u64>,
    receipts: watch::Receiver<u64>,
    account_data: watch::Receiver<u64>,
    keys: watch::Receiver<i64>,
    to_device: watch::Receiver<i64>,
    stopping: watch::Receiver<bool>,
}

impl Wakers {
    /// Whether the server is stopping (long polls then answer at once).
    pub(crate) fn stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Waits until a stream moves, the server starts stopping, or `deadline`; says
    /// whether it was the event stream alone, and to which position.
    pub(crate) async fn wait(&mut self, deadline: tokio::time::Instant) -> Woken {
        tokio::select! {
            _ = self.stopping.changed() => Woken::Other,
            _ = self.events.changed() => Woken::Events(*self.events.borrow_and_update()),
            _ = self.typing.changed() => Woken::Other,
            _ = self.receipts.changed() => Woken::Other,
            _ = self.account_data.changed() => Woken::Other,
            _ = self.keys.changed() => Woken::Other,
            _ = self.to_device.changed() => Woken::Other,
            _ = tokio::time::sleep_until(deadline) => Woken::Other,
        }
    }
}

/// What ended a long poll's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// Events were written, up to this position (or rooms changed without one).
    Events(i64),
    /// Another stream, the deadline, or the server stopping.
    Other,
}

impl ClientSync {
    pub fn new(
        store: Arc<Store>,
        rooms: Arc<Rooms>,
        ephemeral: Arc<Ephemeral>,
        account_data: Arc<AccountData>,
        push: Arc<Push>,
        keys: Arc<Keys>,
        to_device: Arc<ToDevice>,
    ) -> Self {
        Self { store, rooms, ephemeral, account_data, push, keys, to_device, stopping: watch::channel(false).0 }
    }

    /// Answers every long poll now and every later one at once (the server is stopping).
    pub fn stop_waiting(&self) {
        self.stopping.send_replace(true);
    }

    /// Answers at once when there is something new (or this is an initial sync), else
    /// waits for something to happen, up to the timeout.
    pub async fn sync(&self, user_id: &UserId, params: SyncParams) -> ApiResult<Response> {
        let mut wakers = self.wakers();
        let deadline = tokio::time::Instant::now() + params.timeout.min(MAX_TIMEOUT);
        let mut first = true;
        loop {
            let head = self.sync_head().await?;
            if first && let Some(since) = params.since {
                check_not_ahead(since, head)?;
            }
            first = false;
            let response = self.sync_once(user_id, &params, head).await?;
            let waiting = params.since.is_some() && !params.full_state && is_empty(&response);
            if !waiting || tokio::time::Instant::now() >= deadline || wakers.stopping() {
                return Ok(response);
            }
            // Events of other users' rooms wake every long poll: sync again only for
            // those that may concern this user.
            while let Woken::Events(up_to) = wakers.wait(deadline).await {
                if self.events_may_concern(user_id, head.events, up_to).await? {
                    break;
                }
            }
        }
    }

    /// Whether events written in `(after, up_to]` may change this user's `/sync` or
    /// sliding sync answer: one in a room they have a membership in, any membership
    /// event (it may be theirs), or a move of the stream without events (a resync or a
    /// purge).
    pub(crate) async fn events_may_concern(&self, user: &UserId, after: i64, up_to: i64) -> ApiResult<bool> {
        if up_to <= after {
            return Ok(true);
        }
        let moved = self.store.rooms_with_events_between(after, up_to).await?;
        if moved.is_empty() || moved.iter().any(|(_, memberships)| *memberships) {
            return Ok(true);
        }
        let rooms: HashSet<&str> = moved.iter().map(|(room, _)| room.as_str()).collect();
        let memberships = self.store.shared_memberships_of_user(user.as_str()).await?;
        Ok(memberships.iter().any(|m| rooms.contains(m.room_id.as_str())))
    }

    /// What a long poll waits on, from now on.
    pub(crate) fn wakers(&self) -> Wakers {
        let (typing, receipts) = self.ephemeral.subscribe();
        Wakers {
            events: self.rooms.subscribe(),
            typing,
            receipts,
            account_data: self.account_data.subscribe(),
            keys: self.keys.subscribe(),
            to_device: self.to_device.subscribe(),
            stopping: self.stopping.subscribe(),
        }
    }

    /// The position reached on every stream (one statement; typing is in memory).
    pub(crate) async fn sync_head(&self) -> ApiResult<SyncToken> {
        let heads = self.store.sync_heads().await?;
        Ok(SyncToken {
            events: heads.events,
            account_data: heads.account_data,
            receipts: heads.receipts,
            typing: self.ephemeral.typing_serial(),
            to_device: heads.to_device,
            device_lists: heads.device_lists,
        })
    }

    /// The rooms with news between `since` and `head`, in at most two statements.
    async fn changes(&self, since: SyncToken, head: SyncToken) -> ApiResult<Changes> {
        let (rooms_with_events, memberships_moved) = match head.events - since.events {
            ..=0 => (Some(HashSet::new()), false),
            1..=MOVED_ROOMS_WINDOW => {
                let rooms = self.store.rooms_with_events_between(since.events, head.events).await?;
                let memberships_moved = rooms.iter().any(|(_, membership)| *membership);
                (Some(rooms.into_iter().map(|(room, _)| room).collect()), memberships_moved)
            }
            _ => (None, true),
        };
        let rooms_with_receipts = match head.receipts - since.receipts {
            ..=0 => Some(HashSet::new()),
            1..=MOVED_ROOMS_WINDOW => {
                Some(self.store.rooms_with_receipts_between(since.receipts, head.receipts).await?.into_iter().collect())
            }
            _ => None,
        };
        // The typing serial restarts with the process: any difference may be news.
        let typing_since = (since.typing != head.typing).then_some(since.typing);
        Ok(Changes { rooms_with_events, rooms_with_receipts, typing_since, memberships_moved })
    }

    /// Whether an incremental sync must read a joined room: it was joined (or resynced)
    /// since the token, or something moved in it.
    fn has_news(&self, membership: &Membership, since: i64, filter: &RoomFilter, changes: &Changes) -> bool {
        let room_id = &membership.room_id;
        let moved = |rooms: &Option<HashSet<String>>| rooms.as_ref().is_none_or(|rooms| rooms.contains(room_id));
        membership.stream_ordering > since
            || filter.resynced.contains(room_id)
            || moved(&changes.rooms_with_events)
            || moved(&changes.rooms_with_receipts)
            || changes.typing_since.is_some_and(|typing| self.ephemeral.typing_in(room_id, typing).1)
    }

    async fn sync_once(&self, user: &UserId, params: &SyncParams, mut head: SyncToken) -> ApiResult<Response> {
        let user_id = user.as_str();
        let since = params.since.unwrap_or_default();
        let mut filter = RoomFilter::from(&params.filter);
        // An incremental sync reads only the streams that moved, and only the rooms they
        // moved in; one with nothing new reads no room at all.
        let changes = match params.since {
            Some(since) if !params.full_state => Some(self.changes(since, head).await?),
            _ => None,
        };
        if params.since.is_some() && since.events < head.events {
            filter.resynced = self.store.rooms_resynced_after(since.events).await?.into_iter().collect();
        }
        let account_data = match params.since {
            Some(since) if since.account_data >= head.account_data => Vec::new(),
            Some(since) => self.account_data.since(user, since.account_data).await?,
            None => self.account_data.since(user, 0).await?,
        };
        let quiet = changes.as_ref().is_some_and(Changes::nothing) && account_data.is_empty();
        let memberships = if quiet { Vec::new() } else { self.store.memberships_of_user(user_id).await? };
        let mut response = Response::new(String::new());
        for membership in memberships {
            let Ok(room_id) = OwnedRoomId::try_from(membership.room_id.as_str()) else { continue };
            let room_account_data: Vec<_> = account_data
                .iter()
                .filter(|(room, _, _)| *room == membership.room_id)
                .map(|(_, kind, content)| raw_type_and_content(kind, content))
                .collect::<ApiResult<_>>()?;
            let rooms = &mut response.rooms;
            match membership.membership.as_str() {
                "join" => {
                    if let Some(changes) = &changes
                        && room_account_data.is_empty()
                        && !self.has_news(&membership, since.events, &filter, changes)
                    {
                        continue;
                    }
                    if filter.partial_state.is_none() {
                        let rooms = self.store.partial_state_rooms().await?;
                        filter.partial_state = Some(rooms.into_iter().map(|r| r.room_id).collect());
                    }
                    let room = self.joined_room(user_id, &membership, params, &filter, head, room_account_data).await?;
                    if let Some(room) = room {
                        rooms.join.insert(room_id, room);
                    }
                }
                "invite" if params.since.is_none() || membership.stream_ordering > since.events => {
                    rooms.invite.insert(room_id, self.invited_room(&membership).await?);
                }
                "leave" | "ban"
                    if params.since.is_some() && membership.stream_ordering > since.events && !membership.forgotten =>
                {
                    rooms.leave.insert(room_id, self.left_room(&membership, since.events, &filter).await?);
                }
                _ => {}
            }
        }
        let global = account_data.iter().filter(|(room, _, _)| room.is_empty());
        response.account_data.events =
            global.clone().map(|(_, kind, content)| raw_type_and_content(kind, content)).collect::<ApiResult<_>>()?;
        // A first sync carries the push rules, defaults included, as Synapse's does.
        if params.since.is_none() && !global.clone().any(|(_, kind, _)| kind == "m.push_rules") {
            let rules = PushRulesEventContent::new(self.push.ruleset(user).await?);
            response.account_data.events.push(raw_type_and_content("m.push_rules", rules)?);
        }
        // Sharing a room starts or ends only with a membership change or a resync.
        let memberships_moved =
            changes.as_ref().is_none_or(|changes| changes.memberships_moved) || !filter.resynced.is_empty();
        self.add_encryption(&mut response, user, params, &mut head, memberships_moved).await?;
        response.next_batch = head.format();
        Ok(response)
    }

    /// To-device messages (those before `since` were acknowledged and go), users whose
    /// devices changed, and the device's key counts; `head` stops at the last message
    /// given when more wait.
    async fn add_encryption(
        &self,
        response: &mut Response,
        user: &UserId,
        params: &SyncParams,
        head: &mut SyncToken,
        memberships_moved: bool,
    ) -> ApiResult<()> {
        let since = params.since.unwrap_or_default();
        let messages = self.to_device.inbox(user, &params.device_id, since.to_device, head.to_device).await?;
        if messages.len() as i64 == SYNC_BATCH
            && let Some((last, _)) = messages.last()
        {
            head.to_device = *last;
        }
        let (mut changed, mut left) = (Vec::new(), Vec::new());
        if let Some(since) = params.since {
            if since.device_lists < head.device_lists {
                changed = self.keys.changes(user, since.device_lists, head.device_lists).await?;
            }
            if since.events < head.events && memberships_moved {
                changed.extend(self.keys.joined_since(user, since.events).await?);
                changed.sort_unstable();
                changed.dedup();
                left = self.keys.left_since(user, since.events).await?;
            }
        }
        response.to_device.events = messages.iter().map(|(_, m)| raw_event(m)).collect::<ApiResult<_>>()?;
        response.device_lists.changed = parse_ids(&changed);
        response.device_lists.left = parse_ids(&left);
        let (counts, fallback) = self.keys.key_counts(user, &params.device_id).await?;
        response.device_one_time_keys_count =
            counts.into_iter().map(|(algorithm, n)| (algorithm.as_str().into(), count(n))).collect();
        response.device_unused_fallback_key_types = Some(fallback.iter().map(|a| a.as_str().into()).collect());
        Ok(())
    }

    async fn joined_room(
        &self,
        user_id: &str,
        membership: &Membership,
        params: &SyncParams,
        filter: &RoomFilter,
        head: SyncToken,
        account_data: Vec<Raw<ruma::events::AnyRoomAccountDataEvent>>,
    ) -> ApiResult<Option<JoinedRoom>> {
        let room_id = &membership.room_id;
        let since = params.since.unwrap_or_default();
        // A room joined with a partial state shows in lazy-loading syncs at once, in
        // eager ones once its resync completes, as if joined then.
        if !filter.lazy_load_members && filter.partial_state.as_ref().is_some_and(|rooms| rooms.contains(room_id)) {
            return Ok(None);
        }
        let resynced = filter.resynced.contains(room_id);
        let newly_joined = params.since.is_none() || membership.stream_ordering > since.events || resynced;
        // A room joined since the last sync comes with its recent history, not only
        // with what happened after the join.
        let from = if newly_joined { 0 } else { since.events };
        let mut page = self.store.room_events(room_id, from, head.events, false, filter.timeline_limit + 1).await?;
        let limited = page.len() as i64 > filter.timeline_limit;
        page.truncate(filter.timeline_limit as usize);
        page.reverse();
        let ephemeral = self.ephemeral(room_id, params.since.map(|s| (s.receipts, s.typing)), head.receipts).await?;
        let quiet = page.is_empty() && ephemeral.is_empty() && account_data.is_empty();
        if params.since.is_some() && !params.full_state && !newly_joined && quiet {
            return Ok(None);
        }
        let state = if params.full_state || newly_joined || limited {
            self.state_before_timeline(room_id, &page, head.events, user_id, filter).await?
        } else {
            Vec::new()
        };
        let prev_batch = page.first().map_or(head.events, |first| first.stream_ordering - 1);
        let page = self.rooms.visible_events(user_id, page).await?;
        let timeline = page.iter().filter(|e| filter.timeline.matches(e));
        let (notifications, highlights) = self.push.unread_counts(user_id, room_id).await?;
        let mut room = JoinedRoom::new();
        room.timeline = timeline_of(timeline, limited, prev_batch)?;
        room.state = State::Before(StateEvents::from(state));
        room.ephemeral = v3::Ephemeral::new();
        room.ephemeral.events = ephemeral;
        room.account_data = RoomAccountData::new();
        room.account_data.events = account_data;
        room.unread_notifications = UnreadNotificationsCount::new();
        room.unread_notifications.highlight_count = Some(count(highlights));
        room.unread_notifications.notification_count = Some(count(notifications));
        room.summary = self.summary(room_id, user_id).await?;
        Ok(Some(room))
    }

    /// The room summary clients name rooms by: member counts and, for rooms without a
    /// name, up to five other members ("heroes").
    async fn summary(&self, room_id: &str, user_id: &str) -> ApiResult<RoomSummary> {
        let members = self.store.shared_room_members(room_id).await?;
        let with = |membership: &str| count(members.iter().filter(|m| m.membership == membership).count());
        let mut heroes: Vec<&String> = members
            .iter()
            .filter(|m| (m.membership == "join" || m.membership == "invite") && m.user_id != user_id)
            .map(|m| &m.user_id)
            .collect();
        heroes.sort_unstable();
        heroes.truncate(5);
        let mut summary = RoomSummary::new();
        summary.heroes = parse_ids(heroes);
        summary.joined_member_count = Some(with("join"));
        summary.invited_member_count = Some(with("invite"));
        Ok(summary)
    }

    /// The room state at the start of the timeline, without events the timeline repeats;
    /// with lazy loading, only the members who sent something in it (and the user).
    async fn state_before_timeline(
        &self,
        room_id: &str,
        timeline: &[StoredEvent],
        head: i64,
        user_id: &str,
        filter: &RoomFilter,
    ) -> ApiResult<Vec<Raw<ruma::events::AnySyncStateEvent>>> {
        let shared = match timeline.first().and_then(|e| e.state_group_before) {
            Some(group) => self.rooms.state_group(group).await?,
            None => self.rooms.state_at(room_id, head).await?,
        };
        let lazy_senders = filter.lazy_load_members.then(|| {
            let mut senders: HashSet<String> =
                timeline.iter().filter_map(|e| e.json["sender"].as_str().map(str::to_owned)).collect();
            senders.insert(user_id.to_owned());
            senders
        });
        let in_timeline: HashSet<&str> = timeline.iter().map(|e| e.event_id.as_str()).collect();
        // Copied from the shared map only what is sent.
        let mut state: StateMap = shared
            .iter()
            .filter(|((kind, key), id)| {
                let lazy_out = lazy_senders.as_ref().is_some_and(|s| kind == "m.room.member" && !s.contains(key));
                !lazy_out && !in_timeline.contains(id.as_str())
            })
            .map(|(key, id)| (key.clone(), id.clone()))
            .collect();
        if let Some(senders) = &lazy_senders {
            self.add_members_from_auth_events(&mut state, timeline, senders).await?;
            state.retain(|_, id| !in_timeline.contains(id.as_str()));
        }
        self.rooms.state_events(&state).await?.iter().map(raw_client_event).collect()
    }

    /// Senders whose membership the state lacks (a room joined with a partial state)
    /// get it from their events' auth events.
    async fn add_members_from_auth_events(
        &self,
        state: &mut StateMap,
        timeline: &[StoredEvent],
        senders: &HashSet<String>,
    ) -> ApiResult<()> {
        let has_member =
            |state: &StateMap, user: &str| state.contains_key(&("m.room.member".to_owned(), user.to_owned()));
        if senders.iter().all(|sender| has_member(state, sender)) {
            return Ok(());
        }
        let auth_ids: Vec<String> = timeline
            .iter()
            .flat_map(|e| e.json["auth_events"].as_array().into_iter().flatten())
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect();
        for event in self.store.events_by_id(&auth_ids).await? {
            if event.json["type"] == "m.room.member"
                && let Some(user) = event.json["state_key"].as_str()
                && senders.contains(user)
                && !has_member(state, user)
            {
                state.insert(("m.room.member".to_owned(), user.to_owned()), event.event_id.clone());
            }
        }
        Ok(())
    }

    async fn ephemeral(
        &self,
        room_id: &str,
        since: Option<(i64, u64)>,
        receipts_head: i64,
    ) -> ApiResult<Vec<Raw<ruma::events::AnySyncEphemeralRoomEvent>>> {
        let (receipts_since, typing_since) = since.unwrap_or((0, 0));
        let mut events = Vec::new();
        events.extend(self.typing_event(room_id, typing_since, since.is_none())?);
        // No receipt stored since the token: nothing to read (most wake-ups are messages).
        if since.is_none() || receipts_since < receipts_head {
            events.extend(self.receipt_event(room_id, receipts_since).await?);
        }
        Ok(events)
    }

    /// `m.typing` of a room when it changed after the typing serial `since` (or, for a
    /// first look, when anyone types).
    pub(crate) fn typing_event<T>(&self, room_id: &str, since: u64, first: bool) -> ApiResult<Option<Raw<T>>> {
        let (typing, changed) = self.ephemeral.typing_in(room_id, since);
        if !(changed || (first && !typing.is_empty())) {
            return Ok(None);
        }
        let content = TypingEventContent::new(parse_ids(&typing));
        raw_type_and_content("m.typing", content).map(Some)
    }

    /// `m.receipt` of a room with the receipts stored after position `since`.
    pub(crate) async fn receipt_event<T>(&self, room_id: &str, since: i64) -> ApiResult<Option<Raw<T>>> {
        let receipts = self.ephemeral.receipts_since(room_id, since).await?;
        if receipts.is_empty() {
            return Ok(None);
        }
        let mut content = BTreeMap::new();
        for receipt in receipts {
            let (Ok(event_id), Ok(user_id)) =
                (OwnedEventId::try_from(receipt.event_id), OwnedUserId::try_from(receipt.user_id))
            else {
                continue;
            };
            let ts = MilliSecondsSinceUnixEpoch(count(receipt.ts));
            let by_type: &mut BTreeMap<_, BTreeMap<_, _>> = content.entry(event_id).or_default();
            let by_user = by_type.entry(ReceiptType::from(receipt.receipt_type.as_str())).or_default();
            by_user.insert(user_id, Receipt::new(ts));
        }
        raw_type_and_content("m.receipt", ReceiptEventContent(content)).map(Some)
    }

    async fn invited_room(&self, membership: &Membership) -> ApiResult<InvitedRoom> {
        let stripped = self.invite_state(membership).await?;
        let events = stripped.iter().map(raw_event).collect::<ApiResult<Vec<_>>>()?;
        Ok(InvitedRoom::from(InviteState::from(events)))
    }

    /// The stripped state an invitee sees, the invite last.
    pub(crate) async fn invite_state(&self, membership: &Membership) -> ApiResult<Vec<Value>> {
        let invite = self.rooms.require_event(&membership.event_id).await?;
        // An invite to a room this server is not in carries the state its sender chose to show.
        if let Some(stripped) = invite.json["unsigned"]["invite_room_state"].as_array() {
            let mut events = stripped.clone();
            events.push(stripped_event(&invite));
            return Ok(events);
        }
        let mut state = match invite.state_group_before {
            Some(group) => self.store.state_group(group).await?,
            None => StateMap::new(),
        };
        let inviter = invite.json["sender"].as_str().unwrap_or_default().to_owned();
        state.retain(|(kind, key), _| {
            STRIPPED_STATE_TYPES.contains(&kind.as_str()) || (kind == "m.room.member" && *key == inviter)
        });
        let mut events: Vec<Value> = self.rooms.state_events(&state).await?.iter().map(stripped_event).collect();
        events.push(stripped_event(&invite));
        Ok(events)
    }

    async fn left_room(&self, membership: &Membership, since: i64, filter: &RoomFilter) -> ApiResult<LeftRoom> {
        let room_id = &membership.room_id;
        let mut page = self
            .store
            .room_events(room_id, since, membership.stream_ordering, false, filter.timeline_limit + 1)
            .await?;
        let limited = page.len() as i64 > filter.timeline_limit;
        page.truncate(filter.timeline_limit as usize);
        page.reverse();
        let prev_batch = page.first().map_or(membership.stream_ordering, |first| first.stream_ordering - 1);
        let page = self.rooms.visible_events(&membership.user_id, page).await?;
        let mut room = LeftRoom::new();
        room.timeline = timeline_of(page.iter(), limited, prev_batch)?;
        Ok(room)
    }
}

/// A room's timeline section: its events as clients see them, whether earlier ones were
/// left out, and where to page back from.
fn timeline_of<'a>(
    events: impl Iterator<Item = &'a StoredEvent>,
    limited: bool,
    prev_batch: i64,
) -> ApiResult<Timeline> {
    let mut timeline = Timeline::new();
    timeline.events = events.map(raw_client_event).collect::<ApiResult<_>>()?;
    timeline.limited = limited;
    timeline.prev_batch = Some(format!("t{prev_batch}"));
    Ok(timeline)
}

/// A token can only come from this server's streams: one past their heads is forged or
/// from another server. (The typing serial restarts with the process, so it may be.)
fn check_not_ahead(since: SyncToken, head: SyncToken) -> ApiResult<()> {
    if since.events > head.events
        || since.account_data > head.account_data
        || since.receipts > head.receipts
        || since.to_device > head.to_device
        || since.device_lists > head.device_lists
    {
        return Err(MatrixError::invalid_param("The since token is ahead of this server's streams"));
    }
    Ok(())
}

fn is_empty(response: &Response) -> bool {
    let rooms = &response.rooms;
    rooms.join.is_empty()
        && rooms.invite.is_empty()
        && rooms.leave.is_empty()
        && response.account_data.is_empty()
        && response.to_device.is_empty()
        && response.device_lists.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = SyncToken { events: 5, account_data: 2, receipts: 7, typing: 3, to_device: 4, device_lists: 1 };
        assert_eq!(SyncToken::parse(&token.format()).unwrap(), token);
        assert_eq!(SyncToken::parse("s9").unwrap(), SyncToken { events: 9, ..Default::default() });
        for bad in ["", "9", "s-1", "sx_1", "s1_2_3_x"] {
            assert!(SyncToken::parse(bad).is_err(), "{bad}");
        }
    }
}
