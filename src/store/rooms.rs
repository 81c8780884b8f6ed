//! Rooms: events and their DAG, state groups, current state, the current-state-delta
//! stream, memberships, aliases and client transaction ids.
//!
//! State is kept as *state groups*: each event records the group holding the room state
//! before it and the group after it. A non-state event shares its groups with its
//! parent; an accepted state event creates a new group stored as a delta on the group
//! before it. Chains are capped at `MAX_STATE_CHAIN` deltas, after which a full snapshot
//! starts a new chain, so reading any state costs at most that many small queries while
//! a long room history does not store the full state once per state event.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::current_states::{self, CurrentStates};
use super::{Store, WriteTxn, now_ms, relations, streams};

/// The events that move a room up a room list (Synapse's defaults for sliding sync): what
/// people say, not state changes or reactions. The newest one's position is kept per
/// room (`rooms.bump_stamp`, the list of types repeated in migration 18's backfill).
pub const BUMP_EVENT_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
];

/// The stream of changes to rooms' current state.
pub const STATE_DELTA_STREAM: &str = "current_state_deltas";

/// `(event type, state key) -> event id`.
pub type StateMap = BTreeMap<(String, String), String>;

const MAX_STATE_CHAIN: i64 = 32;

/// A stored event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event_id: String,
    pub room_id: String,
    pub stream_ordering: i64,
    pub depth: i64,
    pub json: Value,
    pub rejected: bool,
    pub state_group_before: Option<i64>,
    pub state_group_after: Option<i64>,
    /// Held for reference, not part of the timeline (see the schema).
    pub outlier: bool,
}

/// One row of `room_memberships`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub room_id: String,
    pub user_id: String,
    pub membership: String,
    pub event_id: String,
    pub sender: String,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub stream_ordering: i64,
    pub forgotten: bool,
}

/// One row of the current-state-delta stream; `event_id` is None when the key left
/// the state.
#[derive(Debug, Clone)]
pub struct StateDelta {
    pub stream_id: i64,
    pub room_id: String,
    pub event_type: String,
    pub state_key: String,
    pub event_id: Option<String>,
    pub prev_event_id: Option<String>,
}

/// Everything written when an event is persisted, in one transaction.
pub struct PersistEvent<'a> {
    pub event_id: &'a str,
    pub room_id: &'a str,
    pub depth: i64,
    pub event_type: &'a str,
    pub state_key: Option<&'a str>,
    pub sender: &'a str,
    pub origin_server_ts: i64,
    pub json: &'a Value,
    pub prev_events: &'a [String],
    pub rejected: bool,
    /// Held for reference only: not a forward extremity, not in the timeline.
    pub outlier: bool,
    /// The state before the event: an existing group, a new full snapshot, or unknown.
    pub state_before: StateBefore<'a>,
    /// The room's current state after this event, when it changed.
    pub new_current_state: Option<NewCurrentState<'a>>,
    /// `(user, device, txn id)` of a client send, for idempotency.
    pub client_txn: Option<(&'a str, &'a str, &'a str)>,
    /// Mirror this member event into `room_memberships` although the room's current
    /// state does not hold it: an invite to, or a rejected invite of, a room this server
    /// is not in.
    pub mirror_membership: bool,
}

/// A room's new current state: a state map, with one event's own entry on top of it (a
/// state event following every forward extremity: its state before, plus itself). The
/// entry is given apart so that the map can be a kept group's, shared rather than copied.
#[derive(Clone, Copy)]
pub struct NewCurrentState<'a> {
    pub state: &'a StateMap,
    pub with: Option<(&'a (String, String), &'a String)>,
}

impl<'a> NewCurrentState<'a> {
    pub fn full(state: &'a StateMap) -> Self {
        NewCurrentState { state, with: None }
    }

    fn get(&self, key: &(String, String)) -> Option<&'a String> {
        match self.with {
            Some((own, id)) if own == key => Some(id),
            _ => self.state.get(key),
        }
    }
}

pub enum StateBefore<'a> {
    Group(i64),
    /// State that no group holds yet (after state resolution, or the create event's empty state).
    Snapshot(&'a StateMap),
    /// An outlier's state is not known.
    Unknown,
}

pub(super) fn event_from_row(row: &AnyRow) -> Result<StoredEvent, sqlx::Error> {
    let json: String = row.try_get("json")?;
    Ok(StoredEvent {
        event_id: row.try_get("event_id")?,
        room_id: row.try_get("room_id")?,
        stream_ordering: row.try_get("stream_ordering")?,
        depth: row.try_get("depth")?,
        json: serde_json::from_str(&json).unwrap_or(Value::Null),
        rejected: row.try_get::<i64, _>("rejected")? != 0,
        state_group_before: row.try_get("state_group_before")?,
        state_group_after: row.try_get("state_group_after")?,
        outlier: row.try_get::<i64, _>("outlier")? != 0,
    })
}

fn membership_from_row(row: &AnyRow) -> Result<Membership, sqlx::Error> {
    Ok(Membership {
        room_id: row.try_get("room_id")?,
        user_id: row.try_get("user_id")?,
        membership: row.try_get("membership")?,
        event_id: row.try_get("event_id")?,
        sender: row.try_get("sender")?,
        displayname: row.try_get("displayname")?,
        avatar_url: row.try_get("avatar_url")?,
        stream_ordering: row.try_get("stream_ordering")?,
        forgotten: row.try_get::<i64, _>("forgotten")? != 0,
    })
}

