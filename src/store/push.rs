//! Notifications (what push rules decided per user and event) and pushers.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::Row;

use super::{Store, now_ms};

/// One notification of a user.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub event_id: String,
    pub room_id: String,
    pub stream_ordering: i64,
    pub highlight: bool,
    pub actions: Value,
    pub ts: i64,
}

/// A notification as the push-gateway sender reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingPush {
    pub user_id: String,
    pub event_id: String,
    pub room_id: String,
    pub stream_ordering: i64,
    pub actions: Value,
}

/// Notifications written by one statement, at most: 7 parameters each, far below
/// both backends' limits on parameters.
const NOTIFICATION_ROWS: usize = 100;

/// Users whose pushers one statement reads, at most.
const PUSHER_USERS: usize = 500;

/// Notifications to write: (user, event, room, stream ordering, highlight, actions).
pub type NewNotification<'a> = (&'a str, &'a str, &'a str, i64, bool, &'a Value);

impl Store {
    /// Records a batch of notifications (duplicates are ignored) and moves the
    /// evaluator's position past the batch, in one transaction and a statement per
    /// `NOTIFICATION_ROWS` notifications.
    pub async fn add_notifications(
        &self,
        notifications: &[NewNotification<'_>],
        (consumer, position): (&str, i64),
    ) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let ts = now_ms();
        for chunk in notifications.chunks(NOTIFICATION_ROWS) {
            let values: Vec<String> = (0..chunk.len())
                .map(|row| {
                    let first = row * 7 + 1;
                    let params: Vec<String> = (first..first + 7).map(|n| format!("${n}")).collect();
                    format!("({})", params.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO notifications (user_id, event_id, room_id, stream_ordering, highlight, actions, ts) \
                 VALUES {} ON CONFLICT DO NOTHING",
                values.join(", ")
            );
            let mut insert = sqlx::query(&sql);
            for (user_id, event_id, room_id, ordering, highlight, actions) in chunk {
                insert = insert
                    .bind(*user_id)
                    .bind(*event_id)
                    .bind(*room_id)
                    .bind(*ordering)
                    .bind(i64::from(*highlight))
                    .bind(actions.to_string())
                    .bind(ts);
            }
            insert.execute(&mut *txn.tx).await?;
        }
        super::streams::save_consumer_position(&mut txn, consumer, position).await?;
        txn.commit().await
    }

    /// `(notification count, highlight count)` of a room after the position a user
    /// read it up to ([`Self::read_up_to`]), in one statement: every `/sync` that
    /// reads the room asks.
    pub async fn unread_counts(&self, user_id: &str, room_id: &str) -> Result<(i64, i64), sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM(highlight), 0) AS BIGINT) FROM notifications \
             WHERE user_id = $1 AND room_id = $2 AND stream_ordering > ({READ_UP_TO})"
        ))
        .bind(user_id)
        .bind(room_id)
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// A user's notifications before stream position `before`, newest first.
    pub async fn notifications(
        &self,
        user_id: &str,
        before: i64,
        highlights_only: bool,
        limit: i64,
    ) -> Result<Vec<Notification>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT event_id, room_id, stream_ordering, highlight, actions, ts FROM notifications \
             WHERE user_id = $1 AND stream_ordering < $2 AND ($3 = 0 OR highlight = 1) \
             ORDER BY stream_ordering DESC LIMIT $4",
        )
        .bind(user_id)
        .bind(before)
        .bind(i64::from(highlights_only))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let actions: String = row.try_get(4)?;
                Ok(Notification {
                    event_id: row.try_get(0)?,
                    room_id: row.try_get(1)?,
                    stream_ordering: row.try_get(2)?,
                    highlight: row.try_get::<i64, _>(3)? != 0,
                    actions: serde_json::from_str(&actions).unwrap_or(Value::Null),
                    ts: row.try_get(5)?,
                })
            })
            .collect()
    }

    /// The stream position up to which a user has read a room: their newest read
    /// receipt (public or private) or their own newest event there.
    pub async fn read_up_to(&self, user_id: &str, room_id: &str) -> Result<i64, sqlx::Error> {
        let row = sqlx::query(READ_UP_TO).bind(user_id).bind(room_id).fetch_one(self.pool()).await?;
        row.try_get(0)
    }

    /// The notifications of the `events` next events that notified anyone after stream
    /// position `after` (whole events: every user an event notified comes together).
    pub async fn notifications_after(&self, after: i64, events: i64) -> Result<Vec<PendingPush>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT user_id, event_id, room_id, stream_ordering, actions FROM notifications WHERE stream_ordering IN \
             (SELECT DISTINCT stream_ordering FROM notifications WHERE stream_ordering > $1 \
              ORDER BY stream_ordering LIMIT $2) ORDER BY stream_ordering, user_id",
        )
        .bind(after)
        .bind(events)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PendingPush {
                    user_id: row.try_get(0)?,
                    event_id: row.try_get(1)?,
                    room_id: row.try_get(2)?,
                    stream_ordering: row.try_get(3)?,
                    actions: serde_json::from_str(&row.try_get::<String, _>(4)?).unwrap_or(Value::Null),
                })
            })
            .collect()
    }

    /// The newest stream position a notification was recorded at (0 if none).
    pub async fn last_notification_ordering(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COALESCE(MAX(stream_ordering), 0) FROM notifications")
            .fetch_one(self.pool())
            .await?
            .try_get(0)
    }

    /// The rooms in which a user has notifications, most recent first, at most `limit`.
    pub async fn rooms_with_notifications(&self, user_id: &str, limit: i64) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT room_id FROM notifications WHERE user_id = $1 GROUP BY room_id \
             ORDER BY MAX(stream_ordering) DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    pub async fn pushers(&self, user_id: &str) -> Result<Vec<Value>, sqlx::Error> {
        let rows = sqlx::query("SELECT pusher FROM pushers WHERE user_id = $1 ORDER BY app_id, pushkey")
            .bind(user_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| Ok(serde_json::from_str(&row.try_get::<String, _>(0)?).unwrap_or(Value::Null))).collect()
    }

    /// The `http` pushers (with a URL) of those of `users` who have one, read in a
    /// statement per `PUSHER_USERS` users: most users have none.
    pub async fn http_pushers_of(&self, users: &[&str]) -> Result<HashMap<String, Vec<Value>>, sqlx::Error> {
        let mut users = users.to_vec();
        users.sort_unstable();
        users.dedup();
        let mut pushers: HashMap<String, Vec<Value>> = HashMap::new();
        for chunk in users.chunks(PUSHER_USERS) {
            let params: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT user_id, pusher FROM pushers WHERE user_id IN ({}) ORDER BY user_id, app_id, pushkey",
                params.join(", ")
            );
            let mut select = sqlx::query(&sql);
            for user in chunk {
                select = select.bind(*user);
            }
            for row in select.fetch_all(self.pool()).await? {
                let pusher: Value = serde_json::from_str(&row.try_get::<String, _>(1)?).unwrap_or(Value::Null);
                if pusher["kind"] == "http" && pusher["data"]["url"].is_string() {
                    pushers.entry(row.try_get(0)?).or_default().push(pusher);
                }
            }
        }
        Ok(pushers)
    }

    /// Whether any user has a pusher.
    pub(super) async fn read_any_pusher(&self) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query("SELECT 1 FROM pushers LIMIT 1").fetch_optional(self.pool()).await?.is_some())
    }

    /// Adds or replaces a pusher; unless `append`, the same push key of other apps goes.
    pub async fn set_pusher(&self, user_id: &str, pusher: &Value, append: bool) -> Result<(), sqlx::Error> {
        let app_id = pusher["app_id"].as_str().unwrap_or_default();
        let pushkey = pusher["pushkey"].as_str().unwrap_or_default();
        let mut txn = self.begin_write().await?;
        txn.forgets.pushers = true;
        if !append {
            sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND pushkey = $2 AND app_id <> $3")
                .bind(user_id)
                .bind(pushkey)
                .bind(app_id)
                .execute(&mut *txn.tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO pushers (user_id, app_id, pushkey, pusher) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET pusher = excluded.pusher",
        )
        .bind(user_id)
        .bind(app_id)
        .bind(pushkey)
        .bind(pusher.to_string())
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await
    }

    pub async fn delete_pusher(&self, user_id: &str, app_id: &str, pushkey: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3")
            .bind(user_id)
            .bind(app_id)
            .bind(pushkey)
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await
    }
}

/// The position a user (`$1`) read a room (`$2`) up to: their newest receipt's event
/// or their own newest event. Two indexed lookups: an `OR` of both made SQLite read
/// every event of the room.
const READ_UP_TO: &str = "SELECT COALESCE(MAX(position), 0) FROM ( \
     SELECT MAX(e.stream_ordering) AS position FROM receipts r JOIN events e ON e.event_id = r.event_id \
     WHERE r.room_id = $2 AND r.user_id = $1 AND e.room_id = $2 \
     UNION ALL \
     SELECT (SELECT stream_ordering FROM events WHERE room_id = $2 AND sender = $1 AND outlier = 0 \
       ORDER BY stream_ordering DESC LIMIT 1) \
   ) positions";
