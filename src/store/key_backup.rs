//! Server-side key backups: backup versions and the room keys stored in them.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, WriteTxn};

/// A backup version that has not been deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupVersion {
    pub version: i64,
    pub algorithm: String,
    pub auth_data: Value,
    /// Changes whenever the version's keys change.
    pub etag: i64,
    /// How many keys the version holds.
    pub count: i64,
}

/// One backed-up session key (the spec's `KeyBackupData`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackupKey {
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: Value,
}

/// A backed-up key with the room and session it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBackupKey {
    pub room_id: String,
    pub session_id: String,
    pub key: BackupKey,
}

/// Which keys of a version a read or delete covers: all, a room's, or one session's.
#[derive(Debug, Clone, Copy)]
pub enum BackupKeyScope<'a> {
    All,
    Room(&'a str),
    Session(&'a str, &'a str),
}

impl BackupKeyScope<'_> {
    /// The SQL condition after the user and version (`$1`, `$2`), bound to [`Self::ids`].
    fn condition(&self) -> &'static str {
        match self {
            Self::All => "",
            Self::Room(_) => " AND room_id = $3",
            Self::Session(..) => " AND room_id = $3 AND session_id = $4",
        }
    }

    fn ids(&self) -> Vec<&str> {
        match *self {
            Self::All => vec![],
            Self::Room(room_id) => vec![room_id],
            Self::Session(room_id, session_id) => vec![room_id, session_id],
        }
    }
}

const VERSION_COLUMNS: &str = "v.version, v.algorithm, v.auth_data, v.etag, \
     (SELECT COUNT(*) FROM key_backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)";

impl Store {
    /// Creates the user's next backup version (one past the highest ever created, so a
    /// deleted version's number is never given out again).
    pub async fn create_backup_version(
        &self,
        user_id: &str,
        algorithm: &str,
        auth_data: &Value,
    ) -> Result<i64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let version: i64 =
            sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 FROM key_backup_versions WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&mut *txn.tx)
                .await?
                .try_get(0)?;
        sqlx::query(
            "INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data, etag, deleted) \
             VALUES ($1, $2, $3, $4, 0, 0)",
        )
        .bind(user_id)
        .bind(version)
        .bind(algorithm)
        .bind(auth_data.to_string())
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await?;
        Ok(version)
    }

    /// A version that exists and is not deleted.
    pub async fn backup_version(&self, user_id: &str, version: i64) -> Result<Option<BackupVersion>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM key_backup_versions v \
             WHERE v.user_id = $1 AND v.version = $2 AND v.deleted = 0"
        ))
        .bind(user_id)
        .bind(version)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    /// The current version: the newest one not deleted.
    pub async fn current_backup_version(&self, user_id: &str) -> Result<Option<BackupVersion>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM key_backup_versions v \
             WHERE v.user_id = $1 AND v.deleted = 0 ORDER BY v.version DESC LIMIT 1"
        ))
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    /// Replaces a version's `auth_data`; false if there is no such version.
    pub async fn update_backup_auth_data(
        &self,
        user_id: &str,
        version: i64,
        auth_data: &Value,
    ) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE key_backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user_id)
        .bind(version)
        .bind(auth_data.to_string())
        .execute(&mut *txn.tx)
        .await?
        .rows_affected();
        txn.commit().await?;
        Ok(updated > 0)
    }

    /// Deletes a version and its keys; false if there is no such version.
    pub async fn delete_backup_version(&self, user_id: &str, version: i64) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let deleted = sqlx::query(
            "UPDATE key_backup_versions SET deleted = 1 WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user_id)
        .bind(version)
        .execute(&mut *txn.tx)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM key_backup_keys WHERE user_id = $1 AND version = $2")
            .bind(user_id)
            .bind(version)
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Stores keys in a version: a new session is added, a known one is overwritten only
    /// when `replaces(existing, new)` says so. The etag moves if anything was written.
    /// Answers the version's etag and key count afterwards.
    pub async fn put_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        keys: &[StoredBackupKey],
        replaces: impl Fn(&BackupKey, &BackupKey) -> bool,
    ) -> Result<(i64, i64), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let mut changed = false;
        for new in keys {
            let existing = sqlx::query(
                "SELECT first_message_index, forwarded_count, is_verified, session_data FROM key_backup_keys \
                 WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4",
            )
            .bind(user_id)
            .bind(version)
            .bind(new.room_id.as_str())
            .bind(new.session_id.as_str())
            .fetch_optional(&mut *txn.tx)
            .await?;
            let sql = match existing.as_ref().map(|row| key_from_row(row, 0)).transpose()? {
                None => {
                    "INSERT INTO key_backup_keys (user_id, version, room_id, session_id, first_message_index, \
                     forwarded_count, is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                }
                Some(existing) if replaces(&existing, &new.key) => {
                    "UPDATE key_backup_keys SET first_message_index = $5, forwarded_count = $6, is_verified = $7, \
                     session_data = $8 WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4"
                }
                Some(_) => continue,
            };
            sqlx::query(sql)
                .bind(user_id)
                .bind(version)
                .bind(new.room_id.as_str())
                .bind(new.session_id.as_str())
                .bind(new.key.first_message_index)
                .bind(new.key.forwarded_count)
                .bind(i64::from(new.key.is_verified))
                .bind(new.key.session_data.to_string())
                .execute(&mut *txn.tx)
                .await?;
            changed = true;
        }
        let state = etag_and_count(&mut txn, user_id, version, changed).await?;
        txn.commit().await?;
        Ok(state)
    }

    /// A version's keys within `scope`, ordered by room and session.
    pub async fn backup_keys(
        &self,
        user_id: &str,
        version: i64,
        scope: BackupKeyScope<'_>,
    ) -> Result<Vec<StoredBackupKey>, sqlx::Error> {
        let sql = format!(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data \
             FROM key_backup_keys WHERE user_id = $1 AND version = $2{} ORDER BY room_id, session_id",
            scope.condition()
        );
        let mut query = sqlx::query(&sql).bind(user_id).bind(version);
        for id in scope.ids() {
            query = query.bind(id);
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|row| {
                Ok(StoredBackupKey {
                    room_id: row.try_get(0)?,
                    session_id: row.try_get(1)?,
                    key: key_from_row(row, 2)?,
                })
            })
            .collect()
    }

    /// Deletes a version's keys within `scope`; the etag moves if any went. Answers the
    /// version's etag and key count afterwards.
    pub async fn delete_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        scope: BackupKeyScope<'_>,
    ) -> Result<(i64, i64), sqlx::Error> {
        let sql = format!("DELETE FROM key_backup_keys WHERE user_id = $1 AND version = $2{}", scope.condition());
        let mut txn = self.begin_write().await?;
        let mut query = sqlx::query(&sql).bind(user_id).bind(version);
        for id in scope.ids() {
            query = query.bind(id);
        }
        let deleted = query.execute(&mut *txn.tx).await?.rows_affected();
        let state = etag_and_count(&mut txn, user_id, version, deleted > 0).await?;
        txn.commit().await?;
        Ok(state)
    }
}

