//! Room endpoints of the server-server API: transactions, joins, leaves, invites, and
//! reading events, state, auth chains, missing events and backfill.

use axum::Json;
use axum::extract::State;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use ruma::api::federation::authorization::get_event_authorization;
use ruma::api::federation::backfill::get_backfill;
use ruma::api::federation::event::{get_event, get_room_state, get_room_state_ids};
use ruma::api::federation::membership::{
    create_join_event, create_leave_event, prepare_join_event, prepare_leave_event,
};

use super::{Signed, SignedRuma, SignedRumaJson, SignedTransaction};
use crate::api::extract::{AppState, RumaResponse};
use crate::endpoints::federation::{create_invite, get_missing_events, send_transaction_message};
use crate::error::{ApiResult, MatrixError};
use crate::services::joins::SendJoinAnswer;

/// `PUT /v1/send/{txnId}`, read as the local type's comment says.
pub async fn send_transaction(
    State(state): State<AppState>,
    SignedTransaction { signed, request }: SignedTransaction,
) -> ApiResult<RumaResponse<send_transaction_message::Response>> {
    let txn_id = request.transaction_id.as_str();
    let results = state.inbound.receive_transaction(&signed.origin, txn_id, &request.transaction).await?;
    // ruma's answer carries each refusal as its message.
    let results = results.into_iter().map(|(id, result)| (id, result.map_err(|e| e.to_string()))).collect();
    Ok(send_transaction_message::Response::new(results).into())
}

/// `GET /v1/make_join/{roomId}/{userId}?ver=…`: without `ver`, only version 1 is
/// supported, as the spec says (ruma's default).
pub async fn make_join(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRuma<prepare_join_event::v1::Request>,
) -> ApiResult<RumaResponse<prepare_join_event::v1::Response>> {
    let versions: Vec<String> = request.ver.iter().map(ToString::to_string).collect();
    let (room_id, user_id) = (request.room_id.as_str(), request.user_id.as_str());
    let (version, template) = state.joins.make_membership(&signed.origin, room_id, user_id, "join", &versions).await?;
    let mut answer = prepare_join_event::v1::Response::new(template);
    answer.room_version = Some(version);
    Ok(answer.into())
}

pub async fn make_leave(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRuma<prepare_leave_event::v1::Request>,
) -> ApiResult<RumaResponse<prepare_leave_event::v1::Response>> {
    let (room_id, user_id) = (request.room_id.as_str(), request.user_id.as_str());
    let (version, template) = state.joins.make_membership(&signed.origin, room_id, user_id, "leave", &[]).await?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), template).into())
}

/// `PUT /v2/send_join/{roomId}/{eventId}`; with `omit_members=true` (MSC3706) a partial
/// state.
pub async fn send_join(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRumaJson<create_join_event::v2::Request>,
) -> ApiResult<Json<SendJoinAnswer>> {
    Ok(Json(join(&state, &signed, request).await?))
}

/// `PUT /v1/send_join`: the v2 answer wrapped as `[200, answer]`. ruma has no type for
/// v1 but v2's reads it (the same path and body); v1 has no `omit_members`.
pub async fn send_join_v1(
    State(state): State<AppState>,
    SignedRuma { signed, mut request }: SignedRumaJson<create_join_event::v2::Request>,
) -> ApiResult<Json<(u16, SendJoinAnswer)>> {
    request.omit_members = false;
    Ok(Json((200, join(&state, &signed, request).await?)))
}

async fn join(state: &AppState, signed: &Signed, request: create_join_event::v2::Request) -> ApiResult<SendJoinAnswer> {
    let (room_id, event_id) = (request.room_id.as_str(), request.event_id.as_str());
    let event =
        state.joins.receive_membership(&signed.origin, room_id, event_id, "join", &pdu_value(&request.pdu)?).await?;
    if request.omit_members {
        tracing::info!(%room_id, origin = %signed.origin, "answering send_join with a partial state");
    }
    state.joins.join_response(&event, request.omit_members).await
}

