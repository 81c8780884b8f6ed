//! `/sync` and what feeds it: filters, account data, typing, receipts, read markers.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use ruma::{RoomId, UserId};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::extract::{AppState, MatrixJson, OptionalJson, Requester, parse_id};
use crate::error::{ApiResult, MatrixError};
use crate::services::ephemeral::ReadMarkers;
use crate::services::sync::{SyncParams, SyncToken};

#[derive(Deserialize)]
pub struct SyncQuery {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    full_state: Option<String>,
    #[serde(default)]
    filter: Option<String>,
}

pub async fn sync(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Query(query): Query<SyncQuery>,
) -> ApiResult<Json<Value>> {
    let since = query.since.as_deref().map(SyncToken::parse).transpose()?;
    let timeout = match &query.timeout {
        Some(ms) => {
            ms.parse::<u64>().map_err(|_| MatrixError::invalid_param("timeout must be a number of milliseconds"))?
        }
        None => 0,
    };
    let full_state = match query.full_state.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(MatrixError::invalid_param("full_state must be true or false")),
    };
    let filter = state.account_data.sync_filter(&owner.user_id, query.filter.as_deref()).await?;
    let params = SyncParams {
        device_id: owner.device_id.clone(),
        since,
        full_state,
        timeout: Duration::from_millis(timeout),
        filter,
    };
    Ok(Json(state.sync.sync(&owner.user_id, params).await?))
}

/// Users read and write their own data only.
pub fn own_user<'a>(owner: &UserId, user_id: &'a str) -> ApiResult<&'a UserId> {
    if owner.as_str() != user_id {
        return Err(MatrixError::forbidden("Cannot access another user's data"));
    }
    parse_id(user_id, "user ID")
}

pub async fn create_filter(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(user_id): Path<String>,
    MatrixJson(filter): MatrixJson<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let user_id = own_user(&owner.user_id, &user_id)?;
    let id = state.account_data.create_filter(user_id, &Value::Object(filter)).await?;
    Ok(Json(json!({ "filter_id": id.to_string() })))
}

pub async fn get_filter(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, filter_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = own_user(&owner.user_id, &user_id)?;
    Ok(Json(state.account_data.filter(user_id, &filter_id).await?))
}

pub async fn put_account_data(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, data_type)): Path<(String, String)>,
    MatrixJson(content): MatrixJson<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let user_id = own_user(&owner.user_id, &user_id)?;
    state.account_data.put_from_client(user_id, None, &data_type, &Value::Object(content)).await?;
    Ok(Json(json!({})))
}

pub async fn get_account_data(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, data_type)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = own_user(&owner.user_id, &user_id)?;
    Ok(Json(state.account_data.get(user_id, None, &data_type).await?))
}

pub async fn put_room_account_data(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, room_id, data_type)): Path<(String, String, String)>,
    MatrixJson(content): MatrixJson<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let user_id = own_user(&owner.user_id, &user_id)?;
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    state.account_data.put_from_client(user_id, Some(room_id), &data_type, &Value::Object(content)).await?;
    Ok(Json(json!({})))
}

pub async fn get_room_account_data(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, room_id, data_type)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let user_id = own_user(&owner.user_id, &user_id)?;
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    Ok(Json(state.account_data.get(user_id, Some(room_id), &data_type).await?))
}

#[derive(Deserialize)]
pub struct TypingRequest {
    typing: bool,
    #[serde(default)]
    timeout: Option<u64>,
}

pub async fn typing(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((room_id, user_id)): Path<(String, String)>,
    MatrixJson(request): MatrixJson<TypingRequest>,
) -> ApiResult<Json<Value>> {
    let user_id = own_user(&owner.user_id, &user_id)?;
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    let timeout = Duration::from_millis(request.timeout.unwrap_or(30_000));
    state.ephemeral.set_typing(room_id, user_id, request.typing, timeout).await?;
    Ok(Json(json!({})))
}

pub async fn receipt(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((room_id, receipt_type, event_id)): Path<(String, String, String)>,
    OptionalJson(_): OptionalJson<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    state.ephemeral.set_receipt(room_id, &owner.user_id, &receipt_type, &event_id).await?;
    Ok(Json(json!({})))
}

pub async fn read_markers(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
    MatrixJson(markers): MatrixJson<ReadMarkers>,
) -> ApiResult<Json<Value>> {
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    state.ephemeral.set_read_markers(room_id, &owner.user_id, &markers).await?;
    Ok(Json(json!({})))
}
