//! Profile-update EDUs (MSC4259), both ways.
//!
//! Sending: a worker follows the local profile-change stream and, once no change came
//! for `edu_coalesce_window` (so a burst is one EDU; at most four windows after the
//! first change), queues `{"user_id", "fields"}` with
//! the changed fields' current values (null when removed) for every server sharing a
//! room with the user, kept in the database until the server takes it.
//!
//! Receiving: the user must belong to the sending server and be tracked; the fields are
//! checked like a fetched profile and merged into the cached one; nothing is forwarded.
//! A user the cache does not know yet gets a fetch for the rest of their profile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use ruma::{OwnedServerName, OwnedUserId, ServerName};
use serde_json::Value;

use super::RemoteProfiles;
use crate::endpoints::profile_edu::ProfileEdu;
use crate::services::federated_directory::FederatedDirectory;
use crate::services::federation::edus::{EduHandlers, EduRefused, EduResult};
use crate::services::profiles::Profiles;
use crate::services::workers::{Shutdown, Wakeups, Worker, follow};
use crate::store::{ProfileChangeKind, ProfileSource, now_ms};

pub use crate::endpoints::profile_edu::{EDU_TYPES, ProfileUpdate, UNSTABLE_EDU_TYPE};

const CONSUMER: &str = "profile_edus";
const BATCH: i64 = 200;
/// The stream is looked at this often even without a wake-up.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Fields one EDU may carry, at most.
const MAX_EDU_FIELDS: usize = 100;

pub struct ProfileEdus {
    remote: Arc<RemoteProfiles>,
    profiles: Arc<Profiles>,
    /// Federated-directory peers hear of changes too, rooms or not.
    peers: Vec<OwnedServerName>,
}

impl Worker for ProfileEdus {
    fn name(&self) -> &'static str {
        "profile EDU sender"
    }

    fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(err) = self.start_position().await {
                return tracing::error!(%err, "the profile EDU sender cannot start");
            }
            let wakeups = Wakeups::default().on_position(self.profiles.subscribe());
            follow(self.name(), wakeups, POLL_INTERVAL, stop, || self.send_pending()).await;
        })
    }
}

impl ProfileEdus {
    pub fn new(remote: Arc<RemoteProfiles>, profiles: Arc<Profiles>, peers: Vec<OwnedServerName>) -> Self {
        Self { remote, profiles, peers }
    }

    /// A server that never sent profile EDUs does not send its history: it starts at
    /// the head of the profile-change stream.
    async fn start_position(&self) -> anyhow::Result<()> {
        let store = &self.remote.store;
        store.start_consumer_at(CONSUMER, store.stream_head("profile_changes").await?).await?;
        Ok(())
    }

    /// Sends the changes once they have settled (no newer change for a coalescing
    /// window, or the oldest waiting for four windows); true if there may be more.
    async fn send_pending(&self) -> anyhow::Result<bool> {
        let store = &self.remote.store;
        let window = self.remote.config.edu_coalesce_window.as_millis() as i64;
        let position = store.consumer_position(CONSUMER).await?;
        let mut changes = store.profile_changes_since(position, BATCH).await?;
        let Some(first) = changes.first().map(|c| c.ts) else { return Ok(false) };
        loop {
            let newest = changes.last().map_or(first, |c| c.ts);
            let settle = (newest + window).min(first + 4 * window) - now_ms();
            if settle <= 0 || changes.len() as i64 == BATCH {
                break;
            }
            tokio::time::sleep(Duration::from_millis(settle as u64)).await;
            changes = store.profile_changes_since(position, BATCH).await?;
        }
        // Per user: the changed fields, and the position of the newest change.
        let mut by_user: BTreeMap<&str, (Vec<&str>, i64)> = BTreeMap::new();
        // A visibility change is no profile change for others.
        for change in changes.iter().filter(|c| c.kind != ProfileChangeKind::Visibility) {
            let (fields, newest) = by_user.entry(&change.user_id).or_default();
            fields.extend(change.fields.iter().map(String::as_str));
            *newest = change.stream_id;
        }
        for (user, (fields, newest)) in by_user {
            self.send_for_user(user, &fields, newest).await?;
        }
        if let Some(last) = changes.last() {
            store.set_consumer_position(CONSUMER, last.stream_id).await?;
        }
        Ok(changes.len() as i64 == BATCH)
    }

