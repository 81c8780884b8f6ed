//! Global profile changes reach rooms: after a user changes `displayname` or
//! `avatar_url`, a new member event carrying the global profile is sent into every room
//! they are joined to.
//!
//! This runs in the background, following the profile-change stream from a persisted
//! position, so `PUT /profile` returns at once even for a user in thousands of rooms, and
//! a restart resumes where it stopped. A room whose member event already shows the
//! global profile is skipped, so nothing is sent twice.
//!
//! As in Synapse, the new member event overwrites a per-room nickname or avatar in every
//! joined room: the global profile wins when it changes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::Profiles;
use crate::error::ApiResult;
use crate::services::rooms::{NewEvent, Rooms};
use crate::services::workers::{Shutdown, Wakeups, Worker, follow};
use crate::store::{ProfileChangeKind, Store};

const CONSUMER: &str = "profile_propagation";
const BATCH: i64 = 100;
/// Poll the stream this often even without a wake-up (another process may write it).
const POLL_INTERVAL: Duration = Duration::from_secs(5);

pub struct ProfilePropagation {
    store: Arc<Store>,
    profiles: Arc<Profiles>,
    rooms: Arc<Rooms>,
}

impl Worker for ProfilePropagation {
    fn name(&self) -> &'static str {
        "profile propagation"
    }

    fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let wakeups = Wakeups::default().on_position(self.profiles.subscribe());
            follow(self.name(), wakeups, POLL_INTERVAL, stop, || self.propagate_pending()).await;
        })
    }
}

impl ProfilePropagation {
    pub fn new(store: Arc<Store>, profiles: Arc<Profiles>, rooms: Arc<Rooms>) -> Self {
        Self { store, profiles, rooms }
    }

    /// Processes one batch; true if there may be more.
    async fn propagate_pending(&self) -> anyhow::Result<bool> {
        let position = self.store.consumer_position(CONSUMER).await?;
        let changes = self.store.profile_changes_since(position, BATCH).await?;
        for change in &changes {
            let affects_rooms = change.kind == ProfileChangeKind::Update
                && change.fields.iter().any(|field| field == "displayname" || field == "avatar_url");
            if affects_rooms {
                self.propagate_user(&change.user_id).await?;
            }
            self.store.set_consumer_position(CONSUMER, change.stream_id).await?;
        }
        Ok(changes.len() as i64 == BATCH)
    }

    async fn propagate_user(&self, user_id: &str) -> ApiResult<()> {
        let profile = self.store.get_profile(user_id).await?;
        let global = |key: &str| profile.get(key).cloned().unwrap_or(Value::Null);
        for membership in self.store.memberships_of_user(user_id).await? {
            if membership.membership != "join" {
                continue;
            }
            let current = self.rooms.require_event(&membership.event_id).await?;
            let mut content = current.json["content"].clone();
            let shown = |key: &str| content.get(key).cloned().unwrap_or(Value::Null);
            if shown("displayname") == global("displayname") && shown("avatar_url") == global("avatar_url") {
                continue;
            }
            for key in ["displayname", "avatar_url"] {
                match profile.get(key) {
                    Some(value) => content[key] = value.clone(),
                    None => {
                        if let Some(object) = content.as_object_mut() {
                            object.remove(key);
                        }
                    }
                }
            }
            content["membership"] = "join".into();
            let event = NewEvent {
                room_id: &membership.room_id,
                sender: user_id,
                event_type: "m.room.member",
                state_key: Some(user_id),
                content,
                txn: None,
            };
            if let Err(err) = self.rooms.send(event).await {
                // One room refusing (e.g. the user was banned meanwhile) must not stop the rest.
                tracing::warn!(%user_id, room_id = %membership.room_id, %err, "could not update member event");
            }
        }
        Ok(())
    }
}
