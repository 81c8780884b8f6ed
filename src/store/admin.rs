//! What the admin API reads and changes: accounts listed with their profile, account
//! flags, and room summaries for every room at once.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{ProfileChangeKind, Store, profiles};

/// An account as the admin API shows it.
#[derive(Debug, Clone)]
pub struct AdminUserRow {
    pub user_id: String,
    pub admin: bool,
    pub is_guest: bool,
    pub user_type: Option<String>,
    pub deactivated: bool,
    pub locked: bool,
    pub erased: bool,
    /// Milliseconds since the epoch.
    pub created_ts: i64,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    /// The newest recorded connection, else the newest access token's issue.
    pub last_seen_ts: Option<i64>,
}

/// The columns accounts can be listed by (Synapse's `order_by` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrder {
    Name,
    IsGuest,
    Admin,
    UserType,
    Deactivated,
    /// Kith has no shadow bans: every account ties, so the order is by name.
    ShadowBanned,
    Displayname,
    AvatarUrl,
    CreationTs,
    LastSeenTs,
    Locked,
}

impl UserOrder {
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "name" => Self::Name,
            "is_guest" => Self::IsGuest,
            "admin" => Self::Admin,
            "user_type" => Self::UserType,
            "deactivated" => Self::Deactivated,
            "shadow_banned" => Self::ShadowBanned,
            "displayname" => Self::Displayname,
            "avatar_url" => Self::AvatarUrl,
            "creation_ts" => Self::CreationTs,
            "last_seen_ts" => Self::LastSeenTs,
            "locked" => Self::Locked,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            Self::Name | Self::ShadowBanned => "u.user_id",
            Self::IsGuest => "u.is_guest",
            Self::Admin => "u.admin",
            Self::UserType => "u.user_type",
            Self::Deactivated => "u.deactivated",
            Self::Displayname => "d.value",
            Self::AvatarUrl => "a.value",
            Self::CreationTs => "u.created_ts",
            Self::LastSeenTs => LAST_SEEN,
            Self::Locked => "u.locked",
        }
    }
}

/// Which accounts to list, and which page.
#[derive(Debug, Clone)]
pub struct UserQuery {
    pub from: i64,
    pub limit: i64,
    pub include_guests: bool,
    /// `None`: all; `Some(true)`: only deactivated; `Some(false)`: only active.
    pub deactivated: Option<bool>,
    /// `None`: all; `Some(true)`: only admins; `Some(false)`: no admins.
    pub admins: Option<bool>,
    pub include_locked: bool,
    /// A substring of the localpart or the display name.
    pub name: Option<String>,
    /// A substring of the user id (ignored when `name` is given).
    pub user_id: Option<String>,
    pub order: UserOrder,
    pub forwards: bool,
}

/// An account's newest recorded connection, else (never seen since connections were
/// recorded) its newest token's issue. Spelled out where used: PostgreSQL takes no
/// column alias inside an `ORDER BY` expression.
macro_rules! last_seen {
    () => {
        "COALESCE((SELECT MAX(c.last_seen) FROM client_ips c WHERE c.user_id = u.user_id), \
         (SELECT MAX(t.created_ts) FROM access_tokens t WHERE t.user_id = u.user_id))"
    };
}
const LAST_SEEN: &str = last_seen!();

const USER_SELECT: &str = concat!(
    "SELECT u.user_id, u.admin, u.is_guest, u.user_type, u.deactivated, u.locked, u.erased, \
     u.created_ts, d.value AS displayname, a.value AS avatar_url, ",
    last_seen!(),
    " AS last_seen_ts FROM users u \
     LEFT JOIN profile_fields d ON d.user_id = u.user_id AND d.field = 'displayname' \
     LEFT JOIN profile_fields a ON a.user_id = u.user_id AND a.field = 'avatar_url'"
);

const USER_FROM: &str = "FROM users u \
     LEFT JOIN profile_fields d ON d.user_id = u.user_id AND d.field = 'displayname'";

/// A `LIKE` pattern matching `text` literally (`!` is the escape character).
pub(super) fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out
}

/// A profile field's stored JSON as a string, if it is one.
fn string_field(row: &AnyRow, column: &str) -> Result<Option<String>, sqlx::Error> {
    let raw: Option<String> = row.try_get(column)?;
    Ok(raw.and_then(|raw| match serde_json::from_str::<Value>(&raw) {
        Ok(Value::String(value)) => Some(value),
        _ => None,
    }))
}

fn admin_user_from_row(row: &AnyRow) -> Result<AdminUserRow, sqlx::Error> {
    Ok(AdminUserRow {
        user_id: row.try_get("user_id")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        is_guest: row.try_get::<i64, _>("is_guest")? != 0,
        user_type: row.try_get("user_type")?,
        deactivated: row.try_get::<i64, _>("deactivated")? != 0,
        locked: row.try_get::<i64, _>("locked")? != 0,
        erased: row.try_get::<i64, _>("erased")? != 0,
        created_ts: row.try_get("created_ts")?,
        displayname: string_field(row, "displayname")?,
        avatar_url: string_field(row, "avatar_url")?,
        last_seen_ts: row.try_get("last_seen_ts")?,
    })
}

