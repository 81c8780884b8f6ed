//! Other servers' users: their public profiles with the remote-profile stream, and the
//! persisted queue of profiles to ask their servers for.

use serde_json::Value;
use sqlx::Row;

use super::profiles::Profile;
use super::{Store, WriteTxn, now_ms, streams};

const REMOTE_PROFILE_STREAM: &str = "remote_profile_changes";

/// A remote user is tracked while joined to a room some local user is joined to; `$1`
/// is the user.
const TRACKED: &str = "EXISTS (SELECT 1 FROM room_memberships r JOIN room_memberships l ON l.room_id = r.room_id \
     JOIN users u ON u.user_id = l.user_id \
     WHERE r.user_id = $1 AND r.membership = 'join' AND l.membership = 'join')";

/// Where a remote profile came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileSource {
    /// Asked for with `/query/profile`.
    Query,
    /// Pushed by the user's server (MSC4259).
    Edu,
}

impl ProfileSource {
    fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Edu => "edu",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "edu" { Self::Edu } else { Self::Query }
    }
}

/// A remote user's cached public profile.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteProfile {
    pub user_id: String,
    pub profile: Profile,
    pub source: ProfileSource,
    /// When it was last stored (milliseconds since the epoch).
    pub updated_ts: i64,
}

impl RemoteProfile {
    pub fn displayname(&self) -> Option<&str> {
        self.profile.get("displayname").and_then(Value::as_str)
    }

    pub fn avatar_url(&self) -> Option<&str> {
        self.profile.get("avatar_url").and_then(Value::as_str)
    }
}

/// A queued profile fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedFetch {
    pub user_id: String,
    pub server_name: String,
    pub attempts: i64,
}

