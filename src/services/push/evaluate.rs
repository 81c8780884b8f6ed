//! The push evaluator: follows the event stream and, for every timeline event, runs each
//! joined local member's push rules (ruma's `Ruleset`, with the room's member count,
//! the member's display name and the power levels) and records a notification where
//! they say `notify`. `/sync`'s unread counts and `/notifications` read those rows.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use ruma::power_levels::NotificationPowerLevels;
use ruma::push::{Action, PushConditionPowerLevelsCtx, PushConditionRoomCtx};
use ruma::room_version_rules::RoomPowerLevelsRules;
use ruma::serde::Raw;
use ruma::{Int, OwnedRoomId, OwnedUserId, RoomVersionId, UInt, UserId};
use serde_json::Value;

use super::Push;
use crate::services::bounded::BoundedMap;
use crate::services::rooms::Rooms;
use crate::services::workers::{Shutdown, Wakeups, Worker, follow};
use crate::store::{Membership, StoredEvent};

const CONSUMER: &str = "push_notifications";
const BATCH: i64 = 200;
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Rooms whose members and power levels are kept between batches, at most.
const KEPT_ROOM_CONTEXTS: usize = 256;

struct RoomContext {
    /// This server's joined members: only they are notified.
    local_members: Vec<Membership>,
    /// Every joined member, for the member-count condition.
    joined_count: u64,
    power_levels: Option<PushConditionPowerLevelsCtx>,
}

pub struct PushEvaluator {
    push: Arc<Push>,
    rooms: Arc<Rooms>,
    /// Each room's context with the state group it was read for: the messages that
    /// follow one another in a room share the state before them, and a membership or
    /// power-level change starts a new group.
    contexts: Mutex<BoundedMap<String, (i64, Arc<RoomContext>)>>,
}

impl Worker for PushEvaluator {
    fn name(&self) -> &'static str {
        "push evaluator"
    }

    fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(err) = self.start_position().await {
                return tracing::error!(%err, "the push evaluator cannot start");
            }
            let wakeups = Wakeups::default().on_position(self.rooms.subscribe());
            follow(self.name(), wakeups, POLL_INTERVAL, stop, || self.evaluate_pending()).await;
        })
    }
}

impl PushEvaluator {
    pub fn new(push: Arc<Push>, rooms: Arc<Rooms>) -> Self {
        Self { push, rooms, contexts: Mutex::new(BoundedMap::new(KEPT_ROOM_CONTEXTS)) }
    }

    /// A server that never evaluated push rules does not notify its users of history.
    async fn start_position(&self) -> anyhow::Result<()> {
        let store = &self.push.store;
        store.start_consumer_at(CONSUMER, store.max_event_ordering().await?).await?;
        Ok(())
    }

    /// One batch of events; true if there may be more.
    async fn evaluate_pending(&self) -> anyhow::Result<bool> {
        let store = &self.push.store;
        let position = store.consumer_position(CONSUMER).await?;
        let events = store.events_after(position, BATCH).await?;
        let Some(last) = events.last().map(|e| e.stream_ordering) else { return Ok(false) };
        // Each event is evaluated with its room as the state before it stands.
        let mut rooms: HashMap<(String, Option<i64>), Arc<RoomContext>> = HashMap::new();
        let mut found: Vec<(String, StoredEvent, bool, Value)> = Vec::new();
        for event in events.iter().filter(|e| !e.outlier && !e.rejected) {
            let key = (event.room_id.clone(), event.state_group_before);
            if !rooms.contains_key(&key) {
                rooms.insert(key.clone(), self.room_context(event).await?);
            }
            for (user, highlight, actions) in self.notified_by(event, &rooms[&key]).await? {
                found.push((user, event.clone(), highlight, actions));
            }
        }
        let rows: Vec<_> = found
            .iter()
            .map(|(user, event, highlight, actions)| {
                (
                    user.as_str(),
                    event.event_id.as_str(),
                    event.room_id.as_str(),
                    event.stream_ordering,
                    *highlight,
                    actions,
                )
            })
            .collect();
        store.add_notifications(&rows, (CONSUMER, last)).await?;
        if !rows.is_empty() {
            self.push.announce_notifications(last);
        }
        Ok(events.len() as i64 == BATCH)
    }

