//! Messages sent straight to devices (`/sendToDevice`, `m.direct_to_device`): an inbox
//! per device, emptied as the device acknowledges them by syncing past them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde_json::Value;
use sqlx::Row;

use super::federation::keep_edu;
use super::{KeptEdu, Store, WriteTxn, now_ms, streams};

pub const TO_DEVICE_STREAM: &str = "to_device";

/// One message for one device.
#[derive(Debug, Clone)]
pub struct ToDeviceMessage {
    pub user_id: String,
    pub device_id: String,
    pub message: Value,
}

/// How much one device's inbox may hold: in all, and from one sender (a local user, or
/// a remote server), so that no sender can fill another's inbox.
#[derive(Debug, Clone, Copy)]
pub struct InboxLimits {
    pub per_device: i64,
    pub per_sender: i64,
}

/// What became of a delivery.
#[derive(Debug, PartialEq)]
pub enum Delivery {
    /// Handled before (a retry): nothing done.
    Repeated,
    /// Stored, but for the devices named, whose inbox was full (only when partial
    /// delivery was asked for), and for the EDUs of the destinations named in `unkept`,
    /// whose outbox was full.
    Stored { refused: Vec<(String, String)>, unkept: Vec<String> },
    /// Nothing stored: these devices' inboxes are full (all or nothing was asked for).
    Refused(Vec<(String, String)>),
}

impl Store {
    /// Delivers messages from `sender` and keeps `remote` (its EDUs for other servers),
    /// in one transaction, unless `dedup` (who, message or transaction id) was handled
    /// before. A device whose inbox is full (see [`InboxLimits`]) gets nothing; with
    /// `partial` the others still do, otherwise nothing is stored and the delivery may be
    /// retried.
    pub async fn deliver_to_devices(
        &self,
        sender: &str,
        dedup: (&str, &str),
        messages: &[ToDeviceMessage],
        limits: InboxLimits,
        partial: bool,
        remote: &[KeptEdu],
    ) -> Result<Delivery, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.inboxes = true;
        let seen = sqlx::query(
            "INSERT INTO to_device_seen (sender, message_id, received_ts) VALUES ($1, $2, $3) \
             ON CONFLICT (sender, message_id) DO NOTHING",
        )
        .bind(dedup.0)
        .bind(dedup.1)
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?;
        if seen.rows_affected() == 0 {
            return Ok(Delivery::Repeated);
        }
        let mut held: HashMap<(&str, &str), (i64, i64)> = HashMap::new();
        let mut refused = Vec::new();
        for message in messages {
            let device = (message.user_id.as_str(), message.device_id.as_str());
            let counts = match held.entry(device) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(inbox_counts(&mut txn, device, sender).await?),
            };
            if counts.0 >= limits.per_device || counts.1 >= limits.per_sender {
                refused.push((message.user_id.clone(), message.device_id.clone()));
                continue;
            }
            *counts = (counts.0 + 1, counts.1 + 1);
            let position = streams::next_position(&mut txn, TO_DEVICE_STREAM).await?;
            sqlx::query(
                "INSERT INTO to_device_inbox (stream_id, user_id, device_id, message_json, sender) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(position)
            .bind(&message.user_id)
            .bind(&message.device_id)
            .bind(message.message.to_string())
            .bind(sender)
            .execute(&mut *txn.tx)
            .await?;
        }
        if !refused.is_empty() && !partial {
            return Ok(Delivery::Refused(refused));
        }
        let mut unkept = Vec::new();
        for row in remote {
            if !keep_edu(&mut txn, row).await? {
                unkept.push(row.destination.clone());
            }
        }
        txn.commit().await?;
        Ok(Delivery::Stored { refused, unkept })
    }

    /// Those of `user_ids` that are or were in a room this server knows of.
    pub async fn users_seen_in_rooms(&self, user_ids: &[&str]) -> Result<Vec<String>, sqlx::Error> {
        let mut seen = Vec::new();
        for chunk in user_ids.chunks(200) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql =
                format!("SELECT DISTINCT user_id FROM room_memberships WHERE user_id IN ({})", placeholders.join(", "));
            let mut query = sqlx::query(&sql);
            for user_id in chunk {
                query = query.bind(*user_id);
            }
            for row in query.fetch_all(self.pool()).await? {
                seen.push(row.try_get(0)?);
            }
        }
        Ok(seen)
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
        // Most syncs find the inbox empty, as it was the last time.
        if self.inbox_known_empty(user_id, device_id) {
            return Ok(Vec::new());
        }
        let generation = self.kept_generation();
        let oldest: Option<i64> =
            sqlx::query("SELECT MIN(stream_id) FROM to_device_inbox WHERE user_id = $1 AND device_id = $2")
                .bind(user_id)
                .bind(device_id)
                .fetch_one(self.pool())
                .await?
                .try_get(0)?;
        let Some(oldest) = oldest else {
            self.note_inbox_empty(user_id, device_id, generation);
            return Ok(Vec::new());
        };
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
    /// Messages of every local inbox stored after position `after`, oldest first: what
    /// application services are pushed for their users. Rows are (position, user,
    /// device, message).
    pub async fn to_device_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, String, String)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT stream_id, user_id, device_id, message_json FROM to_device_inbox WHERE stream_id > $1 \
             ORDER BY stream_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?))).collect()
    }

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

/// A device's inbox: how many messages it holds, and how many of them from `sender`.
async fn inbox_counts(
    txn: &mut WriteTxn<'_>,
    (user_id, device_id): (&str, &str),
    sender: &str,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN sender = $3 THEN 1 ELSE 0 END), 0) \
         FROM to_device_inbox WHERE user_id = $1 AND device_id = $2",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(sender)
    .fetch_one(&mut *txn.tx)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}
