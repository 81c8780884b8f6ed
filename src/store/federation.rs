//! The federation sender's tables: the outbox of PDUs and the kept EDUs owed to each
//! destination.

use serde_json::Value;
use sqlx::Row;

use super::{StateMap, Store, StoredEvent, WriteTxn, now_ms};

/// A destination keeps at most this many PDUs owed; past it the oldest go, and the
/// destination catches up by asking for missing events when it comes back.
const MAX_OUTBOX_PER_DESTINATION: i64 = 10_000;
/// Kept EDUs one destination may be owed.
const MAX_DURABLE_EDUS: i64 = 10_000;

/// An EDU kept for a destination until it takes it.
#[derive(Debug, Clone)]
pub struct KeptEdu {
    pub destination: String,
    pub key: String,
    pub edu: Value,
}

/// One PDU owed to a destination.
pub struct OutboxRow {
    pub destination: String,
    pub stream_ordering: i64,
    pub event_id: String,
}

impl Store {
    /// PDUs waiting in every destination's outbox.
    pub async fn federation_outbox_len(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) FROM federation_outbox").fetch_one(self.pool()).await?.try_get(0)
    }

    /// PDUs waiting per destination, the longest outboxes first, at most `limit` of them.
    pub async fn federation_outbox_lens(&self, limit: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
        self.waiting_per_destination("federation_outbox", limit).await
    }

    /// Rows of an outbox table per destination, the most first, at most `limit` of them.
    async fn waiting_per_destination(&self, table: &str, limit: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let statement = format!(
            "SELECT destination, COUNT(*) AS waiting FROM {table} GROUP BY destination \
             ORDER BY waiting DESC, destination LIMIT $1"
        );
        let rows = sqlx::query(&statement).bind(limit).fetch_all(self.pool()).await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// Events on the event stream after `after`, oldest first, outliers included.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<StoredEvent>, sqlx::Error> {
        if let Some(events) = self.kept_events_after(after, limit) {
            return Ok(events);
        }
        let rows = sqlx::query(&format!(
            "SELECT {} FROM events WHERE stream_ordering > $1 ORDER BY stream_ordering LIMIT $2",
            super::rooms::EVENT_COLUMNS
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(super::rooms::event_from_row).collect()
    }

    /// The events of `starts` and those before them along `prev_events` edges, at most
    /// `steps` edges back and `cap` ids in all, not walking on past the ids of `stop`, in
    /// one query: each id walked with its event when held (`None` when not), so that a
    /// walk back over the DAG reads ahead instead of one event per query. The starts that
    /// are not held are left out.
    pub async fn events_back_from(
        &self,
        starts: &[String],
        stop: &[String],
        steps: i64,
        cap: i64,
    ) -> Result<Vec<(String, Option<StoredEvent>)>, sqlx::Error> {
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = |from: usize, count: usize| -> String {
            (from..from + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
        };
        let stop_clause = if stop.is_empty() {
            String::new()
        } else {
            format!(" AND w.event_id NOT IN ({})", placeholders(3 + starts.len(), stop.len()))
        };
        let columns: Vec<String> =
            super::rooms::EVENT_COLUMNS.split(", ").map(|column| format!("ev.{column}")).collect();
        // The step count bounds the walk where the database would not stop at the cap.
        let sql = format!(
            "WITH RECURSIVE walk(event_id, step) AS ( \
               SELECT event_id, 0 FROM events WHERE event_id IN ({starts}) \
               UNION \
               SELECT e.prev_event_id, w.step + 1 FROM walk w JOIN event_edges e ON e.event_id = w.event_id \
               WHERE w.step < $1{stop_clause}) \
             SELECT w.event_id AS walked, {columns} FROM \
               (SELECT DISTINCT event_id FROM (SELECT event_id FROM walk LIMIT $2) AS capped) AS w \
               LEFT JOIN events ev ON ev.event_id = w.event_id",
            starts = placeholders(3, starts.len()),
            columns = columns.join(", "),
        );
        let mut query = sqlx::query(&sql).bind(steps).bind(cap);
        for id in starts.iter().chain(stop) {
            query = query.bind(id);
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|row| {
                let walked: String = row.try_get("walked")?;
                let held = row.try_get::<Option<String>, _>("room_id")?.is_some();
                Ok((walked, if held { Some(super::rooms::event_from_row(row)?) } else { None }))
            })
            .collect()
    }

    /// Users joined to a room now.
    pub async fn joined_user_ids(&self, room_id: &str) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query("SELECT user_id FROM room_memberships WHERE room_id = $1 AND membership = 'join'")
            .bind(room_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    /// What decides whether `server` may see a room's events now: the current history
    /// visibility and the current member events of `server`'s users.
    pub async fn current_visibility_state(&self, room_id: &str, server: &str) -> Result<StateMap, sqlx::Error> {
        let suffix = format!(":{server}");
        let rows = sqlx::query(
            "SELECT event_type, state_key, event_id FROM current_state WHERE room_id = $1 AND \
             ((event_type = 'm.room.history_visibility' AND state_key = '') \
             OR (event_type = 'm.room.member' AND state_key LIKE $2))",
        )
        .bind(room_id)
        .bind(format!("%{suffix}"))
        .fetch_all(self.pool())
        .await?;
        let mut state = StateMap::new();
        for row in rows {
            let (event_type, state_key): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            // `LIKE` may match more (a `_` in the name); the end of the key decides.
            if event_type != "m.room.member" || state_key.ends_with(&suffix) {
                state.insert((event_type, state_key), row.try_get(2)?);
            }
        }
        Ok(state)
    }

    /// Whether a user of `server` is joined to the room now (from the membership mirror).
    pub async fn server_joined(&self, room_id: &str, server: &str) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(
            "SELECT 1 FROM room_memberships WHERE room_id = $1 AND membership = 'join' AND server_name = $2 LIMIT 1",
        )
        .bind(room_id)
        .bind(server)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// The servers with a user joined to the room now, sorted. Read from the index one
    /// server at a time (each the least name past the one before), so the cost follows
    /// the number of servers, not of members: a `DISTINCT` would read every member's
    /// index entry.
    pub async fn joined_servers(&self, room_id: &str) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "WITH RECURSIVE servers(name) AS ( \
               SELECT MIN(server_name) FROM room_memberships WHERE room_id = $1 AND membership = 'join' \
               UNION ALL \
               SELECT (SELECT MIN(server_name) FROM room_memberships \
                       WHERE room_id = $1 AND membership = 'join' AND server_name > servers.name) \
               FROM servers WHERE servers.name IS NOT NULL) \
             SELECT name FROM servers WHERE name IS NOT NULL",
        )
        .bind(room_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    /// Adds PDUs to destinations' outboxes and moves a consumer to its new position, in one
    /// transaction, then trims outboxes past their bound.
    pub async fn enqueue_outbox(&self, rows: &[OutboxRow], consumer: Option<(&str, i64)>) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        for row in rows {
            sqlx::query(
                "INSERT INTO federation_outbox (destination, stream_ordering, event_id) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&row.destination)
            .bind(row.stream_ordering)
            .bind(&row.event_id)
            .execute(&mut *txn.tx)
            .await?;
        }
        if let Some((consumer, position)) = consumer {
            super::streams::save_consumer_position(&mut txn, consumer, position).await?;
        }
        let mut destinations: Vec<&str> = rows.iter().map(|r| r.destination.as_str()).collect();
        destinations.sort_unstable();
        destinations.dedup();
        for destination in destinations {
            sqlx::query(
                "DELETE FROM federation_outbox WHERE destination = $1 AND stream_ordering <= \
                 (SELECT stream_ordering FROM federation_outbox WHERE destination = $1 \
                  ORDER BY stream_ordering DESC LIMIT 1 OFFSET $2)",
            )
            .bind(destination)
            .bind(MAX_OUTBOX_PER_DESTINATION)
            .execute(&mut *txn.tx)
            .await?;
        }
        txn.commit().await
    }

    /// The oldest PDUs owed to a destination: `(stream ordering, PDU JSON)`.
    pub async fn outbox_batch(&self, destination: &str, limit: i64) -> Result<Vec<(i64, Value)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT o.stream_ordering, e.json FROM federation_outbox o JOIN events e ON e.event_id = o.event_id \
             WHERE o.destination = $1 ORDER BY o.stream_ordering LIMIT $2",
        )
        .bind(destination)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let json: String = row.try_get(1)?;
                Ok((row.try_get(0)?, serde_json::from_str(&json).unwrap_or(Value::Null)))
            })
            .collect()
    }

    pub async fn outbox_remove(&self, destination: &str, orderings: &[i64]) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        for ordering in orderings {
            sqlx::query("DELETE FROM federation_outbox WHERE destination = $1 AND stream_ordering = $2")
                .bind(destination)
                .bind(ordering)
                .execute(&mut *txn.tx)
                .await?;
        }
        txn.commit().await
    }

    /// Keeps an EDU for a destination until [`Self::remove_durable_edus`]; a destination
    /// owed [`MAX_DURABLE_EDUS`] gets no more (false).
    pub async fn add_durable_edu(&self, destination: &str, key: &str, edu: &Value) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let row = KeptEdu { destination: destination.to_owned(), key: key.to_owned(), edu: edu.clone() };
        if !keep_edu(&mut txn, &row).await? {
            return Ok(false);
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Drops the EDUs kept since before `cutoff` for destinations in backoff (which have
    /// not taken them since); returns how many. EDUs kept before their time was recorded
    /// count from now.
    pub async fn expire_durable_edus(&self, cutoff: i64) -> Result<u64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("UPDATE federation_edu_outbox SET queued_ts = $1 WHERE queued_ts = 0")
            .bind(now_ms())
            .execute(&mut *txn.tx)
            .await?;
        let expired = sqlx::query(
            "DELETE FROM federation_edu_outbox WHERE queued_ts < $1 \
             AND destination IN (SELECT destination FROM federation_destinations)",
        )
        .bind(cutoff)
        .execute(&mut *txn.tx)
        .await?
        .rows_affected();
        txn.commit().await?;
        Ok(expired)
    }

    pub async fn remove_durable_edus(&self, destination: &str, keys: &[&str]) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        for key in keys {
            sqlx::query("DELETE FROM federation_edu_outbox WHERE destination = $1 AND edu_key = $2")
                .bind(destination)
                .bind(*key)
                .execute(&mut *txn.tx)
                .await?;
        }
        txn.commit().await
    }

    /// The oldest kept EDUs of a destination (keys start with the time or a stream
    /// position, so their order is the order they were kept in), at most `limit`.
    pub async fn durable_edu_batch(&self, destination: &str, limit: i64) -> Result<Vec<(String, Value)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT edu_key, edu_json FROM federation_edu_outbox WHERE destination = $1 ORDER BY edu_key LIMIT $2",
        )
        .bind(destination)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let json: String = row.try_get(1)?;
                let edu = serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok((row.try_get(0)?, edu))
            })
            .collect()
    }

    /// Kept EDUs per destination, the longest queues first, at most `limit` of them.
    pub async fn durable_edu_lens(&self, limit: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
        self.waiting_per_destination("federation_edu_outbox", limit).await
    }

    /// Destinations that are owed PDUs or kept EDUs.
    pub async fn outbox_destinations(&self) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT destination FROM federation_outbox UNION SELECT destination FROM federation_edu_outbox",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }
}

