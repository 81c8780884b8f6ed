//! Relations between events: which event relates to which, how, and when.

use serde_json::Value;
use sqlx::Row;

use super::rooms::{EVENT_COLUMNS, event_from_row};
use super::{Store, StoredEvent, WriteTxn};

/// What `/relations` asks for.
pub struct RelationQuery<'a> {
    pub parent: &'a str,
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// Stream positions: exclusive lower and inclusive upper bound.
    pub after: i64,
    pub up_to: i64,
    pub forwards: bool,
    pub limit: i64,
}

/// The relation an event declares, if it declares one we can index.
pub fn declared_relation(json: &Value) -> Option<(&str, &str)> {
    let relates_to = json.get("content")?.get("m.relates_to")?;
    let parent = relates_to.get("event_id")?.as_str()?;
    let rel_type = relates_to.get("rel_type")?.as_str()?;
    (!parent.is_empty() && !rel_type.is_empty() && parent.len() <= 255 && rel_type.len() <= 255)
        .then_some((parent, rel_type))
}

/// Records the relation of an event being stored.
pub(super) async fn record(txn: &mut WriteTxn<'_>, event: &StoredEventRef<'_>) -> Result<(), sqlx::Error> {
    let Some((parent, rel_type)) = declared_relation(event.json) else { return Ok(()) };
    sqlx::query(
        "INSERT INTO event_relations (event_id, relates_to_id, rel_type, room_id, event_type, sender, stream_ordering) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event.event_id)
    .bind(parent)
    .bind(rel_type)
    .bind(event.room_id)
    .bind(event.event_type)
    .bind(event.sender)
    .bind(event.stream_ordering)
    .execute(&mut *txn.tx)
    .await?;
    Ok(())
}

/// The columns of an event that a relation row needs.
pub(super) struct StoredEventRef<'a> {
    pub event_id: &'a str,
    pub room_id: &'a str,
    pub event_type: &'a str,
    pub sender: &'a str,
    pub stream_ordering: i64,
    pub json: &'a Value,
}

/// Indexes the relations of events stored before relations were (run once, by the
/// migration that creates the table).
pub(super) async fn backfill(txn: &mut WriteTxn<'_>) -> Result<u64, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT event_id, room_id, event_type, sender, stream_ordering, json FROM events \
         WHERE outlier = 0 AND rejected = 0 AND json LIKE '%m.relates_to%'",
    )
    .fetch_all(&mut *txn.tx)
    .await?;
    let mut recorded = 0;
    for row in rows {
        let json: Value = serde_json::from_str(&row.try_get::<String, _>(5)?).unwrap_or(Value::Null);
        let (event_id, room_id, event_type, sender): (String, String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        let event = StoredEventRef {
            event_id: &event_id,
            room_id: &room_id,
            event_type: &event_type,
            sender: &sender,
            stream_ordering: row.try_get(4)?,
            json: &json,
        };
        record(txn, &event).await?;
        recorded += 1;
    }
    Ok(recorded)
}

impl Store {
    /// Events relating to `parent`, newest first unless `forwards`.
    pub async fn related_events(&self, query: &RelationQuery<'_>) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let order = if query.forwards { "ASC" } else { "DESC" };
        let columns = EVENT_COLUMNS.split(',').map(|c| format!("e.{}", c.trim())).collect::<Vec<_>>().join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM event_relations r JOIN events e ON e.event_id = r.event_id \
             WHERE r.relates_to_id = $1 AND ($2 = '' OR r.rel_type = $2) AND ($3 = '' OR r.event_type = $3) \
             AND r.stream_ordering > $4 AND r.stream_ordering <= $5 \
             ORDER BY r.stream_ordering {order} LIMIT $6"
        ))
        .bind(query.parent)
        .bind(query.rel_type.unwrap_or(""))
        .bind(query.event_type.unwrap_or(""))
        .bind(query.after)
        .bind(query.up_to)
        .bind(query.limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Thread roots of a room with their latest reply's position, the most recently
    /// active first, below `before`; with `participant`, only threads they started or
    /// replied to.
    pub async fn thread_roots(
        &self,
        room_id: &str,
        participant: Option<&str>,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT r.relates_to_id, MAX(r.stream_ordering) AS latest FROM event_relations r \
             WHERE r.room_id = $1 AND r.rel_type = 'm.thread' GROUP BY r.relates_to_id \
             HAVING MAX(r.stream_ordering) < $2 AND ($3 = '' OR MAX(CASE WHEN r.sender = $3 THEN 1 ELSE 0 END) = 1 \
               OR r.relates_to_id IN (SELECT event_id FROM events WHERE sender = $3 AND room_id = $1)) \
             ORDER BY latest DESC LIMIT $4",
        )
        .bind(room_id)
        .bind(before)
        .bind(participant.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// A thread's reply count and latest reply (for the root's bundled `m.thread`).
    pub async fn thread_summary(&self, root: &str) -> Result<Option<(i64, String)>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT COUNT(*), MAX(stream_ordering) FROM event_relations WHERE relates_to_id = $1 AND rel_type = 'm.thread'",
        )
        .bind(root)
        .fetch_one(self.pool())
        .await?;
        let count: i64 = row.try_get(0)?;
        if count == 0 {
            return Ok(None);
        }
        let latest: i64 = row.try_get(1)?;
        let latest_id = sqlx::query("SELECT event_id FROM events WHERE stream_ordering = $1")
            .bind(latest)
            .fetch_one(self.pool())
            .await?
            .try_get(0)?;
        Ok(Some((count, latest_id)))
    }

    /// Whether a user sent a thread's root or a reply in it.
    pub async fn participated_in_thread(&self, root: &str, user_id: &str) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM events WHERE sender = $2 AND (event_id = $1 OR event_id IN \
             (SELECT event_id FROM event_relations WHERE relates_to_id = $1 AND rel_type = 'm.thread'))",
        )
        .bind(root)
        .bind(user_id)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }
}
