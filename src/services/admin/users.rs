//! Accounts as admins see and change them.

use std::collections::{BTreeMap, HashSet};

use axum::http::StatusCode;
use ruma::{OwnedUserId, UserId};
use serde::Serialize;
use serde_json::Value;

use super::Admin;
use crate::error::{ApiResult, MatrixError};
use crate::store::{AdminUserRow, UserQuery};

/// What `PUT /_synapse/admin/v2/users/{userId}` may set; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub password: Option<String>,
    pub logout_devices: bool,
    /// An empty string removes the display name.
    pub displayname: Option<String>,
    /// An empty string removes the avatar.
    pub avatar_url: Option<String>,
    pub admin: Option<bool>,
    pub deactivated: Option<bool>,
    pub locked: Option<bool>,
    /// `Some(None)` clears the user type.
    pub user_type: Option<Option<String>>,
}

/// Whois lists at most this many connections per device, the newest.
const MAX_WHOIS_CONNECTIONS: i64 = 100;

/// Synapse's user types besides a normal user's (none).
const USER_TYPES: &[&str] = &["bot", "support"];

/// An account as the account list shows it (`creation_ts` in milliseconds).
#[derive(Debug, Serialize)]
pub struct ListedUser {
    pub name: String,
    pub is_guest: bool,
    pub admin: bool,
    pub user_type: Option<String>,
    pub deactivated: bool,
    pub erased: bool,
    pub shadow_banned: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub creation_ts: i64,
    pub last_seen_ts: Option<i64>,
    pub locked: bool,
}

impl From<AdminUserRow> for ListedUser {
    fn from(user: AdminUserRow) -> Self {
        Self {
            name: user.user_id,
            is_guest: user.is_guest,
            admin: user.admin,
            user_type: user.user_type,
            deactivated: user.deactivated,
            erased: user.erased,
            shadow_banned: false,
            displayname: user.displayname,
            avatar_url: user.avatar_url,
            creation_ts: user.created_ts,
            last_seen_ts: user.last_seen_ts,
            locked: user.locked,
        }
    }
}

/// A page of the account list; `next_token` (the next page's offset) while more remain.
#[derive(Debug, Serialize)]
pub struct UserList {
    pub users: Vec<ListedUser>,
    pub total: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// A third-party identifier in Synapse's shape; kith keeps none.
#[derive(Debug, Serialize)]
pub struct Threepid {
    pub medium: String,
    pub address: String,
    pub added_at: i64,
    pub validated_at: i64,
}

/// A single sign-on mapping in Synapse's shape; kith keeps none.
#[derive(Debug, Serialize)]
pub struct ExternalId {
    pub auth_provider: String,
    pub external_id: String,
}

/// One account in full, as `GET /_synapse/admin/v2/users/{userId}` answers (creation
/// time in seconds there, as in Synapse, but in milliseconds in the list). What kith
/// does not keep is empty, false or null.
#[derive(Debug, Serialize)]
pub struct Account {
    pub name: String,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub threepids: Vec<Threepid>,
    pub external_ids: Vec<ExternalId>,
    pub is_guest: bool,
    pub admin: bool,
    pub deactivated: bool,
    pub erased: bool,
    pub shadow_banned: bool,
    pub locked: bool,
    pub suspended: bool,
    pub creation_ts: i64,
    pub last_seen_ts: Option<i64>,
    pub appservice_id: Option<String>,
    pub consent_server_notice_sent: Option<String>,
    pub consent_version: Option<String>,
    pub consent_ts: Option<i64>,
    pub user_type: Option<String>,
}

impl From<AdminUserRow> for Account {
    fn from(user: AdminUserRow) -> Self {
        Self {
            name: user.user_id,
            displayname: user.displayname,
            avatar_url: user.avatar_url,
            threepids: Vec::new(),
            external_ids: Vec::new(),
            is_guest: user.is_guest,
            admin: user.admin,
            deactivated: user.deactivated,
            erased: user.erased,
            shadow_banned: false,
            locked: user.locked,
            suspended: false,
            creation_ts: user.created_ts / 1000,
            last_seen_ts: user.last_seen_ts,
            appservice_id: None,
            consent_server_notice_sent: None,
            consent_version: None,
            consent_ts: None,
            user_type: user.user_type,
        }
    }
}

/// Whether `PUT /_synapse/admin/v2/users/{userId}` created the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountChange {
    Created,
    Changed,
}

