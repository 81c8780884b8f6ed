//! Server-side key backups (`/room_keys`): each user's backup versions and the room keys
//! clients store in them. The keys are encrypted by the client and opaque here; for each
//! session the server keeps whichever copy the spec's rule prefers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use ruma::api::client::backup::{BackupAlgorithm, KeyBackupData as RumaKeyBackupData, RoomKeyBackup};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, RoomId, UInt, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::locks::KeyedLocks;
use crate::error::{ApiResult, MatrixError};
use crate::store::{BackupKey, BackupVersion, Store, StoredBackupKey};

/// Which keys of a version a request covers: all, a room's, or one session's.
pub use crate::store::BackupKeyScope as KeyScope;

/// The most sessions one upload may carry (clients upload in batches of a few hundred).
pub const MAX_SESSIONS_PER_UPLOAD: usize = 2000;
/// Algorithm names are bounded like other identifiers.
const MAX_ALGORITHM_BYTES: usize = 255;
const MAX_SESSION_ID_BYTES: usize = 255;
/// Indexes and counts must stay exact as JSON numbers in every client (2^53 - 1).
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// One session key as a client uploads it (the spec's `KeyBackupData`).
#[derive(Debug, Deserialize)]
pub struct KeyBackupData {
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: Value,
}

/// A session key to store, with the room and session it belongs to.
pub struct RoomKeyUpload {
    pub room_id: OwnedRoomId,
    pub session_id: String,
    pub key: KeyBackupData,
}

/// What `GET /room_keys/version[/{version}]` answers: the algorithm with its
/// `auth_data`, the version, its etag and key count.
#[derive(Debug)]
pub struct VersionInfo {
    pub algorithm: Raw<BackupAlgorithm>,
    pub version: String,
    pub etag: String,
    pub count: UInt,
}

/// A version's etag and key count after a change to its keys.
#[derive(Debug)]
pub struct KeysState {
    pub etag: String,
    pub count: UInt,
}

/// A backup algorithm as stored: its name and opaque `auth_data` (an object in the
/// spec, a string from some older clients).
#[derive(Serialize)]
struct StoredAlgorithm<'a> {
    algorithm: &'a str,
    auth_data: &'a Value,
}

pub struct KeyBackup {
    store: Arc<Store>,
    /// A user's backup changes are made one at a time, so an upload checks the current
    /// version and writes to it with no version created or deleted in between.
    writers: KeyedLocks<String>,
}

