//! Messages sent straight to devices (`/sendToDevice`, `m.direct_to_device`): an inbox
//! per device, emptied as the device acknowledges them by syncing past them.

use serde_json::Value;
use sqlx::Row;

use super::federation::keep_edu;
use super::{KeptEdu, Store, now_ms, streams};

pub const TO_DEVICE_STREAM: &str = "to_device";

/// One message for one device.
#[derive(Debug, Clone)]
pub struct ToDeviceMessage {
    pub user_id: String,
    pub device_id: String,
    pub message: Value,
}

impl Store {
    /// Delivers messages to local devices and keeps `remote` (EDUs for other servers), in
    /// one transaction, unless `(sender, message_id)` was handled before (a retry): then
    /// `None`. Else the destinations whose outbox was full, so their EDU was not kept.
    /// Devices whose inbox holds `inbox_limit` messages get nothing.
    pub async fn deliver_to_devices(
        &self,
        sender: &str,
        message_id: &str,
        messages: &[ToDeviceMessage],
        inbox_limit: i64,
        remote: &[KeptEdu],
    ) -> Result<Option<Vec<String>>, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let seen = sqlx::query(
            "INSERT INTO to_device_seen (sender, message_id, received_ts) VALUES ($1, $2, $3) \
             ON CONFLICT (sender, message_id) DO NOTHING",
        )
        .bind(sender)
        .bind(message_id)
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?;
        if seen.rows_affected() == 0 {
            return Ok(None);
        }
        for message in messages {
            let held: i64 = sqlx::query("SELECT COUNT(*) FROM to_device_inbox WHERE user_id = $1 AND device_id = $2")
                .bind(&message.user_id)
                .bind(&message.device_id)
                .fetch_one(&mut *txn.tx)
                .await?
                .try_get(0)?;
            if held >= inbox_limit {
                tracing::warn!(user_id = %message.user_id, device_id = %message.device_id, "to-device inbox full; message dropped");
                continue;
            }
            let position = streams::next_position(&mut txn, TO_DEVICE_STREAM).await?;
            sqlx::query(
                "INSERT INTO to_device_inbox (stream_id, user_id, device_id, message_json) VALUES ($1, $2, $3, $4)",
            )
            .bind(position)
            .bind(&message.user_id)
            .bind(&message.device_id)
            .bind(message.message.to_string())
            .execute(&mut *txn.tx)
            .await?;
        }
        let mut full = Vec::new();
        for row in remote {
            if !keep_edu(&mut txn, row).await? {
                full.push(row.destination.clone());
            }
        }
        txn.commit().await?;
        Ok(Some(full))
    }

    /// Deletes what a device acknowledged (up to `acknowledged`), then returns its next
    /// messages after that and up to `until` (the position the sync answers with), at
    /// most `limit`, with their positions.
    pub async fn to_device_inbox(
        &self,
        user_id: &str,
        device_id: &str,
        (acknowledged, until): (i64, i64),
        limit: i64,
    ) -> Result<Vec<(i64, Value)>, sqlx::Error> {
        let oldest: Option<i64> =
            sqlx::query("SELECT MIN(stream_id) FROM to_device_inbox WHERE user_id = $1 AND device_id = $2")
                .bind(user_id)
                .bind(device_id)
                .fetch_one(self.pool())
                .await?
                .try_get(0)?;
        let Some(oldest) = oldest else { return Ok(Vec::new()) };
        if oldest <= acknowledged {
            let mut txn = self.begin_write().await?;
            sqlx::query("DELETE FROM to_device_inbox WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3")
                .bind(user_id)
                .bind(device_id)
                .bind(acknowledged)
                .execute(&mut *txn.tx)
                .await?;
            txn.commit().await?;
        }
        let rows = sqlx::query(
            "SELECT stream_id, message_json FROM to_device_inbox WHERE user_id = $1 AND device_id = $2 \
             AND stream_id > $3 AND stream_id <= $4 ORDER BY stream_id LIMIT $5",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(acknowledged)
        .bind(until)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get(1)?;
                let message = serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok((row.try_get(0)?, message))
            })
            .collect()
    }

    /// Forgets handled message ids older than `before_ms` (retries come within minutes).
    pub async fn prune_to_device_seen(&self, before_ms: i64) -> Result<u64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM to_device_seen WHERE received_ts < $1")
            .bind(before_ms)
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await?;
        Ok(done.rows_affected())
    }
}
