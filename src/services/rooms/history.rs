//! What other servers may read of a room's DAG: single events, the state at an event,
//! auth chains, missing events and backfill, each only for a server that could see it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ruma::api::federation::authorization::get_event_authorization;
use ruma::api::federation::backfill::get_backfill;
use ruma::api::federation::event::{get_event, get_room_state, get_room_state_ids};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedServerName, ServerName, UserId};
use serde_json::Value;
use serde_json::value::RawValue as RawJsonValue;

use crate::endpoints::federation::get_missing_events;
use crate::error::{ApiResult, MatrixError};
use crate::services::rooms::Rooms;
use crate::services::rooms::format::pdu_json;
use crate::store::{Store, StoredEvent};

mod read_ahead;
mod verdicts;
use read_ahead::ReadAhead;
use verdicts::Verdicts;

/// `get_missing_events` and `backfill` return at most this many events.
const MAX_EVENTS_PER_REQUEST: usize = 100;

pub struct History {
    store: Arc<Store>,
    server_name: OwnedServerName,
    rooms: Arc<Rooms>,
    verdicts: Verdicts,
}

impl History {
    pub fn new(store: Arc<Store>, server_name: OwnedServerName, rooms: Arc<Rooms>) -> Self {
        Self { store, server_name, rooms, verdicts: Verdicts::default() }
    }

    /// Whether `server` may see `event`: the room is world-readable at it, or a user of
    /// `server` was joined (or, for `invited`/`shared` history, invited) then, or for
    /// `shared` history one is joined now.
    pub async fn server_can_see(&self, server: &ServerName, event: &StoredEvent) -> ApiResult<bool> {
        self.can_see(server, event, &mut Sight::default()).await
    }

    /// [`Self::server_can_see`], keeping in `sight` what the next event of the same
    /// request may need again. Only the entries that decide are read of the state at
    /// the event: its history visibility and `server`'s members.
    async fn can_see(&self, server: &ServerName, event: &StoredEvent, sight: &mut Sight) -> ApiResult<bool> {
        if event.rejected {
            return Ok(false);
        }
        // Outliers (no group) are all decided against the current state.
        let group = event.state_group_after.or(event.state_group_before);
        if let Some(seen) = sight.by_group.get(&group) {
            return Ok(*seen);
        }
        let visible = self.decide_sight(server, event, group, sight).await?;
        sight.by_group.insert(group, visible);
        Ok(visible)
    }

    /// [`Self::can_see`] for an event whose state group (if any) was not decided yet in
    /// this request. The history visibility is read first, and then only what it leaves
    /// open: under `shared`, a server joined now sees it all, whatever its members were
    /// at the event, so their entries are not read. What a group decides is kept across
    /// requests (see `verdicts`).
    async fn decide_sight(
        &self,
        server: &ServerName,
        event: &StoredEvent,
        group: Option<i64>,
        sight: &mut Sight,
    ) -> ApiResult<bool> {
        let visibility = self.visibility_at(event, group, sight).await?;
        if &*visibility == "world_readable" {
            return Ok(true);
        }
        if &*visibility == "shared" && self.joined_now(server, &event.room_id, sight).await? {
            return Ok(true);
        }
        let Some(group) = group else {
            return Ok(self.members_could_see(server, event, None, &visibility, sight).await?.0);
        };
        if let Some(seen) = self.verdicts.members(group, server.as_str()) {
            return Ok(seen);
        }
        let (seen, decided) = self.members_could_see(server, event, Some(group), &visibility, sight).await?;
        if decided {
            self.verdicts.keep_members(group, server.as_str(), seen);
        }
        Ok(seen)
    }

    /// The history visibility at `group` (the current one for an outlier, held without
    /// the state at it); `shared` when the state has none.
    async fn visibility_at(&self, event: &StoredEvent, group: Option<i64>, sight: &mut Sight) -> ApiResult<Arc<str>> {
        if let Some(kept) = group.and_then(|group| self.verdicts.visibility(group)) {
            return Ok(kept);
        }
        let visibility_key = ("m.room.history_visibility".to_owned(), String::new());
        let visibility_id = match group {
            Some(group) => {
                self.rooms.state_group_select(group, |key| *key == visibility_key).await?.remove(&visibility_key)
            }
            None => {
                let current = self.store.current_state_event(&event.room_id, &visibility_key.0, "").await?;
                current.map(|current| {
                    let field = current.json["content"]["history_visibility"].as_str().map(str::to_owned);
                    sight.fields.insert(current.event_id.clone(), field);
                    current.event_id
                })
            }
        };
        let ids: Vec<String> = visibility_id.into_iter().collect();
        let visibility = self.content_fields(sight, ids.clone(), "history_visibility").await?;
        let visibility: Arc<str> =
            visibility.into_iter().flatten().next().unwrap_or_else(|| "shared".to_owned()).into();
        // Kept only when decided by what is held: an event not held yet may be later.
        if let Some(group) = group.filter(|_| all_held(sight, &ids)) {
            self.verdicts.keep_visibility(group, visibility.clone());
        }
        Ok(visibility)
    }