/// A room's row in the admin room list, before its state is read.
#[derive(Debug, Clone)]
pub struct AdminRoomRow {
    pub room_id: String,
    pub version: String,
    pub creator: String,
    pub public: bool,
    pub joined_members: i64,
    pub joined_local_members: i64,
    pub state_events: i64,
    /// The content of each current state event with an empty state key, by type (only
    /// the types the admin API shows).
    pub state: HashMap<String, Value>,
}

/// The state types a room summary is made of.
const SUMMARY_STATE_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.join_rules",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.encryption",
];

impl Store {
    /// One page of accounts and how many match in all.
    pub async fn admin_list_users(&self, query: &UserQuery) -> Result<(Vec<AdminUserRow>, i64), sqlx::Error> {
        let mut conditions: Vec<String> = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        if !query.include_guests {
            conditions.push("u.is_guest = 0".into());
        }
        match query.deactivated {
            Some(true) => conditions.push("u.deactivated = 1".into()),
            Some(false) => conditions.push("u.deactivated = 0".into()),
            None => {}
        }
        match query.admins {
            Some(true) => conditions.push("u.admin = 1".into()),
            Some(false) => conditions.push("u.admin = 0".into()),
            None => {}
        }
        if !query.include_locked {
            conditions.push("u.locked = 0".into());
        }
        if let Some(name) = &query.name {
            // Display names are stored as JSON strings; a name with characters JSON
            // escapes (quotes, backslashes, control characters) may not match.
            let name = like_escaped(&name.to_lowercase());
            binds.push(format!("@%{name}%:%"));
            binds.push(format!("%{name}%"));
            let (localpart, displayname) = (binds.len() - 1, binds.len());
            conditions.push(format!(
                "(LOWER(u.user_id) LIKE ${localpart} ESCAPE '!' OR LOWER(d.value) LIKE ${displayname} ESCAPE '!')"
            ));
        } else if let Some(user_id) = &query.user_id {
            binds.push(format!("%{}%", like_escaped(&user_id.to_lowercase())));
            conditions.push(format!("LOWER(u.user_id) LIKE ${} ESCAPE '!'", binds.len()));
        }
        let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };

        let count_sql = format!("SELECT COUNT(*) {USER_FROM}{filter}");
        let mut count = sqlx::query(&count_sql);
        for bind in &binds {
            count = count.bind(bind.clone());
        }
        let total: i64 = count.fetch_one(self.pool()).await?.try_get(0)?;

        // NULLs sort last on both backends; ties go by ascending user id, as in Synapse.
        let column = query.order.column();
        let direction = if query.forwards { "ASC" } else { "DESC" };
        let page_sql = format!(
            "{USER_SELECT}{filter} ORDER BY CASE WHEN {column} IS NULL THEN 1 ELSE 0 END, {column} {direction}, \
             u.user_id ASC LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        );
        let mut page = sqlx::query(&page_sql);
        for bind in &binds {
            page = page.bind(bind.clone());
        }
        let rows = page.bind(query.limit).bind(query.from).fetch_all(self.pool()).await?;
        let users = rows.iter().map(admin_user_from_row).collect::<Result<_, _>>()?;
        Ok((users, total))
    }

    pub async fn admin_user(&self, user_id: &str) -> Result<Option<AdminUserRow>, sqlx::Error> {
        let row = sqlx::query(&format!("{USER_SELECT} WHERE u.user_id = $1"))
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(admin_user_from_row).transpose()
    }

    pub async fn set_user_admin(&self, user_id: &str, admin: bool) -> Result<(), sqlx::Error> {
        self.set_user_flag("UPDATE users SET admin = $2 WHERE user_id = $1", user_id, admin).await
    }

    pub async fn set_user_locked(&self, user_id: &str, locked: bool) -> Result<(), sqlx::Error> {
        let sql = "UPDATE users SET locked = $2 WHERE user_id = $1";
        self.change_listing(sql, user_id, Some(i64::from(locked)), "locked").await
    }

    /// Lets a deactivated account log in again (once it has a password).
    pub async fn reactivate_user(&self, user_id: &str) -> Result<(), sqlx::Error> {
        let sql = "UPDATE users SET deactivated = 0, erased = 0 WHERE user_id = $1";
        self.change_listing(sql, user_id, None, "deactivated").await
    }

    pub async fn set_user_type(&self, user_id: &str, user_type: Option<&str>) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        sqlx::query("UPDATE users SET user_type = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(user_type)
            .execute(&mut *txn.tx)
            .await?;
        profiles::record_change(&mut txn, user_id, ProfileChangeKind::Visibility, &["user_type"]).await?;
        txn.commit().await
    }