    /// What evaluating a room's events reads: its local members, how many are joined,
    /// and its power levels, once per batch, or not at all while the state before its
    /// events stays the same. Each is an indexed read: a big room's other members (a
    /// new state each time one joins) are not read.
    async fn room_context(&self, event: &StoredEvent) -> anyhow::Result<Arc<RoomContext>> {
        let room_id = &event.room_id;
        let group = event.state_group_before;
        let kept = self.contexts.lock().unwrap_or_else(PoisonError::into_inner).get(room_id).cloned();
        if let (Some(group), Some((kept_group, context))) = (group, kept)
            && group == kept_group
        {
            return Ok(context);
        }
        let store = &self.push.store;
        let local_members = store.joined_members_of_server(room_id, self.push.server_name.as_str()).await?;
        let joined_count = store.joined_member_count(room_id).await?;
        let power_levels = self.power_levels(room_id).await?;
        let context = Arc::new(RoomContext { local_members, joined_count, power_levels });
        if let Some(group) = group {
            let mut contexts = self.contexts.lock().unwrap_or_else(PoisonError::into_inner);
            contexts.insert(room_id.clone(), (group, context.clone()));
        }
        Ok(context)
    }

    /// The local members an event notifies: `(user, highlight, actions)`.
    async fn notified_by(&self, event: &StoredEvent, room: &RoomContext) -> anyhow::Result<Vec<(String, bool, Value)>> {
        let sender = event.json["sender"].as_str().unwrap_or_default();
        let local: Vec<&Membership> = room
            .local_members
            .iter()
            .filter(|m| m.user_id != sender && is_local(&m.user_id, &self.push.server_name))
            .collect();
        if local.is_empty() {
            return Ok(Vec::new());
        }
        let (Ok(room_id), Ok(raw)) =
            (OwnedRoomId::try_from(event.room_id.as_str()), serde_json::value::to_raw_value(&event.json))
        else {
            return Ok(Vec::new());
        };
        let raw: Raw<ruma::events::AnySyncTimelineEvent> = Raw::from_json(raw);
        let power_levels = &room.power_levels;
        let count = UInt::try_from(room.joined_count).unwrap_or_default();
        let mut notified = Vec::new();
        for member in local {
            let Ok(user) = OwnedUserId::try_from(member.user_id.as_str()) else { continue };
            let ruleset = self.push.kept_ruleset(&user).await?;
            let name = member.displayname.clone().unwrap_or_else(|| user.localpart().to_owned());
            let mut context = PushConditionRoomCtx::new(room_id.clone(), count, user.clone(), name);
            if let Some(levels) = &power_levels {
                context = context.with_power_levels(levels.clone());
            }
            let actions = ruleset.get_actions(&raw, &context).await;
            if actions.iter().any(Action::should_notify) {
                let highlight = actions.iter().any(Action::is_highlight);
                notified.push((member.user_id.clone(), highlight, serde_json::to_value(actions).unwrap_or_default()));
            }
        }
        Ok(notified)
    }

    /// The room's power levels as push conditions read them.
    async fn power_levels(&self, room_id: &str) -> anyhow::Result<Option<PushConditionPowerLevelsCtx>> {
        let store = &self.push.store;
        let Some(event) = store.current_state_event(room_id, "m.room.power_levels", "").await? else {
            return Ok(None);
        };
        let content = &event.json["content"];
        let users: BTreeMap<OwnedUserId, Int> = serde_json::from_value(content["users"].clone()).unwrap_or_default();
        let users_default: Int = serde_json::from_value(content["users_default"].clone()).unwrap_or_default();
        let notifications: NotificationPowerLevels =
            serde_json::from_value(content["notifications"].clone()).unwrap_or_default();
        let version = store.room_version(room_id).await?.and_then(|v| RoomVersionId::try_from(v).ok());
        let Some(rules) = version.and_then(|v| v.rules()) else { return Ok(None) };
        let creators = self.creators(room_id).await?;
        let levels = RoomPowerLevelsRules::new(&rules.authorization, creators);
        Ok(Some(PushConditionPowerLevelsCtx::new(users, users_default, notifications, levels)))
    }

    /// The room's creators (the create event's sender and `additional_creators`).
    async fn creators(&self, room_id: &str) -> anyhow::Result<Vec<OwnedUserId>> {
        let Some(create) = self.push.store.current_state_event(room_id, "m.room.create", "").await? else {
            return Ok(Vec::new());
        };
        let mut creators: Vec<OwnedUserId> =
            create.json["sender"].as_str().and_then(|s| s.try_into().ok()).into_iter().collect();
        if let Some(more) = create.json["content"]["additional_creators"].as_array() {
            creators.extend(more.iter().filter_map(|u| u.as_str().and_then(|u| OwnedUserId::try_from(u).ok())));
        }
        Ok(creators)
    }
}

/// Whether a member is a local user (only they have push rules here).
fn is_local(user_id: &str, server_name: &ruma::ServerName) -> bool {
    <&UserId>::try_from(user_id).is_ok_and(|user| user.server_name() == server_name)
}
