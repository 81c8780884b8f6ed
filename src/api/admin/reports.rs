//! Reports of events and of users: `/_synapse/admin/v1/event_reports` and
//! `/_synapse/admin/v1/user_reports`, one report, and its deletion.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Params;
use crate::api::extract::{AdminUser, AppState};
use crate::error::{ApiResult, MatrixError};
use crate::store::{EventReportQuery, UserReportQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_synapse/admin/v1/event_reports", get(list_event_reports))
        .route("/_synapse/admin/v1/event_reports/{report_id}", get(event_report).delete(delete_event_report))
        .route("/_synapse/admin/v1/user_reports", get(list_user_reports))
        .route("/_synapse/admin/v1/user_reports/{report_id}", get(user_report).delete(delete_user_report))
}

/// Newest first unless `dir=f`, as in Synapse.
pub async fn list_event_reports(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let params = Params::new(params);
    let page = params.page()?;
    let query = EventReportQuery {
        from: page.from,
        limit: page.limit,
        backwards: params.backwards_or(true)?,
        reporter: params.string("user_id").map(str::to_owned),
        room_id: params.string("room_id").map(str::to_owned),
        event_sender: params.string("event_sender_user_id").map(str::to_owned),
    };
    Ok(Json(state.reports.event_reports(&query).await?))
}

pub async fn event_report(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(report_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.reports.event_report(parse_report_id(&report_id)?).await?))
}

pub async fn delete_event_report(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(report_id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.reports.delete_event_report(parse_report_id(&report_id)?).await?;
    Ok(Json(json!({})))
}

/// Newest first unless `dir=f`, as in Synapse.
pub async fn list_user_reports(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let params = Params::new(params);
    let page = params.page()?;
    let query = UserReportQuery {
        from: page.from,
        limit: page.limit,
        backwards: params.backwards_or(true)?,
        reporter: params.string("user_id").map(str::to_owned),
        reported_user: params.string("target_user_id").map(str::to_owned),
    };
    Ok(Json(state.reports.user_reports(&query).await?))
}

pub async fn user_report(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(report_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.reports.user_report(parse_report_id(&report_id)?).await?))
}

pub async fn delete_user_report(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(report_id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.reports.delete_user_report(parse_report_id(&report_id)?).await?;
    Ok(Json(json!({})))
}

/// Report ids are non-negative integers; anything else is `400 M_INVALID_PARAM`.
fn parse_report_id(value: &str) -> ApiResult<i64> {
    value.parse::<i64>().ok().filter(|id| *id >= 0).ok_or_else(|| {
        MatrixError::invalid_param("The report_id parameter must be a string representing a positive integer.")
    })
}
