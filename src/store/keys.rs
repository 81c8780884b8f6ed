//! End-to-end encryption keys: device keys, one-time and fallback keys, cross-signing
//! keys and signatures, and the device-list stream that says whose changed.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::Row;

use super::{Store, WriteTxn, streams};

/// The stream of users whose devices or keys changed.
pub const DEVICE_LIST_STREAM: &str = "device_lists";

/// Remote users' keys cached at most.
const MAX_CACHED_REMOTE_USERS: i64 = 100_000;

/// One entry of the device-list stream.
#[derive(Debug, Clone)]
pub struct DeviceListChange {
    pub stream_id: i64,
    pub user_id: String,
    pub device_id: Option<String>,
}

/// A one-time or fallback key handed out by a claim.
#[derive(Debug, Clone)]
pub struct ClaimedKey {
    pub key_id: String,
    pub key: Value,
}

impl Store {
    /// Device keys of `user_id`: all devices, or those named.
    pub async fn device_keys(&self, user_id: &str, devices: &[String]) -> Result<BTreeMap<String, Value>, sqlx::Error> {
        let rows = sqlx::query("SELECT device_id, key_json FROM e2e_device_keys WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(self.pool())
            .await?;
        let mut keys = BTreeMap::new();
        for row in rows {
            let device_id: String = row.try_get(0)?;
            if devices.is_empty() || devices.contains(&device_id) {
                keys.insert(device_id, json_column(&row, 1)?);
            }
        }
        Ok(keys)
    }

    /// Stores a device's keys; a change is recorded on the device-list stream.
    pub async fn set_device_keys(&self, user_id: &str, device_id: &str, keys: &Value) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(keys.to_string())
        .execute(&mut *txn.tx)
        .await?;
        record_device_list_change(&mut txn, user_id, Some(device_id)).await?;
        txn.commit().await
    }

