//! The hint worker: follows the current-state deltas and queues profile fetches for
//! remote users the cache does not know, or knows differently from a member event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use ruma::UserId;
use serde_json::Value;

use super::RemoteProfiles;
use crate::services::workers::{Shutdown, Wakeups, Worker, follow};
use crate::store::{ProfileSource, RemoteProfile, StateDelta, now_ms};

const CONSUMER: &str = "remote_profile_hints";
const BATCH: i64 = 500;
/// The stream is looked at this often even without a wake-up.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// After a profile EDU, member events of the same user do not cause fetches for this
/// long: they are the same change arriving room by room.
const EDU_TRUSTED_FOR_MS: i64 = 10 * 60 * 1000;

pub struct ProfileHints {
    profiles: Arc<RemoteProfiles>,
    state_deltas: tokio::sync::watch::Receiver<i64>,
}

impl Worker for ProfileHints {
    fn name(&self) -> &'static str {
        "remote profile hints"
    }

    fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let wakeups = Wakeups::default().on_position(self.state_deltas.clone());
            follow(self.name(), wakeups, POLL_INTERVAL, stop, || self.apply_pending()).await;
        })
    }
}

impl ProfileHints {
    /// `state_deltas` announces new deltas.
    pub fn new(profiles: Arc<RemoteProfiles>, state_deltas: tokio::sync::watch::Receiver<i64>) -> Self {
        Self { profiles, state_deltas }
    }

    /// One batch of deltas; true if there may be more.
    async fn apply_pending(&self) -> anyhow::Result<bool> {
        let store = &self.profiles.store;
        let position = store.consumer_position(CONSUMER).await?;
        let deltas = store.current_state_deltas_since(position, BATCH).await?;
        // Whether a room has a local member, asked once per room and batch: a big room
        // taken in at once brings thousands of joins, and the question walks its members.
        let mut local_rooms: HashMap<String, bool> = HashMap::new();
        for delta in deltas.iter().filter(|d| d.event_type == "m.room.member") {
            let has_local = match local_rooms.get(&delta.room_id) {
                Some(known) => *known,
                None => {
                    let has_local = store.has_local_member(&delta.room_id).await?;
                    local_rooms.insert(delta.room_id.clone(), has_local);
                    has_local
                }
            };
            if has_local {
                self.apply_membership(delta).await?;
            }
        }
        if let Some(last) = deltas.last() {
            store.set_consumer_position(CONSUMER, last.stream_id).await?;
        }
        Ok(deltas.len() as i64 == BATCH)
    }

    /// A membership change in a room with a local member.
    async fn apply_membership(&self, delta: &StateDelta) -> anyhow::Result<()> {
        let store = &self.profiles.store;
        let Ok(user_id) = <&UserId>::try_from(delta.state_key.as_str()) else { return Ok(()) };
        let event = match &delta.event_id {
            Some(id) => store.get_event(id).await?,
            None => None,
        };
        let content = event.map(|e| e.json["content"].clone()).unwrap_or(Value::Null);
        if content["membership"] != "join" {
            return Ok(());
        }
        if self.profiles.is_remote(user_id) {
            return self.check_member(user_id, &content).await;
        }
        // A local user in the room: its remote members are tracked from now on.
        for member in store.tracked_joined_members(&delta.room_id).await? {
            let Ok(member_id) = <&UserId>::try_from(member.user_id.as_str()) else { continue };
            if self.profiles.is_remote(member_id) && store.remote_profile(member_id.as_str()).await?.is_none() {
                self.profiles.hint(member_id).await?;
            }
        }
        Ok(())
    }

    /// A remote member's join: fetch their profile if the cache has none, or shows
    /// another name or avatar than the member event. A profile their server pushed a
    /// moment ago is trusted over member events, which trail behind a burst of renames.
    async fn check_member(&self, user_id: &UserId, content: &Value) -> anyhow::Result<()> {
        let cached = self.profiles.store.remote_profile(user_id.as_str()).await?;
        let fresh_push = |cached: &RemoteProfile| {
            cached.source == ProfileSource::Edu && cached.updated_ts > now_ms() - EDU_TRUSTED_FOR_MS
        };
        let differs = cached.is_none_or(|cached| {
            let shown = content["displayname"].as_str() != cached.displayname()
                || content["avatar_url"].as_str() != cached.avatar_url();
            shown && !fresh_push(&cached)
        });
        if differs {
            self.profiles.hint(user_id).await?;
        }
        Ok(())
    }
}
