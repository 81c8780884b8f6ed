//! Room aliases and the public room list, for other servers.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::Value;

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
    let alias =
        <&ruma::RoomAliasId>::try_from(alias.as_str()).map_err(|_| MatrixError::invalid_param("Invalid room alias"))?;
    Ok(Json(state.room_directory.serve_alias_query(alias).await?))
}

/// `GET/POST /v1/publicRooms`: the rooms published in this server's directory, when
/// `allow_public_rooms_over_federation` lets other servers see them.
pub async fn public_rooms(State(state): State<AppState>, _signed: Signed) -> ApiResult<Json<Value>> {
    Ok(Json(state.room_directory.serve_public_rooms().await?))
}
