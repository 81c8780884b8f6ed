//! Reports of events, rooms and users (`/rooms/{roomId}/report[/{eventId}]`,
//! `/users/{userId}/report`), kept for the server's admins. A user can only report
//! what they can see, and learns nothing about what they cannot. Admins list, read and
//! delete the reports of events and of users in Synapse's shapes
//! (`/_synapse/admin/v1/event_reports`, `/_synapse/admin/v1/user_reports`).

use std::sync::Arc;

use ruma::events::AnyTimelineEvent;
use ruma::serde::Raw;
use ruma::{RoomId, UserId};
use serde::Serialize;

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
    pub async fn event_reports(&self, query: &EventReportQuery) -> ApiResult<EventReports> {
        let (reports, total) = self.store.event_reports(query).await?;
        let next_token = next_token(reports.len(), total, query.from, query.limit);
        Ok(EventReports { event_reports: reports.into_iter().map(EventReport::from).collect(), total, next_token })
    }

    /// `GET /_synapse/admin/v1/event_reports/{reportId}`: the report and the reported
    /// event as stored (null once its room was purged).
    pub async fn event_report(&self, report_id: i64) -> ApiResult<EventReportDetails> {
        let (report, event) = self.store.event_report(report_id).await?.ok_or_else(report_not_found)?;
        let event_json = match event {
            Some(event) => Some(Raw::from_json(
                serde_json::value::to_raw_value(&event)
                    .map_err(|err| MatrixError::internal("a reported event", err))?,
            )),
            None => None,
        };
        Ok(EventReportDetails { report: report.into(), event_json })
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
    pub async fn user_reports(&self, query: &UserReportQuery) -> ApiResult<UserReports> {
        let (reports, total) = self.store.user_reports(query).await?;
        let next_token = next_token(reports.len(), total, query.from, query.limit);
        Ok(UserReports { user_reports: reports.into_iter().map(UserReport::from).collect(), total, next_token })
    }

    /// `GET /_synapse/admin/v1/user_reports/{reportId}`.
    pub async fn user_report(&self, report_id: i64) -> ApiResult<UserReport> {
        let report = self.store.user_report(report_id).await?.ok_or_else(user_report_not_found)?;
        Ok(report.into())
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

/// The offset of the next page of a report list, only while more remain (a number,
/// unlike the other admin lists' strings, as in Synapse).
fn next_token(listed: usize, total: i64, from: i64, limit: i64) -> Option<i64> {
    (from.saturating_add(limit) < total).then(|| from + listed as i64)
}

fn user_report_not_found() -> MatrixError {
    MatrixError::not_found("User report not found")
}

fn report_not_found() -> MatrixError {
    MatrixError::not_found("Event report not found")
}

/// A page of event reports, in Synapse's shape.
#[derive(Debug, Serialize)]
pub struct EventReports {
    pub event_reports: Vec<EventReport>,
    pub total: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<i64>,
}

/// A report of an event in Synapse's shape: `user_id` is the reporter, `sender` the
/// event's sender (null once the event is purged).
#[derive(Debug, Serialize)]
pub struct EventReport {
    pub id: i64,
    pub received_ts: i64,
    pub room_id: Option<String>,
    pub name: Option<String>,
    pub event_id: String,
    pub user_id: String,
    pub reason: Option<String>,
    pub score: Option<i64>,
    pub sender: Option<String>,
    pub canonical_alias: Option<String>,
}

impl From<EventReportRow> for EventReport {
    fn from(row: EventReportRow) -> Self {
        Self {
            id: row.id,
            received_ts: row.received_ts,
            room_id: row.room_id,
            name: row.room_name,
            event_id: row.event_id,
            user_id: row.reporter,
            reason: row.reason,
            score: row.score,
            sender: row.sender,
            canonical_alias: row.canonical_alias,
        }
    }
}

/// One event report with the reported event as stored (null once its room is purged).
#[derive(Debug, Serialize)]
pub struct EventReportDetails {
    #[serde(flatten)]
    pub report: EventReport,
    pub event_json: Option<Raw<AnyTimelineEvent>>,
}

/// A page of user reports, in Synapse's shape.
#[derive(Debug, Serialize)]
pub struct UserReports {
    pub user_reports: Vec<UserReport>,
    pub total: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<i64>,
}

/// A report of a user in Synapse's shape: `user_id` is the reporter.
#[derive(Debug, Serialize)]
pub struct UserReport {
    pub id: i64,
    pub received_ts: i64,
    pub user_id: String,
    pub target_user_id: String,
    pub reason: Option<String>,
}

impl From<UserReportRow> for UserReport {
    fn from(row: UserReportRow) -> Self {
        Self {
            id: row.id,
            received_ts: row.received_ts,
            user_id: row.reporter,
            target_user_id: row.reported_user,
            reason: row.reason,
        }
    }
}

fn check_reason(reason: Option<&str>) -> ApiResult<()> {
    if reason.is_some_and(|reason| reason.len() > MAX_REASON_BYTES) {
        return Err(MatrixError::invalid_param(format!("reason must be at most {MAX_REASON_BYTES} bytes")));
    }
    Ok(())
}
