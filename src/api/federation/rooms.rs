//! Room endpoints of the server-server API: transactions, joins, leaves, invites, and
//! reading events, state, auth chains, missing events and backfill.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Map, Value};

use ruma::api::federation::authorization::get_event_authorization;
use ruma::api::federation::backfill::get_backfill;
use ruma::api::federation::event::{get_event, get_missing_events, get_room_state, get_room_state_ids};
use ruma::api::federation::membership::{create_invite, create_leave_event, prepare_join_event, prepare_leave_event};
use ruma::api::federation::transactions::send_transaction_message;

use super::{Signed, SignedTransaction};
use crate::api::extract::{AppState, RumaResponse};
use crate::error::{ApiResult, MatrixError};
use crate::services::joins::SendJoinAnswer;

/// `PUT /v1/send/{txnId}`.
pub async fn send_transaction(
    State(state): State<AppState>,
    Path(txn_id): Path<String>,
    SignedTransaction(signed): SignedTransaction,
) -> ApiResult<RumaResponse<send_transaction_message::v1::Response>> {
    let body = signed.json()?;
    let results = state.inbound.receive_transaction(&signed.origin, &txn_id, &body).await?;
    // ruma's answer carries each refusal as its message.
    let results = results.into_iter().map(|(id, result)| (id, result.map_err(|e| e.to_string()))).collect();
    Ok(send_transaction_message::v1::Response::new(results).into())
}

/// `GET /v1/make_join/{roomId}/{userId}?ver=…`: without `ver`, only version 1 is
/// supported, as the spec says.
pub async fn make_join(
    State(state): State<AppState>,
    Path((room_id, user_id)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    signed: Signed,
) -> ApiResult<RumaResponse<prepare_join_event::v1::Response>> {
    let mut versions: Vec<String> = query.into_iter().filter(|(k, _)| k == "ver").map(|(_, v)| v).collect();
    if versions.is_empty() {
        versions.push("1".into());
    }
    let (version, template) =
        state.joins.make_membership(&signed.origin, &room_id, &user_id, "join", &versions).await?;
    let mut answer = prepare_join_event::v1::Response::new(template);
    answer.room_version = Some(version);
    Ok(answer.into())
}

pub async fn make_leave(
    State(state): State<AppState>,
    Path((room_id, user_id)): Path<(String, String)>,
    signed: Signed,
) -> ApiResult<RumaResponse<prepare_leave_event::v1::Response>> {
    let (version, template) = state.joins.make_membership(&signed.origin, &room_id, &user_id, "leave", &[]).await?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), template).into())
}

/// `PUT /v2/send_join/{roomId}/{eventId}`.
#[derive(Deserialize, Default)]
pub struct SendJoinQuery {
    #[serde(default)]
    omit_members: Option<String>,
}

/// `PUT /v2/send_join`; with `omit_members=true` (MSC3706) a partial state.
pub async fn send_join(
    State(state): State<AppState>,
    Path((room_id, event_id)): Path<(String, String)>,
    Query(query): Query<SendJoinQuery>,
    signed: Signed,
) -> ApiResult<Json<SendJoinAnswer>> {
    let omit_members = match query.omit_members.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(MatrixError::invalid_param("omit_members must be true or false")),
    };
    let body = signed.json()?;
    let event = state.joins.receive_membership(&signed.origin, &room_id, &event_id, "join", &body).await?;
    if omit_members {
        tracing::info!(%room_id, origin = %signed.origin, "answering send_join with a partial state");
    }
    Ok(Json(state.joins.join_response(&event, omit_members).await?))
}

/// `PUT /v1/send_join`: the v2 answer wrapped as `[200, answer]`.
pub async fn send_join_v1(
    state: State<AppState>,
    path: Path<(String, String)>,
    signed: Signed,
) -> ApiResult<Json<(u16, SendJoinAnswer)>> {
    let Json(answer) = send_join(state, path, Query(SendJoinQuery::default()), signed).await?;
    Ok(Json((200, answer)))
}

