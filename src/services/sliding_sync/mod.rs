//! Simplified sliding sync (MSC4186, `org.matrix.simplified_msc3575`), as Synapse serves
//! it and matrix-rust-sdk (Element X) speaks it: room lists ordered by activity,
//! windows of them, room subscriptions, and the extensions, on connections that send
//! each room's changes once (`docs/sliding-sync.md`).
//!
//! It reads the same streams as `/sync` (`SyncToken`) and reuses its pieces (stripped
//! invite state, receipts, typing); what it adds is per-connection memory of what was
//! sent (`connections`), the lists (`lists`), and rooms answered by difference (`room`).

mod connections;
mod extensions;
mod lists;
mod required_state;
mod room;
mod room_kinds;
mod user_rooms;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryFutureExt, TryStreamExt};
use ruma::api::client::sync::sync_events::v5;
use ruma::{OwnedRoomId, UserId};

use self::connections::{ConnectionKey, Connections, Snapshot};
use self::extensions::ExtensionSpan;
use self::lists::{ListWindow, ListedRoom};
use self::required_state::RequiredState;
use self::room::{Known, RoomRequest, Span, uint};
use super::account_data::AccountData;
use super::keys::Keys;
use super::push::Push;
use super::rooms::Rooms;
use super::spaces::Spaces;
use super::sync::{ClientSync, SyncToken, Woken};
use super::to_device::ToDevice;
use crate::error::ApiResult;
use crate::store::Store;

/// Rooms of one answer computed at once (each holds a database connection at a time).
const ROOMS_AT_ONCE: usize = 4;
/// Long polls wait at most this long, whatever the client asks.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

pub struct SlidingSync {
    store: Arc<Store>,
    rooms: Arc<Rooms>,
    spaces: Arc<Spaces>,
    client_sync: Arc<ClientSync>,
    account_data: Arc<AccountData>,
    push: Arc<Push>,
    keys: Arc<Keys>,
    to_device: Arc<ToDevice>,
    connections: Connections,
    room_kinds: room_kinds::RoomKinds,
    kept_lists: user_rooms::KeptLists,
}

/// The spaces each list that filters by space names (`filters.spaces`, which ruma's
/// request lacks), by list name.
pub type ListSpaces = BTreeMap<String, Vec<OwnedRoomId>>;

/// Everything an answer needs from the request, beside the connection.
struct Asked<'a> {
    user: &'a UserId,
    device: &'a str,
    request: &'a v5::Request,
    spaces: &'a ListSpaces,
    previous: Option<&'a Snapshot>,
}

/// An answer and what it leaves the connection having been sent.
struct Answer {
    response: v5::Response,
    snapshot: Snapshot,
    /// Whether it carries anything the client has not seen (else a long poll waits).
    news: bool,
}

