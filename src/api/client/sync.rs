//! `/sync` and what feeds it: filters, account data, typing, receipts, read markers.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::extract::{AppState, MatrixJson, Requester};
use crate::error::{ApiResult, MatrixError};
use crate::services::federation::sender;
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
    let filter = resolve_filter(&state, &owner.user_id, query.filter.as_deref()).await?;
    let params = SyncParams { since, full_state, timeout: Duration::from_millis(timeout), filter };
    Ok(Json(state.sync(&owner.user_id, params).await?))
}

/// A filter given inline as JSON or by the id `POST /filter` returned.
async fn resolve_filter(state: &AppState, user_id: &str, filter: Option<&str>) -> ApiResult<Value> {
    let Some(filter) = filter else { return Ok(json!({})) };
    if filter.trim_start().starts_with('{') {
        return serde_json::from_str(filter).map_err(|err| MatrixError::bad_json(format!("Invalid filter: {err}")));
    }
    let id = filter.parse::<i64>().map_err(|_| MatrixError::invalid_param("Invalid filter ID"))?;
    state.store.get_filter(user_id, id).await?.ok_or_else(|| MatrixError::not_found("No such filter"))
}

fn own_user(owner: &str, user_id: &str) -> ApiResult<()> {
    if owner != user_id {
        return Err(MatrixError::forbidden("Cannot access another user's data"));
    }
    Ok(())
}

pub async fn create_filter(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(user_id): Path<String>,
    MatrixJson(filter): MatrixJson<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    own_user(&owner.user_id, &user_id)?;
    let filter = Value::Object(filter);
    if let Some(timeline) = filter.pointer("/room/timeline")
        && serde_json::from_value::<crate::services::rooms::filter::EventFilter>(timeline.clone()).is_err()
    {
        return Err(MatrixError::bad_json("Invalid room.timeline filter"));
    }
    let id = state.store.save_filter(&user_id, &filter).await?;
    Ok(Json(json!({ "filter_id": id.to_string() })))
}

pub async fn get_filter(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, filter_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    own_user(&owner.user_id, &user_id)?;
    let id = filter_id.parse::<i64>().map_err(|_| MatrixError::not_found("No such filter"))?;
    let filter = state.store.get_filter(&user_id, id).await?.ok_or_else(|| MatrixError::not_found("No such filter"))?;
    Ok(Json(filter))
}

pub async fn put_account_data(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, data_type)): Path<(String, String)>,
    MatrixJson(content): MatrixJson<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    own_user(&owner.user_id, &user_id)?;
    state.store.put_account_data(&user_id, "", &data_type, &Value::Object(content)).await?;
    state.notify_change();
    Ok(Json(json!({})))
}

pub async fn get_account_data(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, data_type)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    own_user(&owner.user_id, &user_id)?;
    let content = state.store.get_account_data(&user_id, "", &data_type).await?;
    content.map(Json).ok_or_else(|| MatrixError::not_found("Account data not found"))
}

pub async fn put_room_account_data(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, room_id, data_type)): Path<(String, String, String)>,
    MatrixJson(content): MatrixJson<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    own_user(&owner.user_id, &user_id)?;
    state.rooms.room_version(&room_id).await?;
    state.store.put_account_data(&user_id, &room_id, &data_type, &Value::Object(content)).await?;
    state.notify_change();
    Ok(Json(json!({})))
}

pub async fn get_room_account_data(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((user_id, room_id, data_type)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    own_user(&owner.user_id, &user_id)?;
    let content = state.store.get_account_data(&user_id, &room_id, &data_type).await?;
    content.map(Json).ok_or_else(|| MatrixError::not_found("Account data not found"))
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
    own_user(&owner.user_id, &user_id)?;
    require_joined(&state, &room_id, &user_id).await?;
    let timeout = Duration::from_millis(request.timeout.unwrap_or(30_000));
    state.typing.set(&room_id, &user_id, request.typing, timeout);
    let edu = json!({
        "edu_type": "m.typing",
        "content": { "room_id": room_id, "user_id": user_id, "typing": request.typing },
    });
    sender::send_edu_to_room(&state, &room_id, format!("m.typing {room_id} {user_id}"), edu).await?;
    Ok(Json(json!({})))
}

async fn require_joined(state: &AppState, room_id: &str, user_id: &str) -> ApiResult<()> {
    match state.store.membership(room_id, user_id).await? {
        Some(m) if m.membership == "join" => Ok(()),
        _ => Err(MatrixError::forbidden("You are not joined to this room")),
    }
}

const RECEIPT_TYPES: &[&str] = &["m.read", "m.read.private"];

pub async fn receipt(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((room_id, receipt_type, event_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    if receipt_type == "m.fully_read" {
        return set_fully_read(&state, &owner.user_id, &room_id, &event_id).await.map(|_| Json(json!({})));
    }
    if !RECEIPT_TYPES.contains(&receipt_type.as_str()) {
        return Err(MatrixError::invalid_param(format!("Unknown receipt type {receipt_type}")));
    }
    put_receipt(&state, &owner.user_id, &room_id, &receipt_type, &event_id).await?;
    Ok(Json(json!({})))
}

async fn put_receipt(state: &AppState, user_id: &str, room_id: &str, kind: &str, event_id: &str) -> ApiResult<()> {
    require_joined(state, room_id, user_id).await?;
    let event = state.store.get_event(event_id).await?;
    if event.is_none_or(|e| e.room_id != room_id) {
        return Err(MatrixError::not_found("Event not found"));
    }
    state.store.put_receipt(room_id, user_id, kind, event_id).await?;
    state.notify_change();
    if kind == "m.read" {
        let receipt = json!({ "event_ids": [event_id], "data": { "ts": crate::store::now_ms() } });
        let edu = json!({ "edu_type": "m.receipt", "content": { room_id: { "m.read": { user_id: receipt } } } });
        sender::send_edu_to_room(state, room_id, format!("m.receipt {room_id} {user_id}"), edu).await?;
    }
    Ok(())
}

async fn set_fully_read(state: &AppState, user_id: &str, room_id: &str, event_id: &str) -> ApiResult<()> {
    require_joined(state, room_id, user_id).await?;
    state.store.put_account_data(user_id, room_id, "m.fully_read", &json!({ "event_id": event_id })).await?;
    state.notify_change();
    Ok(())
}

#[derive(Deserialize)]
pub struct ReadMarkers {
    #[serde(rename = "m.fully_read", default)]
    fully_read: Option<String>,
    #[serde(rename = "m.read", default)]
    read: Option<String>,
    #[serde(rename = "m.read.private", default)]
    read_private: Option<String>,
}

pub async fn read_markers(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
    MatrixJson(markers): MatrixJson<ReadMarkers>,
) -> ApiResult<Json<Value>> {
    if let Some(event_id) = &markers.fully_read {
        set_fully_read(&state, &owner.user_id, &room_id, event_id).await?;
    }
    if let Some(event_id) = &markers.read {
        put_receipt(&state, &owner.user_id, &room_id, "m.read", event_id).await?;
    }
    if let Some(event_id) = &markers.read_private {
        put_receipt(&state, &owner.user_id, &room_id, "m.read.private", event_id).await?;
    }
    Ok(Json(json!({})))
}