/// Keeps an EDU in the caller's transaction, so that it is owed exactly when what it
/// belongs to is written; false (nothing written) if its destination is owed
/// [`MAX_DURABLE_EDUS`] already.
pub(super) async fn keep_edu(txn: &mut WriteTxn<'_>, row: &KeptEdu) -> Result<bool, sqlx::Error> {
    let held: i64 = sqlx::query("SELECT COUNT(*) FROM federation_edu_outbox WHERE destination = $1")
        .bind(&row.destination)
        .fetch_one(&mut *txn.tx)
        .await?
        .try_get(0)?;
    if held >= MAX_DURABLE_EDUS {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO federation_edu_outbox (destination, edu_key, edu_json, queued_ts) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (destination, edu_key) DO UPDATE SET edu_json = excluded.edu_json",
    )
    .bind(&row.destination)
    .bind(&row.key)
    .bind(row.edu.to_string())
    .bind(now_ms())
    .execute(&mut *txn.tx)
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseTarget;
    use crate::store::Retry;

    #[tokio::test]
    async fn kept_edus_expire_only_for_destinations_in_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kith.db").display().to_string();
        let store = Store::connect(&DatabaseTarget::Sqlite { path }).await.unwrap();
        let edu = serde_json::json!({ "edu_type": "m.direct_to_device", "content": {} });
        for destination in ["down.example", "up.example"] {
            assert!(store.add_durable_edu(destination, "k1", &edu).await.unwrap());
        }
        let retry = Retry { failures: 3, retry_last_ts: now_ms(), retry_interval_ms: 600_000 };
        store.set_destination_retry("down.example", retry).await.unwrap();
        assert_eq!(store.expire_durable_edus(now_ms() - 1_000).await.unwrap(), 0, "not old enough yet");
        assert_eq!(store.expire_durable_edus(now_ms() + 1_000).await.unwrap(), 1);
        assert!(store.durable_edu_batch("down.example", 10).await.unwrap().is_empty());
        assert_eq!(store.durable_edu_batch("up.example", 10).await.unwrap().len(), 1, "not in backoff: kept");
    }
}
