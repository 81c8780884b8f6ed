//! Accounts: registration (open and shared-secret), password login, sessions,
//! deactivation.

mod uia;

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::StatusCode;
use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distributions::Alphanumeric;
use ruma::{DeviceId, OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::rooms::Rooms;
use super::rooms::membership::{Change, MembershipChange};
use crate::error::{ApiResult, MatrixError};
use crate::store::{NewUser, Store, TokenOwner};

/// Synapse's limit on a device's display name (set at login, changed through `Devices`).
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
use uia::ExpiringSet;

/// A nonce for shared-secret registration is valid this long, as in Synapse.
const NONCE_LIFETIME_SECS: u64 = 60;
const MAX_OUTSTANDING_NONCES: usize = 10_000;
/// User-interactive-auth sessions live this long.
pub(crate) const UIA_SESSION_LIFETIME_SECS: u64 = 30 * 60;
const MAX_UIA_SESSIONS: usize = 10_000;

pub struct Accounts {
    store: Arc<Store>,
    rooms: Arc<Rooms>,
    server_name: OwnedServerName,
    shared_secret: Option<String>,
    nonces: ExpiringSet,
    uia_sessions: ExpiringSet,
}

/// The user behind a request's access token.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    pub user_id: OwnedUserId,
    pub device_id: String,
    pub admin: bool,
    pub is_guest: bool,
    /// The application service whose `as_token` the request carried.
    pub appservice_id: Option<String>,
    /// Whether the `rc_*` limits apply (not to an application service that says
    /// `rate_limited: false`).
    pub rate_limited: bool,
}

/// A new session handed to a client.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub access_token: String,
}

/// What a new account starts with besides its ID and password.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewAccount<'a> {
    pub admin: bool,
    /// Synapse's `user_type` (`support`, `bot`), none for ordinary users.
    pub user_type: Option<&'a str>,
    /// The localpart when none is given.
    pub displayname: Option<&'a str>,
}

pub struct SharedSecretRegistration<'a> {
    pub nonce: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub admin: bool,
    pub user_type: Option<&'a str>,
    pub displayname: Option<&'a str>,
    pub mac: &'a str,
}

impl Accounts {
    pub fn new(
        store: Arc<Store>,
        rooms: Arc<Rooms>,
        server_name: OwnedServerName,
        shared_secret: Option<String>,
    ) -> Self {
        Self {
            store,
            rooms,
            server_name,
            shared_secret,
            nonces: ExpiringSet::new(NONCE_LIFETIME_SECS, MAX_OUTSTANDING_NONCES),
            uia_sessions: ExpiringSet::new(UIA_SESSION_LIFETIME_SECS, MAX_UIA_SESSIONS),
        }
    }

    pub fn server_name(&self) -> &str {
        self.server_name.as_str()
    }

    /// Starts a user-interactive-auth session and returns its id.
    pub fn start_uia(&self) -> String {
        let session = random_string(24);
        self.uia_sessions.insert(session.clone());
        session
    }

    /// Whether a UIA session id is live (unknown ids are refused by the caller).
    pub fn uia_session_is_live(&self, session: &str) -> bool {
        self.uia_sessions.contains(session)
    }

    pub fn finish_uia(&self, session: &str) {
        self.uia_sessions.take(session);
    }

