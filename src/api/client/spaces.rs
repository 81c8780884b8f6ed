//! `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use ruma::RoomId;
use serde_json::Value;

use crate::api::extract::{AppState, Requester, parse_id};
use crate::error::{ApiResult, MatrixError};
use crate::services::spaces::HierarchyQuery;

pub async fn hierarchy(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    let number = |name: &str| -> ApiResult<Option<usize>> {
        params
            .get(name)
            .map(|value| {
                value.parse().map_err(|_| MatrixError::invalid_param(format!("{name} must be a non-negative integer")))
            })
            .transpose()
    };
    let suggested_only = match params.get("suggested_only").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(MatrixError::invalid_param("suggested_only must be true or false")),
    };
    let from = match params.get("from") {
        None => 0,
        Some(token) => token.parse().map_err(|_| MatrixError::invalid_param("Unknown pagination token"))?,
    };
    let query = HierarchyQuery { from, limit: number("limit")?, max_depth: number("max_depth")?, suggested_only };
    Ok(Json(state.spaces.hierarchy(&owner.user_id, room_id, &query).await?))
}
