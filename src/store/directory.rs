//! What the user directory index is derived from: local accounts and global profiles,
//! joined memberships of rooms with a local member, and whether those rooms are public.

use std::collections::HashSet;

use futures_util::TryStreamExt;
use serde::de::DeserializeOwned;
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, Row};

use super::{Backend, Store};

/// Rows per batch of a whole-table scan on SQLite (`Store::scan_in_batches`).
const SCAN_BATCH: i64 = 4096;

/// user, deactivated, locked, user type, display name and avatar (as stored JSON).
type AccountRow = (String, i64, i64, Option<String>, Option<String>, Option<String>);
/// room, user, display name, avatar, stream ordering.
type MemberRow = (String, String, Option<String>, Option<String>, i64);

#[derive(Debug, Clone)]
pub struct LocalAccount {
    pub user_id: String,
    pub deactivated: bool,
    pub locked: bool,
    pub user_type: Option<String>,
}

/// A joined member of a tracked room, with the member event's (room-specific) profile.
#[derive(Debug, Clone)]
pub struct JoinedMember {
    pub room_id: String,
    pub user_id: String,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub stream_ordering: i64,
}

impl Store {
    /// Visits every local account with its global display name and avatar, in one pass.
    /// On SQLite `prepare` runs on another thread, on one batch while `visit` takes the
    /// one before: work that needs nothing of the caller's belongs there.
    pub async fn for_each_local_account<U: Send + 'static>(
        &self,
        prepare: impl Fn(LocalAccount, Option<String>, Option<String>) -> U + Clone + Send + 'static,
        visit: impl FnMut(U),
    ) -> Result<(), sqlx::Error> {
        let prepare_row = move |(user_id, deactivated, locked, user_type, name, avatar): AccountRow| {
            let account = LocalAccount { user_id, deactivated: deactivated != 0, locked: locked != 0, user_type };
            let text = |value: Option<String>| value.and_then(|json| serde_json::from_str::<String>(&json).ok());
            prepare(account, text(name), text(avatar))
        };
        if self.backend() == Backend::Sqlite {
            let sql = "SELECT max(k), json_group_array(json_array(user_id, deactivated, locked, user_type, d, a)) FROM \
                       (SELECT u.rowid AS k, u.user_id, u.deactivated, u.locked, u.user_type, d.value AS d, a.value AS a \
                       FROM users u LEFT JOIN profile_fields d ON d.user_id = u.user_id AND d.field = 'displayname' \
                       LEFT JOIN profile_fields a ON a.user_id = u.user_id AND a.field = 'avatar_url' \
                       WHERE u.rowid > $1 ORDER BY u.rowid LIMIT $2)";
            return self.scan_in_batches(sql, "", prepare_row, visit).await;
        }
        let mut visit = visit;
        let sql = "SELECT u.user_id, u.deactivated, u.locked, u.user_type, d.value, a.value FROM users u \
                   LEFT JOIN profile_fields d ON d.user_id = u.user_id AND d.field = 'displayname' \
                   LEFT JOIN profile_fields a ON a.user_id = u.user_id AND a.field = 'avatar_url'";
        let mut rows = sqlx::query(sql).fetch(self.pool());
        while let Some(row) = rows.try_next().await? {
            let columns = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
            visit(prepare_row((columns.0, columns.1, columns.2, columns.3, row.try_get(4)?, row.try_get(5)?)));
        }
        Ok(())
    }

    pub async fn local_account_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) FROM users").fetch_one(self.pool()).await?.try_get(0)
    }

    pub async fn local_account(&self, user_id: &str) -> Result<Option<LocalAccount>, sqlx::Error> {
        let row = sqlx::query("SELECT user_id, deactivated, locked, user_type FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| {
            Ok(LocalAccount {
                user_id: row.try_get(0)?,
                deactivated: row.try_get::<i64, _>(1)? != 0,
                locked: row.try_get::<i64, _>(2)? != 0,
                user_type: row.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Joined members of one tracked room (one with a local member joined), oldest first.
    pub async fn tracked_joined_members(&self, room_id: &str) -> Result<Vec<JoinedMember>, sqlx::Error> {
        let sql = "SELECT m.room_id, m.user_id, m.displayname, m.avatar_url, m.stream_ordering FROM room_memberships m \
                   WHERE m.room_id = $1 AND m.membership = 'join' AND EXISTS (SELECT 1 FROM room_memberships l \
                   JOIN users u ON u.user_id = l.user_id WHERE l.room_id = m.room_id AND l.membership = 'join') \
                   ORDER BY m.stream_ordering";
        let rows = sqlx::query(sql).bind(room_id).fetch_all(self.pool()).await?;
        rows.iter().map(|row| joined_member(row, row.try_get(2)?, row.try_get(3)?)).collect()
    }

    /// Rooms with a member of `server_name` joined: the rooms the directory tracks.
    pub async fn rooms_joined_by_server(&self, server_name: &str) -> Result<HashSet<String>, sqlx::Error> {
        let rooms = "SELECT DISTINCT room_id FROM room_memberships WHERE membership = 'join' AND server_name = $1";
        if self.backend() == Backend::Sqlite {
            // One row (a JSON array) rather than a wake-up per room (see `scan_in_batches`).
            let folded = format!("SELECT json_group_array(room_id) FROM ({rooms})");
            let row = sqlx::query(&folded).bind(server_name).fetch_one(self.pool()).await?;
            let rooms: String = row.try_get(0)?;
            return serde_json::from_str(&rooms).map_err(|err| sqlx::Error::Decode(Box::new(err)));
        }
        let rows = sqlx::query(rooms).bind(server_name).fetch_all(self.pool()).await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    /// Visits every joined membership of every room, in no particular order (one scan,
    /// no sort). Members of `local_server` come without their per-room profile, which
    /// the directory never shows for them.
    pub async fn for_each_joined_member(
        &self,
        local_server: &str,
        mut visit: impl FnMut(JoinedMember),
    ) -> Result<(), sqlx::Error> {
        let member = |(room_id, user_id, displayname, avatar_url, stream_ordering): MemberRow| JoinedMember {
            room_id,
            user_id,
            displayname,
            avatar_url,
            stream_ordering,
        };
        if self.backend() == Backend::Sqlite {
            let sql = "SELECT max(k), json_group_array(json_array(room_id, user_id, d, a, stream_ordering)) FROM \
                       (SELECT rowid AS k, room_id, user_id, CASE WHEN server_name = $3 THEN NULL ELSE displayname END AS d, \
                       CASE WHEN server_name = $3 THEN NULL ELSE avatar_url END AS a, stream_ordering \
                       FROM room_memberships WHERE rowid > $1 AND membership = 'join' ORDER BY rowid LIMIT $2)";
            return self.scan_in_batches(sql, local_server, member, visit).await;
        }
        let sql = "SELECT room_id, user_id, CASE WHEN server_name = $1 THEN NULL ELSE displayname END, \
                   CASE WHEN server_name = $1 THEN NULL ELSE avatar_url END, stream_ordering \
                   FROM room_memberships WHERE membership = 'join'";
        let mut rows = sqlx::query(sql).bind(local_server).fetch(self.pool());
        while let Some(row) = rows.try_next().await? {
            visit(member((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?)));
        }
        Ok(())
    }

    /// Reads a whole SQLite table in batches: sqlx hands each row of a result from the
    /// connection's thread to this task with a wake-up of its own, which costs more than
    /// reading the row, so `sql` folds up to `$2` rows after rowid `$1` into one JSON
    /// array (with `$3` as a parameter of the caller's), and answers the last rowid. The
    /// next batch is read, decoded and `prepare`d on another thread while the caller
    /// visits this one.
    async fn scan_in_batches<T: DeserializeOwned, U: Send + 'static>(
        &self,
        sql: &'static str,
        parameter: &str,
        prepare: impl Fn(T) -> U + Clone + Send + 'static,
        mut visit: impl FnMut(U),
    ) -> Result<(), sqlx::Error> {
        let parameter = parameter.to_owned();
        let read_ahead = |mut connection: PoolConnection<Any>, after: i64| {
            let (parameter, prepare) = (parameter.clone(), prepare.clone());
            tokio::spawn(async move {
                let batch = match read_batch(&mut connection, sql, after, &parameter).await {
                    // Off the runtime's workers: requests are answered while the scan runs.
                    Ok(Some((last, batch))) => tokio::task::spawn_blocking(move || prepare_batch(&batch, prepare))
                        .await
                        .map_err(|err| sqlx::Error::Io(std::io::Error::other(err)))
                        .and_then(|rows| Ok(Some((last, rows?)))),
                    Ok(None) => Ok(None),
                    Err(err) => Err(err),
                };
                (connection, batch)
            })
        };
        // One connection for the whole scan: each maps the database file on its own.
        let mut next = read_ahead(self.pool().acquire().await?, 0);
        loop {
            let (connection, batch) = next.await.map_err(|err| sqlx::Error::Io(std::io::Error::other(err)))?;
            let Some((last, rows)): Option<(i64, Vec<U>)> = batch? else { return Ok(()) };
            next = read_ahead(connection, last);
            // A task spawned from a task waits in this worker's own slot, which no other
            // worker takes: let it send its query before this worker turns to `visit`.
            tokio::task::yield_now().await;
            rows.into_iter().for_each(&mut visit);
        }
    }

    pub async fn tracked_membership_count(&self) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT COUNT(*) FROM room_memberships WHERE membership = 'join'")
            .fetch_one(self.pool())
            .await?;
        row.try_get(0)
    }

    /// Rooms whose current join rule is `public` or history visibility `world_readable`.
    /// The content is read in SQL: at start-up every room's two events would otherwise
    /// cross to this task one row (and one parse) at a time.
    pub async fn public_room_ids(&self, room_id: Option<&str>) -> Result<Vec<String>, sqlx::Error> {
        let (join_rule, visibility) = match self.backend() {
            Backend::Sqlite => {
                ("json_extract(e.json, '$.content.join_rule')", "json_extract(e.json, '$.content.history_visibility')")
            }
            Backend::Postgres => {
                ("(e.json::jsonb #>> '{content,join_rule}')", "(e.json::jsonb #>> '{content,history_visibility}')")
            }
        };
        let sql = format!(
            "SELECT DISTINCT cs.room_id FROM current_state cs JOIN events e ON e.event_id = cs.event_id \
             WHERE cs.state_key = '' AND ($1 = '' OR cs.room_id = $1) \
             AND ((cs.event_type = 'm.room.join_rules' AND {join_rule} = 'public') \
             OR (cs.event_type = 'm.room.history_visibility' AND {visibility} = 'world_readable'))"
        );
        let rows = sqlx::query(&sql).bind(room_id.unwrap_or("")).fetch_all(self.pool()).await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    /// Whether any local user is joined to a room.
    pub async fn has_local_member(&self, room_id: &str) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(
            "SELECT 1 FROM room_memberships m JOIN users u ON u.user_id = m.user_id \
             WHERE m.room_id = $1 AND m.membership = 'join' LIMIT 1",
        )
        .bind(room_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// The heads of the streams the directory follows: current-state deltas, local and
    /// remote profile changes.
    pub async fn stream_heads_for_directory(&self) -> Result<(i64, i64, i64), sqlx::Error> {
        Ok((
            self.stream_head("current_state_deltas").await?,
            self.stream_head("profile_changes").await?,
            self.stream_head("remote_profile_changes").await?,
        ))
    }
}

fn joined_member(
    row: &AnyRow,
    displayname: Option<String>,
    avatar_url: Option<String>,
) -> Result<JoinedMember, sqlx::Error> {
    Ok(JoinedMember {
        room_id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        displayname,
        avatar_url,
        stream_ordering: row.try_get(4)?,
    })
}

/// One batch of `Store::scan_in_batches`: the last rowid and the rows as one JSON array,
/// or `None` past the end.
async fn read_batch(
    connection: &mut PoolConnection<Any>,
    sql: &str,
    after: i64,
    parameter: &str,
) -> Result<Option<(i64, String)>, sqlx::Error> {
    let row = sqlx::query(sql).bind(after).bind(SCAN_BATCH).bind(parameter).fetch_one(&mut **connection).await?;
    let Some(last) = row.try_get::<Option<i64>, _>(0)? else { return Ok(None) };
    Ok(Some((last, row.try_get(1)?)))
}

/// Decodes a batch and prepares each row.
fn prepare_batch<T: DeserializeOwned, U>(batch: &str, prepare: impl Fn(T) -> U) -> Result<Vec<U>, sqlx::Error> {
    let rows: Vec<T> = serde_json::from_str(batch).map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
    Ok(rows.into_iter().map(prepare).collect())
}