    /// Claims a live UIA session for the one request that will complete it: requests
    /// racing on the same session find it gone, so a session registers one account.
    /// The claim gives the session back when dropped without `complete`, so a request
    /// that then fails (a taken username, say) can be retried on the same session.
    pub fn claim_uia(&self, session: &str) -> ApiResult<UiaClaim<'_>> {
        if !self.uia_sessions.take(session) {
            return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", "Unknown session ID"));
        }
        Ok(UiaClaim { sessions: &self.uia_sessions, session: Some(session.to_owned()) })
    }

    /// Resolves an access token to its owner; a locked account's requests are refused.
    pub async fn authenticate(&self, token: &str) -> ApiResult<AuthenticatedUser> {
        let (owner, locked) = self.token_owner(token).await?;
        if locked {
            return Err(user_locked());
        }
        Ok(owner)
    }

    /// Like [`Self::authenticate`], for what a locked account may still do: log out.
    pub async fn authenticate_allowing_locked(&self, token: &str) -> ApiResult<AuthenticatedUser> {
        Ok(self.token_owner(token).await?.0)
    }

    async fn token_owner(&self, token: &str) -> ApiResult<(AuthenticatedUser, bool)> {
        let unknown = || {
            MatrixError::new(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", "Invalid access token passed.")
                .with("soft_logout", false.into())
        };
        let TokenOwner { user_id, device_id, admin, is_guest, locked } =
            self.store.token_owner(&hash_token(token)).await?.ok_or_else(unknown)?;
        let user_id = OwnedUserId::try_from(user_id).map_err(|e| MatrixError::internal("stored user id", e))?;
        Ok((AuthenticatedUser { user_id, device_id, admin, is_guest, appservice_id: None, rate_limited: true }, locked))
    }

    /// Turns `alice` or `@alice:server` into a local user id, checking Synapse's rules.
    pub fn local_user_id(&self, username: &str) -> ApiResult<OwnedUserId> {
        let localpart = match username.strip_prefix('@') {
            Some(rest) => {
                let (localpart, server) = rest.split_once(':').ok_or_else(|| invalid_username("Invalid user ID"))?;
                if server != self.server_name.as_str() {
                    return Err(invalid_username("User ID does not belong to this server"));
                }
                localpart
            }
            None => username,
        };
        validate_localpart(localpart)?;
        let user_id = format!("@{localpart}:{}", self.server_name);
        if user_id.len() > 255 {
            return Err(invalid_username("User ID may not be longer than 255 characters"));
        }
        OwnedUserId::try_from(user_id).map_err(|_| invalid_username("Invalid user ID"))
    }

    pub async fn is_available(&self, user_id: &UserId) -> ApiResult<bool> {
        Ok(self.store.get_user(user_id.as_str()).await?.is_none())
    }

    /// [`Self::register_user`] for a user ID given as text (the admin API's).
    pub async fn register(
        &self,
        user_id: &str,
        password: Option<&str>,
        admin: bool,
        user_type: Option<&str>,
        displayname: Option<&str>,
        device: Option<(Option<&str>, Option<&str>)>,
    ) -> ApiResult<Option<Session>> {
        let user_id = UserId::parse(user_id).map_err(|_| invalid_username("Invalid user ID"))?;
        let device = device.map(|(device_id, name)| (device_id.map(<&DeviceId>::from), name));
        self.register_user(&user_id, password, NewAccount { admin, user_type, displayname }, device).await
    }

    /// Creates an account and, when `device` is given (no `inhibit_login`), a first
    /// session on it: a device ID (random when `None`) and display name.
    pub async fn register_user(
        &self,
        user_id: &UserId,
        password: Option<&str>,
        account: NewAccount<'_>,
        device: Option<(Option<&DeviceId>, Option<&str>)>,
    ) -> ApiResult<Option<Session>> {
        let NewAccount { admin, user_type, displayname } = account;
        // Checked first, so a refused device creates no account.
        if let Some((device_id, display_name)) = device {
            check_device(device_id, display_name)?;
        }
        let password_hash = match password {
            Some(password) => Some(hash_password(password.to_owned()).await?),
            None => None,
        };
        // Synapse gives every new account its localpart as display name.
        let displayname = displayname.unwrap_or(user_id.localpart());
        let created = self
            .store
            .create_user(NewUser {
                user_id: user_id.as_str(),
                password_hash: password_hash.as_deref(),
                admin,
                user_type,
                displayname: Some(displayname),
            })
            .await?;
        if !created {
            return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_USER_IN_USE", "User ID already taken."));
        }
        tracing::info!(%user_id, admin, "registered user");
        match device {
            Some((device_id, display_name)) => Ok(Some(self.new_session(user_id, device_id, display_name).await?)),
            None => Ok(None),
        }
    }

    pub async fn new_session(
        &self,
        user_id: &UserId,
        device_id: Option<&DeviceId>,
        device_display_name: Option<&str>,
    ) -> ApiResult<Session> {
        check_device(device_id, device_display_name)?;
        let device_id = device_id.map_or_else(random_device_id, ToOwned::to_owned);
        let access_token = format!("kith_{}", random_string(40));
        let token_hash = hash_token(&access_token);
        self.store.add_session(user_id.as_str(), device_id.as_str(), device_display_name, &token_hash).await?;
        Ok(Session { user_id: user_id.to_owned(), device_id, access_token })
    }

    /// Checks a password; wrong users and wrong passwords look alike to the caller.
    pub async fn check_password(&self, user_id: &UserId, password: &str) -> ApiResult<()> {
        let invalid = || MatrixError::forbidden("Invalid username or password");
        let user = self.store.get_user(user_id.as_str()).await?.ok_or_else(invalid)?;
        if user.deactivated {
            return Err(MatrixError::new(
                StatusCode::FORBIDDEN,
                "M_USER_DEACTIVATED",
                "This account has been deactivated",
            ));
        }
        let hash = user.password_hash.clone().ok_or_else(invalid)?;
        if !verify_password(password.to_owned(), hash).await? {
            return Err(invalid());
        }
        // Told only to whoever knows the password, so a lock reveals nothing to others.
        if user.locked {
            return Err(user_locked());
        }
        Ok(())
    }

    /// Changes a password; unless `keep_devices`, every other device is logged out.
    pub async fn change_password(
        &self,
        owner: &AuthenticatedUser,
        new_password: &str,
        keep_devices: bool,
    ) -> ApiResult<()> {
        let hash = hash_password(new_password.to_owned()).await?;
        let logout_except = (!keep_devices).then_some(owner.device_id.as_str());
        self.store.set_password_hash(owner.user_id.as_str(), &hash, logout_except).await?;
        tracing::info!(user_id = %owner.user_id, keep_devices, "password changed");
        Ok(())
    }

    /// Sets a user's password on an admin's behalf; with `logout_devices`, every
    /// device but `keep_device` is logged out.
    pub async fn set_password(
        &self,
        user_id: &UserId,
        new_password: &str,
        logout_devices: bool,
        keep_device: Option<&str>,
    ) -> ApiResult<()> {
        let hash = hash_password(new_password.to_owned()).await?;
        let logout_except = logout_devices.then_some(keep_device.unwrap_or_default());
        self.store.set_password_hash(user_id.as_str(), &hash, logout_except).await?;
        tracing::info!(%user_id, logout_devices, "password set by an admin");
        Ok(())
    }

    pub async fn logout(&self, owner: &AuthenticatedUser) -> ApiResult<()> {
        Ok(self.store.remove_device(owner.user_id.as_str(), &owner.device_id).await?)
    }

    pub async fn logout_all(&self, user_id: &UserId) -> ApiResult<()> {
        Ok(self.store.remove_all_devices(user_id.as_str()).await?)
    }

    /// Deactivates an account and, as Synapse does, takes the user out of every room
    /// they are joined to or invited to.
    pub async fn deactivate(&self, user_id: &UserId, erase: bool) -> ApiResult<()> {
        self.store.deactivate_user(user_id.as_str(), erase).await?;
        tracing::info!(%user_id, erase, "deactivated user");
        for membership in self.rooms.memberships_of(user_id).await? {
            if membership.membership != "join" && membership.membership != "invite" {
                continue;
            }
            let user_id = user_id.as_str();
            let leave = MembershipChange::new(&membership.room_id, user_id, user_id, Change::Leave);
            if let Err(err) = self.rooms.change_membership(leave).await {
                tracing::warn!(%user_id, room_id = %membership.room_id, %err, "could not leave room on deactivation");
            }
        }
        Ok(())
    }

    /// `GET /_synapse/admin/v1/register`: a single-use nonce.
    pub fn registration_nonce(&self) -> ApiResult<String> {
        self.require_shared_secret()?;
        let nonce = random_string(32);
        self.nonces.insert(nonce.clone());
        Ok(nonce)
    }

    /// `POST /_synapse/admin/v1/register`, verifying the MAC exactly as Synapse does.
    pub async fn register_with_shared_secret(&self, request: SharedSecretRegistration<'_>) -> ApiResult<Session> {
        let secret = self.require_shared_secret()?;
        if !self.nonces.take(request.nonce) {
            return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", "unrecognised nonce"));
        }
        let expected = shared_secret_mac(secret, &request);
        let given = hex::decode(request.mac).unwrap_or_default();
        if !constant_time_eq(&expected, &given) {
            return Err(MatrixError::forbidden("HMAC incorrect"));
        }
        if let Some(user_type) = request.user_type
            && !["support", "bot"].contains(&user_type)
        {
            return Err(MatrixError::invalid_param("Invalid user type"));
        }
        let user_id = self.local_user_id(&request.username.to_lowercase())?;
        let account =
            NewAccount { admin: request.admin, user_type: request.user_type, displayname: request.displayname };
        let session = self.register_user(&user_id, Some(request.password), account, Some((None, None))).await?;
        session.ok_or_else(|| MatrixError::internal("registration", "no session created"))
    }

    fn require_shared_secret(&self) -> ApiResult<&str> {
        self.shared_secret.as_deref().ok_or_else(|| {
            MatrixError::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", "Shared secret registration is not enabled")
        })
    }
}

