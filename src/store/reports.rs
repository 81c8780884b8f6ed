//! Reports users made, kept for the server's admins.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::admin::like_escaped;
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

    /// One page of the event reports `query` selects, and how many it selects in all.
    pub async fn event_reports(&self, query: &EventReportQuery) -> Result<(Vec<EventReportRow>, i64), sqlx::Error> {
        let (filter, binds) = query.filter();
        let page = ReportPage { from: query.from, limit: query.limit, backwards: query.backwards };
        let (rows, total) =
            self.report_page(EVENT_REPORT_SELECT, &format!("{EVENT_REPORT_FROM}{filter}"), &binds, "r.", page).await?;
        let reports = rows.iter().map(event_report_from_row).collect::<Result<_, _>>()?;
        Ok((reports, total))
    }

    /// One page of reports, by when they came (`prefix` names the reports table in
    /// `from`), and how many match in all.
    async fn report_page(
        &self,
        select: &str,
        from: &str,
        binds: &[String],
        prefix: &str,
        page: ReportPage,
    ) -> Result<(Vec<AnyRow>, i64), sqlx::Error> {
        let count_sql = format!("SELECT COUNT(*) {from}");
        let mut count = sqlx::query(&count_sql);
        for bind in binds {
            count = count.bind(bind.clone());
        }
        let total: i64 = count.fetch_one(self.pool()).await?.try_get(0)?;
        let direction = if page.backwards { "DESC" } else { "ASC" };
        let sql = format!(
            "{select} {from} ORDER BY {prefix}received_ts {direction}, {prefix}report_id {direction} \
             LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        );
        let mut rows = sqlx::query(&sql);
        for bind in binds {
            rows = rows.bind(bind.clone());
        }
        Ok((rows.bind(page.limit).bind(page.from).fetch_all(self.pool()).await?, total))
    }

    /// An event report with the reported event as stored (None once the event is gone).
    pub async fn event_report(&self, report_id: i64) -> Result<Option<(EventReportRow, Option<Value>)>, sqlx::Error> {
        let sql = format!("{EVENT_REPORT_SELECT}, e.json AS event_json {EVENT_REPORT_FROM} AND r.report_id = $1");
        let Some(row) = sqlx::query(&sql).bind(report_id).fetch_optional(self.pool()).await? else {
            return Ok(None);
        };
        let event: Option<String> = row.try_get("event_json")?;
        let event = event.and_then(|json| serde_json::from_str(&json).ok());
        Ok(Some((event_report_from_row(&row)?, event)))
    }

    /// Deletes an event report; false when there was none with this id.
    pub async fn delete_event_report(&self, report_id: i64) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM reports WHERE report_id = $1 AND event_id IS NOT NULL")
            .bind(report_id)
            .execute(&mut *txn.tx)
            .await?
            .rows_affected();
        txn.commit().await?;
        Ok(deleted > 0)
    }

    /// One page of the user reports `query` selects, and how many it selects in all.
    pub async fn user_reports(&self, query: &UserReportQuery) -> Result<(Vec<UserReportRow>, i64), sqlx::Error> {
        let (filter, binds) = query.filter();
        let page = ReportPage { from: query.from, limit: query.limit, backwards: query.backwards };
        let (rows, total) =
            self.report_page(USER_REPORT_SELECT, &format!("{USER_REPORT_FROM}{filter}"), &binds, "", page).await?;
        let reports = rows.iter().map(user_report_from_row).collect::<Result<_, _>>()?;
        Ok((reports, total))
    }

    pub async fn user_report(&self, report_id: i64) -> Result<Option<UserReportRow>, sqlx::Error> {
        let sql = format!("{USER_REPORT_SELECT} {USER_REPORT_FROM} AND report_id = $1");
        let row = sqlx::query(&sql).bind(report_id).fetch_optional(self.pool()).await?;
        row.as_ref().map(user_report_from_row).transpose()
    }

    /// Deletes a user report; false when there was none with this id.
    pub async fn delete_user_report(&self, report_id: i64) -> Result<bool, sqlx::Error> {
        let mut txn = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM reports WHERE report_id = $1 AND reported_user IS NOT NULL")
            .bind(report_id)
            .execute(&mut *txn.tx)
            .await?
            .rows_affected();
        txn.commit().await?;
        Ok(deleted > 0)
    }

    pub async fn report_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) FROM reports").fetch_one(self.pool()).await?.try_get(0)
    }
}

/// A page of reports: an offset, a size, and whether the newest come first.
#[derive(Debug, Clone, Copy)]
struct ReportPage {
    from: i64,
    limit: i64,
    backwards: bool,
}

/// Which event reports to list, and which page.
#[derive(Debug, Clone)]
pub struct EventReportQuery {
    pub from: i64,
    pub limit: i64,
    /// Newest first.
    pub backwards: bool,
    /// Part of the reporter's user id, in any case.
    pub reporter: Option<String>,
    /// Part of the room id, in any case.
    pub room_id: Option<String>,
    /// The reported event's sender, exactly.
    pub event_sender: Option<String>,
}

