//! One room of an answer: the first time a connection sees it, everything asked for;
//! afterwards, only what changed since it was last sent.

use std::collections::HashSet;
use std::sync::Arc;

use ruma::api::client::sync::sync_events::v5::response::{Hero, Room};
use ruma::serde::Raw;
use ruma::{JsOption, OwnedMxcUri, OwnedUserId, UInt, UserId};
use serde_json::Value;

use super::SlidingSync;
use super::connections::SentRoom;
use super::lists::ListedRoom;
use super::required_state::RequiredState;
use crate::error::{ApiResult, MatrixError};
use crate::services::rooms::format::raw_client_event;
use crate::store::{StateMap, StoredEvent};

/// Heroes a room without a name is named after.
const MAX_HEROES: usize = 5;
/// Timeline events one room sends at most, whatever the request asks.
const MAX_TIMELINE_LIMIT: u64 = 100;

/// What the lists and subscriptions that hold a room ask of it, together.
#[derive(Clone)]
pub struct RoomRequest {
    pub timeline_limit: u64,
    pub required_state: Arc<RequiredState>,
}

/// What the connection knows of a room already.
#[derive(Clone, Copy)]
pub struct Known<'a> {
    /// How it was last sent.
    pub sent: Option<&'a SentRoom>,
    /// Whether its state was resynced (after a partial join) since.
    pub resynced: bool,
    /// Its newest event at the head, when read for many rooms at once (joined rooms).
    pub newest_event: Option<i64>,
}

/// What an answer sends of a room, and what it records as sent.
pub struct RoomAnswer {
    pub room: Room,
    pub sent: SentRoom,
}

/// The request's view of time: the position the connection continues from (None for a
/// new connection) and the head it answers up to.
#[derive(Clone, Copy)]
pub struct Span {
    pub since: Option<i64>,
    pub head: i64,
}

impl SlidingSync {
    /// The room's entry, or None when nothing changed since it was last sent.
    pub(super) async fn room_answer(
        &self,
        user: &UserId,
        listed: &ListedRoom,
        request: &RoomRequest,
        known: Known<'_>,
        span: Span,
    ) -> ApiResult<Option<RoomAnswer>> {
        let Known { sent, resynced, newest_event } = known;
        let membership = listed.membership.membership.clone();
        if membership == "invite" || membership == "knock" {
            return self.invited_answer(listed, request, sent).await;
        }
        let until = listed.visible_until(span.head);
        // An invite only showed stripped state: a join after it starts the room afresh.
        let from = sent.filter(|s| s.membership != "invite").map(|s| s.up_to);
        let grew = resynced || sent.is_some_and(|s| request.required_state.grew_from(&s.required_state));
        let sent_now = SentRoom { up_to: until, membership, required_state: request.required_state.clone() };
        if let Some(from) = from {
            let newest = match newest_event {
                Some(newest) if listed.is_joined() => Some(newest),
                _ => self.store.newest_event_position(listed.room_id.as_str(), &[], until).await?,
            };
            if newest.is_none_or(|newest| newest <= from) && !grew {
                return Ok(None);
            }
        }
        let timeline = self.timeline(user, listed, request.timeline_limit, from, until).await?;
        let mut room = Room::new();
        room.initial = from.is_none().then_some(true);
        room.is_dm = (from.is_none() && listed.is_dm).then_some(true);
        room.bump_stamp = Some(uint(listed.bump_stamp));
        room.limited = timeline.limited;
        room.prev_batch = timeline.prev_batch.clone();
        let live = timeline.events.iter().filter(|e| span.since.is_some_and(|since| e.stream_ordering > since));
        room.num_live = Some(uint(live.count() as i64));
        self.add_state(&mut room, user, listed, request, from.filter(|_| !grew), &timeline.events, until).await?;
        room.timeline = timeline.events.iter().map(raw_client_event).collect::<ApiResult<_>>()?;
        let (notifications, highlights) = self.push.unread_counts(user.as_str(), listed.room_id.as_str()).await?;
        room.unread_notifications.notification_count = Some(uint(notifications));
        room.unread_notifications.highlight_count = Some(uint(highlights));
        Ok(Some(RoomAnswer { room, sent: sent_now }))
    }

    /// An invite (or knock): its stripped state, once per invite.
    async fn invited_answer(
        &self,
        listed: &ListedRoom,
        request: &RoomRequest,
        sent: Option<&SentRoom>,
    ) -> ApiResult<Option<RoomAnswer>> {
        let membership = &listed.membership;
        if sent.is_some_and(|s| s.membership == membership.membership && s.up_to >= membership.stream_ordering) {
            return Ok(None);
        }
        let mut room = Room::new();
        room.initial = Some(true);
        room.is_dm = listed.is_dm.then_some(true);
        room.bump_stamp = Some(uint(listed.bump_stamp));
        if membership.membership == "invite" {
            let stripped = self.client_sync.invite_state(membership).await?;
            room.invite_state = Some(stripped.iter().map(raw).collect::<ApiResult<_>>()?);
        }
        let sent = SentRoom {
            up_to: membership.stream_ordering,
            membership: membership.membership.clone(),
            required_state: request.required_state.clone(),
        };
        Ok(Some(RoomAnswer { room, sent }))
    }

