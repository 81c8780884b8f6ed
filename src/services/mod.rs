//! The domain: one module per concern. HTTP handlers call these; these call the store.

pub mod accounts;
pub mod directory;
pub mod federation;
pub mod joins;
pub mod profile_propagation;
pub mod profiles;
pub mod rate_limit;
pub mod rooms;
pub mod server_keys;
pub mod sync;
pub mod typing;
pub mod uia;

use std::sync::Arc;

use crate::config::Config;
use crate::store::Store;
use accounts::Accounts;
use directory::Directory;
use federation::Federation;
use profiles::Profiles;
use rate_limit::RateLimiter;
use rooms::Rooms;
use server_keys::ServerKeys;
use tokio::sync::watch;
use typing::Typing;

/// Everything a request handler may use, shared by all listeners.
pub struct Services {
    pub config: Config,
    pub store: Arc<Store>,
    pub keys: Arc<ServerKeys>,
    pub accounts: Accounts,
    pub profiles: Profiles,
    pub rooms: Rooms,
    pub directory: Arc<Directory>,
    pub federation: Federation,
    /// Inbound federation transactions already answered, for idempotency.
    pub transactions: federation::receiver::TransactionLog,
    pub sender: federation::sender::Sender,
    pub typing: Typing,
    /// Bumped when account data or receipts change, to wake long-polling `/sync`s.
    pub changes: watch::Sender<u64>,
    pub limits: Limits,
}

/// The rate limiters of the `rc_*` config sections.
pub struct Limits {
    pub login_address: RateLimiter,
    pub login_account: RateLimiter,
    pub login_failed: RateLimiter,
    pub registration: RateLimiter,
    pub user_directory: RateLimiter,
}

impl Services {
    pub async fn new(config: Config, store: Arc<Store>, keys: ServerKeys) -> anyhow::Result<Self> {
        let keys = Arc::new(keys);
        let rooms = Rooms::new(store.clone(), keys.clone(), config.default_room_version.clone()).await?;
        let accounts =
            Accounts::new(store.clone(), config.server_name.clone(), config.registration_shared_secret.clone());
        let limits = Limits {
            login_address: RateLimiter::new(config.rc_login.address),
            login_account: RateLimiter::new(config.rc_login.account),
            login_failed: RateLimiter::new(config.rc_login.failed_attempts),
            registration: RateLimiter::new(config.rc_registration),
            user_directory: RateLimiter::new(config.rc_user_directory),
        };
        Ok(Self {
            profiles: Profiles::new(store.clone()),
            accounts,
            rooms,
            directory: Arc::new(Directory::new(
                store.clone(),
                config.server_name.to_string(),
                config.user_directory.clone(),
            )),
            federation: Federation::new(&config, keys.clone())?,
            transactions: Default::default(),
            sender: federation::sender::Sender::new(config.federation.clone()),
            typing: Typing::default(),
            changes: watch::channel(0).0,
            limits,
            keys,
            store,
            config,
        })
    }
}

impl Services {
    /// Deactivates an account and, as Synapse does, takes the user out of every room
    /// they are joined to or invited to.
    pub async fn deactivate_account(&self, user_id: &str, erase: bool) -> crate::error::ApiResult<()> {
        self.accounts.deactivate(user_id, erase).await?;
        for membership in self.store.memberships_of_user(user_id).await? {
            if membership.membership != "join" && membership.membership != "invite" {
                continue;
            }
            let leave = rooms::membership::MembershipChange::new(
                &membership.room_id,
                user_id,
                user_id,
                rooms::membership::Change::Leave,
            );
            if let Err(err) = self.rooms.change_membership(leave).await {
                tracing::warn!(%user_id, room_id = %membership.room_id, %err, "could not leave room on deactivation");
            }
        }
        Ok(())
    }

    /// Wakes `/sync` long polls after an account-data or receipt change.
    pub fn notify_change(&self) {
        self.changes.send_modify(|serial| *serial += 1);
    }
}
