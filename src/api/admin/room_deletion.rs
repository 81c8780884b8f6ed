//! Blocking and deleting rooms: `/_synapse/admin/v1/rooms/{roomId}/block`, the delete
//! room API (version 1 answers when done, version 2 at once with a delete id) and the
//! status of deletions.

use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ruma::{OwnedUserId, RoomId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::rooms::room_id;
use crate::api::extract::{AdminUser, AppState, MatrixJson, parse_id};
use crate::error::{ApiResult, MatrixError};
use crate::services::room_shutdown::DeleteRoom;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_synapse/admin/v1/rooms/{room_id}/block", get(block_status).put(set_block))
        .route("/_synapse/admin/v1/rooms/{room_id}/delete", post(delete_room_now))
        .route("/_synapse/admin/v2/rooms/{room_id}", delete(start_room_deletion))
        .route("/_synapse/admin/v2/rooms/{room_id}/delete_status", get(deletions_of_room))
        .route("/_synapse/admin/v2/rooms/delete_status/{delete_id}", get(deletion))
}

#[derive(Deserialize)]
pub struct BlockRequest {
    block: bool,
}

pub async fn set_block(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(room): Path<String>,
    MatrixJson(request): MatrixJson<BlockRequest>,
) -> ApiResult<Json<Value>> {
    state.room_shutdown.set_blocked(&room_id(&room)?, request.block, &admin.user_id).await?;
    Ok(Json(json!({ "block": request.block })))
}

pub async fn block_status(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(match state.room_shutdown.blocked_by(&room_id(&room)?).await? {
        Some(user_id) => json!({ "block": true, "user_id": user_id }),
        None => json!({ "block": false }),
    }))
}

/// The body of both versions; the body must be a JSON object, `{}` at least.
#[derive(Deserialize)]
pub struct DeleteRequest {
    #[serde(default)]
    new_room_user_id: Option<String>,
    #[serde(default)]
    room_name: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    block: bool,
    #[serde(default = "purge_by_default")]
    purge: bool,
    #[serde(default)]
    force_purge: bool,
}

fn purge_by_default() -> bool {
    true
}

impl DeleteRequest {
    fn into_request(self, room: &str, admin: &UserId) -> ApiResult<DeleteRoom> {
        let room_id: &RoomId = parse_id(room, "room ID")?;
        let new_room_user_id =
            match self.new_room_user_id {
                Some(user) => Some(OwnedUserId::try_from(user.as_str()).map_err(|_| {
                    MatrixError::invalid_param(format!("new_room_user_id is not a valid user ID: {user}"))
                })?),
                None => None,
            };
        Ok(DeleteRoom {
            room_id: room_id.to_owned(),
            requester: admin.to_owned(),
            new_room_user_id,
            room_name: self.room_name,
            message: self.message,
            block: self.block,
            purge: self.purge,
            force_purge: self.force_purge,
        })
    }
}

/// Version 1 (`DELETE /v1/rooms/{roomId}`, or `POST …/delete`): answers when done.
pub async fn delete_room_now(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(room): Path<String>,
    MatrixJson(request): MatrixJson<DeleteRequest>,
) -> ApiResult<Json<Value>> {
    let report = state.room_shutdown.delete_now(request.into_request(&room, &admin.user_id)?).await?;
    Ok(Json(json!(report)))
}

/// Version 2: starts the deletion and answers with its id.
pub async fn start_room_deletion(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(room): Path<String>,
    MatrixJson(request): MatrixJson<DeleteRequest>,
) -> ApiResult<Json<Value>> {
    let delete_id = state.room_shutdown.start(request.into_request(&room, &admin.user_id)?).await?;
    Ok(Json(json!({ "delete_id": delete_id })))
}

pub async fn deletions_of_room(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let deletions = state.room_shutdown.deletions_of(&room_id(&room)?);
    if deletions.is_empty() {
        return Err(MatrixError::not_found("No delete task for room_id found"));
    }
    Ok(Json(json!({ "results": deletions })))
}

pub async fn deletion(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(delete_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let deletion =
        state.room_shutdown.deletion(&delete_id).ok_or_else(|| MatrixError::not_found("delete id not found"))?;
    Ok(Json(json!(deletion)))
}