fn check_device(device_id: Option<&DeviceId>, display_name: Option<&str>) -> ApiResult<()> {
    if device_id.is_some_and(|id| id.as_str().is_empty() || id.as_str().len() > 255) {
        return Err(MatrixError::invalid_param("device_id must be 1 to 255 characters"));
    }
    if display_name.is_some_and(|name| name.chars().count() > MAX_DISPLAY_NAME_CHARS) {
        return Err(MatrixError::field_too_large(format!(
            "The device display name is longer than {MAX_DISPLAY_NAME_CHARS} characters"
        )));
    }
    Ok(())
}

/// Synapse's MAC: HMAC-SHA1 over `nonce\0username\0password\0admin|notadmin[\0user_type]`.
fn shared_secret_mac(secret: &str, request: &SharedSecretRegistration<'_>) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret.as_bytes()) else {
        return Vec::new();
    };
    mac.update(request.nonce.as_bytes());
    mac.update(b"\x00");
    mac.update(request.username.as_bytes());
    mac.update(b"\x00");
    mac.update(request.password.as_bytes());
    mac.update(b"\x00");
    mac.update(if request.admin { b"admin" } else { b"notadmin" });
    if let Some(user_type) = request.user_type {
        mac.update(b"\x00");
        mac.update(user_type.as_bytes());
    }
    mac.finalize().into_bytes().to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Synapse's answer to a locked account: a soft logout, so clients keep their keys.
