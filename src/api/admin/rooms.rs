//! Rooms: `/_synapse/admin/v1/rooms` and a room's details, members and state.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use ruma::OwnedRoomId;
use serde::Deserialize;

use super::query::{AdminQuery, Direction, backwards, count, flag, order, page};
use crate::api::extract::{AdminUser, AppState, parse_id};
use crate::error::ApiResult;
use crate::services::admin::{RoomDetails, RoomList, RoomMembers, RoomOrder, RoomQuery, RoomState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_synapse/admin/v1/rooms", get(list_rooms))
        .route("/_synapse/admin/v1/rooms/{room_id}", get(room).delete(super::room_deletion::delete_room_now))
        .route("/_synapse/admin/v1/rooms/{room_id}/members", get(members))
        .route("/_synapse/admin/v1/rooms/{room_id}/state", get(state))
}

pub(super) fn room_id(value: &str) -> ApiResult<OwnedRoomId> {
    parse_id(value, "room ID")
}

#[derive(Deserialize)]
pub struct RoomListQuery {
    #[serde(default, deserialize_with = "count")]
    from: Option<i64>,
    #[serde(default, deserialize_with = "count")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "room_order")]
    order_by: Option<RoomOrder>,
    #[serde(default)]
    dir: Option<Direction>,
    #[serde(default)]
    search_term: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    public_rooms: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    empty_rooms: Option<bool>,
}

fn room_order<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<RoomOrder>, D::Error> {
    order(deserializer, RoomOrder::parse)
}

pub async fn list_rooms(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    AdminQuery(query): AdminQuery<RoomListQuery>,
) -> ApiResult<Json<RoomList>> {
    let query = RoomQuery {
        page: page(query.from, query.limit),
        order: query.order_by.unwrap_or(RoomOrder::Name),
        backwards: backwards(query.dir, false),
        search_term: query.search_term,
        public_rooms: query.public_rooms,
        empty_rooms: query.empty_rooms,
    };
    Ok(Json(state.admin.list_rooms(&query).await?))
}

pub async fn room(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(room): Path<String>,
) -> ApiResult<Json<RoomDetails>> {
    Ok(Json(state.admin.room(&room_id(&room)?).await?))
}

pub async fn members(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(room): Path<String>,
) -> ApiResult<Json<RoomMembers>> {
    Ok(Json(state.admin.room_members(&room_id(&room)?).await?))
}

pub async fn state(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(room): Path<String>,
) -> ApiResult<Json<RoomState>> {
    Ok(Json(state.admin.room_state(&room_id(&room)?).await?))
}
