//! The inbound federation pipeline: what other servers send, step by step.
//!
//! 1. [`authenticate`]: the request's X-Matrix signature proves its origin, and
//!    [`rate_limit`] gives it its turn among that origin's requests (`rc_federation`).
//! 2. [`transaction`]: a `/send` transaction, once per transaction id, split into PDUs
//!    (each answered on its own) and EDUs ([`edus`], typed and dispatched).
//! 3. [`check_pdu`]: format, event id, signatures and hashes of each PDU.
//! 4. [`fetch_auth`]: auth events we lack, from the origin.
//! 5. [`fetch_prev`]: missing prev events, with `/get_missing_events`.
//! 6. [`fetch_state`]: the state before an event whose gap remains, with `/state`.
//! 7. [`accept`]: the event through the auth rules into its room (the room service owns
//!    what is persisted and how the state moves).

pub mod accept;
pub mod authenticate;
#[cfg(test)]
mod authenticate_tests;
pub mod check_pdu;
pub mod fetch_auth;
pub mod fetch_prev;
pub mod fetch_state;
pub mod rate_limit;
pub mod transaction;

use std::sync::Arc;

use crate::error::ApiResult;

use ruma::{OwnedServerName, ServerName};

use self::rate_limit::{FederationRateLimiter, Turn};
use super::federation::FederationClient;
use super::federation::edus::EduHandlers;
use crate::config::FederationRateLimit;
use crate::error::MatrixError;
use crate::services::remote_keys::RemoteKeys;
use crate::services::rooms::Rooms;
use crate::services::server_health::ServerHealth;
use crate::store::Store;

pub struct Inbound {
    store: Arc<Store>,
    server_name: OwnedServerName,
    client: Arc<FederationClient>,
    keys: Arc<RemoteKeys>,
    rooms: Arc<Rooms>,
    /// Told that a server whose request passes authentication is up.
    health: Arc<ServerHealth>,
    /// Where each type of EDU goes, registered by the services that handle them.
    edu_handlers: EduHandlers,
    transactions: transaction::TransactionLog,
    rate_limiter: FederationRateLimiter,
}

impl Inbound {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        server_name: OwnedServerName,
        client: Arc<FederationClient>,
        keys: Arc<RemoteKeys>,
        rooms: Arc<Rooms>,
        health: Arc<ServerHealth>,
        edu_handlers: EduHandlers,
        rate_limit: FederationRateLimit,
    ) -> Self {
        Self {
            store,
            server_name,
            client,
            keys,
            rooms,
            health,
            edu_handlers,
            transactions: transaction::TransactionLog::default(),
            rate_limiter: FederationRateLimiter::new(rate_limit),
        }
    }

    /// Waits for the turn of a request from `origin`, which lasts as long as the
    /// [`Turn`] is kept, or refuses it with `M_LIMIT_EXCEEDED`.
    pub async fn admit(&self, origin: &ServerName) -> Result<Turn, MatrixError> {
        self.rate_limiter.admit(origin).await
    }
}

/// An ID kith read from a checked event or its own tables, as ruma's type.
pub(crate) fn parse_id<T>(id: &str) -> ApiResult<T>
where
    T: TryFrom<String>,
    T::Error: std::fmt::Display,
{
    T::try_from(id.to_owned()).map_err(|err| MatrixError::internal("an ID kith holds", err))
}