    /// Adds one-time keys (an id already held keeps its key) and replaces fallback keys.
    pub async fn add_one_time_keys(
        &self,
        user_id: &str,
        device_id: &str,
        one_time: &[(String, String, Value)],
        fallback: &[(String, String, Value)],
    ) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.keys = true;
        for (algorithm, key_id, key) in one_time {
            sqlx::query(
                "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id, algorithm, key_id) DO NOTHING",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(algorithm)
            .bind(key_id)
            .bind(key.to_string())
            .execute(&mut *txn.tx)
            .await?;
        }
        for (algorithm, key_id, key) in fallback {
            sqlx::query(
                "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) \
                 VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (user_id, device_id, algorithm) \
                 DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = 0",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(algorithm)
            .bind(key_id)
            .bind(key.to_string())
            .execute(&mut *txn.tx)
            .await?;
        }
        txn.commit().await
    }

    /// How many one-time keys a device has left, by algorithm.
    pub async fn one_time_key_counts(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> Result<BTreeMap<String, i64>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm",
        )
        .bind(user_id)
        .bind(device_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// A device's one-time key counts by algorithm and the algorithms of its unused
    /// fallback keys (sorted), in one statement.
    pub(super) async fn read_device_key_counts(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> Result<(BTreeMap<String, i64>, Vec<String>), sqlx::Error> {
        let rows = sqlx::query(
            "SELECT CAST(0 AS BIGINT), algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 \
             GROUP BY algorithm \
             UNION ALL SELECT CAST(1 AS BIGINT), algorithm, CAST(0 AS BIGINT) FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = 0",
        )
        .bind(user_id)
        .bind(device_id)
        .fetch_all(self.pool())
        .await?;
        let (mut counts, mut fallback) = (BTreeMap::new(), Vec::new());
        for row in &rows {
            let algorithm: String = row.try_get(1)?;
            if row.try_get::<i64, _>(0)? == 1 {
                fallback.push(algorithm);
            } else {
                counts.insert(algorithm, row.try_get::<i64, _>(2)?);
            }
        }
        fallback.sort_unstable();
        Ok((counts, fallback))
    }

    /// Takes one one-time key of `algorithm` from a device, or else its fallback key
    /// (which stays, marked used).
    pub async fn claim_key(
        &self,
        user_id: &str,
        device_id: &str,
        algorithm: &str,
    ) -> Result<Option<ClaimedKey>, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.keys = true;
        let row = sqlx::query(
            "SELECT key_id, key_json FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 \
             ORDER BY key_id LIMIT 1",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(algorithm)
        .fetch_optional(&mut *txn.tx)
        .await?;
        let claimed = match row {
            Some(row) => {
                let key_id: String = row.try_get(0)?;
                sqlx::query(
                    "DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4",
                )
                .bind(user_id)
                .bind(device_id)
                .bind(algorithm)
                .bind(&key_id)
                .execute(&mut *txn.tx)
                .await?;
                Some(ClaimedKey { key_id, key: json_column(&row, 1)? })
            }
            None => claim_fallback_key(&mut txn, user_id, device_id, algorithm).await?,
        };
        txn.commit().await?;
        Ok(claimed)
    }

    /// A user's cross-signing keys by type (`master`, `self_signing`, `user_signing`).
    pub async fn cross_signing_keys(&self, user_id: &str) -> Result<BTreeMap<String, Value>, sqlx::Error> {
        let rows = sqlx::query("SELECT key_type, key_json FROM e2e_cross_signing_keys WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, json_column(row, 1)?))).collect()
    }

    /// Replaces some of a user's cross-signing keys; a change on the device-list stream.
    pub async fn set_cross_signing_keys(&self, user_id: &str, keys: &[(&str, Value)]) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        for (key_type, key) in keys {
            sqlx::query(
                "INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
            )
            .bind(user_id)
            .bind(*key_type)
            .bind(key.to_string())
            .execute(&mut *txn.tx)
            .await?;
        }
        record_device_list_change(&mut txn, user_id, None).await?;
        txn.commit().await
    }

    /// Signatures a user made of other users' master keys, by target user.
    pub async fn user_signatures_by(&self, signer: &str) -> Result<Vec<(String, String, String, String)>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT target_user, target_key, key_id, signature FROM e2e_user_signatures WHERE signer = $1")
                .bind(signer)
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?))).collect()
    }

    pub async fn add_user_signature(
        &self,
        signer: &str,
        target_user: &str,
        target_key: &str,
        key_id: &str,
        signature: &str,
    ) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO e2e_user_signatures (signer, target_user, target_key, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (signer, target_user, target_key, key_id) \
             DO UPDATE SET signature = excluded.signature",
        )
        .bind(signer)
        .bind(target_user)
        .bind(target_key)
        .bind(key_id)
        .bind(signature)
        .execute(&mut *txn.tx)
        .await?;
        // The signer's own devices learn of it through their device list.
        record_device_list_change(&mut txn, signer, None).await?;
        txn.commit().await
    }

    /// A remote user's cached keys (`device_keys`, `master_key`, `self_signing_key`).
    pub async fn cached_remote_keys(&self, user_id: &str) -> Result<Option<Value>, sqlx::Error> {
        let row = sqlx::query("SELECT keys_json FROM remote_device_keys WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| json_column(&row, 0)).transpose()
    }

    /// Caches a remote user's keys (unless the cache is full).
    /// Caches a remote user's keys as asked for when the device-list stream was at
    /// `asked_at`; an answer that a change of the user received since may have made
    /// stale is not cached (the next query asks again).
    pub async fn cache_remote_keys(&self, user_id: &str, keys: &Value, asked_at: i64) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let changed_since: Option<i64> =
            sqlx::query("SELECT MAX(stream_id) FROM device_list_changes WHERE user_id = $1 AND stream_id > $2")
                .bind(user_id)
                .bind(asked_at)
                .fetch_one(&mut *txn.tx)
                .await?
                .try_get(0)?;
        if changed_since.is_some() {
            return Ok(());
        }
        let held: i64 =
            sqlx::query("SELECT COUNT(*) FROM remote_device_keys").fetch_one(&mut *txn.tx).await?.try_get(0)?;
        if held >= MAX_CACHED_REMOTE_USERS {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO remote_device_keys (user_id, keys_json, fetched_ts) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET keys_json = excluded.keys_json, fetched_ts = excluded.fetched_ts",
        )
        .bind(user_id)
        .bind(keys.to_string())
        .bind(super::now_ms())
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await
    }

    pub async fn forget_remote_keys(&self, user_id: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("DELETE FROM remote_device_keys WHERE user_id = $1").bind(user_id).execute(&mut *txn.tx).await?;
        txn.commit().await
    }

    /// Records that a remote user's devices or keys changed. Only the latest change of
    /// a remote user matters (readers ask "changed since?"), so older rows go: a flood of
    /// updates from a peer leaves one row per user.
    pub async fn note_device_list_change(&self, user_id: &str, device_id: Option<&str>) -> Result<i64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        for sql in
            ["DELETE FROM device_list_changes WHERE user_id = $1", "DELETE FROM remote_device_keys WHERE user_id = $1"]
        {
            sqlx::query(sql).bind(user_id).execute(&mut *txn.tx).await?;
        }
        let position = record_device_list_change(&mut txn, user_id, device_id).await?;
        txn.commit().await?;
        Ok(position)
    }

    /// Changes after `since`, up to `until`, at most `limit`, oldest first.
    pub async fn device_list_changes(
        &self,
        since: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<DeviceListChange>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT stream_id, user_id, device_id FROM device_list_changes \
             WHERE stream_id > $1 AND stream_id <= $2 ORDER BY stream_id LIMIT $3",
        )
        .bind(since)
        .bind(until)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeviceListChange {
                    stream_id: row.try_get(0)?,
                    user_id: row.try_get(1)?,
                    device_id: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// The users sharing a joined room with `user_id` (themselves included) whose devices
    /// changed after `since` and up to `until`.
    pub async fn device_lists_changed_for(
        &self,
        user_id: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT DISTINCT c.user_id FROM device_list_changes c WHERE c.stream_id > $2 AND c.stream_id <= $3 \
             AND (c.user_id = $1 OR EXISTS (SELECT 1 FROM room_memberships m JOIN room_memberships o \
             ON o.room_id = m.room_id WHERE m.user_id = $1 AND m.membership = 'join' \
             AND o.user_id = c.user_id AND o.membership = 'join'))",
        )
        .bind(user_id)
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    /// Users who came to share a joined room with `user_id` after the event-stream
    /// position `since` (they joined one of its rooms, or it joined one of theirs): the
    /// client starts tracking their devices.
    pub async fn device_lists_joined_for(&self, user_id: &str, since: i64) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT DISTINCT o.user_id FROM room_memberships o JOIN room_memberships m ON m.room_id = o.room_id \
             WHERE m.user_id = $1 AND m.membership = 'join' AND o.user_id <> $1 AND o.membership = 'join' \
             AND (o.stream_ordering > $2 OR m.stream_ordering > $2)",
        )
        .bind(user_id)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    /// Users who shared a joined room with `user_id` and no longer do, through
    /// memberships changed after the event-stream position `since`: their devices need
    /// no tracking any more (`device_lists.left`).
    pub async fn device_lists_left_for(&self, user_id: &str, since: i64) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT DISTINCT o.user_id FROM room_memberships o WHERE o.user_id <> $1 AND ( \
               (o.membership IN ('leave', 'ban') AND o.stream_ordering > $2 AND EXISTS (SELECT 1 \
                 FROM room_memberships m WHERE m.room_id = o.room_id AND m.user_id = $1 AND m.membership = 'join')) \
               OR (o.membership = 'join' AND EXISTS (SELECT 1 FROM room_memberships m WHERE m.room_id = o.room_id \
                 AND m.user_id = $1 AND m.membership IN ('leave', 'ban') AND m.stream_ordering > $2))) \
             AND NOT EXISTS (SELECT 1 FROM room_memberships a JOIN room_memberships b ON b.room_id = a.room_id \
               WHERE a.user_id = $1 AND a.membership = 'join' AND b.user_id = o.user_id AND b.membership = 'join')",
        )
        .bind(user_id)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    /// The stream position of a user's latest change of a device before `before` (what
    /// other servers know as the `stream_id` of the user's device list).
    pub async fn previous_device_list_change(&self, user_id: &str, before: i64) -> Result<Option<i64>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT MAX(stream_id) FROM device_list_changes WHERE user_id = $1 AND stream_id < $2 AND device_id IS NOT NULL",
        )
            .bind(user_id)
            .bind(before)
            .fetch_one(self.pool())
            .await?;
        row.try_get(0)
    }
}

