//! The federated user directory: what this server exports to its peers (local users and
//! their visibility), and what it pulled from them (their users, with the federated-user
//! stream, and how far each peer has been followed).

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, WriteTxn, now_ms, streams};

const FEDERATED_STREAM: &str = "federated_user_changes";

/// Account-data types holding a user's directory visibility (MSC4258), unstable first.
pub const VISIBILITY_TYPES: &[&str] = &["org.matrix.msc4258.user_directory", "m.user_directory"];

/// A user as a directory shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub user_id: String,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// How far a peer's directory has been followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub token: Option<String>,
    pub mode: String,
    pub synced_ts: i64,
}

/// Local users a peer may see: active, not support users, not opted out. `$1` bounds
/// the user ids (exclusive), `$2` the page size; `users` is aliased `u`.
const EXPORTED: &str = "SELECT u.user_id, \
     (SELECT value FROM profile_fields p WHERE p.user_id = u.user_id AND p.field = 'displayname'), \
     (SELECT value FROM profile_fields p WHERE p.user_id = u.user_id AND p.field = 'avatar_url') \
     FROM users u WHERE u.deactivated = 0 AND (u.user_type IS NULL OR u.user_type <> 'support') \
     AND NOT EXISTS (SELECT 1 FROM account_data a WHERE a.user_id = u.user_id AND a.room_id = '' \
       AND a.data_type IN ('org.matrix.msc4258.user_directory', 'm.user_directory') \
       AND (a.content LIKE '%\"visibility\":\"hidden\"%' OR a.content LIKE '%\"visibility\":\"local\"%' \
         OR a.content LIKE '%\"visibility\":\"restricted\"%'))";

impl Store {
    /// Exported local users after `after` (by user id), at most `limit`.
    pub async fn exported_users(&self, after: &str, limit: i64) -> Result<Vec<DirectoryUser>, sqlx::Error> {
        let sql = format!("{EXPORTED} AND u.user_id > $1 ORDER BY u.user_id LIMIT $2");
        let rows = sqlx::query(&sql).bind(after).bind(limit).fetch_all(self.pool()).await?;
        rows.iter().map(directory_user_from_row).collect()
    }

    /// One local user as exported, or `None` when they are not (any more).
    pub async fn exported_user(&self, user_id: &str) -> Result<Option<DirectoryUser>, sqlx::Error> {
        let sql = format!("{EXPORTED} AND u.user_id = $1 LIMIT $2");
        let row = sqlx::query(&sql).bind(user_id).bind(1_i64).fetch_optional(self.pool()).await?;
        row.as_ref().map(directory_user_from_row).transpose()
    }

    /// A user's directory visibility (`remote`, `local`, `hidden`…), if they chose one.
    pub async fn directory_visibility(&self, user_id: &str) -> Result<Option<String>, sqlx::Error> {
        for kind in VISIBILITY_TYPES {
            if let Some(content) = self.get_account_data(user_id, "", kind).await? {
                return Ok(content["visibility"].as_str().map(str::to_owned));
            }
        }
        Ok(None)
    }