/// A PDU of a request body (a JSON object, as the extractor checked), as a value.
fn pdu_value(pdu: &RawValue) -> ApiResult<Value> {
    serde_json::from_str(pdu.get()).map_err(|err| MatrixError::bad_json(err.to_string()))
}

pub async fn send_leave(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRumaJson<create_leave_event::v2::Request>,
) -> ApiResult<RumaResponse<create_leave_event::v2::Response>> {
    leave(&state, &signed, request).await?;
    Ok(create_leave_event::v2::Response::new().into())
}

/// `PUT /v1/send_leave`: the v2 answer wrapped as `[200, {}]` (ruma has no type for v1;
/// v2's reads its request, the same path and body).
pub async fn send_leave_v1(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRumaJson<create_leave_event::v2::Request>,
) -> ApiResult<Json<(u16, Map<String, Value>)>> {
    leave(&state, &signed, request).await?;
    Ok(Json((200, Map::new())))
}

async fn leave(state: &AppState, signed: &Signed, request: create_leave_event::v2::Request) -> ApiResult<()> {
    let (room_id, event_id) = (request.room_id.as_str(), request.event_id.as_str());
    let pdu = pdu_value(&request.pdu)?;
    state.joins.receive_membership(&signed.origin, room_id, event_id, "leave", &pdu).await?;
    Ok(())
}

/// `PUT /v2/invite/{roomId}/{eventId}`, read as the local type's comment says.
pub async fn invite(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRumaJson<create_invite::Request>,
) -> ApiResult<RumaResponse<create_invite::Response>> {
    Ok(create_invite::Response::new(state.joins.receive_invite(&signed.origin, &request).await?).into())
}

pub async fn event(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRuma<get_event::v1::Request>,
) -> ApiResult<RumaResponse<get_event::v1::Response>> {
    Ok(state.history.serve_event(&signed.origin, request.event_id.as_str()).await?.into())
}

pub async fn room_state(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRuma<get_room_state::v1::Request>,
) -> ApiResult<RumaResponse<get_room_state::v1::Response>> {
    let (room_id, event_id) = (request.room_id.as_str(), request.event_id.as_str());
    Ok(state.history.serve_state(&signed.origin, room_id, event_id).await?.into())
}

pub async fn room_state_ids(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRuma<get_room_state_ids::v1::Request>,
) -> ApiResult<RumaResponse<get_room_state_ids::v1::Response>> {
    let (room_id, event_id) = (request.room_id.as_str(), request.event_id.as_str());
    Ok(state.history.serve_state_ids(&signed.origin, room_id, event_id).await?.into())
}

pub async fn event_auth(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRuma<get_event_authorization::v1::Request>,
) -> ApiResult<RumaResponse<get_event_authorization::v1::Response>> {
    let (room_id, event_id) = (request.room_id.as_str(), request.event_id.as_str());
    Ok(state.history.serve_event_auth(&signed.origin, room_id, event_id).await?.into())
}

/// `POST /v1/get_missing_events/{roomId}`, read as Synapse reads it (the local type's
/// comment says where that differs from ruma's).
pub async fn get_missing_events(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRumaJson<get_missing_events::Request>,
) -> ApiResult<RumaResponse<get_missing_events::Response>> {
    Ok(state.history.serve_missing_events(&signed.origin, &request).await?.into())
}

/// `GET /v1/backfill/{roomId}?v=…&limit=…`; `v` and `limit` are required (ruma's type),
/// as Synapse requires them.
pub async fn backfill(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRuma<get_backfill::v1::Request>,
) -> ApiResult<RumaResponse<get_backfill::v1::Response>> {
    if request.v.is_empty() {
        return Err(MatrixError::missing_param("v is required"));
    }
    let from: Vec<String> = request.v.iter().map(ToString::to_string).collect();
    let limit = usize::try_from(u64::from(request.limit)).unwrap_or(usize::MAX);
    Ok(state.history.serve_backfill(&signed.origin, request.room_id.as_str(), &from, limit).await?.into())
}
