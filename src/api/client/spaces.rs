//! `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`.

use axum::extract::State;
use ruma::api::client::space::get_hierarchy;

use crate::api::extract::{AppState, Requester, Ruma, RumaResponse};
use crate::error::{ApiResult, MatrixError};
use crate::services::spaces::HierarchyQuery;

pub async fn hierarchy(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_hierarchy::v1::Request>,
) -> ApiResult<RumaResponse<get_hierarchy::v1::Response>> {
    let from = match &request.from {
        None => 0,
        Some(token) => token.parse().map_err(|_| MatrixError::invalid_param("Unknown pagination token"))?,
    };
    let number = |n: ruma::UInt| usize::try_from(u64::from(n)).unwrap_or(usize::MAX);
    let query = HierarchyQuery {
        from,
        limit: request.limit.map(number),
        max_depth: request.max_depth.map(number),
        suggested_only: request.suggested_only,
    };
    let page = state.spaces.hierarchy(&owner.user_id, &request.room_id, &query).await?;
    let mut answer = get_hierarchy::v1::Response::new();
    answer.rooms = page.rooms;
    answer.next_batch = page.next_batch;
    Ok(answer.into())
}