pub(super) const EVENT_COLUMNS: &str =
    "event_id, room_id, stream_ordering, depth, json, rejected, state_group_before, state_group_after, outlier";
const MEMBERSHIP_COLUMNS: &str =
    "room_id, user_id, membership, event_id, sender, displayname, avatar_url, stream_ordering, forgotten";

impl Store {
    pub async fn create_room_record(&self, room_id: &str, version: &str, creator: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES ($1, $2, $3, $4)")
            .bind(room_id)
            .bind(version)
            .bind(creator)
            .bind(now_ms())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records a room this server joined over federation (kept if already known).
    pub async fn create_remote_room_record(
        &self,
        room_id: &str,
        version: &str,
        creator: &str,
    ) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (room_id) DO NOTHING",
        )
        .bind(room_id)
        .bind(version)
        .bind(creator)
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await
    }

    pub async fn put_alias(&self, alias: &str, room_id: &str, creator: &str) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3) ON CONFLICT (alias) DO NOTHING",
        )
        .bind(alias)
        .bind(room_id)
        .bind(creator)
        .execute(&mut *txn.tx)
        .await?
        .rows_affected();
        txn.commit().await?;
        Ok(inserted == 1)
    }

    /// `(room id, creator)` of an alias.
    pub async fn get_alias(&self, alias: &str) -> Result<Option<(String, String)>, sqlx::Error> {
        let row = sqlx::query("SELECT room_id, creator FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).transpose()
    }

    pub async fn delete_alias(&self, alias: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("DELETE FROM room_aliases WHERE alias = $1").bind(alias).execute(&mut *txn.tx).await?;
        txn.commit().await
    }

    pub async fn set_room_published(&self, room_id: &str, published: bool) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("UPDATE rooms SET published = $1 WHERE room_id = $2")
            .bind(i64::from(published))
            .bind(room_id)
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await
    }

    /// Whether a room is listed in the local public room directory (`None`: unknown room).
    pub async fn room_published(&self, room_id: &str) -> Result<Option<bool>, sqlx::Error> {
        let row = sqlx::query("SELECT published FROM rooms WHERE room_id = $1")
            .bind(room_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| Ok(row.try_get::<i64, _>(0)? != 0)).transpose()
    }

    /// Points every alias of a room at another (a room upgrade moves them).
    pub async fn move_aliases(&self, from_room: &str, to_room: &str) -> Result<Vec<String>, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let rows = sqlx::query("SELECT alias FROM room_aliases WHERE room_id = $1")
            .bind(from_room)
            .fetch_all(&mut *txn.tx)
            .await?;
        sqlx::query("UPDATE room_aliases SET room_id = $2 WHERE room_id = $1")
            .bind(from_room)
            .bind(to_room)
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    /// Rooms listed in the local public room directory.
    pub async fn published_rooms(&self) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query("SELECT room_id FROM rooms WHERE published = 1 ORDER BY created_ts")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    pub async fn room_version(&self, room_id: &str) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query("SELECT room_version FROM rooms WHERE room_id = $1")
            .bind(room_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| row.try_get(0)).transpose()
    }

    /// Persists an event with its edges, state groups, extremities, current state, deltas
    /// and memberships. Returns the event's stream ordering.
    pub async fn persist_event(&self, event: PersistEvent<'_>) -> Result<i64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let ordering = insert_event(&mut txn, &event).await?;
        if !event.rejected && !event.outlier {
            update_extremities(&mut txn, event.room_id, event.event_id, event.prev_events).await?;
        }
        let kept_state = match event.new_current_state {
            Some(state) => update_current_state(&mut txn, &self.current_states, event.room_id, state).await?,
            None => None,
        };
        if event.mirror_membership
            && event.event_type == "m.room.member"
            && let Some(state_key) = event.state_key
        {
            update_membership(&mut txn, event.room_id, state_key, Some(&event.event_id.to_owned())).await?;
        }
        if let Some((user, device, txn_id)) = event.client_txn {
            sqlx::query(
                "INSERT INTO event_txn_ids (user_id, device_id, room_id, txn_id, event_id) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(user)
            .bind(device)
            .bind(event.room_id)
            .bind(txn_id)
            .bind(event.event_id)
            .execute(&mut *txn.tx)
            .await?;
        }
        txn.commit().await?;
        if let Some((position, state)) = kept_state {
            self.current_states.put(event.room_id, position, state);
        }
        Ok(ordering)
    }

    /// Persists many outliers (a join's state and auth chain) in one transaction,
    /// skipping those already held.
    pub async fn persist_outliers(&self, events: &[PersistEvent<'_>]) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        for event in events {
            let known = sqlx::query("SELECT 1 FROM events WHERE event_id = $1")
                .bind(event.event_id)
                .fetch_optional(&mut *txn.tx)
                .await?;
            if known.is_none() {
                insert_event(&mut txn, event).await?;
            }
        }
        txn.commit().await
    }

    pub async fn get_event(&self, event_id: &str) -> Result<Option<StoredEvent>, sqlx::Error> {
        let row = sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1"))
            .bind(event_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// Forgets a room's forward extremities (its DAG tips from before this server left).
    pub async fn clear_forward_extremities(&self, room_id: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("DELETE FROM forward_extremities WHERE room_id = $1").bind(room_id).execute(&mut *txn.tx).await?;
        txn.commit().await
    }

    /// The room's forward extremities with their depth and state group after.
    pub async fn forward_extremities(&self, room_id: &str) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN \
             (SELECT event_id FROM forward_extremities WHERE room_id = $1) ORDER BY stream_ordering"
        ))
        .bind(room_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The full state a group stands for.
    pub async fn state_group(&self, group_id: i64) -> Result<StateMap, sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        load_state_group(&mut conn, group_id).await
    }

    /// One group as stored: the group it is a delta on (None for a full snapshot) and
    /// its own entries.
    pub async fn state_group_delta(&self, group_id: i64) -> Result<(Option<i64>, StateMap), sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        let prev = previous_group(&mut conn, group_id).await?;
        let entries = group_entries(&mut conn, group_id).await?;
        Ok((prev, entries))
    }

    /// Only some entries of a group's state: what `keys` map to.
    pub async fn state_group_entries(
        &self,
        group_id: i64,
        keys: &[(&str, &str)],
    ) -> Result<Vec<Option<String>>, sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        let mut found: Vec<Option<String>> = vec![None; keys.len()];
        let mut next = Some(group_id);
        // Newest delta first: the first hit for a key is its value in this group.
        while let Some(group) = next {
            for (i, (event_type, state_key)) in keys.iter().enumerate() {
                if found[i].is_some() {
                    continue;
                }
                let row = sqlx::query(
                    "SELECT event_id FROM state_group_entries WHERE group_id = $1 AND event_type = $2 AND state_key = $3",
                )
                .bind(group)
                .bind(*event_type)
                .bind(*state_key)
                .fetch_optional(&mut *conn)
                .await?;
                found[i] = row.map(|row| row.try_get(0)).transpose()?;
            }
            if found.iter().all(Option::is_some) {
                break;
            }
            next = previous_group(&mut conn, group).await?;
        }
        Ok(found)
    }

    pub async fn current_state(&self, room_id: &str) -> Result<StateMap, sqlx::Error> {
        let rows = sqlx::query("SELECT event_type, state_key, event_id FROM current_state WHERE room_id = $1")
            .bind(room_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| Ok(((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?))).collect()
    }

    /// The room's current state events with an empty state key (name, topic, join rules…:
    /// everything but per-user state), in one query.
    pub async fn room_level_state(&self, room_id: &str) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN \
             (SELECT event_id FROM current_state WHERE room_id = $1 AND state_key = '')"
        ))
        .bind(room_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// How many users are joined to the room now.
    pub async fn joined_member_count(&self, room_id: &str) -> Result<u64, sqlx::Error> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM room_memberships WHERE room_id = $1 AND membership = 'join'")
                .bind(room_id)
                .fetch_one(self.pool())
                .await?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Only some entries of a room's current state: those of `keys` it has.
    pub async fn current_state_entries(
        &self,
        room_id: &str,
        keys: &[(String, String)],
    ) -> Result<StateMap, sqlx::Error> {
        let mut conn = self.pool().acquire().await?;
        let mut found = StateMap::new();
        for (event_type, state_key) in keys {
            let row = sqlx::query(
                "SELECT event_id FROM current_state WHERE room_id = $1 AND event_type = $2 AND state_key = $3",
            )
            .bind(room_id)
            .bind(event_type)
            .bind(state_key)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = row {
                found.insert((event_type.clone(), state_key.clone()), row.try_get(0)?);
            }
        }
        Ok(found)
    }

    pub async fn current_state_event(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<StoredEvent>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = \
             (SELECT event_id FROM current_state WHERE room_id = $1 AND event_type = $2 AND state_key = $3)"
        ))
        .bind(room_id)
        .bind(event_type)
        .bind(state_key)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    pub async fn events_by_id(&self, event_ids: &[String]) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let mut events = Vec::with_capacity(event_ids.len());
        for chunk in event_ids.chunks(200) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN ({})", placeholders.join(", "));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(self.pool()).await? {
                events.push(event_from_row(&row)?);
            }
        }
        Ok(events)
    }

    /// `(event id, stream ordering, JSON as stored)` of the events of `event_ids` that are
    /// held.
    pub async fn event_json_by_id(&self, event_ids: &[String]) -> Result<Vec<(String, i64, String)>, sqlx::Error> {
        let mut found = Vec::with_capacity(event_ids.len());
        for chunk in event_ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT event_id, stream_ordering, json FROM events WHERE event_id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(self.pool()).await? {
                found.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
            }
        }
        Ok(found)
    }

    /// The `auth_events` of the events of `event_ids` that are held (only that field of
    /// each event is parsed).
    pub async fn auth_events_of(&self, event_ids: &[String]) -> Result<Vec<(String, Vec<String>)>, sqlx::Error> {
        #[derive(serde::Deserialize)]
        struct AuthEvents {
            #[serde(default)]
            auth_events: Vec<String>,
        }
        let mut found = Vec::with_capacity(event_ids.len());
        for chunk in event_ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("SELECT event_id, json FROM events WHERE event_id IN ({})", placeholders.join(", "));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(self.pool()).await? {
                let json: String = row.try_get(1)?;
                let auth = serde_json::from_str::<AuthEvents>(&json).map(|a| a.auth_events).unwrap_or_default();
                found.push((row.try_get(0)?, auth));
            }
        }
        Ok(found)
    }

    pub async fn membership(&self, room_id: &str, user_id: &str) -> Result<Option<Membership>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {MEMBERSHIP_COLUMNS} FROM room_memberships WHERE room_id = $1 AND user_id = $2"
        ))
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(membership_from_row).transpose()
    }

    /// The members of one server joined to the room, by user id (from the index on
    /// servers, not every member's row).
    pub async fn joined_members_of_server(&self, room_id: &str, server: &str) -> Result<Vec<Membership>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {MEMBERSHIP_COLUMNS} FROM room_memberships \
             WHERE room_id = $1 AND membership = 'join' AND server_name = $2 ORDER BY user_id"
        ))
        .bind(room_id)
        .bind(server)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(membership_from_row).collect()
    }

    /// Up to `limit` joined or invited members other than `except`, longest-standing first.
    pub async fn oldest_members(&self, room_id: &str, except: &str, limit: usize) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT user_id FROM room_memberships WHERE room_id = $1 AND membership IN ('join', 'invite') \
             AND user_id <> $2 ORDER BY stream_ordering, user_id LIMIT $3",
        )
        .bind(room_id)
        .bind(except)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    pub(super) async fn memberships_where(&self, condition: &str, key: &str) -> Result<Vec<Membership>, sqlx::Error> {
        let rows = sqlx::query(&format!("SELECT {MEMBERSHIP_COLUMNS} FROM room_memberships WHERE {condition}"))
            .bind(key)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(membership_from_row).collect()
    }

    pub async fn forget_room(&self, room_id: &str, user_id: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.memberships = true;
        sqlx::query("UPDATE room_memberships SET forgotten = 1 WHERE room_id = $1 AND user_id = $2")
            .bind(room_id)
            .bind(user_id)
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await
    }

    /// Accepted events of a room with `after < stream_ordering <= up_to`, oldest first
    /// (`forwards`) or newest first, at most `limit`.
    pub async fn room_events(
        &self,
        room_id: &str,
        after: i64,
        up_to: i64,
        forwards: bool,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        if let Some(events) = self.kept_room_events(room_id, after, up_to, forwards, limit) {
            return Ok(events);
        }
        let order = if forwards { "ASC" } else { "DESC" };
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND stream_ordering > $2 \
             AND stream_ordering <= $3 AND rejected = 0 AND outlier = 0 ORDER BY stream_ordering {order} LIMIT $4"
        ))
        .bind(room_id)
        .bind(after)
        .bind(up_to)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The stream position of a room's newest accepted event at or before `up_to`, of
    /// one of `types` when some are given.
    pub async fn newest_event_position(
        &self,
        room_id: &str,
        types: &[&str],
        up_to: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let type_condition = if types.is_empty() {
            String::new()
        } else {
            let placeholders: Vec<String> = (0..types.len()).map(|i| format!("${}", i + 3)).collect();
            format!("AND event_type IN ({})", placeholders.join(", "))
        };
        let sql = format!(
            "SELECT stream_ordering FROM events WHERE room_id = $1 AND stream_ordering <= $2 AND rejected = 0 \
             AND outlier = 0 {type_condition} ORDER BY stream_ordering DESC LIMIT 1"
        );
        let mut query = sqlx::query(&sql).bind(room_id).bind(up_to);
        for kind in types {
            query = query.bind(*kind);
        }
        query.fetch_optional(self.pool()).await?.map(|row| row.try_get(0)).transpose()
    }

    /// For each of `room_ids` with accepted events, the position of its newest one at or
    /// before `up_to` (as [`Self::newest_event_position`] of any type, in one query).
    pub async fn newest_event_positions(
        &self,
        room_ids: &[&str],
        up_to: i64,
    ) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let mut newest = Vec::with_capacity(room_ids.len());
        for chunk in room_ids.chunks(200) {
            let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT room_id, MAX(stream_ordering) FROM events WHERE room_id IN ({}) AND stream_ordering <= $1 \
                 AND rejected = 0 AND outlier = 0 GROUP BY room_id",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(up_to);
            for room_id in chunk {
                query = query.bind(*room_id);
            }
            for row in query.fetch_all(self.pool()).await? {
                newest.push((row.try_get(0)?, row.try_get(1)?));
            }
        }
        Ok(newest)
    }

    /// The newest bump event (see [`BUMP_EVENT_TYPES`]) of each room that had one in the
    /// stream range `(after, up_to]`: what moved rooms up lists since `after`.
    pub async fn bump_stamps_between(&self, after: i64, up_to: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let types: Vec<String> = (0..BUMP_EVENT_TYPES.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT room_id, MAX(stream_ordering) FROM events WHERE stream_ordering > $1 AND stream_ordering <= $2 \
             AND rejected = 0 AND outlier = 0 AND event_type IN ({}) GROUP BY room_id",
            types.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(after).bind(up_to);
        for event_type in BUMP_EVENT_TYPES {
            query = query.bind(*event_type);
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// The bump stamp (see [`BUMP_EVENT_TYPES`]) of each room a user is joined to that has
    /// one: one indexed read per room, whatever the length of its history.
    pub async fn joined_bump_stamps(&self, user_id: &str) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT m.room_id, r.bump_stamp FROM room_memberships m JOIN rooms r ON r.room_id = m.room_id \
             WHERE m.user_id = $1 AND m.membership = 'join' AND r.bump_stamp IS NOT NULL",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    pub async fn max_event_ordering(&self) -> Result<i64, sqlx::Error> {
        let row =
            sqlx::query("SELECT position FROM stream_positions WHERE stream = 'events'").fetch_one(self.pool()).await?;
        row.try_get(0)
    }

    pub async fn event_for_txn(
        &self,
        user: &str,
        device: &str,
        room_id: &str,
        txn_id: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT event_id FROM event_txn_ids WHERE user_id = $1 AND device_id = $2 AND room_id = $3 AND txn_id = $4",
        )
        .bind(user)
        .bind(device)
        .bind(room_id)
        .bind(txn_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| row.try_get(0)).transpose()
    }

    /// Replaces an event's stored JSON with its redacted form.
    pub async fn redact_event(&self, event_id: &str, redacted: &Value, redacted_by: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.events = true;
        sqlx::query("UPDATE events SET json = $1, redacted_by = $2 WHERE event_id = $3")
            .bind(redacted.to_string())
            .bind(redacted_by)
            .bind(event_id)
            .execute(&mut *txn.tx)
            .await?;
        sqlx::query("DELETE FROM event_relations WHERE event_id = $1").bind(event_id).execute(&mut *txn.tx).await?;
        txn.commit().await
    }

    /// The current-state-delta stream after `after`, oldest first.
    pub async fn current_state_deltas_since(&self, after: i64, limit: i64) -> Result<Vec<StateDelta>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT stream_id, room_id, event_type, state_key, event_id, prev_event_id FROM current_state_deltas \
             WHERE stream_id > $1 ORDER BY stream_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StateDelta {
                    stream_id: row.try_get(0)?,
                    room_id: row.try_get(1)?,
                    event_type: row.try_get(2)?,
                    state_key: row.try_get(3)?,
                    event_id: row.try_get(4)?,
                    prev_event_id: row.try_get(5)?,
                })
            })
            .collect()
    }

    pub async fn all_room_events(&self, room_id: &str) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let rows =
            sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 ORDER BY stream_ordering"))
                .bind(room_id)
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(event_from_row).collect()
    }
}

