//! Registration tokens and the registration sessions holding one (`pending` uses).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;

/// A token with its uses; `pending` counts sessions holding it that have not expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationTokenRow {
    pub token: String,
    pub uses_allowed: Option<i64>,
    pub pending: i64,
    pub completed: i64,
    /// Milliseconds since the epoch.
    pub expiry_time: Option<i64>,
}

/// A change to a token: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct TokenChanges {
    pub uses_allowed: Option<Option<i64>>,
    pub expiry_time: Option<Option<i64>>,
}

const TOKEN_SELECT: &str = "SELECT t.token, t.uses_allowed, t.completed, t.expiry_time, \
     (SELECT COUNT(*) FROM registration_token_sessions s WHERE s.token = t.token AND s.expires_ts > $1) AS pending \
     FROM registration_tokens t";

fn token_row(row: &AnyRow) -> Result<RegistrationTokenRow, sqlx::Error> {
    Ok(RegistrationTokenRow {
        token: row.try_get("token")?,
        uses_allowed: row.try_get("uses_allowed")?,
        pending: row.try_get("pending")?,
        completed: row.try_get("completed")?,
        expiry_time: row.try_get("expiry_time")?,
    })
}

impl Store {
    /// Every token, by name; sessions are counted as pending while `now` is before
    /// their expiry.
    pub async fn registration_tokens(&self, now: i64) -> Result<Vec<RegistrationTokenRow>, sqlx::Error> {
        let rows = sqlx::query(&format!("{TOKEN_SELECT} ORDER BY t.token")).bind(now).fetch_all(self.pool()).await?;
        rows.iter().map(token_row).collect()
    }

    pub async fn registration_token(&self, token: &str, now: i64) -> Result<Option<RegistrationTokenRow>, sqlx::Error> {
        let row = sqlx::query(&format!("{TOKEN_SELECT} WHERE t.token = $2"))
            .bind(now)
            .bind(token)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(token_row).transpose()
    }

    /// False if the token already exists.
    pub async fn create_registration_token(
        &self,
        token: &str,
        uses_allowed: Option<i64>,
        expiry_time: Option<i64>,
    ) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO registration_tokens (token, uses_allowed, completed, expiry_time) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (token) DO NOTHING",
        )
        .bind(token)
        .bind(uses_allowed)
        .bind(expiry_time)
        .execute(&mut *txn.tx)
        .await?
        .rows_affected();
        txn.commit().await?;
        Ok(inserted == 1)
    }

    /// False if there is no such token.
    pub async fn update_registration_token(&self, token: &str, changes: &TokenChanges) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let Some(row) = sqlx::query("SELECT uses_allowed, expiry_time FROM registration_tokens WHERE token = $1")
            .bind(token)
            .fetch_optional(&mut *txn.tx)
            .await?
        else {
            return Ok(false);
        };
        let uses_allowed = match changes.uses_allowed {
            Some(value) => value,
            None => row.try_get::<Option<i64>, _>("uses_allowed")?,
        };
        let expiry_time = match changes.expiry_time {
            Some(value) => value,
            None => row.try_get::<Option<i64>, _>("expiry_time")?,
        };
        sqlx::query("UPDATE registration_tokens SET uses_allowed = $2, expiry_time = $3 WHERE token = $1")
            .bind(token)
            .bind(uses_allowed)
            .bind(expiry_time)
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// False if there was no such token. Sessions holding it may still finish.
    pub async fn delete_registration_token(&self, token: &str) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM registration_tokens WHERE token = $1")
            .bind(token)
            .execute(&mut *txn.tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM registration_token_sessions WHERE token = $1")
            .bind(token)
            .execute(&mut *txn.tx)
            .await?;
        txn.commit().await?;
        Ok(deleted == 1)
    }

    /// The token a live registration session holds, if any.
    pub async fn session_registration_token(&self, session: &str, now: i64) -> Result<Option<String>, sqlx::Error> {
        let row =
            sqlx::query("SELECT token FROM registration_token_sessions WHERE session_id = $1 AND expires_ts > $2")
                .bind(session)
                .bind(now)
                .fetch_optional(self.pool())
                .await?;
        row.map(|row| row.try_get("token")).transpose()
    }

    /// Gives `session` a pending use of `token` if `usable` accepts the token as it is
    /// now; false if it does not (or the token does not exist). Concurrent reservations
    /// of one token are serialised, so a limited token is never handed out twice over.
    pub async fn reserve_registration_token(
        &self,
        session: &str,
        token: &str,
        now: i64,
        expires_ts: i64,
        usable: impl FnOnce(&RegistrationTokenRow) -> bool,
    ) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        // A no-op write takes the token's row lock on PostgreSQL (SQLite has one writer).
        let exists = sqlx::query("UPDATE registration_tokens SET completed = completed WHERE token = $1")
            .bind(token)
            .execute(&mut *txn.tx)
            .await?
            .rows_affected();
        if exists == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM registration_token_sessions WHERE token = $1 AND expires_ts <= $2")
            .bind(token)
            .bind(now)
            .execute(&mut *txn.tx)
            .await?;
        let row = sqlx::query(&format!("{TOKEN_SELECT} WHERE t.token = $2"))
            .bind(now)
            .bind(token)
            .fetch_one(&mut *txn.tx)
            .await?;
        if !usable(&token_row(&row)?) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO registration_token_sessions (session_id, token, expires_ts) VALUES ($1, $2, $3) \
             ON CONFLICT (session_id) DO UPDATE SET token = $2, expires_ts = $3",
        )
        .bind(session)
        .bind(token)
        .bind(expires_ts)
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Turns the session's pending use into a completed one; nothing if it holds none.
    pub async fn complete_registration_token(&self, session: &str) -> Result<(), sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let held = sqlx::query("DELETE FROM registration_token_sessions WHERE session_id = $1 RETURNING token")
            .bind(session)
            .fetch_optional(&mut *txn.tx)
            .await?;
        if let Some(row) = held {
            let token: String = row.try_get("token")?;
            sqlx::query("UPDATE registration_tokens SET completed = completed + 1 WHERE token = $1")
                .bind(token)
                .execute(&mut *txn.tx)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}