async fn claim_fallback_key(
    txn: &mut WriteTxn<'_>,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
) -> Result<Option<ClaimedKey>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(algorithm)
    .fetch_optional(&mut *txn.tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    sqlx::query("UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3")
        .bind(user_id)
        .bind(device_id)
        .bind(algorithm)
        .execute(&mut *txn.tx)
        .await?;
    Ok(Some(ClaimedKey { key_id: row.try_get(0)?, key: json_column(&row, 1)? }))
}

/// Appends to the device-list stream inside the caller's transaction.
pub(super) async fn record_device_list_change(
    txn: &mut WriteTxn<'_>,
    user_id: &str,
    device_id: Option<&str>,
) -> Result<i64, sqlx::Error> {
    let position = streams::next_position(txn, DEVICE_LIST_STREAM).await?;
    sqlx::query("INSERT INTO device_list_changes (stream_id, user_id, device_id) VALUES ($1, $2, $3)")
        .bind(position)
        .bind(user_id)
        .bind(device_id)
        .execute(&mut *txn.tx)
        .await?;
    Ok(position)
}

/// Removes a device's keys inside the caller's transaction (the device is gone).
pub(super) async fn remove_device_keys(
    txn: &mut WriteTxn<'_>,
    user_id: &str,
    device_id: &str,
) -> Result<(), sqlx::Error> {
    txn.forgets.keys = true;
    for sql in [
        "DELETE FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2",
        "DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2",
        "DELETE FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2",
        "DELETE FROM to_device_inbox WHERE user_id = $1 AND device_id = $2",
    ] {
        sqlx::query(sql).bind(user_id).bind(device_id).execute(&mut *txn.tx).await?;
    }
    record_device_list_change(txn, user_id, Some(device_id)).await?;
    Ok(())
}

fn json_column(row: &sqlx::any::AnyRow, index: usize) -> Result<Value, sqlx::Error> {
    let text: String = row.try_get(index)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
