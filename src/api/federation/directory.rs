//! Room aliases, the public room list and the federated user directory, for other
//! servers.

use std::collections::HashMap;

use axum::extract::{Query, State};
use serde_json::Value;

use ruma::api::federation::directory::get_public_rooms;
use ruma::api::federation::query::get_room_information;

use super::{Signed, SignedRuma};
use crate::api::extract::{AppState, RumaResponse};
use crate::endpoints::federated_directory::{get_bwi_list, get_changes, search};
use crate::error::{ApiResult, MatrixError};
use crate::services::room_directory::PublicRoomsPage;

/// `GET /v1/query/directory?room_alias=…`: a local alias's room and the servers in it.
pub async fn query_alias(
    State(state): State<AppState>,
    SignedRuma { request, .. }: SignedRuma<get_room_information::v1::Request>,
) -> ApiResult<RumaResponse<get_room_information::v1::Response>> {
    Ok(state.room_directory.serve_alias_query(&request.room_alias).await?.into())
}

/// `GET/POST /v1/publicRooms`: the rooms published in this server's directory, a page at
/// a time, when `allow_public_rooms_over_federation` lets other servers see them.
pub async fn public_rooms(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    signed: Signed,
) -> ApiResult<RumaResponse<get_public_rooms::v1::Response>> {
    let body = if signed.body.is_empty() { Value::Null } else { signed.json()? };
    // GET carries its options in the query, POST in the body.
    let limit = body["limit"].as_u64().or_else(|| query.get("limit")?.parse().ok());
    let limit = limit.map(|n| n.min(u64::from(u32::MAX)) as u32);
    let since = body["since"].as_str().or(query.get("since").map(String::as_str));
    let search_term = body["filter"]["generic_search_term"].as_str();
    let page = PublicRoomsPage { limit, since, search_term };
    let list = state.room_directory.serve_public_rooms(page).await?;
    let mut answer = get_public_rooms::v1::Response::new();
    (answer.chunk, answer.next_batch, answer.prev_batch) = (list.chunk, list.next_batch, list.prev_batch);
    answer.total_room_count_estimate = list.total_room_count_estimate;
    Ok(answer.into())
}

/// `GET …/io.kith.user_directory/changes?since=…&limit=…`: a peer follows this
/// server's directory.
/// A `limit` that is not a non-negative integer is `M_INVALID_PARAM`.
pub async fn user_directory_changes(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRuma<get_changes::Request>,
) -> ApiResult<RumaResponse<get_changes::Response>> {
    let since = request.since.as_deref();
    Ok(state.federated_directory.serve_changes(&signed.origin, since, request.limit).await?.into())
}

/// `GET …/de.bwi.federated_user_dir/user_directory/search`: BWI's full list.
pub async fn user_directory_list(
    State(state): State<AppState>,
    signed: Signed,
) -> ApiResult<RumaResponse<get_bwi_list::Response>> {
    Ok(state.federated_directory.serve_bwi_list(&signed.origin).await?.into())
}

/// `POST …/org.matrix.msc4258/user_directory/search`: a peer's live search.
pub async fn user_directory_search(
    State(state): State<AppState>,
    signed: Signed,
) -> ApiResult<RumaResponse<search::Response>> {
    let search = serde_json::from_value(signed.json()?).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    Ok(state.federated_directory.serve_search(&signed.origin, search).await?.into())
}