fn user_locked() -> MatrixError {
    MatrixError::new(StatusCode::UNAUTHORIZED, "M_USER_LOCKED", "User account has been locked")
        .with("soft_logout", true.into())
}

fn invalid_username(message: &str) -> MatrixError {
    MatrixError::new(StatusCode::BAD_REQUEST, "M_INVALID_USERNAME", message)
}

/// Synapse's localpart rules for new accounts.
pub fn validate_localpart(localpart: &str) -> ApiResult<()> {
    if localpart.is_empty() {
        return Err(invalid_username("User ID cannot be empty"));
    }
    if localpart.starts_with('_') {
        return Err(invalid_username("User ID may not begin with _"));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._=-/+".contains(c);
    if !localpart.chars().all(allowed) {
        return Err(invalid_username("User ID can only contain characters a-z, 0-9, or '=_-./+'"));
    }
    if UserId::parse(format!("@{localpart}:localhost")).is_err() {
        return Err(invalid_username("Invalid user ID"));
    }
    Ok(())
}

/// A UIA session held by the request completing it; see [`Accounts::claim_uia`].
pub struct UiaClaim<'a> {
    sessions: &'a ExpiringSet,
    session: Option<String>,
}

impl UiaClaim<'_> {
    /// The request succeeded: the session is used up.
    pub fn complete(mut self) {
        self.session = None;
    }
}

impl Drop for UiaClaim<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.sessions.insert(session);
        }
    }
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn random_string(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

fn random_device_id() -> OwnedDeviceId {
    let mut rng = rand::thread_rng();
    let id: String = (0..10).map(|_| char::from(rng.gen_range(b'A'..=b'Z'))).collect();
    id.into()
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes), off the async workers.
async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string())
    })
    .await
    .map_err(|err| MatrixError::internal("password hashing task", err))?
    .map_err(|err| MatrixError::internal("password hashing", err))
}

async fn verify_password(password: String, hash: String) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
    })
    .await
    .map_err(|err| MatrixError::internal("password check task", err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localparts_follow_synapse_rules() {
        for ok in ["alice", "user-1", "user.1", "user_1", "a=b/c+d"] {
            validate_localpart(ok).unwrap();
        }
        for bad in ["", "_hidden", "Alice", "al ice", "al:ice", "émile"] {
            assert_eq!(validate_localpart(bad).unwrap_err().errcode, "M_INVALID_USERNAME", "{bad}");
        }
    }

    #[test]
    fn mac_matches_synapse_reference() {
        // hmac.new(b"secret", b"abc\x00alice\x00pw\x00admin", hashlib.sha1).hexdigest()
        let request = SharedSecretRegistration {
            nonce: "abc",
            username: "alice",
            password: "pw",
            admin: true,
            user_type: None,
            displayname: None,
            mac: "",
        };
        assert_eq!(hex::encode(shared_secret_mac("secret", &request)), "dc5ed98b283077684552e3f72d67f26b3366bf58");
    }
}
