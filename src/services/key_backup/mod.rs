//! Server-side key backups (`/room_keys`): each user's backup versions and the room keys
//! clients store in them. The keys are encrypted by the client and opaque here; for each
//! session the server keeps whichever copy the spec's rule prefers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use ruma::{OwnedRoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

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

/// What `GET /room_keys/version[/{version}]` answers.
#[derive(Debug, Serialize)]
pub struct VersionInfo {
    pub algorithm: String,
    pub auth_data: Value,
    pub version: String,
    pub etag: String,
    pub count: i64,
}

/// A version's etag and key count after a change to its keys.
#[derive(Debug, Serialize)]
pub struct KeysState {
    pub etag: String,
    pub count: i64,
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
        current.map(version_info).ok_or_else(|| MatrixError::not_found("No current backup version"))
    }

    pub async fn version(&self, user_id: &UserId, version: &str) -> ApiResult<VersionInfo> {
        self.existing_version(user_id, version).await.map(version_info)
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
            return Err(MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_TOO_LARGE",
                format!("At most {MAX_SESSIONS_PER_UPLOAD} sessions per upload"),
            ));
        }
        let keys = uploads.into_iter().map(checked_upload).collect::<ApiResult<Vec<_>>>()?;
        let number = parse_version(version)?;
        let _writer = self.writers.lock(&user_id.to_string()).await;
        let current = self.store.current_backup_version(user_id.as_str()).await?.ok_or_else(unknown_version)?;
        if current.version != number {
            // Only the current version takes keys; an old client learns which one that is.
            self.existing_version(user_id, version).await?;
            return Err(MatrixError::new(StatusCode::FORBIDDEN, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version")
                .with("current_version", json!(current.version.to_string())));
        }
        let (etag, count) = self.store.put_backup_keys(user_id.as_str(), number, &keys, replaces).await?;
        Ok(KeysState { etag: etag.to_string(), count })
    }

    /// A version's keys within `scope`, shaped as the request asked: `{rooms}` for all,
    /// `{sessions}` for a room (empty if it has none), the key itself for one session.
    pub async fn keys(&self, user_id: &UserId, version: &str, scope: KeyScope<'_>) -> ApiResult<Value> {
        let existing = self.existing_version(user_id, version).await?;
        let keys = self.store.backup_keys(user_id.as_str(), existing.version, scope).await?;
        match scope {
            KeyScope::All => Ok(json!({ "rooms": by_room(keys) })),
            KeyScope::Room(_) => Ok(json!({ "sessions": sessions(keys) })),
            KeyScope::Session(..) => {
                let key = keys.into_iter().next().ok_or_else(|| MatrixError::not_found("No room_keys found"))?;
                Ok(json!(key.key))
            }
        }
    }

    /// Deletes a version's keys within `scope`.
    pub async fn delete_keys(&self, user_id: &UserId, version: &str, scope: KeyScope<'_>) -> ApiResult<KeysState> {
        let _writer = self.writers.lock(&user_id.to_string()).await;
        let existing = self.existing_version(user_id, version).await?;
        let (etag, count) = self.store.delete_backup_keys(user_id.as_str(), existing.version, scope).await?;
        Ok(KeysState { etag: etag.to_string(), count })
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

fn version_info(version: BackupVersion) -> VersionInfo {
    VersionInfo {
        algorithm: version.algorithm,
        auth_data: version.auth_data,
        version: version.version.to_string(),
        etag: version.etag.to_string(),
        count: version.count,
    }
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

fn by_room(keys: Vec<StoredBackupKey>) -> Map<String, Value> {
    let mut rooms: BTreeMap<String, Vec<StoredBackupKey>> = BTreeMap::new();
    for key in keys {
        rooms.entry(key.room_id.clone()).or_default().push(key);
    }
    rooms.into_iter().map(|(room_id, keys)| (room_id, json!({ "sessions": sessions(keys) }))).collect()
}

fn sessions(keys: Vec<StoredBackupKey>) -> Map<String, Value> {
    keys.into_iter().map(|key| (key.session_id, json!(key.key))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(is_verified: bool, first_message_index: i64, forwarded_count: i64) -> BackupKey {
        BackupKey { first_message_index, forwarded_count, is_verified, session_data: json!({}) }
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
