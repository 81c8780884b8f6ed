//! Blocking and deleting rooms: `/_synapse/admin/v1/rooms/{roomId}/block`, the delete
//! room API (version 1 answers when done, version 2 at once with a delete id) and the
//! status of deletions.

use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ruma::{OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};

use super::rooms::room_id;
use crate::api::extract::{AdminUser, AppState, MatrixJson, parse_id};
use crate::error::{ApiResult, MatrixError};
use crate::services::room_shutdown::{DeleteRoom, Deletion, ShutdownReport};

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

/// Whether a room is blocked, and by whom (only in the status, not after a change).
#[derive(Serialize)]
pub struct BlockStatus {
    block: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
}

pub async fn set_block(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(room): Path<String>,
    MatrixJson(request): MatrixJson<BlockRequest>,
) -> ApiResult<Json<BlockStatus>> {
    state.room_shutdown.set_blocked(&room_id(&room)?, request.block, &admin.user_id).await?;
    Ok(Json(BlockStatus { block: request.block, user_id: None }))
}

pub async fn block_status(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(room): Path<String>,
) -> ApiResult<Json<BlockStatus>> {
    let blocked_by = state.room_shutdown.blocked_by(&room_id(&room)?).await?;
    Ok(Json(BlockStatus { block: blocked_by.is_some(), user_id: blocked_by }))
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
) -> ApiResult<Json<ShutdownReport>> {
    Ok(Json(state.room_shutdown.delete_now(request.into_request(&room, &admin.user_id)?).await?))
}

#[derive(Serialize)]
pub struct DeletionStarted {
    delete_id: String,
}

/// Version 2: starts the deletion and answers with its id.
pub async fn start_room_deletion(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(room): Path<String>,
    MatrixJson(request): MatrixJson<DeleteRequest>,
) -> ApiResult<Json<DeletionStarted>> {
    let delete_id = state.room_shutdown.start(request.into_request(&room, &admin.user_id)?).await?;
    Ok(Json(DeletionStarted { delete_id }))
}

#[derive(Serialize)]
pub struct Deletions {
    results: Vec<Deletion>,
}

pub async fn deletions_of_room(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(room): Path<String>,
) -> ApiResult<Json<Deletions>> {
    let results = state.room_shutdown.deletions_of(&room_id(&room)?);
    if results.is_empty() {
        return Err(MatrixError::not_found("No delete task for room_id found"));
    }
    Ok(Json(Deletions { results }))
}

pub async fn deletion(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(delete_id): Path<String>,
) -> ApiResult<Json<Deletion>> {
    let deletion =
        state.room_shutdown.deletion(&delete_id).ok_or_else(|| MatrixError::not_found("delete id not found"))?;
    Ok(Json(deletion))
}