impl KeyBackup {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store, writers: KeyedLocks::new(1024) }
    }

    /// Creates a version, which becomes the current one; answers its number.
    pub async fn create_version(&self, user_id: &UserId, algorithm: &str, auth_data: &Value) -> ApiResult<String> {
        check_algorithm(algorithm)?;
        check_opaque("auth_data", auth_data)?;
        let _writer = self.writers.lock(&user_id.to_string()).await;
        let version = self.store.create_backup_version(user_id.as_str(), algorithm, auth_data).await?;
        tracing::info!(%user_id, version, "key backup version created");
        Ok(version.to_string())
    }

    pub async fn current_version(&self, user_id: &UserId) -> ApiResult<VersionInfo> {
        let current = self.store.current_backup_version(user_id.as_str()).await?;
        version_info(current.ok_or_else(|| MatrixError::not_found("No current backup version"))?)
    }

    pub async fn version(&self, user_id: &UserId, version: &str) -> ApiResult<VersionInfo> {
        version_info(self.existing_version(user_id, version).await?)
    }

    /// Replaces a version's `auth_data`; its algorithm cannot change, and a version
    /// named in the body must be the one in the path.
    pub async fn update_version(
        &self,
        user_id: &UserId,
        version: &str,
        body_version: Option<&str>,
        algorithm: &str,
        auth_data: &Value,
    ) -> ApiResult<()> {
        if body_version.is_some_and(|body_version| body_version != version) {
            return Err(MatrixError::invalid_param("The version in the body does not match the path"));
        }
        check_opaque("auth_data", auth_data)?;
        let _writer = self.writers.lock(&user_id.to_string()).await;
        let existing = self.existing_version(user_id, version).await?;
        if existing.algorithm != algorithm {
            return Err(MatrixError::invalid_param("The algorithm of a backup version cannot change"));
        }
        if !self.store.update_backup_auth_data(user_id.as_str(), existing.version, auth_data).await? {
            return Err(unknown_version());
        }
        Ok(())
    }

    /// Deletes a version and every key in it.
    pub async fn delete_version(&self, user_id: &UserId, version: &str) -> ApiResult<()> {
        let number = parse_version(version)?;
        let _writer = self.writers.lock(&user_id.to_string()).await;
        if !self.store.delete_backup_version(user_id.as_str(), number).await? {
            return Err(unknown_version());
        }
        tracing::info!(%user_id, version = number, "key backup version deleted");
        Ok(())
    }

    /// Stores keys in the current version. A session already backed up keeps its copy
    /// unless the new one is better (see [`replaces`]).
    pub async fn put_keys(&self, user_id: &UserId, version: &str, uploads: Vec<RoomKeyUpload>) -> ApiResult<KeysState> {
        if uploads.len() > MAX_SESSIONS_PER_UPLOAD {
            return Err(MatrixError::field_too_large(format!("At most {MAX_SESSIONS_PER_UPLOAD} sessions per upload")));
        }
        let keys = uploads.into_iter().map(checked_upload).collect::<ApiResult<Vec<_>>>()?;
        let number = parse_version(version)?;
        let _writer = self.writers.lock(&user_id.to_string()).await;
        let current = self.store.current_backup_version(user_id.as_str()).await?.ok_or_else(unknown_version)?;
        if current.version != number {
            // Only the current version takes keys; an old client learns which one that is.
            self.existing_version(user_id, version).await?;
            return Err(MatrixError::new(StatusCode::FORBIDDEN, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version")
                .with("current_version", current.version.to_string().into()));
        }
        let (etag, count) = self.store.put_backup_keys(user_id.as_str(), number, &keys, replaces).await?;
        Ok(keys_state(etag, count))
    }

    async fn keys(&self, user_id: &UserId, version: &str, scope: KeyScope<'_>) -> ApiResult<Vec<StoredBackupKey>> {
        let existing = self.existing_version(user_id, version).await?;
        Ok(self.store.backup_keys(user_id.as_str(), existing.version, scope).await?)
    }

    /// A version's keys, by room.
    pub async fn all_keys(&self, user_id: &UserId, version: &str) -> ApiResult<BTreeMap<OwnedRoomId, RoomKeyBackup>> {
        Ok(by_room(self.keys(user_id, version, KeyScope::All).await?))
    }

    /// A version's keys of one room, by session (none if it has none).
    pub async fn room_keys(
        &self,
        user_id: &UserId,
        version: &str,
        room_id: &RoomId,
    ) -> ApiResult<BTreeMap<String, Raw<RumaKeyBackupData>>> {
        Ok(sessions(self.keys(user_id, version, KeyScope::Room(room_id.as_str())).await?))
    }

    /// A version's key of one session.
    pub async fn session_key(
        &self,
        user_id: &UserId,
        version: &str,
        room_id: &RoomId,
        session_id: &str,
    ) -> ApiResult<Raw<RumaKeyBackupData>> {
        let keys = self.keys(user_id, version, KeyScope::Session(room_id.as_str(), session_id)).await?;
        let key = keys.into_iter().next().ok_or_else(|| MatrixError::not_found("No room_keys found"))?;
        to_raw(&key.key)
    }

    /// Deletes a version's keys within `scope`.
    pub async fn delete_keys(&self, user_id: &UserId, version: &str, scope: KeyScope<'_>) -> ApiResult<KeysState> {
        let _writer = self.writers.lock(&user_id.to_string()).await;
        let existing = self.existing_version(user_id, version).await?;
        let (etag, count) = self.store.delete_backup_keys(user_id.as_str(), existing.version, scope).await?;
        Ok(keys_state(etag, count))
    }

    async fn existing_version(&self, user_id: &UserId, version: &str) -> ApiResult<BackupVersion> {
        let number = parse_version(version)?;
        self.store.backup_version(user_id.as_str(), number).await?.ok_or_else(unknown_version)
    }
}

/// The spec's rule for a session backed up twice: a verified copy beats an unverified
/// one; between equals, the lower `first_message_index` (it decrypts more history), then
/// the lower `forwarded_count` (fewer hands it passed through).
pub fn replaces(existing: &BackupKey, new: &BackupKey) -> bool {
    if existing.is_verified != new.is_verified {
        return new.is_verified;
    }
    (new.first_message_index, new.forwarded_count) < (existing.first_message_index, existing.forwarded_count)
}

/// Versions are positive integers; anything else names no version, as in Synapse.
fn parse_version(version: &str) -> ApiResult<i64> {
    version.parse::<i64>().ok().filter(|number| *number > 0).ok_or_else(unknown_version)
}

fn unknown_version() -> MatrixError {
    MatrixError::not_found("Unknown backup version")
}

fn version_info(version: BackupVersion) -> ApiResult<VersionInfo> {
    let algorithm = StoredAlgorithm { algorithm: &version.algorithm, auth_data: &version.auth_data };
    Ok(VersionInfo {
        algorithm: to_raw(&algorithm)?,
        version: version.version.to_string(),
        etag: version.etag.to_string(),
        count: count(version.count),
    })
}

