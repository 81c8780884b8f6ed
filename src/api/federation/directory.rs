//! Room aliases and the public room list, for other servers.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};

use super::Signed;
use crate::api::extract::AppState;
use crate::error::{ApiResult, MatrixError};

/// `GET /v1/query/directory?room_alias=…`: a local alias's room and the servers in it.
pub async fn query_alias(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    _signed: Signed,
) -> ApiResult<Json<Value>> {
    let alias = query.get("room_alias").ok_or_else(|| MatrixError::missing_param("room_alias is required"))?;
    let alias_id =
        <&ruma::RoomAliasId>::try_from(alias.as_str()).map_err(|_| MatrixError::invalid_param("Invalid room alias"))?;
    if alias_id.server_name() != state.config.server_name {
        return Err(MatrixError::not_found("The alias is not on this server"));
    }
    let (room_id, _) =
        state.store.get_alias(alias).await?.ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
    let mut servers = vec![state.config.server_name.to_string()];
    for user in state.store.joined_user_ids(&room_id).await? {
        if let Ok(user) = <&ruma::UserId>::try_from(user.as_str()) {
            let server = user.server_name().to_string();
            if !servers.contains(&server) {
                servers.push(server);
            }
        }
    }
    Ok(Json(json!({ "room_id": room_id, "servers": servers })))
}

/// `GET/POST /v1/publicRooms`: the rooms published in this server's directory, when
/// `allow_public_rooms_over_federation` lets other servers see them.
pub async fn public_rooms(State(state): State<AppState>, _signed: Signed) -> ApiResult<Json<Value>> {
    if !state.config.allow_public_rooms_over_federation {
        return Err(MatrixError::forbidden("This server does not share its public room list"));
    }
    let mut chunk = Vec::new();
    for room_id in state.store.published_rooms().await? {
        chunk.push(state.rooms.public_room_summary(&room_id).await?);
    }
    Ok(Json(json!({ "chunk": chunk, "total_room_count_estimate": chunk.len() })))
}