impl SlidingSync {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        rooms: Arc<Rooms>,
        spaces: Arc<Spaces>,
        client_sync: Arc<ClientSync>,
        account_data: Arc<AccountData>,
        push: Arc<Push>,
        keys: Arc<Keys>,
        to_device: Arc<ToDevice>,
    ) -> Self {
        Self {
            store,
            rooms,
            spaces,
            client_sync,
            account_data,
            push,
            keys,
            to_device,
            connections: Connections::new(),
            room_kinds: Default::default(),
            kept_lists: Default::default(),
        }
    }

    /// Answers at once for a new connection or when there is news since `pos`, else
    /// waits for news up to the timeout.
    pub async fn sync(
        &self,
        user: &UserId,
        device: &str,
        request: v5::Request,
        spaces: &ListSpaces,
    ) -> ApiResult<v5::Response> {
        let key = ConnectionKey {
            user: user.to_owned(),
            device: device.to_owned(),
            conn_id: request.conn_id.clone().unwrap_or_default(),
        };
        let resumed = request.pos.as_deref().map(|pos| self.connections.resume(&key, pos)).transpose()?;
        let (from, previous) = resumed.map_or((None, None), |(n, snapshot)| (Some(n), Some(snapshot)));
        let mut wakers = self.client_sync.wakers();
        let timeout = request.timeout.unwrap_or_default().min(MAX_TIMEOUT);
        let deadline = tokio::time::Instant::now() + timeout;
        let asked = Asked { user, device, request: &request, spaces, previous: previous.as_deref() };
        loop {
            let head = self.client_sync.sync_head().await?;
            let answer = self.answer(&asked, head).await?;
            let done = answer.news || from.is_none() || tokio::time::Instant::now() >= deadline || wakers.stopping();
            if done {
                let mut response = answer.response;
                response.pos = self.connections.record(&key, from, answer.snapshot);
                response.txn_id = request.txn_id.clone();
                return Ok(response);
            }
            // Events of other users' rooms wake every long poll: answer again only when
            // they may concern this user (an answer costs several reads, this check one
            // at most).
            while let Woken::Events(up_to) = wakers.wait(deadline).await {
                if self.client_sync.events_may_concern(user, head.events, up_to).await? {
                    break;
                }
            }
        }
    }

    async fn answer(&self, asked: &Asked<'_>, head: SyncToken) -> ApiResult<Answer> {
        let request = asked.request;
        let since = asked.previous.map(|p| p.token);
        let listed = self.listed_rooms(asked.user, since.map(|s| s.events), head).await?;
        let in_spaces = self.rooms_in_spaces(asked.spaces, &listed).await?;
        let windows = self.windows(&request.lists, &listed, &in_spaces).await?;
        let subscriptions: Vec<OwnedRoomId> = request.room_subscriptions.keys().cloned().collect();
        let wanted = room_requests(request, &windows);
        let mut snapshot = Snapshot { token: head, ..Default::default() };
        if let Some(previous) = asked.previous {
            snapshot.rooms = previous.rooms.clone();
        }
        let mut response = v5::Response::new(String::new());
        let span = Span { since: since.map(|s| s.events), head: head.events };
        let resynced: HashSet<String> = match since {
            Some(since) => self.store.rooms_resynced_after(since.events).await?.into_iter().collect(),
            None => HashSet::new(),
        };
        let mut new_rooms = HashSet::new();
        let asked_rooms: Vec<&ListedRoom> = listed.iter().filter(|room| wanted.contains_key(&room.room_id)).collect();
        let newest = self.newest_events_of_sent(asked.previous, &asked_rooms, head.events).await?;
        // Rooms are answered a few at a time: each waits mostly on the database.
        // (The futures are made first: a stream mapping borrowed rooms is not `Send`.)
        let pending: Vec<_> = asked_rooms
            .into_iter()
            .map(|room| {
                let known = Known {
                    sent: asked.previous.and_then(|p| p.rooms.get(&room.room_id)),
                    resynced: resynced.contains(room.room_id.as_str()),
                    newest_event: newest.get(room.room_id.as_str()).copied(),
                };
                self.room_answer(asked.user, room, &wanted[&room.room_id], known, span)
                    .map_ok(move |answer| (room, answer))
            })
            .collect();
        let answers: Vec<_> = futures_util::stream::iter(pending).buffered(ROOMS_AT_ONCE).try_collect().await?;
        for (room, answer) in answers {
            if let Some(answer) = answer {
                if answer.room.initial == Some(true) {
                    new_rooms.insert(room.room_id.clone());
                }
                response.rooms.insert(room.room_id.clone(), answer.room);
                snapshot.rooms.insert(room.room_id.clone(), answer.sent);
            }
        }
        for (name, window) in &windows {
            let mut list = v5::response::List::default();
            list.count = uint(window.count as i64);
            response.lists.insert(name.clone(), list);
            snapshot.list_counts.insert(name.clone(), window.count);
        }
        let lists_changed = asked.previous.is_none_or(|p| p.list_counts != snapshot.list_counts);
        let span =
            ExtensionSpan { since, head, windows: &windows, subscriptions: &subscriptions, new_rooms: &new_rooms };
        let extensions_news = self.add_extensions(asked, &mut response, &mut snapshot, &span).await?;
        let news = !response.rooms.is_empty() || lists_changed || extensions_news;
        Ok(Answer { response, snapshot, news })
    }

    /// The newest event of each joined room sent before, in one read: most of them have
    /// nothing new and are left out of the answer on that alone.
    async fn newest_events_of_sent(
        &self,
        previous: Option<&Snapshot>,
        rooms: &[&ListedRoom],
        head: i64,
    ) -> ApiResult<HashMap<String, i64>> {
        let Some(previous) = previous else { return Ok(HashMap::new()) };
        let sent: Vec<&str> = rooms
            .iter()
            .filter(|room| room.is_joined() && previous.rooms.contains_key(&room.room_id))
            .map(|room| room.room_id.as_str())
            .collect();
        if sent.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(self.store.newest_event_positions(&sent, head).await?.into_iter().collect())
    }

    /// Fills in the extensions asked for; whether they carry anything new.
    async fn add_extensions(
        &self,
        asked: &Asked<'_>,
        response: &mut v5::Response,
        snapshot: &mut Snapshot,
        span: &ExtensionSpan<'_>,
    ) -> ApiResult<bool> {
        let config = &asked.request.extensions;
        let extensions = &mut response.extensions;
        extensions.to_device =
            self.to_device_extension(asked.user, asked.device, &config.to_device, span.head.to_device).await?;
        let mut key_counts_changed = false;
        if config.e2ee.enabled == Some(true) {
            let (e2ee, counts) = self.e2ee_extension(asked.user, asked.device, span).await?;
            key_counts_changed = asked.previous.is_some_and(|p| p.one_time_key_counts != counts);
            snapshot.one_time_key_counts = counts;
            extensions.e2ee = e2ee;
        }
        extensions.account_data = self.account_data_extension(asked.user, &config.account_data, span).await?;
        extensions.receipts = self.receipts_extension(&config.receipts, span).await?;
        extensions.typing = self.typing_extension(&config.typing, span)?;
        Ok(extensions.to_device.as_ref().is_some_and(|t| !t.events.is_empty())
            || !extensions.e2ee.device_lists.is_empty()
            || key_counts_changed
            || !extensions.account_data.is_empty()
            || !extensions.receipts.is_empty()
            || !extensions.typing.is_empty())
    }

    /// Connections held in memory now.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }
}

