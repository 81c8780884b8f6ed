//! Per-user data for `/sync`: filters, account data and receipts.

use serde_json::Value;
use sqlx::Row;

use super::{Store, WriteTxn, now_ms, streams};

/// The newest receipt of one type from one user in one room.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub user_id: String,
    pub receipt_type: String,
    pub event_id: String,
    pub ts: i64,
}

impl Store {
    pub async fn save_filter(&self, user_id: &str, filter: &Value) -> Result<i64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let id = streams::next_position(&mut txn, "filters").await?;
        sqlx::query("INSERT INTO filters (user_id, filter_id, json) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(id)
            .bind(filter.to_string())
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await?;
        Ok(id)
    }

    pub async fn get_filter(&self, user_id: &str, filter_id: i64) -> Result<Option<Value>, sqlx::Error> {
        let row = sqlx::query("SELECT json FROM filters WHERE user_id = $1 AND filter_id = $2")
            .bind(user_id)
            .bind(filter_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.and_then(|row| row.try_get::<String, _>(0).ok()).and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Sets account data (`room_id` empty for global); returns its stream position.
    pub async fn put_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
        content: &Value,
    ) -> Result<i64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let id = write_account_data(&mut txn, user_id, room_id, data_type, content).await?;
        txn.commit().await?;
        Ok(id)
    }

    pub async fn get_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
    ) -> Result<Option<Value>, sqlx::Error> {
        let row =
            sqlx::query("SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3")
                .bind(user_id)
                .bind(room_id)
                .bind(data_type)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.and_then(|row| row.try_get::<String, _>(0).ok()).and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Account data changed after `after`: `(room id, type, content)`.
    pub async fn account_data_since(
        &self,
        user_id: &str,
        after: i64,
    ) -> Result<Vec<(String, String, Value)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT room_id, data_type, content FROM account_data WHERE user_id = $1 AND stream_id > $2 ORDER BY stream_id",
        )
        .bind(user_id)
        .bind(after)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let content: String = row.try_get(2)?;
                Ok((row.try_get(0)?, row.try_get(1)?, serde_json::from_str(&content).unwrap_or(Value::Null)))
            })
            .collect()
    }

    pub async fn put_receipt(
        &self,
        room_id: &str,
        user_id: &str,
        receipt_type: &str,
        event_id: &str,
    ) -> Result<i64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let id = streams::next_position(&mut txn, "receipts").await?;
        sqlx::query(
            "INSERT INTO receipts (room_id, user_id, receipt_type, event_id, ts, stream_id) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (room_id, user_id, receipt_type) DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, \
             stream_id = excluded.stream_id",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(receipt_type)
        .bind(event_id)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await?;
        Ok(id)
    }

    pub async fn receipts_since(&self, room_id: &str, after: i64) -> Result<Vec<Receipt>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT user_id, receipt_type, event_id, ts FROM receipts WHERE room_id = $1 AND stream_id > $2 \
             ORDER BY stream_id",
        )
        .bind(room_id)
        .bind(after)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Receipt {
                    user_id: row.try_get(0)?,
                    receipt_type: row.try_get(1)?,
                    event_id: row.try_get(2)?,
                    ts: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Public read receipts of every room stored after position `after`, oldest first,
    /// with their positions and rooms: what application services are pushed.
    pub async fn public_receipts_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Receipt)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT stream_id, room_id, user_id, receipt_type, event_id, ts FROM receipts \
             WHERE stream_id > $1 AND receipt_type = 'm.read' ORDER BY stream_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let receipt = Receipt {
                    user_id: row.try_get(2)?,
                    receipt_type: row.try_get(3)?,
                    event_id: row.try_get(4)?,
                    ts: row.try_get(5)?,
                };
                Ok((row.try_get(0)?, row.try_get(1)?, receipt))
            })
            .collect()
    }

    /// The head of a stream.
    pub async fn stream_head(&self, stream: &str) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT position FROM stream_positions WHERE stream = $1")
            .bind(stream)
            .fetch_one(self.pool())
            .await?;
        row.try_get(0)
    }
}

/// Writes account data inside the caller's transaction; returns its stream position.
pub(super) async fn write_account_data(
    txn: &mut WriteTxn<'_>,
    user_id: &str,
    room_id: &str,
    data_type: &str,
    content: &Value,
) -> Result<i64, sqlx::Error> {
    let id = streams::next_position(txn, "account_data").await?;
    sqlx::query(
        "INSERT INTO account_data (user_id, room_id, data_type, content, stream_id) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET content = excluded.content, \
         stream_id = excluded.stream_id",
    )
    .bind(user_id)
    .bind(room_id)
    .bind(data_type)
    .bind(content.to_string())
    .bind(id)
    .execute(&mut *txn.tx)
    .await?;
    Ok(id)
}
