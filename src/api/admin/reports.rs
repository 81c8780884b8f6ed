//! Reports of events and of users: `/_synapse/admin/v1/event_reports` and
//! `/_synapse/admin/v1/user_reports`, one report, and its deletion.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::Empty;
use super::query::{AdminQuery, Direction, backwards, count, page};
use crate::api::extract::{AdminUser, AppState};
use crate::error::{ApiResult, MatrixError};
use crate::services::reports::{EventReportDetails, EventReports, UserReport, UserReports};
use crate::store::{EventReportQuery, UserReportQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_synapse/admin/v1/event_reports", get(list_event_reports))
        .route("/_synapse/admin/v1/event_reports/{report_id}", get(event_report).delete(delete_event_report))
        .route("/_synapse/admin/v1/user_reports", get(list_user_reports))
        .route("/_synapse/admin/v1/user_reports/{report_id}", get(user_report).delete(delete_user_report))
}

#[derive(Deserialize)]
pub struct EventReportListQuery {
    #[serde(default, deserialize_with = "count")]
    from: Option<i64>,
    #[serde(default, deserialize_with = "count")]
    limit: Option<i64>,
    #[serde(default)]
    dir: Option<Direction>,
    /// Part of the reporter's user id.
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    room_id: Option<String>,
    #[serde(default)]
    event_sender_user_id: Option<String>,
}

/// Newest first unless `dir=f`, as in Synapse.
pub async fn list_event_reports(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    AdminQuery(query): AdminQuery<EventReportListQuery>,
) -> ApiResult<Json<EventReports>> {
    let page = page(query.from, query.limit);
    let query = EventReportQuery {
        from: page.from,
        limit: page.limit,
        backwards: backwards(query.dir, true),
        reporter: query.user_id,
        room_id: query.room_id,
        event_sender: query.event_sender_user_id,
    };
    Ok(Json(state.reports.event_reports(&query).await?))
}

pub async fn event_report(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(report_id): Path<String>,
) -> ApiResult<Json<EventReportDetails>> {
    Ok(Json(state.reports.event_report(parse_report_id(&report_id)?).await?))
}

pub async fn delete_event_report(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(report_id): Path<String>,
) -> ApiResult<Json<Empty>> {
    state.reports.delete_event_report(parse_report_id(&report_id)?).await?;
    Ok(Json(Empty {}))
}

#[derive(Deserialize)]
pub struct UserReportListQuery {
    #[serde(default, deserialize_with = "count")]
    from: Option<i64>,
    #[serde(default, deserialize_with = "count")]
    limit: Option<i64>,
    #[serde(default)]
    dir: Option<Direction>,
    /// Part of the reporter's user id.
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    target_user_id: Option<String>,
}

/// Newest first unless `dir=f`, as in Synapse.
pub async fn list_user_reports(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    AdminQuery(query): AdminQuery<UserReportListQuery>,
) -> ApiResult<Json<UserReports>> {
    let page = page(query.from, query.limit);
    let query = UserReportQuery {
        from: page.from,
        limit: page.limit,
        backwards: backwards(query.dir, true),
        reporter: query.user_id,
        reported_user: query.target_user_id,
    };
    Ok(Json(state.reports.user_reports(&query).await?))
}

pub async fn user_report(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(report_id): Path<String>,
) -> ApiResult<Json<UserReport>> {
    Ok(Json(state.reports.user_report(parse_report_id(&report_id)?).await?))
}

pub async fn delete_user_report(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(report_id): Path<String>,
) -> ApiResult<Json<Empty>> {
    state.reports.delete_user_report(parse_report_id(&report_id)?).await?;
    Ok(Json(Empty {}))
}

/// Report ids are non-negative integers; anything else is `400 M_INVALID_PARAM`.
fn parse_report_id(value: &str) -> ApiResult<i64> {
    value.parse::<i64>().ok().filter(|id| *id >= 0).ok_or_else(|| {
        MatrixError::invalid_param("The report_id parameter must be a string representing a positive integer.")
    })
}
