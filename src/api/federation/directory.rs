//! Room aliases and the public room list, for other servers.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use serde_json::Value;

use super::Signed;
use crate::api::extract::AppState;
use crate::error::{ApiResult, MatrixError};
use crate::services::room_directory::PublicRoomsPage;

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

/// `GET/POST /v1/publicRooms`: the rooms published in this server's directory, a page at
/// a time, when `allow_public_rooms_over_federation` lets other servers see them.
pub async fn public_rooms(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    signed: Signed,
) -> ApiResult<Json<Value>> {
    let body = if signed.body.is_empty() { Value::Null } else { signed.json()? };
    // GET carries its options in the query, POST in the body.
    let limit = body["limit"].as_u64().or_else(|| query.get("limit")?.parse().ok());
    let limit = limit.map(|n| n.min(u64::from(u32::MAX)) as u32);
    let since = body["since"].as_str().or(query.get("since").map(String::as_str));
    let search_term = body["filter"]["generic_search_term"].as_str();
    let page = PublicRoomsPage { limit, since, search_term };
    Ok(Json(state.room_directory.serve_public_rooms(page).await?))
}
