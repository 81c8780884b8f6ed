//! Reports of events, rooms and users (`/rooms/{roomId}/report[/{eventId}]`,
//! `/users/{userId}/report`), kept for the server's admins. A user can only report
//! what they can see, and learns nothing about what they cannot. Admins list, read and
//! delete the reports of events and of users in Synapse's shapes
//! (`/_synapse/admin/v1/event_reports`, `/_synapse/admin/v1/user_reports`).

use std::sync::Arc;

use ruma::{RoomId, UserId};
use serde_json::{Value, json};

use super::rooms::Rooms;
use crate::error::{ApiResult, MatrixError};
use crate::store::{EventReportQuery, EventReportRow, NewReport, Store, UserReportQuery, UserReportRow};

/// Reasons are bounded like other free texts.
const MAX_REASON_BYTES: usize = 1000;

pub struct Reports {
    store: Arc<Store>,
    rooms: Arc<Rooms>,
}

impl Reports {
    pub fn new(store: Arc<Store>, rooms: Arc<Rooms>) -> Self {
        Self { store, rooms }
    }

    /// A report of an event (with `score`, -100 most offensive to 0) or of a room.
    pub async fn report_room(
        &self,
        reporter: &UserId,
        room_id: &RoomId,
        event_id: Option<&str>,
        reason: Option<&str>,
        score: Option<i64>,
    ) -> ApiResult<()> {
        check_reason(reason)?;
        if score.is_some_and(|score| !(-100..=0).contains(&score)) {
            return Err(MatrixError::invalid_param("score must be between -100 and 0"));
        }
        match event_id {
            Some(event_id) => {
                self.rooms.event_for_user(room_id, reporter, event_id).await?;
            }
            None if self.rooms.room_version(room_id.as_str()).await.is_err() => {
                return Err(MatrixError::not_found("Room does not exist"));
            }
            None => {}
        }
        let report = NewReport {
            reporter: reporter.as_str(),
            room_id: Some(room_id.as_str()),
            event_id,
            reported_user: None,
            reason,
            score,
        };
        let id = self.store.add_report(&report).await?;
        tracing::info!(report = id, %reporter, %room_id, event_id, "content reported");
        Ok(())
    }

    /// A report of a user of this server.
    pub async fn report_user(&self, reporter: &UserId, user_id: &UserId, reason: Option<&str>) -> ApiResult<()> {
        check_reason(reason)?;
        let report = NewReport {
            reporter: reporter.as_str(),
            room_id: None,
            event_id: None,
            reported_user: Some(user_id.as_str()),
            reason,
            score: None,
        };
        let id = self.store.add_report(&report).await?;
        tracing::info!(report = id, %reporter, reported = %user_id, "user reported");
        Ok(())
    }

    pub async fn count(&self) -> ApiResult<i64> {
        Ok(self.store.report_count().await?)
    }

    /// `GET /_synapse/admin/v1/event_reports`: `next_token` only while more remain.
    pub async fn event_reports(&self, query: &EventReportQuery) -> ApiResult<Value> {
        let (reports, total) = self.store.event_reports(query).await?;
        let listed: Vec<Value> = reports.iter().map(report_json).collect();
        Ok(page_answer("event_reports", listed, total, query.from, query.limit))
    }

    /// `GET /_synapse/admin/v1/event_reports/{reportId}`: the report and the reported
    /// event as stored (null once its room was purged).
    pub async fn event_report(&self, report_id: i64) -> ApiResult<Value> {
        let (report, event) = self.store.event_report(report_id).await?.ok_or_else(report_not_found)?;
        let mut answer = report_json(&report);
        answer["event_json"] = event.unwrap_or(Value::Null);
        Ok(answer)
    }

    /// `DELETE /_synapse/admin/v1/event_reports/{reportId}`.
    pub async fn delete_event_report(&self, report_id: i64) -> ApiResult<()> {
        if !self.store.delete_event_report(report_id).await? {
            return Err(report_not_found());
        }
        tracing::info!(report = report_id, "event report deleted");
        Ok(())
    }

    /// `GET /_synapse/admin/v1/user_reports`: `next_token` only while more remain.
    pub async fn user_reports(&self, query: &UserReportQuery) -> ApiResult<Value> {
        let (reports, total) = self.store.user_reports(query).await?;
        let listed: Vec<Value> = reports.iter().map(user_report_json).collect();
        Ok(page_answer("user_reports", listed, total, query.from, query.limit))
    }

    /// `GET /_synapse/admin/v1/user_reports/{reportId}`.
    pub async fn user_report(&self, report_id: i64) -> ApiResult<Value> {
        let report = self.store.user_report(report_id).await?.ok_or_else(user_report_not_found)?;
        Ok(user_report_json(&report))
    }

    /// `DELETE /_synapse/admin/v1/user_reports/{reportId}`.
    pub async fn delete_user_report(&self, report_id: i64) -> ApiResult<()> {
        if !self.store.delete_user_report(report_id).await? {
            return Err(user_report_not_found());
        }
        tracing::info!(report = report_id, "user report deleted");
        Ok(())
    }
}

/// A page of a report list as Synapse answers: `next_token` only while more remain.
fn page_answer(key: &str, listed: Vec<Value>, total: i64, from: i64, limit: i64) -> Value {
    let next = from + listed.len() as i64;
    let mut answer = json!({ key: listed, "total": total });
    if from.saturating_add(limit) < total {
        answer["next_token"] = json!(next);
    }
    answer
}

fn user_report_not_found() -> MatrixError {
    MatrixError::not_found("User report not found")
}

/// A user report in Synapse's shape: `user_id` is the reporter.
fn user_report_json(report: &UserReportRow) -> Value {
    json!({
        "id": report.id,
        "received_ts": report.received_ts,
        "user_id": report.reporter,
        "target_user_id": report.reported_user,
        "reason": report.reason,
    })
}

fn report_not_found() -> MatrixError {
    MatrixError::not_found("Event report not found")
}

/// A report in Synapse's shape: `user_id` is the reporter, `sender` the event's sender.
fn report_json(report: &EventReportRow) -> Value {
    json!({
        "id": report.id,
        "received_ts": report.received_ts,
        "room_id": report.room_id,
        "name": report.room_name,
        "event_id": report.event_id,
        "user_id": report.reporter,
        "reason": report.reason,
        "score": report.score,
        "sender": report.sender,
        "canonical_alias": report.canonical_alias,
    })
}

fn check_reason(reason: Option<&str>) -> ApiResult<()> {
    if reason.is_some_and(|reason| reason.len() > MAX_REASON_BYTES) {
        return Err(MatrixError::invalid_param(format!("reason must be at most {MAX_REASON_BYTES} bytes")));
    }
    Ok(())
}
