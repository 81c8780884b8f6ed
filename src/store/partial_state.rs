//! Rooms joined with a partial state, and rewriting the state of their events once the
//! full state is known.

use sqlx::Row;

use super::rooms::{StateBefore, new_state_group};
use super::{StateMap, Store, now_ms, rooms, streams};

/// A room whose state is still partial.
#[derive(Debug, Clone)]
pub struct PartialStateRoom {
    pub room_id: String,
    pub join_event_id: String,
    pub joined_via: String,
    /// `servers_in_room` from the join, and servers seen joining since.
    pub servers: Vec<String>,
}

impl Store {
    pub async fn mark_partial_state(&self, room: &PartialStateRoom) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.partial_state = true;
        sqlx::query(
            "INSERT INTO partial_state_rooms (room_id, join_event_id, joined_via, servers, joined_ts) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id) DO UPDATE SET join_event_id = excluded.join_event_id, \
             joined_via = excluded.joined_via, servers = excluded.servers, joined_ts = excluded.joined_ts",
        )
        .bind(&room.room_id)
        .bind(&room.join_event_id)
        .bind(&room.joined_via)
        .bind(serde_json::to_string(&room.servers).unwrap_or_default())
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await
    }

    pub async fn partial_state_room(&self, room_id: &str) -> Result<Option<PartialStateRoom>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT room_id, join_event_id, joined_via, servers FROM partial_state_rooms WHERE room_id = $1",
        )
        .bind(room_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| partial_from_row(&row)).transpose()
    }

    pub(super) async fn read_partial_state_rooms(&self) -> Result<Vec<PartialStateRoom>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT room_id, join_event_id, joined_via, servers FROM partial_state_rooms ORDER BY joined_ts",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(partial_from_row).collect()
    }

    /// Adds a server seen joining a partial-state room (it hears of local events too).
    pub async fn add_partial_state_server(&self, room_id: &str, server: &str) -> Result<(), sqlx::Error> {
        let Some(mut room) = self.partial_state_room(room_id).await? else { return Ok(()) };
        if room.servers.iter().any(|s| s == server) {
            return Ok(());
        }
        room.servers.push(server.to_owned());
        let mut txn = self.begin_write().await?;
        txn.forgets.partial_state = true;
        sqlx::query("UPDATE partial_state_rooms SET servers = $2 WHERE room_id = $1")
            .bind(room_id)
            .bind(serde_json::to_string(&room.servers).unwrap_or_default())
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await
    }

    /// Forgets a room's partial state (the local users left before the resync ended).
    pub async fn clear_partial_state(&self, room_id: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.partial_state = true;
        sqlx::query("DELETE FROM partial_state_rooms WHERE room_id = $1").bind(room_id).execute(&mut *txn.tx).await?;
        txn.commit().await
    }

    /// Gives an event of a resynced room its corrected state before (a group, or a full
    /// snapshot) and verdict; returns its new state groups `(before, after)`.
    pub async fn restate_event(
        &self,
        event: &super::StoredEvent,
        state_before: StateBefore<'_>,
        rejected: bool,
    ) -> Result<(i64, i64), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.events = true;
        let before = match state_before {
            StateBefore::Group(group) => group,
            StateBefore::Snapshot(state) => new_state_group(&mut txn, &event.room_id, None, state).await?,
            StateBefore::Unknown => return Err(sqlx::Error::Protocol("restating an event needs its state".into())),
        };
        let state_key = event.json["state_key"].as_str();
        let after = match (state_key, rejected) {
            (Some(key), false) => {
                let mut delta = StateMap::new();
                let kind = event.json["type"].as_str().unwrap_or_default().to_owned();
                delta.insert((kind, key.to_owned()), event.event_id.clone());
                new_state_group(&mut txn, &event.room_id, Some(before), &delta).await?
            }
            _ => before,
        };
        sqlx::query(
            "UPDATE events SET state_group_before = $2, state_group_after = $3, rejected = $4 WHERE event_id = $1",
        )
        .bind(&event.event_id)
        .bind(before)
        .bind(after)
        .bind(i64::from(rejected))
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await?;
        Ok((before, after))
    }

    /// Ends a resync: the room's full current state (deltas, memberships), the partial
    /// flag cleared, and the moment recorded as a new event-stream position (returned),
    /// in one transaction.
    pub async fn finish_partial_state(&self, room_id: &str, current: &StateMap) -> Result<i64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.partial_state = true;
        let cleared = sqlx::query("DELETE FROM partial_state_rooms WHERE room_id = $1")
            .bind(room_id)
            .execute(&mut *txn.tx)
            .await?
            .rows_affected();
        // An admin purged the room while it was resyncing: nothing is left to complete.
        if cleared == 0 {
            return Err(sqlx::Error::RowNotFound);
        }
        // The event stream's row first, as every event write takes it: on PostgreSQL two
        // transactions that lock the stream rows in different orders can deadlock.
        let position = streams::next_position(&mut txn, "events").await?;
        let kept_state =
            rooms::update_current_state(&mut txn, &self.current_states, room_id, rooms::NewCurrentState::full(current))
                .await?;
        sqlx::query(
            "INSERT INTO room_resyncs (room_id, position) VALUES ($1, $2)              ON CONFLICT (room_id) DO UPDATE SET position = excluded.position",
        )
        .bind(room_id)
        .bind(position)
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await?;
        if let Some((at, state)) = kept_state {
            self.current_states.put(room_id, at, state);
        }
        Ok(position)
    }

    /// The event-stream position of the newest resync (0: none).
    pub(super) async fn read_newest_resync(&self) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT MAX(position) FROM room_resyncs").fetch_one(self.pool()).await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or_default())
    }

    /// Rooms whose resync completed after the event-stream position `since`.
    pub(super) async fn read_rooms_resynced_after(&self, since: i64) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query("SELECT room_id FROM room_resyncs WHERE position > $1")
            .bind(since)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    /// Accepted timeline events of a room from stream position `from` on, oldest first.
    pub async fn room_events_from(&self, room_id: &str, from: i64) -> Result<Vec<super::StoredEvent>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM events WHERE room_id = $1 AND stream_ordering >= $2 AND outlier = 0 ORDER BY stream_ordering",
            rooms::EVENT_COLUMNS
        ))
        .bind(room_id)
        .bind(from)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(rooms::event_from_row).collect()
    }
}

fn partial_from_row(row: &sqlx::any::AnyRow) -> Result<PartialStateRoom, sqlx::Error> {
    let servers: String = row.try_get(3)?;
    Ok(PartialStateRoom {
        room_id: row.try_get(0)?,
        join_event_id: row.try_get(1)?,
        joined_via: row.try_get(2)?,
        servers: serde_json::from_str(&servers).unwrap_or_default(),
    })
}
