//! Reports users made, kept for the server's admins.

use sqlx::Row;

use super::{Store, now_ms, streams};

/// What a report is about and why.
pub struct NewReport<'a> {
    pub reporter: &'a str,
    pub room_id: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub reported_user: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub score: Option<i64>,
}

impl Store {
    pub async fn add_report(&self, report: &NewReport<'_>) -> Result<i64, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let id = streams::next_position(&mut txn, "reports").await?;
        sqlx::query(
            "INSERT INTO reports (report_id, reporter, room_id, event_id, reported_user, reason, score, received_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(report.reporter)
        .bind(report.room_id)
        .bind(report.event_id)
        .bind(report.reported_user)
        .bind(report.reason)
        .bind(report.score)
        .bind(now_ms())
        .execute(&mut *txn.tx)
        .await?;
        txn.commit().await?;
        Ok(id)
    }

    pub async fn report_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) FROM reports").fetch_one(self.pool()).await?.try_get(0)
    }
}