/// Writes the event row, its edges and its state groups; returns its stream ordering.
async fn insert_event(txn: &mut WriteTxn<'_>, event: &PersistEvent<'_>) -> Result<i64, sqlx::Error> {
    let ordering = streams::next_position(txn, "events").await?;
    let group_before = match event.state_before {
        StateBefore::Group(group) => Some(group),
        StateBefore::Snapshot(state) => Some(new_state_group(txn, event.room_id, None, state).await?),
        StateBefore::Unknown => None,
    };
    let group_after = match (event.state_key, event.rejected, group_before) {
        (Some(state_key), false, Some(before)) => {
            let mut delta = StateMap::new();
            delta.insert((event.event_type.to_owned(), state_key.to_owned()), event.event_id.to_owned());
            Some(new_state_group(txn, event.room_id, Some(before), &delta).await?)
        }
        _ => group_before,
    };
    if !event.outlier {
        // An event held as an outlier (an auth event, a join's state, a soft-failed event)
        // becomes part of the timeline: its new row replaces the old one.
        let replaced = sqlx::query("DELETE FROM events WHERE event_id = $1 AND outlier = 1")
            .bind(event.event_id)
            .execute(&mut *txn.tx)
            .await?
            .rows_affected();
        if replaced > 0 {
            txn.replaced_outliers.push(event.event_id.to_owned());
        }
    }
    let json_text = event.json.to_string();
    let json_bytes = json_text.len();
    sqlx::query(
        "INSERT INTO events (event_id, room_id, stream_ordering, depth, event_type, state_key, sender, \
         origin_server_ts, json, rejected, state_group_before, state_group_after, outlier) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(event.event_id)
    .bind(event.room_id)
    .bind(ordering)
    .bind(event.depth)
    .bind(event.event_type)
    .bind(event.state_key)
    .bind(event.sender)
    .bind(event.origin_server_ts)
    .bind(json_text)
    .bind(i64::from(event.rejected))
    .bind(group_before)
    .bind(group_after)
    .bind(i64::from(event.outlier))
    .execute(&mut *txn.tx)
    .await?;
    if !event.outlier && !event.rejected && BUMP_EVENT_TYPES.contains(&event.event_type) {
        sqlx::query("UPDATE rooms SET bump_stamp = $1 WHERE room_id = $2 AND (bump_stamp IS NULL OR bump_stamp < $1)")
            .bind(ordering)
            .bind(event.room_id)
            .execute(&mut *txn.tx)
            .await?;
    }
    if !event.outlier && !event.rejected {
        let indexed = relations::StoredEventRef {
            event_id: event.event_id,
            room_id: event.room_id,
            event_type: event.event_type,
            sender: event.sender,
            stream_ordering: ordering,
            json: event.json,
        };
        relations::record(txn, &indexed).await?;
    }
    for prev in event.prev_events {
        sqlx::query("INSERT INTO event_edges (event_id, prev_event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(event.event_id)
            .bind(prev)
            .execute(&mut *txn.tx)
            .await?;
    }
    let stored = StoredEvent {
        event_id: event.event_id.to_owned(),
        room_id: event.room_id.to_owned(),
        stream_ordering: ordering,
        depth: event.depth,
        json: event.json.clone(),
        rejected: event.rejected,
        state_group_before: group_before,
        state_group_after: group_after,
        outlier: event.outlier,
    };
    txn.written_events.push((stored, json_bytes));
    Ok(ordering)
}

pub(super) async fn new_state_group(
    txn: &mut WriteTxn<'_>,
    room_id: &str,
    prev_group: Option<i64>,
    delta: &StateMap,
) -> Result<i64, sqlx::Error> {
    let group = streams::next_position(txn, "state_groups").await?;
    let chain_length = match prev_group {
        Some(prev) => {
            let row = sqlx::query("SELECT chain_length FROM state_groups WHERE group_id = $1")
                .bind(prev)
                .fetch_one(&mut *txn.tx)
                .await?;
            row.try_get::<i64, _>(0)? + 1
        }
        None => 0,
    };
    // Past the cap, store the full state and start a new chain.
    let (prev_group, chain_length, entries) = if chain_length > MAX_STATE_CHAIN {
        let mut full = load_state_group(&mut txn.tx, prev_group.unwrap_or_default()).await?;
        full.extend(delta.iter().map(|(k, v)| (k.clone(), v.clone())));
        (None, 0, full)
    } else {
        (prev_group, chain_length, delta.clone())
    };
    sqlx::query("INSERT INTO state_groups (group_id, room_id, prev_group, chain_length) VALUES ($1, $2, $3, $4)")
        .bind(group)
        .bind(room_id)
        .bind(prev_group)
        .bind(chain_length)
        .execute(&mut *txn.tx)
        .await?;
    insert_group_entries(txn, group, &entries).await?;
    Ok(group)
}

/// Rows written per statement when storing a group (a snapshot of a big room is tens of
/// thousands of rows; one statement each would be as many round trips).
const ENTRIES_PER_INSERT: usize = 250;

async fn insert_group_entries(txn: &mut WriteTxn<'_>, group: i64, entries: &StateMap) -> Result<(), sqlx::Error> {
    let entries: Vec<_> = entries.iter().collect();
    for chunk in entries.chunks(ENTRIES_PER_INSERT) {
        let values: Vec<String> =
            (0..chunk.len()).map(|i| format!("($1, ${}, ${}, ${})", 3 * i + 2, 3 * i + 3, 3 * i + 4)).collect();
        let sql = format!(
            "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(group);
        for ((event_type, state_key), event_id) in chunk {
            query = query.bind(event_type.as_str()).bind(state_key.as_str()).bind(event_id.as_str());
        }
        query.execute(&mut *txn.tx).await?;
    }
    Ok(())
}

/// The group a state group is a delta on, if any.
async fn previous_group(conn: &mut sqlx::AnyConnection, group: i64) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query("SELECT prev_group FROM state_groups WHERE group_id = $1")
        .bind(group)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(row) => row.try_get(0)?,
        None => None,
    })
}