/// Whois, as Synapse answers it: all connections under the device `""`, in one session.
#[derive(Debug, Serialize)]
pub struct Whois {
    pub user_id: OwnedUserId,
    pub devices: BTreeMap<String, WhoisDevice>,
}

#[derive(Debug, Serialize)]
pub struct WhoisDevice {
    pub sessions: Vec<WhoisSession>,
}

#[derive(Debug, Serialize)]
pub struct WhoisSession {
    pub connections: Vec<Connection>,
}

/// An address and user agent a user's tokens were used with, and when last.
#[derive(Debug, Serialize)]
pub struct Connection {
    pub ip: String,
    pub last_seen: i64,
    pub user_agent: String,
}

/// The rooms a user is joined to.
#[derive(Debug, Serialize)]
pub struct JoinedRooms {
    pub joined_rooms: Vec<String>,
    pub total: usize,
}

/// A user's devices, each with its newest connection.
#[derive(Debug, Serialize)]
pub struct UserDevices {
    pub devices: Vec<UserDevice>,
    pub total: usize,
}

#[derive(Debug, Serialize)]
pub struct UserDevice {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_user_agent: Option<String>,
    pub user_id: OwnedUserId,
}

impl Admin {
    /// `GET /_synapse/admin/v2/users` and `/v3/users`.
    pub async fn list_users(&self, query: &UserQuery) -> ApiResult<UserList> {
        // Last-seen times are read from the database: write what is pending first.
        self.client_ips.flush().await?;
        let (users, total) = self.store.admin_list_users(query).await?;
        let next_token =
            (query.from.saturating_add(query.limit) < total).then(|| (query.from + users.len() as i64).to_string());
        Ok(UserList { users: users.into_iter().map(ListedUser::from).collect(), total, next_token })
    }

    pub async fn user(&self, user_id: &UserId) -> ApiResult<Account> {
        self.client_ips.flush_user(user_id.as_str()).await?;
        self.account(user_id).await
    }

    /// Creates the account if it does not exist or changes it.
    pub async fn put_user(
        &self,
        admin: &UserId,
        admin_device: &str,
        user_id: &UserId,
        changes: UserChanges,
    ) -> ApiResult<(AccountChange, Account)> {
        self.require_local(user_id)?;
        if let Some(Some(user_type)) = &changes.user_type
            && !USER_TYPES.contains(&user_type.as_str())
        {
            return Err(MatrixError::invalid_param("Invalid user type"));
        }
        if let Some(url) = changes.avatar_url.as_deref()
            && !url.is_empty()
            && !url.starts_with("mxc://")
        {
            return Err(MatrixError::invalid_param("avatar_url must be a valid mxc URI"));
        }
        let existing = self.store.admin_user(user_id.as_str()).await?;
        let created = existing.is_none();
        match existing {
            None => {
                let user_type = changes.user_type.clone().flatten();
                self.accounts
                    .register(
                        user_id.as_str(),
                        changes.password.as_deref(),
                        changes.admin.unwrap_or(false),
                        user_type.as_deref(),
                        changes.displayname.as_deref().filter(|name| !name.is_empty()),
                        None,
                    )
                    .await?;
                if changes.deactivated == Some(true) {
                    self.accounts.deactivate(user_id, false).await?;
                }
            }
            Some(user) => self.change_user(admin, admin_device, user_id, &user, &changes).await?,
        }
        if let Some(locked) = changes.locked {
            self.store.set_user_locked(user_id.as_str(), locked).await?;
        }
        if created && changes.displayname.as_deref() == Some("") {
            self.profiles.set_field(user_id, "displayname", None).await?;
        }
        if let Some(url) = changes.avatar_url {
            let value = (!url.is_empty()).then_some(Value::String(url));
            self.profiles.set_field(user_id, "avatar_url", value).await?;
        }
        let change = if created { AccountChange::Created } else { AccountChange::Changed };
        Ok((change, self.account(user_id).await?))
    }

