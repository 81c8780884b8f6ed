//! The federated user directory: users of trusted peer servers are found without a
//! shared room.
//!
//! - [`serve`]: what peers may read of this server's directory: kith's incremental
//!   changes endpoint, BWI's full list, and MSC4258's live search; only to configured
//!   peers, only exported users (active, not support users, not opted out).
//! - [`pull`]: a worker following each peer's changes from a persisted token (or, for a
//!   BWI peer, diffing its full list), into `federated_users`, which the directory
//!   indexes as visible to every local searcher.
//! - [`live`]: a local search that also asks the peers at query time (MSC4258), within
//!   a timeout, merged and ranked with the local results.

pub mod live;
pub mod pull;
pub mod serve;

use std::sync::Arc;

use ruma::{OwnedServerName, ServerName};

use super::directory::Directory;
use super::federation::FederationClient;
use super::rate_limit::RateLimiter;
use super::server_health::ServerHealth;
use crate::config::{FederatedUserDirectoryConfig, RateLimit};
use crate::endpoints::profile_edu::ProfileUpdate;
use crate::error::{ApiResult, MatrixError};
use crate::store::Store;

/// Live searches one peer may make per second here (and in a burst).
const PEER_SEARCHES: RateLimit = RateLimit { per_second: 10.0, burst_count: 50.0 };

pub struct FederatedDirectory {
    store: Arc<Store>,
    server_name: OwnedServerName,
    client: Arc<FederationClient>,
    health: Arc<ServerHealth>,
    directory: Arc<Directory>,
    config: FederatedUserDirectoryConfig,
    /// MSC4258 searches by origin.
    searches: RateLimiter,
    cache: live::AnswerCache,
}

impl FederatedDirectory {
    pub fn new(
        store: Arc<Store>,
        server_name: OwnedServerName,
        client: Arc<FederationClient>,
        health: Arc<ServerHealth>,
        directory: Arc<Directory>,
        config: FederatedUserDirectoryConfig,
    ) -> Self {
        let directory = Self {
            store,
            server_name,
            client,
            health,
            directory,
            config,
            searches: RateLimiter::new(PEER_SEARCHES),
            cache: live::AnswerCache::default(),
        };
        // Peers are probed while down, so the directory heals within a minute of both
        // servers being up, whatever order they restarted in.
        directory.health.watch(&directory.peers());
        directory
    }

    /// The peers kith pulls from and serves, as far as the domain whitelist allows.
    /// Seconds since each peer's directory was last pulled (infinite if never).
    pub async fn sync_lag(&self) -> ApiResult<Vec<(String, f64)>> {
        let now = crate::store::now_ms();
        let mut lags = Vec::new();
        for peer in self.peers() {
            let synced = self.store.peer_state(peer.as_str()).await?.map_or(0, |state| state.synced_ts);
            let lag = if synced > 0 { (now - synced).max(0) as f64 / 1000.0 } else { f64::INFINITY };
            lags.push((peer.to_string(), lag));
        }
        Ok(lags)
    }

    pub fn peers(&self) -> Vec<OwnedServerName> {
        if !self.config.enabled {
            return Vec::new();
        }
        self.config
            .peers
            .iter()
            .filter(|peer| self.client.allowed(peer) && **peer != self.server_name)
            .cloned()
            .collect()
    }

    /// A profile EDU (MSC4259) from a peer updates its user at once.
    pub async fn receive_profile_edu(&self, origin: &ServerName, update: &ProfileUpdate) {
        if update.user_id.server_name() != origin || !self.peers().iter().any(|peer| peer == origin) {
            return;
        }
        let Ok(Some(mut user)) = self.store.federated_user(update.user_id.as_str()).await else { return };
        let text = |value: &serde_json::Value, max: usize| {
            value.as_str().filter(|t| t.chars().count() <= max && !t.contains('\0')).map(str::to_owned)
        };
        if let Some(name) = update.fields.get("displayname") {
            user.displayname = text(name, 256);
        }
        if let Some(avatar) = update.fields.get("avatar_url") {
            user.avatar_url = text(avatar, 1000);
        }
        match self.store.update_federated_user(&user).await {
            Ok(true) => self.directory.wake(),
            Ok(false) => {}
            Err(err) => tracing::warn!(%err, "cannot apply a profile EDU to a federated user"),
        }
    }

    fn require_peer(&self, origin: &ServerName) -> ApiResult<()> {
        if !self.peers().iter().any(|peer| peer == origin) {
            return Err(MatrixError::forbidden("This server does not share its user directory with yours"));
        }
        Ok(())
    }
}
