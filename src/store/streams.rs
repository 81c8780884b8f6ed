//! Stream position allocation, shared by every stream table.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use sqlx::Row;
use tokio::sync::watch;

use super::WriteTxn;

/// How often a consumer's position passed over idle events is written (see
/// `Store::pass_consumer_position`).
const PASSED_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// Takes the next position of `stream` inside the caller's transaction. The row update
/// holds a lock until commit, so positions become visible in order.
pub(super) async fn next_position(txn: &mut WriteTxn<'_>, stream: &str) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("UPDATE stream_positions SET position = position + 1 WHERE stream = $1 RETURNING position")
        .bind(stream)
        .fetch_one(&mut *txn.tx)
        .await?;
    let position = row.try_get(0)?;
    txn.moved_streams.push((stream.to_owned(), position));
    Ok(position)
}

impl super::Store {
    /// Moves when a transaction of this process that advances `stream` commits: its
    /// followers wake on the streams they follow, not on every write. Another process's
    /// writes are seen by their polling.
    pub fn watch_stream(&self, stream: &str) -> watch::Receiver<i64> {
        let mut watches = self.stream_watches.lock().unwrap_or_else(PoisonError::into_inner);
        watches.entry(stream.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    pub(super) fn announce_stream(&self, stream: &str, position: i64) {
        let watches = self.stream_watches.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(watch) = watches.get(stream) {
            watch.send_replace(position);
        }
    }

    /// Where a background consumer stopped (0 if it never ran), from memory once read:
    /// this process is the only one that moves consumers.
    pub async fn consumer_position(&self, consumer: &str) -> Result<i64, sqlx::Error> {
        let kept =
            self.consumer_positions.lock().unwrap_or_else(PoisonError::into_inner).get(&consumer.to_owned()).copied();
        if let Some(position) = kept {
            return Ok(position);
        }
        let position = self.stored_consumer_position(consumer).await?;
        // A position committed while this one was read is newer: it stays.
        self.remember_consumer_position(consumer.to_owned(), position, false);
        Ok(position)
    }

    /// A position as the database holds it, for one another process may write
    /// (`kith directory rebuild` leaves its request so).
    pub async fn stored_consumer_position(&self, consumer: &str) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT position FROM consumer_positions WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(self.pool())
            .await?;
        row.map_or(Ok(0), |row| row.try_get(0))
    }

    /// Keeps a consumer's position: a committed one replaces what is kept, one read
    /// only fills a gap.
    pub(super) fn remember_consumer_position(&self, consumer: String, position: i64, committed: bool) {
        let mut kept = self.consumer_positions.lock().unwrap_or_else(PoisonError::into_inner);
        if committed || kept.get(&consumer).is_none() {
            kept.insert(consumer, position);
        }
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

    /// Moves a consumer past events it had nothing to do for: in memory at once, in the
    /// database at most once per `PASSED_SAVE_INTERVAL`. After a restart it may go over
    /// up to that much again, and find nothing to do again; each message sent no longer
    /// costs every such consumer a write transaction.
    pub async fn pass_consumer_position(&self, consumer: &str, position: i64) -> Result<(), sqlx::Error> {
        let due = {
            let mut saved = self.consumers_saved_at.lock().unwrap_or_else(PoisonError::into_inner);
            let due = saved.get(&consumer.to_owned()).is_none_or(|at| at.elapsed() >= PASSED_SAVE_INTERVAL);
            if due {
                saved.insert(consumer.to_owned(), Instant::now());
            }
            due
        };
        if due {
            return self.set_consumer_position(consumer, position).await;
        }
        self.remember_consumer_position(consumer.to_owned(), position, true);
        Ok(())
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
    txn.moved_consumers.push((consumer.to_owned(), position));
    Ok(())
}

/// The streams `/sync` follows, read together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncHeads {
    pub events: i64,
    pub account_data: i64,
    pub receipts: i64,
    pub to_device: i64,
    pub device_lists: i64,
}

impl super::Store {
    /// The heads of the streams `/sync` follows: from memory once read, kept current by
    /// this process's commits (the only writer); else in one statement.
    pub async fn sync_heads(&self) -> Result<SyncHeads, sqlx::Error> {
        const STREAMS: [&str; 5] =
            ["events", "account_data", "receipts", super::TO_DEVICE_STREAM, super::DEVICE_LIST_STREAM];
        let kept: Vec<i64> = {
            let heads = self.stream_heads.lock().unwrap_or_else(PoisonError::into_inner);
            STREAMS.iter().filter_map(|stream| heads.get(*stream).copied()).collect()
        };
        if let [events, account_data, receipts, to_device, device_lists] = kept[..] {
            return Ok(SyncHeads { events, account_data, receipts, to_device, device_lists });
        }
        let generation = self.kept_generation();
        let rows = sqlx::query("SELECT stream, position FROM stream_positions WHERE stream IN ($1, $2, $3, $4, $5)")
            .bind(STREAMS[0])
            .bind(STREAMS[1])
            .bind(STREAMS[2])
            .bind(STREAMS[3])
            .bind(STREAMS[4])
            .fetch_all(self.pool())
            .await?;
        let mut read = Vec::with_capacity(rows.len());
        for row in &rows {
            read.push((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?));
        }
        {
            // Not kept when a commit cut short dropped what memory held meanwhile, or
            // may still land (see `forget_after_unsure_commit`).
            let may_keep = self.may_keep_read(generation);
            let mut heads = self.stream_heads.lock().unwrap_or_else(PoisonError::into_inner);
            if may_keep {
                for (stream, position) in &read {
                    let head = heads.entry(stream.clone()).or_insert(*position);
                    *head = (*head).max(*position);
                }
            }
        }
        let mut heads = SyncHeads::default();
        for (stream, position) in read {
            let slot = match stream.as_str() {
                "events" => &mut heads.events,
                "account_data" => &mut heads.account_data,
                "receipts" => &mut heads.receipts,
                super::TO_DEVICE_STREAM => &mut heads.to_device,
                _ => &mut heads.device_lists,
            };
            *slot = position;
        }
        Ok(heads)
    }

    /// Keeps streams' heads as committed; a later commit seen first stays.
    pub(super) fn keep_stream_heads(&self, moved: &[(String, i64)]) {
        let mut heads = self.stream_heads.lock().unwrap_or_else(PoisonError::into_inner);
        for (stream, position) in moved {
            let head = heads.entry(stream.clone()).or_insert(*position);
            *head = (*head).max(*position);
        }
    }

    /// The rooms with an event in the stream range `(after, up_to]`, each with whether
    /// one of those events is a membership event.
    pub async fn rooms_with_events_between(&self, after: i64, up_to: i64) -> Result<Vec<(String, bool)>, sqlx::Error> {
        if let Some(rooms) = self.kept_rooms_with_events(after, up_to) {
            return Ok(rooms);
        }
        let rows = sqlx::query(
            "SELECT room_id, CAST(MAX(CASE WHEN event_type = 'm.room.member' THEN 1 ELSE 0 END) AS BIGINT) \
             FROM events WHERE stream_ordering > $1 AND stream_ordering <= $2 GROUP BY room_id",
        )
        .bind(after)
        .bind(up_to)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get::<i64, _>(1)? != 0))).collect()
    }

    /// The rooms with a receipt stored in the stream range `(after, up_to]`.
    pub async fn rooms_with_receipts_between(&self, after: i64, up_to: i64) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query("SELECT DISTINCT room_id FROM receipts WHERE stream_id > $1 AND stream_id <= $2")
            .bind(after)
            .bind(up_to)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }
}