    /// Whether a member of `server` was joined at the event (or invited, unless the
    /// visibility is `joined`), from the state at `group` or else the current state; and
    /// whether that is final (a `false` read while some member event was not held is not).
    async fn members_could_see(
        &self,
        server: &ServerName,
        event: &StoredEvent,
        group: Option<i64>,
        visibility: &str,
        sight: &mut Sight,
    ) -> ApiResult<(bool, bool)> {
        let suffix = format!(":{server}");
        let state = match group {
            Some(group) => {
                self.rooms
                    .state_group_select(group, |(kind, key)| kind == "m.room.member" && key.ends_with(&suffix))
                    .await?
            }
            None => self.store.current_visibility_state(&event.room_id, server.as_str()).await?,
        };
        let member_ids: Vec<String> = state
            .iter()
            .filter(|((kind, key), _)| {
                kind == "m.room.member" && <&UserId>::try_from(key.as_str()).is_ok_and(|u| u.server_name() == server)
            })
            .map(|(_, id)| id.clone())
            .collect();
        let allowed = |m: &str| m == "join" || (m == "invite" && visibility != "joined");
        // A few at a time: the first member found allowed decides, and a server with
        // thousands of members in the room usually has one among the first read.
        for chunk in member_ids.chunks(MEMBERS_PER_READ) {
            let memberships = self.content_fields(sight, chunk.to_vec(), "membership").await?;
            if memberships.iter().flatten().any(|m| allowed(m)) {
                return Ok((true, true));
            }
        }
        Ok((false, all_held(sight, &member_ids)))
    }

    /// Whether a user of `server` is joined to the room now, asked once per request.
    async fn joined_now(&self, server: &ServerName, room_id: &str, sight: &mut Sight) -> ApiResult<bool> {
        if let Some(joined) = sight.joined_now {
            return Ok(joined);
        }
        let joined = self.store.server_joined(room_id, server.as_str()).await?;
        sight.joined_now = Some(joined);
        Ok(joined)
    }

    /// One string field of the content of each held event of `ids`, read once per
    /// request.
    async fn content_fields(&self, sight: &mut Sight, ids: Vec<String>, field: &str) -> ApiResult<Vec<Option<String>>> {
        let unread: Vec<String> = ids.iter().filter(|id| !sight.fields.contains_key(*id)).cloned().collect();
        if !unread.is_empty() {
            for event in self.store.events_by_id(&unread).await? {
                let value = event.json["content"][field].as_str().map(str::to_owned);
                sight.fields.insert(event.event_id, value);
            }
        }
        Ok(ids.iter().filter_map(|id| sight.fields.get(id).cloned()).collect())
    }

    /// An event of `room_id` (any room when None) that `server` may see, else 404/403.
    pub async fn event_for_server(
        &self,
        server: &ServerName,
        room_id: Option<&str>,
        event_id: &str,
    ) -> ApiResult<StoredEvent> {
        let event = self.store.get_event(event_id).await?.filter(|e| room_id.is_none_or(|r| r == e.room_id));
        let event = event.ok_or_else(|| MatrixError::not_found("Event not found"))?;
        if !self.server_can_see(server, &event).await? {
            return Err(MatrixError::forbidden("Your server may not see this event"));
        }
        Ok(event)
    }

    /// State answers of a partial-state room would be wrong: 403
    /// `M_UNABLE_DUE_TO_PARTIAL_STATE` (MSC3895), until the resync ends.
    async fn require_full_state(&self, room_id: &str) -> ApiResult<()> {
        if self.rooms.is_partial_state(room_id).await? {
            return Err(MatrixError::new(
                axum::http::StatusCode::FORBIDDEN,
                "M_UNABLE_DUE_TO_PARTIAL_STATE",
                "This server does not know the room's full state yet",
            )
            .with("org.matrix.msc3895.errcode", "ORG.MATRIX.MSC3895_UNABLE_DUE_TO_PARTIAL_STATE".into()));
        }
        Ok(())
    }

