//! Synapse's admin API: accounts (listing, creating and changing them, passwords,
//! sessions, devices, deactivation), rooms (listing, details, members, state) and the
//! federation destinations in backoff. Answers are in Synapse's shapes.

mod federation;
mod rooms;
mod users;

pub use federation::{Destination, Destinations};
pub use rooms::{ListedRoom, RoomDetails, RoomList, RoomMembers, RoomOrder, RoomQuery, RoomState};
pub use users::{
    Account, AccountChange, Connection, ExternalId, JoinedRooms, ListedUser, Threepid, UserChanges, UserDevice,
    UserDevices, UserList, Whois, WhoisDevice, WhoisSession,
};

use std::sync::Arc;

use ruma::{OwnedServerName, UserId};

use super::accounts::Accounts;
use super::appservices::AppServices;
use super::client_ips::ClientIps;
use super::devices::Devices;
use super::profiles::Profiles;
use super::rooms::Rooms;
use super::server_health::ServerHealth;
use crate::error::{ApiResult, MatrixError};
use crate::store::Store;

pub struct Admin {
    store: Arc<Store>,
    server_name: OwnedServerName,
    accounts: Arc<Accounts>,
    devices: Arc<Devices>,
    client_ips: Arc<ClientIps>,
    profiles: Arc<Profiles>,
    rooms: Arc<Rooms>,
    health: Arc<ServerHealth>,
    appservices: Arc<AppServices>,
}

/// One page of a list: an offset and a size, both already checked.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub from: i64,
    pub limit: i64,
}

impl Admin {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        server_name: OwnedServerName,
        accounts: Arc<Accounts>,
        devices: Arc<Devices>,
        client_ips: Arc<ClientIps>,
        profiles: Arc<Profiles>,
        rooms: Arc<Rooms>,
        health: Arc<ServerHealth>,
        appservices: Arc<AppServices>,
    ) -> Self {
        Self { store, server_name, accounts, devices, client_ips, profiles, rooms, health, appservices }
    }

    fn require_local(&self, user_id: &UserId) -> ApiResult<()> {
        if user_id.server_name() != self.server_name {
            return Err(MatrixError::invalid_param("Can only look up local users"));
        }
        Ok(())
    }

    /// A local account that exists; `M_NOT_FOUND` otherwise.
    async fn require_account(&self, user_id: &UserId) -> ApiResult<crate::store::AdminUserRow> {
        self.require_local(user_id)?;
        self.store.admin_user(user_id.as_str()).await?.ok_or_else(|| MatrixError::not_found("User not found"))
    }

    /// A local account as the admin API shows it, with the application service whose
    /// exclusive namespace holds it.
    async fn account(&self, user_id: &UserId) -> ApiResult<users::Account> {
        let mut account: users::Account = self.require_account(user_id).await?.into();
        account.appservice_id = self.appservices.exclusive_owner_of_user(user_id).map(|s| s.id().to_owned());
        Ok(account)
    }
}