impl EventReportQuery {
    /// The conditions after [`EVENT_REPORT_FROM`]'s own, and the values they bind.
    fn filter(&self) -> (String, Vec<String>) {
        let mut filter = String::new();
        let mut binds = Vec::new();
        for (column, part) in [("r.reporter", &self.reporter), ("r.room_id", &self.room_id)] {
            if let Some(part) = part {
                binds.push(format!("%{}%", like_escaped(&part.to_lowercase())));
                filter.push_str(&format!(" AND LOWER({column}) LIKE ${} ESCAPE '!'", binds.len()));
            }
        }
        if let Some(sender) = &self.event_sender {
            binds.push(sender.clone());
            filter.push_str(&format!(" AND e.sender = ${}", binds.len()));
        }
        (filter, binds)
    }
}

/// A report of an event, with what is still known of the event and its room.
#[derive(Debug, Clone)]
pub struct EventReportRow {
    pub id: i64,
    pub received_ts: i64,
    pub room_id: Option<String>,
    pub event_id: String,
    pub reporter: String,
    pub reason: Option<String>,
    pub score: Option<i64>,
    /// None once the event is purged.
    pub sender: Option<String>,
    pub room_name: Option<String>,
    pub canonical_alias: Option<String>,
}

/// The JSON of a room's current state event of `event_type` (empty state key).
macro_rules! current_state_json {
    ($event_type:literal) => {
        concat!(
            "(SELECT s.json FROM current_state cs JOIN events s ON s.event_id = cs.event_id \
             WHERE cs.room_id = r.room_id AND cs.event_type = '",
            $event_type,
            "' AND cs.state_key = '')"
        )
    };
}

const EVENT_REPORT_SELECT: &str = concat!(
    "SELECT r.report_id, r.received_ts, r.room_id, r.event_id, r.reporter, r.reason, r.score, e.sender, ",
    current_state_json!("m.room.name"),
    " AS name_json, ",
    current_state_json!("m.room.canonical_alias"),
    " AS alias_json"
);

/// Reports of rooms and users have no event and are left out. The event and the room
/// state are joined loosely: a purged room's reports still list.
const EVENT_REPORT_FROM: &str =
    "FROM reports r LEFT JOIN events e ON e.event_id = r.event_id WHERE r.event_id IS NOT NULL";

fn event_report_from_row(row: &AnyRow) -> Result<EventReportRow, sqlx::Error> {
    Ok(EventReportRow {
        id: row.try_get("report_id")?,
        received_ts: row.try_get("received_ts")?,
        room_id: row.try_get("room_id")?,
        event_id: row.try_get("event_id")?,
        reporter: row.try_get("reporter")?,
        reason: row.try_get("reason")?,
        score: row.try_get("score")?,
        sender: row.try_get("sender")?,
        room_name: content_text(row.try_get("name_json")?, "name"),
        canonical_alias: content_text(row.try_get("alias_json")?, "alias"),
    })
}

/// A string field of a stored event's content.
fn content_text(json: Option<String>, key: &str) -> Option<String> {
    let event: Value = serde_json::from_str(&json?).ok()?;
    event.get("content")?.get(key)?.as_str().map(str::to_owned)
}

/// Which user reports to list, and which page.
#[derive(Debug, Clone)]
pub struct UserReportQuery {
    pub from: i64,
    pub limit: i64,
    /// Newest first.
    pub backwards: bool,
    /// Part of the reporter's user id, in any case.
    pub reporter: Option<String>,
    /// The reported user, exactly.
    pub reported_user: Option<String>,
}

impl UserReportQuery {
    /// The conditions after [`USER_REPORT_FROM`]'s own, and the values they bind.
    fn filter(&self) -> (String, Vec<String>) {
        let mut filter = String::new();
        let mut binds = Vec::new();
        if let Some(part) = &self.reporter {
            binds.push(format!("%{}%", like_escaped(&part.to_lowercase())));
            filter.push_str(&format!(" AND LOWER(reporter) LIKE ${} ESCAPE '!'", binds.len()));
        }
        if let Some(user) = &self.reported_user {
            binds.push(user.clone());
            filter.push_str(&format!(" AND reported_user = ${}", binds.len()));
        }
        (filter, binds)
    }
}

/// A report of a user.
#[derive(Debug, Clone)]
pub struct UserReportRow {
    pub id: i64,
    pub received_ts: i64,
    pub reporter: String,
    pub reported_user: String,
    pub reason: Option<String>,
}

const USER_REPORT_SELECT: &str = "SELECT report_id, received_ts, reporter, reported_user, reason";

/// Reports of events and rooms name no user and are left out.
const USER_REPORT_FROM: &str = "FROM reports WHERE reported_user IS NOT NULL";

fn user_report_from_row(row: &AnyRow) -> Result<UserReportRow, sqlx::Error> {
    Ok(UserReportRow {
        id: row.try_get("report_id")?,
        received_ts: row.try_get("received_ts")?,
        reporter: row.try_get("reporter")?,
        reported_user: row.try_get("reported_user")?,
        reason: row.try_get("reason")?,
    })
}