    /// One EDU with the current values of `fields` to every server sharing a room, kept
    /// in the database until each takes it: the position moves on once it is queued, so
    /// one held in memory would be lost to a restart. `newest` (the position of the
    /// change) makes its key unique and orders it after the user's earlier ones.
    async fn send_for_user(&self, user_id: &str, fields: &[&str], newest: i64) -> anyhow::Result<()> {
        let Ok(user) = OwnedUserId::try_from(user_id) else { return Ok(()) };
        // A deactivated or unknown user has no public profile left: every field is gone.
        let profile = self.profiles.get(&user).await.unwrap_or_default();
        let values: BTreeMap<String, Value> = fields
            .iter()
            .map(|field| ((*field).to_owned(), profile.get(*field).cloned().unwrap_or(Value::Null)))
            .collect();
        let mut servers: Vec<OwnedServerName> = self
            .remote
            .store
            .servers_sharing_rooms_with(user_id)
            .await?
            .into_iter()
            .filter_map(|server| OwnedServerName::try_from(server).ok())
            .collect();
        if !self.peers.is_empty() && self.remote.store.exported_user(user_id).await?.is_some() {
            let missing: Vec<OwnedServerName> = self.peers.iter().filter(|p| !servers.contains(p)).cloned().collect();
            servers.extend(missing);
        }
        if servers.is_empty() || values.is_empty() {
            return Ok(());
        }
        let fields = values.len();
        let edu = ProfileEdu::new(ProfileUpdate { user_id: user.clone(), fields: values }).into();
        let key = format!("{newest:020} {UNSTABLE_EDU_TYPE} {user_id}");
        self.remote.sender.send_durable_edu_to(&servers, &key, &edu).await?;
        tracing::info!(%user_id, servers = servers.len(), fields, "profile EDU queued");
        Ok(())
    }
}

/// Registers the one handler of profile EDUs (both types): the profile cache checks and
/// keeps the update, and only an update it accepts reaches the federated directory.
pub fn register_edus(edus: &mut EduHandlers, remote: Arc<RemoteProfiles>, directory: Arc<FederatedDirectory>) {
    let handler = move |origin: OwnedServerName, update: ProfileUpdate| {
        let (remote, directory) = (remote.clone(), directory.clone());
        async move {
            remote.receive_edu(&origin, update.clone()).await?;
            directory.receive_profile_edu(&origin, &update).await;
            Ok(())
        }
    };
    for edu_type in EDU_TYPES {
        edus.register(edu_type, handler.clone());
    }
}

impl RemoteProfiles {
    /// A profile EDU from `origin`.
    pub async fn receive_edu(&self, origin: &ServerName, update: ProfileUpdate) -> EduResult {
        let user_id = &update.user_id;
        EduRefused::unless_own_user(origin, user_id)?;
        if update.fields.len() > MAX_EDU_FIELDS {
            return Err(EduRefused::Invalid(format!("more than {MAX_EDU_FIELDS} fields")));
        }
        let cached = self.store.remote_profile(user_id.as_str()).await?;
        let known = cached.is_some();
        let mut profile = cached.map(|c| c.profile).unwrap_or_default();
        for (field, value) in update.fields {
            match value {
                Value::Null => profile.remove(&field),
                value => profile.insert(field, value),
            };
        }
        let changed = self.store_profile(user_id, &profile, ProfileSource::Edu).await?;
        tracing::info!(%origin, %user_id, changed, "profile EDU received");
        if known {
            // Fresher than any fetch still queued.
            self.store.remove_profile_fetch(user_id.as_str()).await?;
        } else {
            // Only the changed fields are known: ask for the rest.
            self.hint(user_id).await?;
        }
        Ok(())
    }
}