/// Deletes every backup version and key of a user (a deactivated account's).
pub(super) async fn delete_all_in(txn: &mut WriteTxn<'_>, user_id: &str) -> Result<(), sqlx::Error> {
    for sql in ["DELETE FROM key_backup_keys WHERE user_id = $1", "DELETE FROM key_backup_versions WHERE user_id = $1"]
    {
        sqlx::query(sql).bind(user_id).execute(&mut *txn.tx).await?;
    }
    Ok(())
}

/// Moves the version's etag if its keys `changed`, then reads the etag and key count.
async fn etag_and_count(
    txn: &mut WriteTxn<'_>,
    user_id: &str,
    version: i64,
    changed: bool,
) -> Result<(i64, i64), sqlx::Error> {
    if changed {
        sqlx::query("UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2")
            .bind(user_id)
            .bind(version)
            .execute(&mut *txn.tx)
            .await?;
    }
    let row = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM key_backup_versions v WHERE v.user_id = $1 AND v.version = $2"
    ))
    .bind(user_id)
    .bind(version)
    .fetch_one(&mut *txn.tx)
    .await?;
    Ok((row.try_get(3)?, row.try_get(4)?))
}

fn version_from_row(row: &AnyRow) -> Result<BackupVersion, sqlx::Error> {
    Ok(BackupVersion {
        version: row.try_get(0)?,
        algorithm: row.try_get(1)?,
        auth_data: json_column(row, 2)?,
        etag: row.try_get(3)?,
        count: row.try_get(4)?,
    })
}

/// Reads a key's four columns starting at `first`.
fn key_from_row(row: &AnyRow, first: usize) -> Result<BackupKey, sqlx::Error> {
    Ok(BackupKey {
        first_message_index: row.try_get(first)?,
        forwarded_count: row.try_get(first + 1)?,
        is_verified: row.try_get::<i64, _>(first + 2)? != 0,
        session_data: json_column(row, first + 3)?,
    })
}

fn json_column(row: &AnyRow, index: usize) -> Result<Value, sqlx::Error> {
    let text: String = row.try_get(index)?;
    serde_json::from_str(&text).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}
