//! Global profiles (one row per field) and the profile-change stream.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::Row;

use super::{Store, WriteTxn, now_ms, streams};

pub type Profile = BTreeMap<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileChangeKind {
    Update,
    Deactivated,
    /// The user's directory visibility changed (account data, not the profile).
    Visibility,
}

impl ProfileChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Update => "update",
            Self::Deactivated => "deactivated",
            Self::Visibility => "visibility",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "deactivated" => Self::Deactivated,
            "visibility" => Self::Visibility,
            _ => Self::Update,
        }
    }
}

/// One row of the profile-change stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileChange {
    pub stream_id: i64,
    pub user_id: String,
    pub kind: ProfileChangeKind,
    pub fields: Vec<String>,
    /// When the change was made (milliseconds since the epoch).
    pub ts: i64,
}

const PROFILE_STREAM: &str = "profile_changes";

impl Store {
    pub async fn get_profile(&self, user_id: &str) -> Result<Profile, sqlx::Error> {
        let rows = sqlx::query("SELECT field, value FROM profile_fields WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(self.pool())
            .await?;
        rows_to_profile(&rows)
    }

    /// Sets (`Some`) or removes (`None`) one field, provided `accept` approves the
    /// resulting profile; the change is recorded on the profile stream in the same
    /// transaction. Returns false when `accept` refused.
    pub async fn update_profile_field(
        &self,
        user_id: &str,
        field: &str,
        value: Option<&Value>,
        accept: impl FnOnce(&Profile) -> bool,
    ) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let rows = sqlx::query("SELECT field, value FROM profile_fields WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&mut *txn.tx)
            .await?;
        let mut profile = rows_to_profile(&rows)?;
        match value {
            Some(value) => profile.insert(field.to_owned(), value.clone()),
            None => profile.remove(field),
        };
        if !accept(&profile) {
            return Ok(false);
        }
        write_field(&mut txn, user_id, field, value).await?;
        record_change(&mut txn, user_id, ProfileChangeKind::Update, &[field]).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Profile changes after `after`, oldest first, at most `limit`.
    pub async fn profile_changes_since(&self, after: i64, limit: i64) -> Result<Vec<ProfileChange>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT stream_id, user_id, kind, fields, ts FROM profile_changes WHERE stream_id > $1 ORDER BY stream_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let fields: String = row.try_get("fields")?;
                Ok(ProfileChange {
                    stream_id: row.try_get("stream_id")?,
                    user_id: row.try_get("user_id")?,
                    kind: ProfileChangeKind::parse(&row.try_get::<String, _>("kind")?),
                    fields: serde_json::from_str(&fields).unwrap_or_default(),
                    ts: row.try_get("ts")?,
                })
            })
            .collect()
    }
}

fn rows_to_profile(rows: &[sqlx::any::AnyRow]) -> Result<Profile, sqlx::Error> {
    let mut profile = Profile::new();
    for row in rows {
        let field: String = row.try_get("field")?;
        let value: String = row.try_get("value")?;
        // Values are written by `write_field` as JSON; an unreadable one is skipped, not fatal.
        if let Ok(value) = serde_json::from_str(&value) {
            profile.insert(field, value);
        }
    }
    Ok(profile)
}

pub(super) async fn write_field(
    txn: &mut WriteTxn<'_>,
    user_id: &str,
    field: &str,
    value: Option<&Value>,
) -> Result<(), sqlx::Error> {
    match value {
        Some(value) => {
            sqlx::query(
                "INSERT INTO profile_fields (user_id, field, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value",
            )
            .bind(user_id)
            .bind(field)
            .bind(value.to_string())
            .execute(&mut *txn.tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM profile_fields WHERE user_id = $1 AND field = $2")
                .bind(user_id)
                .bind(field)
                .execute(&mut *txn.tx)
                .await?;
        }
    }
    Ok(())
}

pub(super) async fn delete_all_fields(txn: &mut WriteTxn<'_>, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("DELETE FROM profile_fields WHERE user_id = $1 RETURNING field")
        .bind(user_id)
        .fetch_all(&mut *txn.tx)
        .await?;
    rows.iter().map(|row| row.try_get(0)).collect()
}

pub(super) async fn record_change(
    txn: &mut WriteTxn<'_>,
    user_id: &str,
    kind: ProfileChangeKind,
    fields: &[&str],
) -> Result<i64, sqlx::Error> {
    let position = streams::next_position(txn, PROFILE_STREAM).await?;
    let fields = serde_json::to_string(fields).unwrap_or_else(|_| "[]".into());
    sqlx::query("INSERT INTO profile_changes (stream_id, user_id, kind, fields, ts) VALUES ($1, $2, $3, $4, $5)")
        .bind(position)
        .bind(user_id)
        .bind(kind.as_str())
        .bind(fields)
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?;
    Ok(position)
}
