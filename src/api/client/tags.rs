//! Room tags (`/user/{userId}/rooms/{roomId}/tags`): favourites, low priority and the
//! user's own, kept as the room's `m.tag` account data.

use axum::extract::State;
use ruma::api::client::tag::{create_tag, delete_tag, get_tags};

use super::sync::own_user;
use crate::api::extract::{AppState, Requester, Ruma, RumaResponse};
use crate::error::ApiResult;

pub async fn tags(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_tags::v3::Request>,
) -> ApiResult<RumaResponse<get_tags::v3::Response>> {
    let user_id = own_user(&owner.user_id, request.user_id.as_str())?;
    Ok(get_tags::v3::Response::new(state.account_data.tags(user_id, &request.room_id).await?).into())
}

pub async fn put_tag(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<create_tag::v3::Request>,
) -> ApiResult<RumaResponse<create_tag::v3::Response>> {
    let user_id = own_user(&owner.user_id, request.user_id.as_str())?;
    state.account_data.set_tag(user_id, &request.room_id, &request.tag, Some(request.tag_info)).await?;
    Ok(create_tag::v3::Response::new().into())
}

pub async fn delete_tag(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<delete_tag::v3::Request>,
) -> ApiResult<RumaResponse<delete_tag::v3::Response>> {
    let user_id = own_user(&owner.user_id, request.user_id.as_str())?;
    state.account_data.set_tag(user_id, &request.room_id, &request.tag, None).await?;
    Ok(delete_tag::v3::Response::new().into())
}