fn keys_state(etag: i64, keys: i64) -> KeysState {
    KeysState { etag: etag.to_string(), count: count(keys) }
}

/// Counts are never negative; the store's integer as the spec's.
fn count(count: i64) -> UInt {
    UInt::try_from(count).unwrap_or_default()
}

fn to_raw<T: Serialize, U>(value: &T) -> ApiResult<Raw<U>> {
    let json = serde_json::value::to_raw_value(value).map_err(|err| MatrixError::internal("a stored backup", err))?;
    Ok(Raw::from_json(json))
}

fn check_algorithm(algorithm: &str) -> ApiResult<()> {
    if algorithm.is_empty() || algorithm.len() > MAX_ALGORITHM_BYTES {
        return Err(MatrixError::invalid_param(format!("algorithm must be 1 to {MAX_ALGORITHM_BYTES} bytes")));
    }
    Ok(())
}

/// `auth_data` and `session_data` are objects in the spec; older clients and test suites
/// send opaque strings, which are kept as well.
fn check_opaque(field: &str, value: &Value) -> ApiResult<()> {
    if !(value.is_object() || value.is_string()) {
        return Err(MatrixError::bad_json(format!("{field} must be an object")));
    }
    Ok(())
}

fn checked_upload(upload: RoomKeyUpload) -> ApiResult<StoredBackupKey> {
    let RoomKeyUpload { room_id, session_id, key } = upload;
    if session_id.is_empty() || session_id.len() > MAX_SESSION_ID_BYTES {
        return Err(MatrixError::invalid_param(format!("Session IDs must be 1 to {MAX_SESSION_ID_BYTES} bytes")));
    }
    for (field, number) in [("first_message_index", key.first_message_index), ("forwarded_count", key.forwarded_count)]
    {
        if !(0..=MAX_SAFE_INTEGER).contains(&number) {
            return Err(MatrixError::invalid_param(format!("{field} must be a non-negative integer")));
        }
    }
    check_opaque("session_data", &key.session_data)?;
    Ok(StoredBackupKey {
        room_id: room_id.to_string(),
        session_id,
        key: BackupKey {
            first_message_index: key.first_message_index,
            forwarded_count: key.forwarded_count,
            is_verified: key.is_verified,
            session_data: key.session_data,
        },
    })
}

/// Keys by room; a stored room ID that does not parse (none should) is left out.
fn by_room(keys: Vec<StoredBackupKey>) -> BTreeMap<OwnedRoomId, RoomKeyBackup> {
    let mut rooms: BTreeMap<OwnedRoomId, Vec<StoredBackupKey>> = BTreeMap::new();
    for key in keys {
        if let Ok(room_id) = OwnedRoomId::try_from(key.room_id.as_str()) {
            rooms.entry(room_id).or_default().push(key);
        }
    }
    rooms.into_iter().map(|(room_id, keys)| (room_id, RoomKeyBackup::new(sessions(keys)))).collect()
}

fn sessions(keys: Vec<StoredBackupKey>) -> BTreeMap<String, Raw<RumaKeyBackupData>> {
    keys.into_iter().filter_map(|key| Some((key.session_id, to_raw(&key.key).ok()?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(is_verified: bool, first_message_index: i64, forwarded_count: i64) -> BackupKey {
        BackupKey { first_message_index, forwarded_count, is_verified, session_data: Value::Null }
    }

    #[test]
    fn verified_then_lower_index_then_fewer_forwards_win() {
        let existing = key(false, 5, 2);
        assert!(replaces(&existing, &key(true, 9, 9)), "verified beats unverified whatever its index");
        assert!(!replaces(&key(true, 5, 2), &key(false, 0, 0)), "unverified never replaces verified");
        assert!(replaces(&existing, &key(false, 4, 9)), "a lower index wins");
        assert!(!replaces(&existing, &key(false, 6, 0)), "a higher index loses");
        assert!(replaces(&existing, &key(false, 5, 1)), "same index: fewer forwards win");
        assert!(!replaces(&existing, &key(false, 5, 2)), "an equal copy changes nothing");
        assert!(!replaces(&existing, &key(false, 5, 3)));
    }

    #[test]
    fn versions_are_positive_integers() {
        assert_eq!(parse_version("7").ok(), Some(7));
        for bad in ["0", "-1", "abc", "", "1.5", "99999999999999999999"] {
            assert_eq!(parse_version(bad).map_err(|err| err.errcode), Err("M_NOT_FOUND"), "{bad}");
        }
    }
}
