//! Server health's table: the backoff of each server that failed (`federation_destinations`),
//! so a restart neither hammers a dead server nor forgets one.

use sqlx::Row;

use super::Store;

/// When a failing server may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub failures: i64,
    pub retry_last_ts: i64,
    pub retry_interval_ms: i64,
}

impl Retry {
    pub fn next_try_ts(&self) -> i64 {
        self.retry_last_ts.saturating_add(self.retry_interval_ms)
    }
}

impl Store {
    /// Every server in backoff.
    pub async fn destination_retries(&self) -> Result<Vec<(String, Retry)>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT destination, failures, retry_last_ts, retry_interval_ms FROM federation_destinations")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    Retry {
                        failures: row.try_get(1)?,
                        retry_last_ts: row.try_get(2)?,
                        retry_interval_ms: row.try_get(3)?,
                    },
                ))
            })
            .collect()
    }

    pub async fn set_destination_retry(&self, destination: &str, retry: Retry) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO federation_destinations (destination, failures, retry_last_ts, retry_interval_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (destination) DO UPDATE SET failures = excluded.failures, \
             retry_last_ts = excluded.retry_last_ts, retry_interval_ms = excluded.retry_interval_ms",
        )
        .bind(destination)
        .bind(retry.failures)
        .bind(retry.retry_last_ts)
        .bind(retry.retry_interval_ms)
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await
    }

    pub async fn clear_destination_retry(&self, destination: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("DELETE FROM federation_destinations WHERE destination = $1")
            .bind(destination)
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await
    }
}