    /// The newest `limit` events after `from` (all history for a first look) the user
    /// may see, oldest first.
    async fn timeline(
        &self,
        user: &UserId,
        listed: &ListedRoom,
        limit: u64,
        from: Option<i64>,
        until: i64,
    ) -> ApiResult<Timeline> {
        let limit = limit.min(MAX_TIMELINE_LIMIT) as i64;
        let room_id = listed.room_id.as_str();
        let mut page = self.store.room_events(room_id, from.unwrap_or(0), until, false, limit + 1).await?;
        let limited = page.len() as i64 > limit;
        page.truncate(limit as usize);
        page.reverse();
        let prev_batch = match page.first() {
            Some(first) => Some(format!("t{}", first.stream_ordering - 1)),
            None if from.is_none() => Some(format!("t{until}")),
            None => None,
        };
        let events = self.rooms.visible_events(user.as_str(), page).await?;
        Ok(Timeline { events, limited, prev_batch })
    }

    /// `required_state` (all the room's asked-for state the first time, what changed
    /// after `from` later), and the name, avatar, heroes and member counts drawn from it.
    #[allow(clippy::too_many_arguments)]
    async fn add_state(
        &self,
        room: &mut Room,
        user: &UserId,
        listed: &ListedRoom,
        request: &RoomRequest,
        from: Option<i64>,
        timeline: &[StoredEvent],
        until: i64,
    ) -> ApiResult<()> {
        let room_id = listed.room_id.as_str();
        let current = if listed.is_joined() {
            Arc::new(self.store.current_state(room_id).await?)
        } else {
            self.rooms.state_at(room_id, until).await?
        };
        let changed: StateMap = match from {
            Some(from) => {
                let before = self.rooms.state_at(room_id, from).await?;
                current
                    .iter()
                    .filter(|(key, id)| before.get(*key) != Some(*id))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }
            None => StateMap::clone(&current),
        };
        let mut senders: HashSet<String> =
            timeline.iter().filter_map(|e| e.json["sender"].as_str().map(str::to_owned)).collect();
        senders.insert(user.to_string());
        let mut wanted: StateMap = changed.clone();
        wanted.retain(|(kind, key), _| request.required_state.wants(kind, key, user.as_str(), &senders));
        // Lazy-loaded members of the timeline's senders come with it, changed or not.
        if request.required_state.lazy_members() {
            for sender in &senders {
                let key = ("m.room.member".to_owned(), sender.clone());
                if let Some(id) = current.get(&key) {
                    wanted.insert(key, id.clone());
                }
            }
        }
        let first = from.is_none();
        // The name and avatar come in the same read as the asked-for state.
        let mut fetched = wanted.clone();
        let name_and_avatar = [name_key("m.room.name"), name_key("m.room.avatar")].map(|key| {
            let id = (first || changed.contains_key(&key)).then(|| current.get(&key)).flatten().cloned();
            if let Some(id) = &id {
                fetched.insert(key, id.clone());
            }
            id
        });
        let events = self.rooms.state_events(&fetched).await?;
        let asked: HashSet<&String> = wanted.values().collect();
        room.required_state =
            events.iter().filter(|e| asked.contains(&e.event_id)).map(raw_client_event).collect::<ApiResult<_>>()?;
        let [name, avatar] = name_and_avatar.map(|id| {
            let event = id.and_then(|id| events.iter().find(|e| e.event_id == id));
            event.map(|e| &e.json["content"])
        });
        add_name_and_avatar(room, name, avatar);
        let members_changed = first || changed.keys().any(|(kind, _)| kind == "m.room.member");
        if members_changed {
            self.add_members(room, user, listed, &current).await?;
        }
        Ok(())
    }

    /// Member counts, and heroes for a room without a name: up to five other members,
    /// joined or invited ones first, with the names their member events give.
    async fn add_members(
        &self,
        room: &mut Room,
        user: &UserId,
        listed: &ListedRoom,
        current: &StateMap,
    ) -> ApiResult<()> {
        let members = self.store.room_members(listed.room_id.as_str()).await?;
        let count = |membership: &str| uint(members.iter().filter(|m| m.membership == membership).count() as i64);
        room.joined_count = Some(count("join"));
        room.invited_count = Some(count("invite"));
        if current.contains_key(&("m.room.name".to_owned(), String::new())) && room.name.is_some() {
            return Ok(());
        }
        let mut others: Vec<_> = members.iter().filter(|m| m.user_id != user.as_str()).collect();
        others.sort_by_key(|m| (!matches!(m.membership.as_str(), "join" | "invite"), m.stream_ordering));
        let heroes = others.into_iter().take(MAX_HEROES).filter_map(|m| {
            let mut hero = Hero::new(OwnedUserId::try_from(m.user_id.as_str()).ok()?);
            hero.name = m.displayname.clone();
            hero.avatar = m.avatar_url.as_deref().map(OwnedMxcUri::from);
            Some(hero)
        });
        room.heroes = Some(heroes.collect());
        Ok(())
    }
}

fn name_key(kind: &str) -> (String, String) {
    (kind.to_owned(), String::new())
}

/// The name and avatar from their events' content, when sent (first or changed).
fn add_name_and_avatar(room: &mut Room, name: Option<&Value>, avatar: Option<&Value>) {
    if let Some(name) = name {
        room.name = name["name"].as_str().filter(|n| !n.is_empty()).map(str::to_owned);
    }
    if let Some(avatar) = avatar {
        room.avatar = match avatar["url"].as_str().filter(|u| !u.is_empty()) {
            Some(url) => JsOption::Some(OwnedMxcUri::from(url)),
            None => JsOption::Null,
        };
    }
}

struct Timeline {
    events: Vec<StoredEvent>,
    limited: bool,
    prev_batch: Option<String>,
}

pub fn uint(n: i64) -> UInt {
    UInt::try_from(n.max(0)).unwrap_or(UInt::MAX)
}

/// A JSON value as ruma's raw event of any kind.
pub fn raw<T>(value: &Value) -> ApiResult<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|err| MatrixError::internal("serializing an event", err))
}