/// What each room in a window or subscription is asked for: the largest timeline limit
/// and all the state any of them asks for.
fn room_requests(request: &v5::Request, windows: &BTreeMap<String, ListWindow>) -> HashMap<OwnedRoomId, RoomRequest> {
    let mut wanted: HashMap<OwnedRoomId, (u64, RequiredState)> = HashMap::new();
    let mut add = |room_id: &OwnedRoomId, limit: u64, state: &[(ruma::events::StateEventType, String)]| {
        let entry = wanted.entry(room_id.clone()).or_default();
        entry.0 = entry.0.max(limit);
        entry.1.merge(&RequiredState::new(state.iter().map(|(kind, key)| (kind.to_string(), key.clone()))));
    };
    for (name, list) in &request.lists {
        let Some(window) = windows.get(name) else { continue };
        for room_id in &window.room_ids {
            add(room_id, list.room_details.timeline_limit.into(), &list.room_details.required_state);
        }
    }
    for (room_id, subscription) in &request.room_subscriptions {
        add(room_id, subscription.timeline_limit.into(), &subscription.required_state);
    }
    // Rooms asked for the same way share one copy of what they asked for.
    let mut shared: Vec<Arc<RequiredState>> = Vec::new();
    wanted
        .into_iter()
        .map(|(room_id, (timeline_limit, state))| {
            let state = match shared.iter().find(|s| ***s == state) {
                Some(existing) => existing.clone(),
                None => {
                    let state = Arc::new(state);
                    shared.push(state.clone());
                    state
                }
            };
            (room_id, RoomRequest { timeline_limit, required_state: state })
        })
        .collect()
}