    /// Local users who chose to be hidden from every directory.
    pub async fn hidden_users(&self) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT user_id FROM account_data WHERE room_id = '' \
             AND data_type IN ('org.matrix.msc4258.user_directory', 'm.user_directory') \
             AND content LIKE '%\"visibility\":\"hidden\"%'",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| row.try_get(0)).collect()
    }

    /// Sets a visibility account-data entry and records it on the profile-change stream
    /// (kind `visibility`) in one transaction: the directory and peers follow that stream.
    pub async fn set_directory_visibility(
        &self,
        user_id: &str,
        kind: &str,
        content: &serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        super::user_data::write_account_data(&mut txn, user_id, "", kind, content).await?;
        super::profiles::record_change(&mut txn, user_id, super::ProfileChangeKind::Visibility, &[kind]).await?;
        txn.commit().await
    }

    /// Users of `server` pulled from it.
    pub async fn federated_users_of(&self, server: &str) -> Result<HashMap<String, DirectoryUser>, sqlx::Error> {
        let rows = sqlx::query("SELECT user_id, displayname, avatar_url FROM federated_users WHERE server_name = $1")
            .bind(server)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| directory_user_from_columns(row).map(|u| (u.user_id.clone(), u))).collect()
    }

    pub async fn federated_user(&self, user_id: &str) -> Result<Option<DirectoryUser>, sqlx::Error> {
        let row = sqlx::query("SELECT user_id, displayname, avatar_url FROM federated_users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(directory_user_from_columns).transpose()
    }

    /// Every federated user (for building the directory).
    pub async fn federated_users(&self) -> Result<Vec<DirectoryUser>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT user_id, displayname, avatar_url FROM federated_users").fetch_all(self.pool()).await?;
        rows.iter().map(directory_user_from_columns).collect()
    }

    /// Applies what a peer sent: upserts and removals of its users, and its new token,
    /// in one transaction with a stream row per user that changed.
    pub async fn apply_peer_changes(
        &self,
        server: &str,
        upserts: &[DirectoryUser],
        removals: &[String],
        peer: &PeerState,
    ) -> Result<usize, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let mut changed = 0;
        for user in upserts {
            let written = sqlx::query(
                "INSERT INTO federated_users (user_id, server_name, displayname, avatar_url, updated_ts) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET displayname = excluded.displayname, \
                 avatar_url = excluded.avatar_url, updated_ts = excluded.updated_ts \
                 WHERE federated_users.displayname IS DISTINCT FROM excluded.displayname \
                 OR federated_users.avatar_url IS DISTINCT FROM excluded.avatar_url",
            )
            .bind(&user.user_id)
            .bind(server)
            .bind(&user.displayname)
            .bind(&user.avatar_url)
            .bind(now_ms())
            .execute(&mut *txn.tx)
            .await?
            .rows_affected();
            if written > 0 {
                record_federated_change(&mut txn, &user.user_id).await?;
                changed += 1;
            }
        }
        for user_id in removals {
            let removed = sqlx::query("DELETE FROM federated_users WHERE user_id = $1 AND server_name = $2")
                .bind(user_id)
                .bind(server)
                .execute(&mut *txn.tx)
                .await?
                .rows_affected();
            if removed > 0 {
                record_federated_change(&mut txn, user_id).await?;
                changed += 1;
            }
        }
        sqlx::query(
            "INSERT INTO federated_peers (server_name, token, mode, synced_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (server_name) DO UPDATE SET token = excluded.token, mode = excluded.mode, \
             synced_ts = excluded.synced_ts",
        )
        .bind(server)
        .bind(&peer.token)
        .bind(&peer.mode)
        .bind(peer.synced_ts)
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await?;
        Ok(changed)
    }

    /// Updates a federated user's name or avatar from a profile EDU of their server.
    pub async fn update_federated_user(&self, user: &DirectoryUser) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let written = sqlx::query(
            "UPDATE federated_users SET displayname = $2, avatar_url = $3, updated_ts = $4 WHERE user_id = $1 \
             AND (displayname IS DISTINCT FROM $2 OR avatar_url IS DISTINCT FROM $3)",
        )
        .bind(&user.user_id)
        .bind(&user.displayname)
        .bind(&user.avatar_url)
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?
        .rows_affected();
        if written > 0 {
            record_federated_change(&mut txn, &user.user_id).await?;
        }
        txn.commit().await?;
        Ok(written > 0)
    }

    pub async fn peer_state(&self, server: &str) -> Result<Option<PeerState>, sqlx::Error> {
        let row = sqlx::query("SELECT token, mode, synced_ts FROM federated_peers WHERE server_name = $1")
            .bind(server)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| Ok(PeerState { token: row.try_get(0)?, mode: row.try_get(1)?, synced_ts: row.try_get(2)? }))
            .transpose()
    }

    /// Forgets every server that is not a peer any more: its users (with stream rows, so
    /// the directory drops them) and its sync state. Returns how many users went.
    pub async fn purge_former_peers(&self, peers: &[String]) -> Result<usize, sqlx::Error> {
        let servers: Vec<String> = sqlx::query("SELECT DISTINCT server_name FROM federated_users")
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let mut purged = 0;
        for server in servers.iter().filter(|s| !peers.contains(s)) {
            let users: Vec<String> = self.federated_users_of(server).await?.into_keys().collect();
            purged += users.len();
            let state = PeerState { token: None, mode: "removed".into(), synced_ts: now_ms() };
            self.apply_peer_changes(server, &[], &users, &state).await?;
        }
        let mut txn = self.begin_write().await?;
        for server in servers.iter().filter(|s| !peers.contains(s)) {
            sqlx::query("DELETE FROM federated_peers WHERE server_name = $1")
                .bind(server)
                .execute(&mut *txn.tx)
                .await?;
        }
        txn.commit().await?;
        Ok(purged)
    }

    /// Changes on the federated-user stream after `after`: `(stream id, user)`.
    pub async fn federated_changes_since(&self, after: i64, limit: i64) -> Result<Vec<(i64, String)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT stream_id, user_id FROM federated_user_changes WHERE stream_id > $1 ORDER BY stream_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }
}

async fn record_federated_change(txn: &mut WriteTxn<'_>, user_id: &str) -> Result<(), sqlx::Error> {
    let position = streams::next_position(txn, FEDERATED_STREAM).await?;
    sqlx::query("INSERT INTO federated_user_changes (stream_id, user_id) VALUES ($1, $2)")
        .bind(position)
        .bind(user_id)
        .execute(&mut *txn.tx)
        .await?;
    Ok(())
}

/// A row of `EXPORTED`: profile values are stored as JSON strings.
fn directory_user_from_row(row: &sqlx::any::AnyRow) -> Result<DirectoryUser, sqlx::Error> {
    let text = |i: usize| -> Result<Option<String>, sqlx::Error> {
        let value: Option<String> = row.try_get(i)?;
        Ok(value
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .and_then(|v| v.as_str().map(str::to_owned)))
    };
    Ok(DirectoryUser { user_id: row.try_get(0)?, displayname: text(1)?, avatar_url: text(2)? })
}

fn directory_user_from_columns(row: &sqlx::any::AnyRow) -> Result<DirectoryUser, sqlx::Error> {
    Ok(DirectoryUser { user_id: row.try_get(0)?, displayname: row.try_get(1)?, avatar_url: row.try_get(2)? })
}
