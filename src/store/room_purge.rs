//! Rooms an admin blocked, and removing a room from the database (the admin API's
//! purge).

use sqlx::Row;

use super::{STATE_DELTA_STREAM, Store, WriteTxn, now_ms, streams};

/// Rows keyed by the room itself, removed by a purge. Per-room account data goes too:
/// a room tag for a room that no longer exists means nothing.
const ROOM_TABLES: &[&str] = &[
    "event_relations",
    "notifications",
    "receipts",
    "account_data",
    "event_txn_ids",
    "forward_extremities",
    "current_state",
    "room_memberships",
    "room_aliases",
    "partial_state_rooms",
    "room_resyncs",
    "state_groups",
    "events",
    "rooms",
];

impl Store {
    /// Blocks a room (again): the newest blocker is kept.
    pub async fn block_room(&self, room_id: &str, blocked_by: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO blocked_rooms (room_id, blocked_by, blocked_ts) VALUES ($1, $2, $3) \
             ON CONFLICT (room_id) DO UPDATE SET blocked_by = excluded.blocked_by, blocked_ts = excluded.blocked_ts",
        )
        .bind(room_id)
        .bind(blocked_by)
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await
    }

    pub async fn unblock_room(&self, room_id: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("DELETE FROM blocked_rooms WHERE room_id = $1").bind(room_id).execute(&mut *txn.tx).await?;
        txn.commit().await
    }

    /// Who blocked the room, if it is blocked.
    pub async fn room_blocked_by(&self, room_id: &str) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query("SELECT blocked_by FROM blocked_rooms WHERE room_id = $1")
            .bind(room_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| row.try_get(0)).transpose()
    }

    pub async fn is_room_blocked(&self, room_id: &str) -> Result<bool, sqlx::Error> {
        Ok(self.room_blocked_by(room_id).await?.is_some())
    }

    /// Removes the room's aliases; returns them.
    pub async fn remove_room_aliases(&self, room_id: &str) -> Result<Vec<String>, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let rows = sqlx::query("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
            .bind(room_id)
            .fetch_all(&mut *txn.tx)
            .await?;
        sqlx::query("DELETE FROM room_aliases WHERE room_id = $1").bind(room_id).execute(&mut *txn.tx).await?;
        txn.commit().await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    /// The room's events still owed to other servers.
    pub async fn owed_room_events(&self, room_id: &str) -> Result<i64, sqlx::Error> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM federation_outbox o JOIN events e ON e.event_id = o.event_id WHERE e.room_id = $1",
        )
        .bind(room_id)
        .fetch_one(self.pool())
        .await?;
        row.try_get(0)
    }

    /// Removes the notifications of up to `events` of a room's events (every user's);
    /// returns how many rows went. A purge clears them first, in such small
    /// transactions, as they are most of a busy room's rows and nobody needs them once
    /// the local members have left.
    pub async fn delete_room_notifications(&self, room_id: &str, events: i64) -> Result<u64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let removed = sqlx::query(
            "DELETE FROM notifications WHERE room_id = $1 AND event_id IN \
             (SELECT DISTINCT event_id FROM notifications WHERE room_id = $1 LIMIT $2)",
        )
        .bind(room_id)
        .bind(events)
        .execute(&mut *txn.tx)
        .await?
        .rows_affected();
        txn.commit().await?;
        Ok(removed)
    }

    /// Removes every trace of a room in one transaction: its events, state, memberships,
    /// aliases, receipts, notifications, relations, per-room account data and what other
    /// servers were still owed of it. Streams that follow memberships (the user
    /// directory, remote profiles) are told the members are gone with one state delta
    /// per member naming no event, which is all of the room the stream keeps.
    pub async fn purge_room(&self, room_id: &str) -> Result<u64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.memberships = true;
        txn.forgets.partial_state = true;
        txn.forgets.events = true;
        let members: Vec<String> = sqlx::query("SELECT user_id FROM room_memberships WHERE room_id = $1")
            .bind(room_id)
            .fetch_all(&mut *txn.tx)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let by_event = [
            "DELETE FROM event_edges WHERE event_id IN (SELECT event_id FROM events WHERE room_id = $1)",
            "DELETE FROM federation_outbox WHERE event_id IN (SELECT event_id FROM events WHERE room_id = $1)",
            "DELETE FROM state_group_entries WHERE group_id IN (SELECT group_id FROM state_groups WHERE room_id = $1)",
            "DELETE FROM current_state_deltas WHERE room_id = $1",
        ];
        let mut removed = 0;
        for statement in by_event {
            removed += sqlx::query(statement).bind(room_id).execute(&mut *txn.tx).await?.rows_affected();
        }
        for table in ROOM_TABLES {
            let statement = format!("DELETE FROM {table} WHERE room_id = $1");
            removed += sqlx::query(&statement).bind(room_id).execute(&mut *txn.tx).await?.rows_affected();
        }
        for member in &members {
            record_member_gone(&mut txn, room_id, member).await?;
        }
        txn.commit().await?;
        Ok(removed)
    }
}

async fn record_member_gone(txn: &mut WriteTxn<'_>, room_id: &str, user_id: &str) -> Result<(), sqlx::Error> {
    let position = streams::next_position(txn, STATE_DELTA_STREAM).await?;
    sqlx::query(
        "INSERT INTO current_state_deltas (stream_id, room_id, event_type, state_key, event_id, prev_event_id) \
         VALUES ($1, $2, 'm.room.member', $3, NULL, NULL)",
    )
    .bind(position)
    .bind(room_id)
    .bind(user_id)
    .execute(&mut *txn.tx)
    .await?;
    Ok(())
}
