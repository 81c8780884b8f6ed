//! Reporting events, rooms and users to the server's admins.

use axum::extract::State;
use ruma::api::client::room::report_room;

use crate::api::extract::{AppState, Requester, Ruma, RumaResponse};
use crate::endpoints::client::{report_content, report_user};
use crate::error::ApiResult;

pub async fn report_event(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<report_content::Request>,
) -> ApiResult<RumaResponse<report_content::Response>> {
    state.limits.reports.check(owner.user_id.as_str())?;
    let (event_id, reason) = (Some(request.event_id.as_str()), request.reason.as_deref());
    state.reports.report_room(&owner.user_id, &request.room_id, event_id, reason, request.score).await?;
    Ok(report_content::Response {}.into())
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
    Ruma(request): Ruma<report_user::Request>,
) -> ApiResult<RumaResponse<report_user::Response>> {
    state.limits.reports.check(owner.user_id.as_str())?;
    state.reports.report_user(&owner.user_id, &request.user_id, request.reason.as_deref()).await?;
    Ok(report_user::Response {}.into())
}
