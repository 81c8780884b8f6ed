//! Reporting events, rooms and users to the server's admins.

use axum::Json;
use axum::extract::{Path, State};
use ruma::{RoomId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::{AppState, OptionalJson, Requester, parse_id};
use crate::error::ApiResult;

#[derive(Deserialize, Default)]
pub struct Report {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    score: Option<i64>,
}

pub async fn report_event(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((room_id, event_id)): Path<(String, String)>,
    OptionalJson(report): OptionalJson<Report>,
) -> ApiResult<Json<Value>> {
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    state.limits.reports.check(owner.user_id.as_str())?;
    let reason = report.reason.as_deref();
    state.reports.report_room(&owner.user_id, room_id, Some(&event_id), reason, report.score).await?;
    Ok(Json(json!({})))
}

pub async fn report_room(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
    OptionalJson(report): OptionalJson<Report>,
) -> ApiResult<Json<Value>> {
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    state.limits.reports.check(owner.user_id.as_str())?;
    state.reports.report_room(&owner.user_id, room_id, None, report.reason.as_deref(), None).await?;
    Ok(Json(json!({})))
}

pub async fn report_user(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(user_id): Path<String>,
    OptionalJson(report): OptionalJson<Report>,
) -> ApiResult<Json<Value>> {
    let user_id: &UserId = parse_id(&user_id, "user ID")?;
    state.limits.reports.check(owner.user_id.as_str())?;
    state.reports.report_user(&owner.user_id, user_id, report.reason.as_deref()).await?;
    Ok(Json(json!({})))
}