    async fn change_user(
        &self,
        admin: &UserId,
        admin_device: &str,
        user_id: &UserId,
        user: &AdminUserRow,
        changes: &UserChanges,
    ) -> ApiResult<()> {
        if changes.admin == Some(false) && user_id == admin {
            return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", "You may not demote yourself."));
        }
        match changes.deactivated {
            Some(true) if !user.deactivated => self.accounts.deactivate(user_id, false).await?,
            Some(false) if user.deactivated => {
                if changes.password.is_none() {
                    return Err(MatrixError::new(
                        StatusCode::BAD_REQUEST,
                        "M_UNKNOWN",
                        "Must provide a password to re-activate an account.",
                    ));
                }
                self.store.reactivate_user(user_id.as_str()).await?;
            }
            _ => {}
        }
        if let Some(password) = &changes.password {
            // An admin changing their own password keeps the session doing it.
            let keep = (user_id == admin).then_some(admin_device);
            self.accounts.set_password(user_id, password, changes.logout_devices, keep).await?;
        }
        if let Some(admin) = changes.admin {
            self.store.set_user_admin(user_id.as_str(), admin).await?;
        }
        if let Some(user_type) = &changes.user_type {
            self.store.set_user_type(user_id.as_str(), user_type.as_deref()).await?;
        }
        if let Some(name) = &changes.displayname
            && user.displayname.as_deref() != Some(name.as_str())
        {
            let value = (!name.is_empty()).then(|| Value::String(name.clone()));
            self.profiles.set_field(user_id, "displayname", value).await?;
        }
        Ok(())
    }

    /// `POST /_synapse/admin/v1/reset_password/{userId}`.
    pub async fn reset_password(
        &self,
        admin: &UserId,
        admin_device: &str,
        user_id: &UserId,
        new_password: &str,
        logout_devices: bool,
    ) -> ApiResult<()> {
        self.require_account(user_id).await?;
        let keep = (user_id == admin).then_some(admin_device);
        self.accounts.set_password(user_id, new_password, logout_devices, keep).await
    }

    /// `GET /_synapse/admin/v1/whois/{userId}`: each device's recent connections
    /// (address, user agent, last use), one session per device.
    pub async fn whois(&self, user_id: &UserId) -> ApiResult<Whois> {
        self.require_account(user_id).await?;
        let connections = self.client_ips.connections(user_id.as_str(), MAX_WHOIS_CONNECTIONS).await?;
        // As Synapse answers: one entry per address and user agent (the latest use, newest
        // first), all under the device "" in one session.
        let mut seen = HashSet::new();
        let connections = connections
            .into_iter()
            .filter(|c| seen.insert((c.ip.clone(), c.user_agent.clone())))
            .map(|c| Connection { ip: c.ip, last_seen: c.last_seen, user_agent: c.user_agent })
            .collect();
        let device = WhoisDevice { sessions: vec![WhoisSession { connections }] };
        Ok(Whois { user_id: user_id.to_owned(), devices: BTreeMap::from([(String::new(), device)]) })
    }

    /// `GET /_synapse/admin/v1/users/{userId}/joined_rooms`, for local and remote users.
    pub async fn joined_rooms(&self, user_id: &UserId) -> ApiResult<JoinedRooms> {
        let joined_rooms = self.rooms.joined_rooms(user_id).await?;
        Ok(JoinedRooms { total: joined_rooms.len(), joined_rooms })
    }

    /// `GET /_synapse/admin/v2/users/{userId}/devices`.
    pub async fn devices(&self, user_id: &UserId) -> ApiResult<UserDevices> {
        self.require_account(user_id).await?;
        let devices: Vec<UserDevice> = self
            .devices
            .seen(user_id)
            .await?
            .into_iter()
            .map(|device| UserDevice {
                device_id: device.device_id,
                display_name: device.display_name,
                last_seen_ip: device.last_seen_ip,
                last_seen_ts: device.last_seen_ts,
                last_seen_user_agent: device.last_seen_user_agent,
                user_id: user_id.to_owned(),
            })
            .collect();
        Ok(UserDevices { total: devices.len(), devices })
    }

    /// `DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}`: as a user's own
    /// logout of that device (unknown devices are no error, as in Synapse).
    pub async fn delete_device(&self, user_id: &UserId, device_id: &str) -> ApiResult<()> {
        self.require_account(user_id).await?;
        self.devices.delete(user_id, &[device_id.to_owned()]).await
    }

    /// `POST /_synapse/admin/v1/deactivate/{userId}`: the user's own deactivation, by an
    /// admin; `erase` also removes the profile.
    pub async fn deactivate(&self, user_id: &UserId, erase: bool) -> ApiResult<()> {
        self.require_account(user_id).await?;
        self.accounts.deactivate(user_id, erase).await
    }
}
