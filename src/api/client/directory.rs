//! Room aliases (`/directory/room/{alias}`) and the local public room list.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::{AppState, MatrixJson, Requester};
use crate::error::{ApiResult, MatrixError};

fn local_alias(state: &AppState, alias: &str) -> ApiResult<()> {
    let valid = alias.starts_with('#') && <&ruma::RoomAliasId>::try_from(alias).is_ok();
    if !valid {
        return Err(MatrixError::invalid_param(format!("Invalid room alias: {alias}")));
    }
    if !alias.ends_with(&format!(":{}", state.config.server_name)) {
        return Err(MatrixError::invalid_param("Room alias must be on this server"));
    }
    Ok(())
}

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
    local_alias(&state, &alias)?;
    state.rooms.room_version(&request.room_id).await?;
    if !state.store.put_alias(&alias, &request.room_id, &owner.user_id).await? {
        return Err(MatrixError::new(StatusCode::CONFLICT, "M_UNKNOWN", "Room alias already exists"));
    }
    Ok(Json(json!({})))
}

/// A local alias from the store; another server's by asking it.
pub async fn get_alias(State(state): State<AppState>, Path(alias): Path<String>) -> ApiResult<Json<Value>> {
    let alias = <&ruma::RoomAliasId>::try_from(alias.as_str())
        .map_err(|_| MatrixError::invalid_param(format!("Invalid room alias: {alias}")))?;
    let (room_id, servers) = state.resolve_alias(alias).await?;
    Ok(Json(json!({ "room_id": room_id, "servers": servers })))
}

/// The alias's creator or a server admin may delete it, as in Synapse.
pub async fn delete_alias(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(alias): Path<String>,
) -> ApiResult<Json<Value>> {
    local_alias(&state, &alias)?;
    let (_, creator) =
        state.store.get_alias(&alias).await?.ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    if creator != owner.user_id && !owner.admin {
        return Err(MatrixError::forbidden("You may not delete this alias"));
    }
    state.store.delete_alias(&alias).await?;
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
    if let Some(server) = query.server.as_deref().filter(|s| *s != state.config.server_name.as_str()) {
        let server = <&ruma::ServerName>::try_from(server)
            .map_err(|_| MatrixError::invalid_param(format!("Invalid server name: {server}")))?;
        let mut path = format!("/_matrix/federation/v1/publicRooms?limit={}", query.limit.unwrap_or(100).min(500));
        if let Some(since) = &query.since {
            path.push_str(&format!("&since={}", crate::config::percent_encode(since)));
        }
        let rooms = state.federation.get(server, &path).await.map_err(|e| e.to_client_error())?;
        let mut answer = json!({ "chunk": rooms["chunk"].as_array().cloned().unwrap_or_default() });
        for key in ["next_batch", "prev_batch", "total_room_count_estimate"] {
            if let Some(value) = rooms.get(key) {
                answer[key] = value.clone();
            }
        }
        return Ok(Json(answer));
    }
    let mut chunk = Vec::new();
    for room_id in state.store.published_rooms().await? {
        chunk.push(state.rooms.public_room_summary(&room_id).await?);
    }
    Ok(Json(json!({ "chunk": chunk, "total_room_count_estimate": chunk.len() })))
}
