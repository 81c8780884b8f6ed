//! Reading around and along events: `/context`, `/relations` and `/threads`.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, Query, State};
use ruma::RoomId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::rooms::parse_token;
use crate::api::extract::{AppState, Requester, parse_id};
use crate::error::{ApiResult, MatrixError};
use crate::services::relations::RelationsRequest;
use crate::services::rooms::format::client_event;

fn parse_limit(limit: Option<&str>) -> ApiResult<Option<i64>> {
    limit
        .map(|limit| limit.parse::<i64>().map_err(|_| MatrixError::invalid_param("limit must be an integer")))
        .transpose()
}

#[derive(Deserialize)]
pub struct ContextQuery {
    limit: Option<String>,
    filter: Option<String>,
}

/// `GET /rooms/{roomId}/context/{eventId}`.
pub async fn context(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((room_id, event_id)): Path<(String, String)>,
    Query(query): Query<ContextQuery>,
) -> ApiResult<Json<Value>> {
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    let limit = parse_limit(query.limit.as_deref())?.unwrap_or(10).clamp(0, 100);
    let lazy_members = match query.filter.as_deref() {
        Some(text) => {
            let filter: Value =
                serde_json::from_str(text).map_err(|err| MatrixError::bad_json(format!("Invalid filter: {err}")))?;
            filter["lazy_load_members"].as_bool().unwrap_or(false)
        }
        None => false,
    };
    let context = state.rooms.context(room_id, &owner.user_id, &event_id, limit).await?;
    let senders: HashSet<&str> = std::iter::once(&context.event)
        .chain(&context.before)
        .chain(&context.after)
        .filter_map(|e| e.json["sender"].as_str())
        .collect();
    let state_events: Vec<Value> = context
        .state
        .iter()
        .filter(|e| {
            !lazy_members
                || e.json["type"] != "m.room.member"
                || e.json["state_key"].as_str().is_some_and(|key| senders.contains(key))
        })
        .map(client_event)
        .collect();
    Ok(Json(json!({
        "event": client_event(&context.event),
        "events_before": context.before.iter().map(client_event).collect::<Vec<_>>(),
        "events_after": context.after.iter().map(client_event).collect::<Vec<_>>(),
        "start": format!("t{}", context.start),
        "end": format!("t{}", context.end),
        "state": state_events,
    })))
}

#[derive(Deserialize)]
pub struct RelationsQuery {
    from: Option<String>,
    to: Option<String>,
    dir: Option<String>,
    limit: Option<String>,
}

/// `GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]` (v1 of the API).
pub async fn relations(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(path): Path<Vec<String>>,
    Query(query): Query<RelationsQuery>,
) -> ApiResult<Json<Value>> {
    let (room_id, parent) = match path.as_slice() {
        [room_id, parent, ..] => (room_id.as_str(), parent.as_str()),
        _ => return Err(MatrixError::missing_param("room and event IDs are required")),
    };
    let room_id: &RoomId = parse_id(room_id, "room ID")?;
    let forwards = match query.dir.as_deref() {
        Some("f") => true,
        Some("b") | None => false,
        Some(_) => return Err(MatrixError::invalid_param("dir must be 'f' or 'b'")),
    };
    let request = RelationsRequest {
        parent,
        rel_type: path.get(2).map(String::as_str),
        event_type: path.get(3).map(String::as_str),
        from: query.from.as_deref().map(parse_token).transpose()?,
        to: query.to.as_deref().map(parse_token).transpose()?,
        forwards,
        limit: parse_limit(query.limit.as_deref())?,
    };
    Ok(Json(state.relations.relations(room_id, &owner.user_id, request).await?))
}

#[derive(Deserialize)]
pub struct ThreadsQuery {
    include: Option<String>,
    from: Option<String>,
    limit: Option<String>,
}

/// `GET /rooms/{roomId}/threads`.
pub async fn threads(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
    Query(query): Query<ThreadsQuery>,
) -> ApiResult<Json<Value>> {
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    let participated = match query.include.as_deref() {
        None | Some("all") => false,
        Some("participated") => true,
        Some(_) => return Err(MatrixError::invalid_param("include must be all or participated")),
    };
    let from = query.from.as_deref().map(parse_token).transpose()?;
    let limit = parse_limit(query.limit.as_deref())?;
    Ok(Json(state.relations.threads(room_id, &owner.user_id, participated, from, limit).await?))
}