pub async fn send_leave(
    State(state): State<AppState>,
    Path((room_id, event_id)): Path<(String, String)>,
    signed: Signed,
) -> ApiResult<RumaResponse<create_leave_event::v2::Response>> {
    leave(&state, &room_id, &event_id, &signed).await?;
    Ok(create_leave_event::v2::Response::new().into())
}

/// `PUT /v1/send_leave`: the v2 answer wrapped as `[200, {}]` (ruma has no type for it).
pub async fn send_leave_v1(
    State(state): State<AppState>,
    Path((room_id, event_id)): Path<(String, String)>,
    signed: Signed,
) -> ApiResult<Json<(u16, Map<String, Value>)>> {
    leave(&state, &room_id, &event_id, &signed).await?;
    Ok(Json((200, Map::new())))
}

async fn leave(state: &AppState, room_id: &str, event_id: &str, signed: &Signed) -> ApiResult<()> {
    let body = signed.json()?;
    state.joins.receive_membership(&signed.origin, room_id, event_id, "leave", &body).await?;
    Ok(())
}

/// `PUT /v2/invite/{roomId}/{eventId}`.
pub async fn invite(
    State(state): State<AppState>,
    Path((room_id, event_id)): Path<(String, String)>,
    signed: Signed,
) -> ApiResult<RumaResponse<create_invite::v2::Response>> {
    let body = signed.json()?;
    Ok(create_invite::v2::Response::new(state.joins.receive_invite(&signed.origin, &room_id, &event_id, &body).await?)
        .into())
}

pub async fn event(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    signed: Signed,
) -> ApiResult<RumaResponse<get_event::v1::Response>> {
    Ok(state.history.serve_event(&signed.origin, &event_id).await?.into())
}

#[derive(serde::Deserialize)]
pub struct AtEvent {
    event_id: Option<String>,
}

fn required_event(query: &AtEvent) -> ApiResult<&str> {
    query.event_id.as_deref().ok_or_else(|| MatrixError::missing_param("event_id is required"))
}

pub async fn room_state(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    Query(query): Query<AtEvent>,
    signed: Signed,
) -> ApiResult<RumaResponse<get_room_state::v1::Response>> {
    Ok(state.history.serve_state(&signed.origin, &room_id, required_event(&query)?).await?.into())
}

pub async fn room_state_ids(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    Query(query): Query<AtEvent>,
    signed: Signed,
) -> ApiResult<RumaResponse<get_room_state_ids::v1::Response>> {
    Ok(state.history.serve_state_ids(&signed.origin, &room_id, required_event(&query)?).await?.into())
}

pub async fn event_auth(
    State(state): State<AppState>,
    Path((room_id, event_id)): Path<(String, String)>,
    signed: Signed,
) -> ApiResult<RumaResponse<get_event_authorization::v1::Response>> {
    Ok(state.history.serve_event_auth(&signed.origin, &room_id, &event_id).await?.into())
}

pub async fn get_missing_events(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    signed: Signed,
) -> ApiResult<RumaResponse<get_missing_events::v1::Response>> {
    let body = signed.json()?;
    Ok(state.history.serve_missing_events(&signed.origin, &room_id, &body).await?.into())
}

/// `GET /v1/backfill/{roomId}?v=…&limit=…`.
pub async fn backfill(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    signed: Signed,
) -> ApiResult<RumaResponse<get_backfill::v1::Response>> {
    let from: Vec<String> = query.iter().filter(|(k, _)| k == "v").map(|(_, v)| v.clone()).collect();
    if from.is_empty() {
        return Err(MatrixError::missing_param("v is required"));
    }
    let limit = query.iter().find(|(k, _)| k == "limit").map(|(_, v)| v.as_str()).unwrap_or("10");
    let limit: usize = limit.parse().map_err(|_| MatrixError::invalid_param("limit must be a number"))?;
    Ok(state.history.serve_backfill(&signed.origin, &room_id, &from, limit).await?.into())
}
