//! Application service transactions: the queue of what each service is owed.

use sqlx::Row;

use super::streams::save_consumer_position;
use super::{Store, WriteTxn};

/// The oldest transaction a service has not taken yet.
#[derive(Debug, Clone)]
pub struct PendingTransaction {
    pub txn_id: i64,
    /// A JSON array of events in the client format.
    pub events_json: String,
    /// A JSON array of receipts and typing notifications, for services that asked.
    pub ephemeral_json: Option<String>,
    /// A JSON array of to-device messages for the service's users.
    pub to_device_json: Option<String>,
    pub created_ts: i64,
}

/// What a new transaction carries, each a JSON array; `None` when empty.
#[derive(Debug, Default, Clone, Copy)]
pub struct TransactionContents<'a> {
    pub events_json: Option<&'a str>,
    pub ephemeral_json: Option<&'a str>,
    pub to_device_json: Option<&'a str>,
}

impl TransactionContents<'_> {
    fn is_empty(&self) -> bool {
        self.events_json.is_none() && self.ephemeral_json.is_none() && self.to_device_json.is_none()
    }
}

impl Store {
    pub async fn next_appservice_transaction(
        &self,
        appservice_id: &str,
    ) -> Result<Option<PendingTransaction>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT txn_id, events_json, created_ts, ephemeral_json, to_device_json FROM appservice_transactions \
             WHERE appservice_id = $1 ORDER BY txn_id LIMIT 1",
        )
        .bind(appservice_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(PendingTransaction {
                txn_id: row.try_get(0)?,
                events_json: row.try_get(1)?,
                created_ts: row.try_get(2)?,
                ephemeral_json: row.try_get(3)?,
                to_device_json: row.try_get(4)?,
            })
        })
        .transpose()
    }

    /// Moves the service's consumers to their new positions and, when there is anything
    /// for the service, queues it as its next transaction, atomically; returns the new
    /// transaction id.
    pub async fn queue_appservice_transaction(
        &self,
        appservice_id: &str,
        positions: &[(&str, i64)],
        contents: TransactionContents<'_>,
    ) -> Result<Option<i64>, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let mut txn_id = None;
        if !contents.is_empty() {
            let id = next_txn_id(&mut txn, appservice_id).await?;
            sqlx::query(
                "INSERT INTO appservice_transactions \
                 (appservice_id, txn_id, events_json, ephemeral_json, to_device_json, created_ts) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(appservice_id)
            .bind(id)
            .bind(contents.events_json.unwrap_or("[]"))
            .bind(contents.ephemeral_json)
            .bind(contents.to_device_json)
            .bind(super::now_ms())
            .execute(&mut *txn.tx)
            .await?;
            txn_id = Some(id);
        }
        for (consumer, position) in positions {
            save_consumer_position(&mut txn, consumer, *position).await?;
        }
        txn.commit().await?;
        Ok(txn_id)
    }

    /// The service took the transaction.
    pub async fn appservice_transaction_sent(&self, appservice_id: &str, txn_id: i64) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("DELETE FROM appservice_transactions WHERE appservice_id = $1 AND txn_id = $2")
            .bind(appservice_id)
            .bind(txn_id)
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await
    }

    /// How many transactions each service has waiting.
    pub async fn appservice_transactions_waiting(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query("SELECT appservice_id, COUNT(*) FROM appservice_transactions GROUP BY appservice_id")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// The local aliases pointing at a room.
    pub async fn aliases_of_room(&self, room_id: &str) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
            .bind(room_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }
}

/// Transaction ids are never reused, even once sent.
async fn next_txn_id(txn: &mut WriteTxn<'_>, appservice_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO appservice_state (appservice_id, last_txn_id) VALUES ($1, 0) \
         ON CONFLICT (appservice_id) DO NOTHING",
    )
    .bind(appservice_id)
    .execute(&mut *txn.tx)
    .await?;
    let row = sqlx::query(
        "UPDATE appservice_state SET last_txn_id = last_txn_id + 1 WHERE appservice_id = $1 RETURNING last_txn_id",
    )
    .bind(appservice_id)
    .fetch_one(&mut *txn.tx)
    .await?;
    row.try_get(0)
}