    async fn set_user_flag(&self, sql: &str, user_id: &str, value: bool) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.tokens = true;
        sqlx::query(sql).bind(user_id).bind(i64::from(value)).execute(&mut *txn.tx).await?;
        txn.commit().await
    }

    /// Changes what decides whether the user directory lists an account, recorded on
    /// the profile-change stream (kind `visibility`) so the directory and peers re-read
    /// it.
    async fn change_listing(
        &self,
        sql: &str,
        user_id: &str,
        value: Option<i64>,
        field: &str,
    ) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.tokens = true;
        let mut query = sqlx::query(sql).bind(user_id);
        if let Some(value) = value {
            query = query.bind(value);
        }
        query.execute(&mut *txn.tx).await?;
        profiles::record_change(&mut txn, user_id, ProfileChangeKind::Visibility, &[field]).await?;
        txn.commit().await
    }

    /// Every room kith holds (or the one `only` names), with member counts and the
    /// state the admin API summarises: four queries whatever the number of rooms.
    pub async fn admin_rooms(&self, server_name: &str, only: Option<&str>) -> Result<Vec<AdminRoomRow>, sqlx::Error> {
        let room_filter = if only.is_some() { " WHERE room_id = $1" } else { "" };
        let sql = format!("SELECT room_id, room_version, creator, published FROM rooms{room_filter}");
        let rows = bind_only(&sql, only).fetch_all(self.pool()).await?;
        let mut rooms: Vec<AdminRoomRow> = rows
            .iter()
            .map(|row| {
                Ok(AdminRoomRow {
                    room_id: row.try_get(0)?,
                    version: row.try_get(1)?,
                    creator: row.try_get(2)?,
                    public: row.try_get::<i64, _>(3)? != 0,
                    joined_members: 0,
                    joined_local_members: 0,
                    state_events: 0,
                    state: HashMap::new(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        let index: HashMap<String, usize> = rooms.iter().enumerate().map(|(i, r)| (r.room_id.clone(), i)).collect();

        let local_pattern = format!("%:{}", like_escaped(server_name));
        let (local_bind, member_filter) = match only {
            Some(_) => ("$2", " AND room_id = $1"),
            None => ("$1", ""),
        };
        let sql = format!(
            "SELECT room_id, COUNT(*), SUM(CASE WHEN user_id LIKE {local_bind} ESCAPE '!' THEN 1 ELSE 0 END) \
             FROM room_memberships WHERE membership = 'join'{member_filter} GROUP BY room_id"
        );
        for row in bind_only(&sql, only).bind(local_pattern).fetch_all(self.pool()).await? {
            let room_id: String = row.try_get(0)?;
            if let Some(&i) = index.get(&room_id) {
                rooms[i].joined_members = row.try_get(1)?;
                rooms[i].joined_local_members = row.try_get::<Option<i64>, _>(2)?.unwrap_or(0);
            }
        }

        let sql = format!("SELECT room_id, COUNT(*) FROM current_state{room_filter} GROUP BY room_id");
        for row in bind_only(&sql, only).fetch_all(self.pool()).await? {
            let room_id: String = row.try_get(0)?;
            if let Some(&i) = index.get(&room_id) {
                rooms[i].state_events = row.try_get(1)?;
            }
        }

        let types = SUMMARY_STATE_TYPES.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        let state_filter = if only.is_some() { " AND cs.room_id = $1" } else { "" };
        let sql = format!(
            "SELECT cs.room_id, cs.event_type, e.json FROM current_state cs \
             JOIN events e ON e.event_id = cs.event_id \
             WHERE cs.state_key = '' AND cs.event_type IN ({types}){state_filter}"
        );
        for row in bind_only(&sql, only).fetch_all(self.pool()).await? {
            let room_id: String = row.try_get(0)?;
            let Some(&i) = index.get(&room_id) else { continue };
            let json: String = row.try_get(2)?;
            let content = serde_json::from_str::<Value>(&json)
                .ok()
                .and_then(|mut event| event.get_mut("content").map(Value::take))
                .unwrap_or(Value::Null);
            rooms[i].state.insert(row.try_get(1)?, content);
        }
        Ok(rooms)
    }

    /// How many devices the joined local members of a room have.
    pub async fn joined_local_devices(&self, room_id: &str, server_name: &str) -> Result<i64, sqlx::Error> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM devices d JOIN room_memberships m ON m.user_id = d.user_id \
             WHERE m.room_id = $1 AND m.membership = 'join' AND m.user_id LIKE $2 ESCAPE '!'",
        )
        .bind(room_id)
        .bind(format!("%:{}", like_escaped(server_name)))
        .fetch_one(self.pool())
        .await?;
        row.try_get(0)
    }
}

/// A query whose `$1` is the room `only` names, if it names one.
fn bind_only<'q>(sql: &'q str, only: Option<&str>) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let query = sqlx::query(sql);
    match only {
        Some(room_id) => query.bind(room_id.to_owned()),
        None => query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_literally() {
        assert_eq!(like_escaped("a_b%c!d"), "a!_b!%c!!d");
        assert_eq!(like_escaped("plain"), "plain");
    }

    #[test]
    fn every_synapse_order_parses() {
        for name in ["name", "is_guest", "admin", "user_type", "deactivated", "shadow_banned", "displayname"] {
            assert!(UserOrder::parse(name).is_some(), "{name}");
        }
        assert!(UserOrder::parse("password_hash").is_none());
    }
}
