//! Reporting events, rooms and users to the server's admins.

use axum::extract::{Path, State};
use ruma::api::client::reporting::report_user;
use ruma::api::client::room::{report_content, report_room};
use ruma::{RoomId, UserId};
use serde::Deserialize;

use crate::api::extract::{AppState, OptionalJson, Requester, Ruma, RumaResponse, parse_id};
use crate::error::ApiResult;

/// Not ruma's request: an event's report may carry a `score` (-100 to 0), which the
/// spec dropped and ruma's leaves out but Synapse still takes and keeps; a user's may
/// come without a `reason`, which ruma's requires.
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
) -> ApiResult<RumaResponse<report_content::v3::Response>> {
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    state.limits.reports.check(owner.user_id.as_str())?;
    let reason = report.reason.as_deref();
    state.reports.report_room(&owner.user_id, room_id, Some(&event_id), reason, report.score).await?;
    Ok(report_content::v3::Response::new().into())
}

pub async fn report_room(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<report_room::v3::Request>,
) -> ApiResult<RumaResponse<report_room::v3::Response>> {
    state.limits.reports.check(owner.user_id.as_str())?;
    // Ruma reads a report without a reason as an empty one; kept as none.
    let reason = Some(request.reason.as_str()).filter(|reason| !reason.is_empty());
    state.reports.report_room(&owner.user_id, &request.room_id, None, reason, None).await?;
    Ok(report_room::v3::Response::new().into())
}

pub async fn report_user(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(user_id): Path<String>,
    OptionalJson(report): OptionalJson<Report>,
) -> ApiResult<RumaResponse<report_user::v3::Response>> {
    let user_id: &UserId = parse_id(&user_id, "user ID")?;
    state.limits.reports.check(owner.user_id.as_str())?;
    state.reports.report_user(&owner.user_id, user_id, report.reason.as_deref()).await?;
    Ok(report_user::v3::Response::new().into())
}