    /// `GET /event/{eventId}`.
    pub async fn serve_event(&self, server: &ServerName, event_id: &str) -> ApiResult<get_event::v1::Response> {
        let event = self.event_for_server(server, None, event_id).await?;
        let pdu =
            self.rooms.pdus(&[event.event_id]).await?.pop().ok_or_else(|| MatrixError::not_found("Event not found"))?;
        Ok(get_event::v1::Response::new(self.server_name.clone(), MilliSecondsSinceUnixEpoch::now(), pdu))
    }

    /// The state before `event_id` and its auth chain, as `(state ids, auth chain ids)`.
    pub async fn state_ids_at(
        &self,
        server: &ServerName,
        room_id: &str,
        event_id: &str,
    ) -> ApiResult<(Vec<String>, Vec<String>)> {
        self.require_full_state(room_id).await?;
        let event = self.event_for_server(server, Some(room_id), event_id).await?;
        let group =
            event.state_group_before.ok_or_else(|| MatrixError::not_found("The state at this event is not known"))?;
        let state: Vec<String> = self.rooms.state_group(group).await?.values().cloned().collect();
        let chain = self.rooms.auth_chain_of(state.clone()).await?;
        Ok((state, chain.into_iter().collect()))
    }

    /// `GET /state_ids/{roomId}`: the ids of the state before an event and of its auth
    /// chain.
    pub async fn serve_state_ids(
        &self,
        server: &ServerName,
        room_id: &str,
        event_id: &str,
    ) -> ApiResult<get_room_state_ids::v1::Response> {
        let (state, chain) = self.state_ids_at(server, room_id, event_id).await?;
        Ok(get_room_state_ids::v1::Response::new(event_ids(chain)?, event_ids(state)?))
    }

    /// `GET /state/{roomId}`: the state before an event and its auth chain, as PDUs.
    pub async fn serve_state(
        &self,
        server: &ServerName,
        room_id: &str,
        event_id: &str,
    ) -> ApiResult<get_room_state::v1::Response> {
        let (state, chain) = self.state_ids_at(server, room_id, event_id).await?;
        Ok(get_room_state::v1::Response::new(self.rooms.pdus(&chain).await?, self.rooms.pdus(&state).await?))
    }

    /// `GET /event_auth/{roomId}/{eventId}`: the event's auth chain.
    pub async fn serve_event_auth(
        &self,
        server: &ServerName,
        room_id: &str,
        event_id: &str,
    ) -> ApiResult<get_event_authorization::v1::Response> {
        self.require_full_state(room_id).await?;
        let event = self.event_for_server(server, Some(room_id), event_id).await?;
        let roots = event.json["auth_events"]
            .as_array()
            .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let chain: Vec<String> = self.rooms.auth_chain_of(roots).await?.into_iter().collect();
        Ok(get_event_authorization::v1::Response::new(self.rooms.pdus(&chain).await?))
    }

    /// `POST /get_missing_events/{roomId}`: events before `latest` back to (not
    /// including) `earliest`, oldest first. The walk is breadth first from `latest`, and
    /// takes the first `limit` events it may show (in the room, at `min_depth` or deeper,
    /// seen by the server); what it does not take, it does not walk past.
    pub async fn serve_missing_events(
        &self,
        server: &ServerName,
        request: &get_missing_events::Request,
    ) -> ApiResult<get_missing_events::Response> {
        let room_id = request.room_id.as_str();
        let ids = |list: &[OwnedEventId]| -> Vec<String> {
            list.iter().take(MAX_EVENTS_PER_REQUEST).map(ToString::to_string).collect()
        };
        let earliest_ids = ids(&request.earliest_events);
        let earliest: HashSet<String> = earliest_ids.iter().cloned().collect();
        let latest = ids(&request.latest_events);
        let limit = request.limit.clamp(1, MAX_EVENTS_PER_REQUEST as u64) as usize;
        let min_depth = request.min_depth;
        let mut ahead = ReadAhead::new(&self.store, earliest_ids, limit);
        ahead.read(&latest).await?;
        let mut sight = Sight::default();
        let mut queue: VecDeque<String> = VecDeque::new();
        for id in &latest {
            let event = self.start_of_walk(server, room_id, id, &mut ahead, &mut sight).await?;
            queue.extend(prev_ids(&event));
        }
        let mut found = Vec::new();
        let mut seen: HashSet<String> = latest.iter().cloned().collect();
        while let Some(id) = queue.pop_front() {
            if found.len() >= limit {
                break;
            }
            if earliest.contains(&id) || !seen.insert(id.clone()) {
                continue;
            }
            let event = ahead.event(&id, queue.iter()).await?;
            let Some(event) = event.filter(|e| e.room_id == room_id) else { continue };
            if event.depth < min_depth || !self.can_see(server, &event, &mut sight).await? {
                continue;
            }
            queue.extend(prev_ids(&event));
            found.push(event);
        }
        found.sort_by_key(|e| (e.depth, e.stream_ordering));
        let events = found.iter().map(|e| raw_pdu(&e.json)).collect::<ApiResult<_>>()?;
        Ok(get_missing_events::Response::new(events))
    }

