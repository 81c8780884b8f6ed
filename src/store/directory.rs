//! What the user directory index is derived from: local accounts and global profiles,
//! joined memberships of rooms with a local member, and whether those rooms are public.

use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::Row;

use super::Store;

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
    pub async fn local_accounts(&self) -> Result<Vec<LocalAccount>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT user_id, deactivated, locked, user_type FROM users").fetch_all(self.pool()).await?;
        rows.iter()
            .map(|row| {
                Ok(LocalAccount {
                    user_id: row.try_get(0)?,
                    deactivated: row.try_get::<i64, _>(1)? != 0,
                    locked: row.try_get::<i64, _>(2)? != 0,
                    user_type: row.try_get(3)?,
                })
            })
            .collect()
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

    /// `(user, display name, avatar)` from every local global profile.
    pub async fn global_names(&self) -> Result<Vec<(String, String, Value)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT user_id, field, value FROM profile_fields WHERE field IN ('displayname', 'avatar_url')",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let value: String = row.try_get(2)?;
                Ok((row.try_get(0)?, row.try_get(1)?, serde_json::from_str(&value).unwrap_or(Value::Null)))
            })
            .collect()
    }

    /// Joined members of one tracked room (one with a local member joined).
    pub async fn tracked_joined_members(&self, room_id: &str) -> Result<Vec<JoinedMember>, sqlx::Error> {
        let mut members = Vec::new();
        self.for_each_tracked_member(Some(room_id), |member| members.push(member)).await?;
        Ok(members)
    }

    /// Streams the joined members of every tracked room (or of one), oldest membership
    /// first, without holding them all in memory.
    pub async fn for_each_tracked_member(
        &self,
        room_id: Option<&str>,
        mut visit: impl FnMut(JoinedMember),
    ) -> Result<(), sqlx::Error> {
        let sql = "SELECT m.room_id, m.user_id, m.displayname, m.avatar_url, m.stream_ordering FROM room_memberships m \
                   WHERE m.membership = 'join' AND ($1 = '' OR m.room_id = $1) AND m.room_id IN \
                   (SELECT l.room_id FROM room_memberships l JOIN users u ON u.user_id = l.user_id WHERE l.membership = 'join') \
                   ORDER BY m.stream_ordering";
        let mut rows = sqlx::query(sql).bind(room_id.unwrap_or("")).fetch(self.pool());
        while let Some(row) = rows.try_next().await? {
            visit(JoinedMember {
                room_id: row.try_get(0)?,
                user_id: row.try_get(1)?,
                displayname: row.try_get(2)?,
                avatar_url: row.try_get(3)?,
                stream_ordering: row.try_get(4)?,
            });
        }
        Ok(())
    }

    pub async fn tracked_membership_count(&self) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT COUNT(*) FROM room_memberships WHERE membership = 'join'")
            .fetch_one(self.pool())
            .await?;
        row.try_get(0)
    }

    /// Rooms whose current join rule is `public` or history visibility `world_readable`.
    pub async fn public_room_ids(&self, room_id: Option<&str>) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT cs.room_id, cs.event_type, e.json FROM current_state cs JOIN events e ON e.event_id = cs.event_id \
             WHERE cs.state_key = '' AND cs.event_type IN ('m.room.join_rules', 'm.room.history_visibility') \
             AND ($1 = '' OR cs.room_id = $1)",
        )
        .bind(room_id.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        let mut public = Vec::new();
        for row in rows {
            let (room, kind, json): (String, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let json: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
            let is_public = match kind.as_str() {
                "m.room.join_rules" => json["content"]["join_rule"] == "public",
                _ => json["content"]["history_visibility"] == "world_readable",
            };
            if is_public && !public.contains(&room) {
                public.push(room);
            }
        }
        Ok(public)
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
