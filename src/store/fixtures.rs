//! Bulk loading of synthetic users and rooms, for benchmarks and load tests: rows go
//! straight into the tables the directory is built from, many per transaction.

use serde_json::json;

use super::{Store, now_ms, rooms};

pub struct FixtureUser<'a> {
    pub user_id: &'a str,
    pub display_name: Option<&'a str>,
    pub avatar_url: Option<&'a str>,
}

impl Store {
    /// Local accounts (no password) with their global profile.
    pub async fn bulk_insert_local_users(&self, users: &[FixtureUser<'_>]) -> Result<(), sqlx::Error> {
        for chunk in users.chunks(5_000) {
            let mut txn = self.begin_write().await?;
            for user in chunk {
                sqlx::query("INSERT INTO users (user_id, created_ts) VALUES ($1, $2)")
                    .bind(user.user_id)
                    .bind(now_ms())
                    .execute(&mut *txn.tx)
                    .await?;
                for (field, value) in [("displayname", user.display_name), ("avatar_url", user.avatar_url)] {
                    if let Some(value) = value {
                        sqlx::query("INSERT INTO profile_fields (user_id, field, value) VALUES ($1, $2, $3)")
                            .bind(user.user_id)
                            .bind(field)
                            .bind(json!(value).to_string())
                            .execute(&mut *txn.tx)
                            .await?;
                    }
                }
            }
            txn.commit().await?;
        }
        Ok(())
    }

    /// A room's join rule (as a current-state event) and its joined members, with the
    /// member events' names.
    pub async fn bulk_insert_room(
        &self,
        room_id: &str,
        public: bool,
        members: &[FixtureUser<'_>],
        first_ordering: i64,
    ) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        txn.forgets.memberships = true;
        txn.forgets.events = true;
        let rule_event = format!("$rules{first_ordering}");
        let join_rule = if public { "public" } else { "invite" };
        let json = json!({ "type": "m.room.join_rules", "content": { "join_rule": join_rule } }).to_string();
        sqlx::query(
            "INSERT INTO events (event_id, room_id, stream_ordering, depth, event_type, state_key, sender, \
             origin_server_ts, json) VALUES ($1, $2, $3, 1, 'm.room.join_rules', '', '@fixture:x', $4, $5)",
        )
        .bind(&rule_event)
        .bind(room_id)
        .bind(-first_ordering)
        .bind(now_ms())
        .bind(json)
        .execute(&mut *txn.tx)
        .await?;
        sqlx::query("INSERT INTO current_state (room_id, event_type, state_key, event_id) VALUES ($1, 'm.room.join_rules', '', $2)")
            .bind(room_id)
            .bind(&rule_event)
            .execute(&mut *txn.tx)
            .await?;
        for (i, member) in members.iter().enumerate() {
            sqlx::query(
                "INSERT INTO room_memberships (room_id, user_id, membership, event_id, sender, displayname, avatar_url, \
                 stream_ordering, server_name) VALUES ($1, $2, 'join', $3, $2, $4, $5, $6, $7)",
            )
            .bind(room_id)
            .bind(member.user_id)
            .bind(format!("$m{first_ordering}_{i}"))
            .bind(member.display_name)
            .bind(member.avatar_url)
            .bind(first_ordering + i as i64)
            .bind(rooms::server_of(member.user_id))
            .execute(&mut *txn.tx)
            .await?;
        }
        txn.commit().await
    }
}
