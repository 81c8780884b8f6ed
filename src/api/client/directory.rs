//! Room aliases (`/directory/room/{alias}`) and the public room list.

use axum::Json;
use axum::extract::{Path, Query, State};
use ruma::{RoomAliasId, RoomId, ServerName};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::{AppState, MatrixJson, Requester, parse_id};
use crate::error::ApiResult;

#[derive(Deserialize)]
pub struct PutAlias {
    room_id: String,
}

pub async fn put_alias(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(alias): Path<String>,
    MatrixJson(request): MatrixJson<PutAlias>,
) -> ApiResult<Json<Value>> {
    let alias: &RoomAliasId = parse_id(&alias, "room alias")?;
    let room_id: &RoomId = parse_id(&request.room_id, "room ID")?;
    state.room_directory.put_alias(alias, room_id, &owner.user_id).await?;
    Ok(Json(json!({})))
}

/// A local alias from the store; another server's by asking it.
pub async fn get_alias(State(state): State<AppState>, Path(alias): Path<String>) -> ApiResult<Json<Value>> {
    let alias: &RoomAliasId = parse_id(&alias, "room alias")?;
    let (room_id, servers) = state.room_directory.resolve_alias(alias).await?;
    Ok(Json(json!({ "room_id": room_id, "servers": servers })))
}

pub async fn delete_alias(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(alias): Path<String>,
) -> ApiResult<Json<Value>> {
    let alias: &RoomAliasId = parse_id(&alias, "room alias")?;
    state.room_directory.delete_alias(alias, &owner).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct PublicRoomsQuery {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    since: Option<String>,
}

/// `GET/POST /publicRooms[?server=…]`: rooms published with `visibility: public`, here
/// or (asked over federation) on another server.
pub async fn public_rooms(
    State(state): State<AppState>,
    Query(query): Query<PublicRoomsQuery>,
) -> ApiResult<Json<Value>> {
    let server: Option<&ServerName> = query.server.as_deref().map(|s| parse_id(s, "server name")).transpose()?;
    Ok(Json(state.room_directory.public_rooms(server, query.limit, query.since.as_deref()).await?))
}
