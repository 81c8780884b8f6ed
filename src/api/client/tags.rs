//! Room tags (`/user/{userId}/rooms/{roomId}/tags`): favourites, low priority and the
//! user's own, kept as the room's `m.tag` account data.

use axum::Json;
use axum::extract::{Path, State};
use ruma::RoomId;
use serde_json::{Value, json};

use super::sync::own_user;
use crate::api::extract::{AppState, MatrixJson, Requester, parse_id};
use crate::error::ApiResult;

pub async fn tags(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, room_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = own_user(&owner.user_id, &user_id)?;
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    Ok(Json(json!({ "tags": state.account_data.tags(user_id, room_id).await? })))
}

pub async fn put_tag(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, room_id, tag)): Path<(String, String, String)>,
    MatrixJson(content): MatrixJson<Value>,
) -> ApiResult<Json<Value>> {
    let user_id = own_user(&owner.user_id, &user_id)?;
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    state.account_data.set_tag(user_id, room_id, &tag, Some(content)).await?;
    Ok(Json(json!({})))
}

pub async fn delete_tag(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, room_id, tag)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = own_user(&owner.user_id, &user_id)?;
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    state.account_data.set_tag(user_id, room_id, &tag, None).await?;
    Ok(Json(json!({})))
}
