//! Other servers' users' public profiles: the cache the user directory trusts for remote
//! names, never a room's member event.
//!
//! - [`hints`]: a worker following the current-state deltas queues a fetch when a remote
//!   user is first tracked (joined to a room with a local member) or a member event shows
//!   a name or avatar the cache does not have. One queue entry per user.
//! - [`fetch`]: a worker asks their servers (`/query/profile`), bounded overall and per
//!   server, deferring users of servers that are down (server health) until they come
//!   back, retrying with backoff and giving up after a bounded number of attempts.
//! - [`edus`]: profile-update EDUs (MSC4259) both ways: our users' changes go to the
//!   servers sharing a room with them; others' are applied for tracked users of the
//!   server that sent them.
//!
//! Every write is conditional on the user still being tracked, and goes on the
//! remote-profile stream the directory follows.

pub mod edus;
pub mod fetch;
pub mod hints;

use std::sync::Arc;

use ruma::{OwnedServerName, UserId};
use tokio::sync::{Notify, watch};

use super::federation::FederationClient;
use super::profiles::check_remote_profile;
use super::sender::Sender;
use super::server_health::ServerHealth;
use crate::config::RemoteProfilesConfig;
use crate::error::ApiResult;
use crate::store::{Profile, ProfileSource, RemoteProfile, Store};

/// A burst of hints delays a user's fetch at most this long after the first.
const MAX_HINT_WAIT_MS: i64 = 30_000;

pub struct RemoteProfiles {
    store: Arc<Store>,
    server_name: OwnedServerName,
    client: Arc<FederationClient>,
    sender: Arc<Sender>,
    health: Arc<ServerHealth>,
    config: RemoteProfilesConfig,
    /// Wakes the fetcher when a fetch is queued.
    queued: Arc<Notify>,
    /// Bumped when a cached profile changes, to wake the directory.
    changed: watch::Sender<i64>,
}

impl RemoteProfiles {
    pub fn new(
        store: Arc<Store>,
        server_name: OwnedServerName,
        client: Arc<FederationClient>,
        sender: Arc<Sender>,
        health: Arc<ServerHealth>,
        config: RemoteProfilesConfig,
    ) -> Self {
        let changed = watch::channel(0).0;
        Self { store, server_name, client, sender, health, config, queued: Arc::default(), changed }
    }

    /// Wakes on every change of a cached profile.
    /// Profiles waiting to be fetched (or retried).
    pub async fn queue_len(&self) -> ApiResult<i64> {
        Ok(self.store.profile_fetch_queue_len().await?)
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.changed.subscribe()
    }

    pub fn is_remote(&self, user_id: &UserId) -> bool {
        user_id.server_name() != self.server_name
    }

    pub async fn cached(&self, user_id: &UserId) -> ApiResult<Option<RemoteProfile>> {
        Ok(self.store.remote_profile(user_id.as_str()).await?)
    }

    /// Something suggests `user_id`'s profile is unknown or out of date: fetch it once
    /// no hint came for the hint delay (one fetch per burst).
    pub async fn hint(&self, user_id: &UserId) -> ApiResult<()> {
        if !self.is_remote(user_id) {
            return Ok(());
        }
        let due = crate::store::now_ms() + self.config.hint_delay.as_millis() as i64;
        let server = user_id.server_name().as_str();
        if self.store.queue_profile_fetch(user_id.as_str(), server, due, MAX_HINT_WAIT_MS).await? {
            tracing::debug!(%user_id, "remote profile fetch queued");
            self.queued.notify_one();
        }
        Ok(())
    }

    /// Stores a profile of a tracked remote user (checked first); wakes the directory
    /// when it changed.
    async fn store_profile(&self, user_id: &UserId, profile: &Profile, source: ProfileSource) -> ApiResult<bool> {
        check_remote_profile(profile)?;
        let server = user_id.server_name().as_str();
        let changed = self.store.put_remote_profile(user_id.as_str(), server, profile, source).await?;
        if changed {
            self.changed.send_modify(|serial| *serial += 1);
        }
        Ok(changed)
    }
}