impl Store {
    /// Stores a tracked remote user's profile and records the change on the stream, in
    /// one transaction; a user who is not tracked (any more) is left alone, decided by the
    /// write itself. Returns whether the stored profile changed.
    pub async fn put_remote_profile(
        &self,
        user_id: &str,
        server_name: &str,
        profile: &Profile,
        source: ProfileSource,
    ) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let fields = serde_json::to_string(profile).unwrap_or_else(|_| "{}".into());
        let text = |key: &str| profile.get(key).and_then(Value::as_str).map(|v| v.replace('\0', "\u{FFFD}"));
        let written = sqlx::query(&format!(
            "INSERT INTO remote_profiles (user_id, server_name, displayname, avatar_url, fields, source, updated_ts) \
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE {TRACKED} \
             ON CONFLICT (user_id) DO UPDATE SET displayname = excluded.displayname, \
             avatar_url = excluded.avatar_url, fields = excluded.fields, source = excluded.source, \
             updated_ts = excluded.updated_ts WHERE remote_profiles.fields <> excluded.fields"
        ))
        .bind(user_id)
        .bind(server_name)
        .bind(text("displayname"))
        .bind(text("avatar_url"))
        .bind(&fields)
        .bind(source.as_str())
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?
        .rows_affected();
        if written > 0 {
            record_remote_change(&mut txn, user_id).await?;
        }
        txn.commit().await?;
        Ok(written > 0)
    }

    pub async fn remote_profile(&self, user_id: &str) -> Result<Option<RemoteProfile>, sqlx::Error> {
        let row = sqlx::query("SELECT user_id, fields, source, updated_ts FROM remote_profiles WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(remote_profile_from_row).transpose()
    }

    /// The cached profiles of some users, by user.
    pub async fn remote_profiles_of(&self, user_ids: &[&str]) -> Result<Vec<RemoteProfile>, sqlx::Error> {
        let mut found = Vec::new();
        for chunk in user_ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT user_id, fields, source, updated_ts FROM remote_profiles WHERE user_id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for user_id in chunk {
                query = query.bind(*user_id);
            }
            for row in query.fetch_all(self.pool()).await? {
                found.push(remote_profile_from_row(&row)?);
            }
        }
        Ok(found)
    }

    /// Every cached remote profile (for building the directory).
    pub async fn remote_profiles(&self) -> Result<Vec<RemoteProfile>, sqlx::Error> {
        let rows = sqlx::query("SELECT user_id, fields, source, updated_ts FROM remote_profiles")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(remote_profile_from_row).collect()
    }

    /// Changes on the remote-profile stream after `after`: `(stream id, user)`.
    pub async fn remote_profile_changes_since(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT stream_id, user_id FROM remote_profile_changes WHERE stream_id > $1 ORDER BY stream_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// Queues a fetch of a tracked user's profile, due at `due_ts`. A user already queued
    /// keeps their entry: before its first attempt the fetch moves to `due_ts`, but never
    /// past `max_wait_ms` after the first hint (so a burst of hints is one fetch, and a
    /// steady trickle still gets one); once it failed, its backoff stands.
    pub async fn queue_profile_fetch(
        &self,
        user_id: &str,
        server_name: &str,
        due_ts: i64,
        max_wait_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let queued = sqlx::query(&format!(
            "INSERT INTO remote_profile_queue (user_id, server_name, queued_ts, next_try_ts, attempts) \
             SELECT $1, $2, $4, $3, 0 WHERE {TRACKED} ON CONFLICT (user_id) DO UPDATE SET next_try_ts = \
             CASE WHEN excluded.next_try_ts < remote_profile_queue.queued_ts + $5 THEN excluded.next_try_ts \
             ELSE remote_profile_queue.queued_ts + $5 END WHERE remote_profile_queue.attempts = 0"
        ))
        .bind(user_id)
        .bind(server_name)
        .bind(due_ts)
        .bind(now_ms())
        .bind(max_wait_ms)
        .execute(&mut *txn.tx)
        .await?
        .rows_affected();
        txn.commit().await?;
        Ok(queued > 0)
    }

    /// Queued fetches due by `now`, soonest first.
    pub async fn due_profile_fetches(&self, now: i64, limit: i64) -> Result<Vec<QueuedFetch>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT user_id, server_name, attempts FROM remote_profile_queue WHERE next_try_ts <= $1 \
             ORDER BY next_try_ts LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(QueuedFetch { user_id: row.try_get(0)?, server_name: row.try_get(1)?, attempts: row.try_get(2)? })
            })
            .collect()
    }

    /// When the next queued fetch is due, if any is queued.
    pub async fn next_profile_fetch_ts(&self) -> Result<Option<i64>, sqlx::Error> {
        let row = sqlx::query("SELECT MIN(next_try_ts) FROM remote_profile_queue").fetch_one(self.pool()).await?;
        row.try_get(0)
    }

    pub async fn profile_fetch_queue_len(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) FROM remote_profile_queue").fetch_one(self.pool()).await?.try_get(0)
    }

    /// Tries a queued fetch again at `next_try_ts`, after `attempts` failures.
    pub async fn retry_profile_fetch(&self, user_id: &str, attempts: i64, next_try_ts: i64) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("UPDATE remote_profile_queue SET attempts = $2, next_try_ts = $3 WHERE user_id = $1")
            .bind(user_id)
            .bind(attempts)
            .bind(next_try_ts)
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await
    }

    /// Makes the queued fetches of users of `server_name` due by `now` (the server came
    /// back); returns how many moved.
    pub async fn hasten_profile_fetches(&self, server_name: &str, now: i64) -> Result<u64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let moved =
            sqlx::query("UPDATE remote_profile_queue SET next_try_ts = $2 WHERE server_name = $1 AND next_try_ts > $2")
                .bind(server_name)
                .bind(now)
                .execute(&mut *txn.tx)
                .await?
                .rows_affected();
        txn.commit().await?;
        Ok(moved)
    }

    pub async fn remove_profile_fetch(&self, user_id: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("DELETE FROM remote_profile_queue WHERE user_id = $1").bind(user_id).execute(&mut *txn.tx).await?;
        txn.commit().await
    }

    /// Whether a remote user shares a room with a local user.
    pub async fn is_tracked_remote_user(&self, user_id: &str) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(&format!("SELECT 1 WHERE {TRACKED}")).bind(user_id).fetch_optional(self.pool()).await?;
        Ok(row.is_some())
    }

    /// The servers of the users who share a joined room with `user_id`, without
    /// `user_id`'s own server.
    pub async fn servers_sharing_rooms_with(&self, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT DISTINCT o.user_id FROM room_memberships m JOIN room_memberships o ON o.room_id = m.room_id \
             WHERE m.user_id = $1 AND m.membership = 'join' AND o.membership = 'join'",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        let own = user_id.split_once(':').map(|(_, server)| server).unwrap_or_default();
        let mut servers: Vec<String> = Vec::new();
        for row in rows {
            let member: String = row.try_get(0)?;
            if let Some((_, server)) = member.split_once(':')
                && server != own
                && !servers.iter().any(|s| s == server)
            {
                servers.push(server.to_owned());
            }
        }
        Ok(servers)
    }
}

async fn record_remote_change(txn: &mut WriteTxn<'_>, user_id: &str) -> Result<(), sqlx::Error> {
    let position = streams::next_position(txn, REMOTE_PROFILE_STREAM).await?;
    sqlx::query("INSERT INTO remote_profile_changes (stream_id, user_id, ts) VALUES ($1, $2, $3)")
        .bind(position)
        .bind(user_id)
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?;
    Ok(())
}

fn remote_profile_from_row(row: &sqlx::any::AnyRow) -> Result<RemoteProfile, sqlx::Error> {
    let fields: String = row.try_get(1)?;
    Ok(RemoteProfile {
        user_id: row.try_get(0)?,
        profile: serde_json::from_str(&fields).unwrap_or_default(),
        source: ProfileSource::parse(&row.try_get::<String, _>(2)?),
        updated_ts: row.try_get(3)?,
    })
}
