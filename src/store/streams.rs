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