    /// `GET /backfill/{roomId}?v=…&limit=…`: the given events and those before them,
    /// breadth first, the first `limit` the server may see; what it may not see is not
    /// walked past.
    pub async fn serve_backfill(
        &self,
        server: &ServerName,
        room_id: &str,
        from: &[String],
        limit: usize,
    ) -> ApiResult<get_backfill::v1::Response> {
        let limit = limit.clamp(1, MAX_EVENTS_PER_REQUEST);
        let from = &from[..from.len().min(MAX_EVENTS_PER_REQUEST)];
        let mut ahead = ReadAhead::new(&self.store, Vec::new(), limit);
        ahead.read(from).await?;
        let mut sight = Sight::default();
        // The server must see where it starts from.
        for id in from {
            self.start_of_walk(server, room_id, id, &mut ahead, &mut sight).await?;
        }
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        let mut queue: VecDeque<String> = from.iter().cloned().collect();
        while let Some(id) = queue.pop_front() {
            if found.len() >= limit {
                break;
            }
            if !seen.insert(id.clone()) {
                continue;
            }
            let event = ahead.event(&id, queue.iter()).await?;
            let Some(event) = event.filter(|e| e.room_id == room_id) else { continue };
            if !self.can_see(server, &event, &mut sight).await? {
                continue;
            }
            queue.extend(prev_ids(&event));
            found.push(event);
        }
        let pdus = found.iter().map(|e| raw_pdu(&e.json)).collect::<ApiResult<_>>()?;
        Ok(get_backfill::v1::Response::new(self.server_name.clone(), MilliSecondsSinceUnixEpoch::now(), pdus))
    }

    /// An event a walk starts from, as [`Self::event_for_server`] answers: 404 unless
    /// held in `room_id`, 403 unless `server` may see it.
    async fn start_of_walk(
        &self,
        server: &ServerName,
        room_id: &str,
        event_id: &str,
        ahead: &mut ReadAhead<'_>,
        sight: &mut Sight,
    ) -> ApiResult<StoredEvent> {
        let event = ahead.event(event_id, std::iter::empty()).await?.filter(|e| e.room_id == room_id);
        let event = event.ok_or_else(|| MatrixError::not_found("Event not found"))?;
        if !self.can_see(server, &event, sight).await? {
            return Err(MatrixError::forbidden("Your server may not see this event"));
        }
        Ok(event)
    }
}

/// Member events of the asking server read at once while deciding what it may see.
const MEMBERS_PER_READ: usize = 64;

/// What one request has read while deciding what a server may see, for its next event:
/// whether the server is in the room now, what was decided at each state group (events
/// sharing a state group are seen alike), and fields of event contents by event id
/// (events never change but by redaction, which keeps these fields).
#[derive(Default)]
struct Sight {
    joined_now: Option<bool>,
    by_group: HashMap<Option<i64>, bool>,
    fields: HashMap<String, Option<String>>,
}

/// Whether every event of `ids` was found held (its fields read into `sight`).
fn all_held(sight: &Sight, ids: &[String]) -> bool {
    ids.iter().all(|id| sight.fields.contains_key(id))
}

/// An event already read, as other servers get it.
fn raw_pdu(json: &Value) -> ApiResult<Box<RawJsonValue>> {
    serde_json::value::to_raw_value(&pdu_json(json)).map_err(|err| MatrixError::internal("stored event", err))
}

/// Event ids kith holds, as ruma's type.
fn event_ids(ids: Vec<String>) -> ApiResult<Vec<OwnedEventId>> {
    ids.into_iter()
        .map(|id| OwnedEventId::try_from(id).map_err(|err| MatrixError::internal("a stored event id", err)))
        .collect()
}

fn prev_ids(event: &StoredEvent) -> Vec<String> {
    event.json["prev_events"]
        .as_array()
        .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}
