//! The domain: one module per concern. HTTP handlers call these; these call the store.

pub mod accounts;
pub mod profiles;
pub mod rate_limit;
pub mod server_keys;
pub mod uia;

use std::sync::Arc;

use crate::config::Config;
use crate::store::Store;
use accounts::Accounts;
use profiles::Profiles;
use rate_limit::RateLimiter;
use server_keys::ServerKeys;

/// Everything a request handler may use, shared by all listeners.
pub struct Services {
    pub config: Config,
    pub store: Arc<Store>,
    pub keys: ServerKeys,
    pub accounts: Accounts,
    pub profiles: Profiles,
    pub limits: Limits,
}

/// The rate limiters of the `rc_*` config sections.
pub struct Limits {
    pub login_address: RateLimiter,
    pub login_account: RateLimiter,
    pub login_failed: RateLimiter,
    pub registration: RateLimiter,
}

impl Services {
    pub fn new(config: Config, store: Arc<Store>, keys: ServerKeys) -> Self {
        let accounts = Accounts::new(
            store.clone(),
            config.server_name.clone(),
            config.registration_shared_secret.clone(),
        );
        let limits = Limits {
            login_address: RateLimiter::new(config.rc_login.address),
            login_account: RateLimiter::new(config.rc_login.account),
            login_failed: RateLimiter::new(config.rc_login.failed_attempts),
            registration: RateLimiter::new(config.rc_registration),
        };
        Self {
            profiles: Profiles::new(store.clone()),
            accounts,
            limits,
            keys,
            store,
            config,
        }
    }
}
