//! Stream position allocation, shared by every stream table.

use sqlx::Row;

use super::WriteTxn;

/// Takes the next position of `stream` inside the caller's transaction. The row update
/// holds a lock until commit, so positions become visible in order.
pub(super) async fn next_position(txn: &mut WriteTxn<'_>, stream: &str) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("UPDATE stream_positions SET position = position + 1 WHERE stream = $1 RETURNING position")
        .bind(stream)
        .fetch_one(&mut *txn.tx)
        .await?;
    row.try_get(0)
}

impl super::Store {
    /// Where a background consumer stopped (0 if it never ran).
    pub async fn consumer_position(&self, consumer: &str) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT position FROM consumer_positions WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(self.pool())
            .await?;
        row.map_or(Ok(0), |row| row.try_get(0))
    }

    /// Gives a consumer that never ran its first position; one that ran (even if it is
    /// still at 0) keeps its own. A position of 0 cannot tell the two apart: a consumer
    /// started on an empty stream and killed before it moved would be started again at
    /// the head, skipping what came meanwhile.
    pub async fn start_consumer_at(&self, consumer: &str, position: i64) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO consumer_positions (consumer, position) VALUES ($1, $2) ON CONFLICT (consumer) DO NOTHING",
        )
        .bind(consumer)
        .bind(position)
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await
    }

    pub async fn set_consumer_position(&self, consumer: &str, position: i64) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        save_consumer_position(&mut txn, consumer, position).await?;
        txn.commit().await
    }
}

/// Records a consumer's position inside the caller's transaction, so it moves together
/// with what the consumer wrote.
pub(super) async fn save_consumer_position(
    txn: &mut WriteTxn<'_>,
    consumer: &str,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO consumer_positions (consumer, position) VALUES ($1, $2) \
         ON CONFLICT (consumer) DO UPDATE SET position = excluded.position",
    )
    .bind(consumer)
    .bind(position)
    .execute(&mut *txn.tx)
    .await?;
    Ok(())
}
