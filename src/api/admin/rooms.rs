//! Rooms: `/_synapse/admin/v1/rooms` and a room's details, members and state.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use ruma::OwnedRoomId;
use serde_json::Value;

use super::Params;
use crate::api::extract::{AdminUser, AppState, parse_id};
use crate::error::{ApiResult, MatrixError};
use crate::services::admin::{RoomOrder, RoomQuery};

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

pub async fn list_rooms(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let params = Params::new(params);
    let order = match params.string("order_by") {
        None => RoomOrder::Name,
        Some(value) => RoomOrder::parse(value)
            .ok_or_else(|| MatrixError::invalid_param(format!("Unknown value for order_by: {value}")))?,
    };
    let query = RoomQuery {
        page: params.page()?,
        order,
        backwards: params.backwards()?,
        search_term: params.string("search_term").map(str::to_owned),
        public_rooms: params.boolean("public_rooms")?,
        empty_rooms: params.boolean("empty_rooms")?,
    };
    Ok(Json(state.admin.list_rooms(&query).await?))
}

pub async fn room(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin.room(&room_id(&room)?).await?))
}

pub async fn members(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin.room_members(&room_id(&room)?).await?))
}

pub async fn state(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin.room_state(&room_id(&room)?).await?))
}