/// Walks a group's delta chain back to its full snapshot and applies it forwards.
async fn load_state_group(conn: &mut sqlx::AnyConnection, group_id: i64) -> Result<StateMap, sqlx::Error> {
    let mut chain = Vec::new();
    let mut next = Some(group_id);
    while let Some(group) = next {
        chain.push(group);
        next = previous_group(conn, group).await?;
    }
    let mut state = StateMap::new();
    for group in chain.into_iter().rev() {
        state.extend(group_entries(conn, group).await?);
    }
    Ok(state)
}

/// The entries stored with one group (all of it for a snapshot, its delta otherwise).
async fn group_entries(conn: &mut sqlx::AnyConnection, group_id: i64) -> Result<StateMap, sqlx::Error> {
    let rows = sqlx::query("SELECT event_type, state_key, event_id FROM state_group_entries WHERE group_id = $1")
        .bind(group_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|row| Ok(((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?))).collect()
}

async fn update_extremities(
    txn: &mut WriteTxn<'_>,
    room_id: &str,
    event_id: &str,
    prev_events: &[String],
) -> Result<(), sqlx::Error> {
    for prev in prev_events {
        sqlx::query("DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = $2")
            .bind(room_id)
            .bind(prev)
            .execute(&mut *txn.tx)
            .await?;
    }
    sqlx::query("INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(room_id)
        .bind(event_id)
        .execute(&mut *txn.tx)
        .await?;
    Ok(())
}

/// `(key, new event, previous event)` of one change of current state.
type StateChange = ((String, String), Option<String>, Option<String>);

/// Writes the difference between the stored current state and `state`: current_state
/// rows, one delta-stream row per change, and the membership mirror. The stored state is
/// the kept copy when it is still the room's (see `current_states`), taken out and
/// changed in place rather than copied. Returns what to keep as the room's copy once
/// committed, with the position of the room's last delta.
pub(super) async fn update_current_state(
    txn: &mut WriteTxn<'_>,
    kept: &CurrentStates,
    room_id: &str,
    state: NewCurrentState<'_>,
) -> Result<Option<(i64, Arc<StateMap>)>, sqlx::Error> {
    let mut last = current_states::last_delta(txn, room_id).await?;
    let old = match last.and_then(|at| kept.take(room_id, at)) {
        Some(old) => old,
        None => Arc::new(read_current_state(txn, room_id).await?),
    };
    let changes = state_changes(&old, state);
    for ((event_type, state_key), new, previous) in &changes {
        write_state_change(txn, room_id, (event_type, state_key), new.as_ref()).await?;
        let position = streams::next_position(txn, STATE_DELTA_STREAM).await?;
        sqlx::query(
            "INSERT INTO current_state_deltas (stream_id, room_id, event_type, state_key, event_id, prev_event_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(position)
        .bind(room_id)
        .bind(event_type)
        .bind(state_key)
        .bind(new)
        .bind(previous)
        .execute(&mut *txn.tx)
        .await?;
        if event_type == "m.room.member" {
            update_membership(txn, room_id, state_key, new.as_ref()).await?;
        }
        last = Some(position);
    }
    let Some(last) = last else { return Ok(None) };
    // Nobody else holds the copy taken out, so this changes it without copying it.
    let mut current = Arc::unwrap_or_clone(old);
    for (key, new, _) in changes {
        match new {
            Some(event_id) => current.insert(key, event_id),
            None => current.remove(&key),
        };
    }
    Ok(Some((last, Arc::new(current))))
}

/// One current_state row written or removed.
async fn write_state_change(
    txn: &mut WriteTxn<'_>,
    room_id: &str,
    (event_type, state_key): (&str, &str),
    new: Option<&String>,
) -> Result<(), sqlx::Error> {
    let query = match new {
        Some(event_id) => sqlx::query(
            "INSERT INTO current_state (room_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id",
        )
        .bind(room_id)
        .bind(event_type)
        .bind(state_key)
        .bind(event_id),
        None => sqlx::query("DELETE FROM current_state WHERE room_id = $1 AND event_type = $2 AND state_key = $3")
            .bind(room_id)
            .bind(event_type)
            .bind(state_key),
    };
    query.execute(&mut *txn.tx).await?;
    Ok(())
}

async fn read_current_state(txn: &mut WriteTxn<'_>, room_id: &str) -> Result<StateMap, sqlx::Error> {
    let rows = sqlx::query("SELECT event_type, state_key, event_id FROM current_state WHERE room_id = $1")
        .bind(room_id)
        .fetch_all(&mut *txn.tx)
        .await?;
    rows.iter().map(|row| Ok(((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?))).collect()
}

/// What differs between two states, in key order: the maps walked side by side, then
/// the new state's own entry (if any) put in its place.
fn state_changes(old: &StateMap, new: NewCurrentState<'_>) -> Vec<StateChange> {
    let mut changes = map_changes(old, new.state);
    if let Some((key, _)) = new.with {
        let at = changes.partition_point(|(changed, _, _)| changed < key);
        if changes.get(at).is_some_and(|(changed, _, _)| changed == key) {
            changes.remove(at);
        }
        let (now, before) = (new.get(key), old.get(key));
        if now != before {
            changes.insert(at, (key.clone(), now.cloned(), before.cloned()));
        }
    }
    changes
}

fn map_changes(old: &StateMap, new: &StateMap) -> Vec<StateChange> {
    use std::cmp::Ordering;
    let mut changes = Vec::new();
    let (mut old_entries, mut new_entries) = (old.iter().peekable(), new.iter().peekable());
    loop {
        let order = match (old_entries.peek(), new_entries.peek()) {
            (None, None) => return changes,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((old_key, _)), Some((new_key, _))) => old_key.cmp(new_key),
        };
        let (old_entry, new_entry) = match order {
            Ordering::Less => (old_entries.next(), None),
            Ordering::Greater => (None, new_entries.next()),
            Ordering::Equal => (old_entries.next(), new_entries.next()),
        };
        match (old_entry, new_entry) {
            (Some((key, old_id)), Some((_, new_id))) if old_id != new_id => {
                changes.push((key.clone(), Some(new_id.clone()), Some(old_id.clone())));
            }
            (Some((key, old_id)), None) => changes.push((key.clone(), None, Some(old_id.clone()))),
            (None, Some((key, new_id))) => changes.push((key.clone(), Some(new_id.clone()), None)),
            _ => {}
        }
    }
}

async fn update_membership(
    txn: &mut WriteTxn<'_>,
    room_id: &str,
    user_id: &str,
    event_id: Option<&String>,
) -> Result<(), sqlx::Error> {
    txn.forgets.memberships = true;
    let Some(event_id) = event_id else {
        sqlx::query("DELETE FROM room_memberships WHERE room_id = $1 AND user_id = $2")
            .bind(room_id)
            .bind(user_id)
            .execute(&mut *txn.tx)
            .await?;
        return Ok(());
    };
    let row = sqlx::query("SELECT json, sender, stream_ordering FROM events WHERE event_id = $1")
        .bind(event_id)
        .fetch_one(&mut *txn.tx)
        .await?;
    let json: String = row.try_get(0)?;
    let sender: String = row.try_get(1)?;
    let ordering: i64 = row.try_get(2)?;
    let json: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
    let content = &json["content"];
    let membership = content["membership"].as_str().unwrap_or("leave");
    sqlx::query(
        "INSERT INTO room_memberships (room_id, user_id, membership, event_id, sender, displayname, avatar_url, \
         stream_ordering, forgotten, server_name) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9) \
         ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, \
         event_id = excluded.event_id, sender = excluded.sender, displayname = excluded.displayname, \
         avatar_url = excluded.avatar_url, stream_ordering = excluded.stream_ordering, forgotten = 0",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(membership)
    .bind(event_id)
    .bind(sender)
    // Another server's member event may carry U+0000, which PostgreSQL text cannot hold.
    .bind(content["displayname"].as_str().map(|name| name.replace('\0', "\u{FFFD}")))
    .bind(content["avatar_url"].as_str().map(|url| url.replace('\0', "\u{FFFD}")))
    .bind(ordering)
    .bind(server_of(user_id))
    .execute(&mut *txn.tx)
    .await?;
    Ok(())
}

/// The server part of a user ID (everything after the first `:`; empty if none).
pub(super) fn server_of(user_id: &str) -> &str {
    user_id.split_once(':').map_or("", |(_, server)| server)
}

/// Fills `room_memberships.server_name` for rows written before it existed, in one
/// statement (the two backends name "position of a character" differently).
pub(super) async fn backfill_member_servers(txn: &mut WriteTxn<'_>) -> Result<u64, sqlx::Error> {
    let position = match txn.store.backend() {
        super::Backend::Sqlite => "instr(user_id, ':')",
        super::Backend::Postgres => "strpos(user_id, ':')",
    };
    let sql = format!(
        "UPDATE room_memberships SET server_name = substr(user_id, {position} + 1) \
         WHERE server_name = '' AND {position} > 0"
    );
    Ok(sqlx::query(&sql).execute(&mut *txn.tx).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(entries: &[(&str, &str, &str)]) -> StateMap {
        entries.iter().map(|(kind, key, id)| (((*kind).to_owned(), (*key).to_owned()), (*id).to_owned())).collect()
    }

    /// Rows written before the column existed get the server after the user ID's first
    /// `:` (a port included).
    #[tokio::test]
    async fn member_servers_are_filled_for_older_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kith.db").display().to_string();
        let store = Store::connect(&crate::config::DatabaseTarget::Sqlite { path }).await.unwrap();
        for user in ["@a:one.example", "@b:two.example:8448"] {
            sqlx::query(
                "INSERT INTO room_memberships (room_id, user_id, membership, event_id, sender, stream_ordering, \
                 forgotten) VALUES ('!r:x', $1, 'join', $1, $1, 1, 0)",
            )
            .bind(user)
            .execute(store.pool())
            .await
            .unwrap();
        }
        let mut txn = store.begin_write().await.unwrap();
        assert_eq!(backfill_member_servers(&mut txn).await.unwrap(), 2);
        txn.commit().await.unwrap();
        assert_eq!(store.joined_servers("!r:x").await.unwrap(), ["one.example", "two.example:8448"]);
    }

    #[test]
    fn state_changes_lists_added_replaced_and_removed_keys_in_order() {
        let old =
            state(&[("m.room.create", "", "$c"), ("m.room.member", "@a:x", "$a1"), ("m.room.member", "@b:x", "$b")]);
        let new = state(&[("m.room.create", "", "$c"), ("m.room.member", "@a:x", "$a2"), ("m.room.name", "", "$n")]);
        let changes: Vec<(String, Option<String>, Option<String>)> = state_changes(&old, NewCurrentState::full(&new))
            .into_iter()
            .map(|((_, key), new, old)| (key, new, old))
            .collect();
        let expected = vec![
            ("@a:x".to_owned(), Some("$a2".to_owned()), Some("$a1".to_owned())),
            ("@b:x".to_owned(), None, Some("$b".to_owned())),
            (String::new(), Some("$n".to_owned()), None),
        ];
        assert_eq!(changes, expected);
        assert!(state_changes(&new, NewCurrentState::full(&new)).is_empty());
    }

    #[test]
    fn an_own_entry_on_top_of_a_shared_state_is_one_change_in_its_place() {
        let old = state(&[("m.room.create", "", "$c"), ("m.room.member", "@a:x", "$a1")]);
        let key = ("m.room.member".to_owned(), "@a:x".to_owned());
        let (joined, again) = ("$a2".to_owned(), "$a1".to_owned());
        let on_top = |id| NewCurrentState { state: &old, with: Some((&key, id)) };
        let changes = state_changes(&old, on_top(&joined));
        assert_eq!(changes, vec![(key.clone(), Some(joined.clone()), Some(again.clone()))]);
        assert!(state_changes(&old, on_top(&again)).is_empty());
        let added = ("m.room.member".to_owned(), "@b:x".to_owned());
        let with_b = NewCurrentState { state: &old, with: Some((&added, &joined)) };
        assert_eq!(state_changes(&old, with_b), vec![(added.clone(), Some(joined.clone()), None)]);
    }
}
