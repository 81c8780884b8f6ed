//! Room endpoints: creation, sending, state, members, messages, events, redaction.

use axum::extract::State;
use ruma::api::Direction;
use ruma::api::client::membership::{get_member_events, joined_members, joined_rooms};
use ruma::api::client::message::send_message_event;
use ruma::api::client::redact::redact_event;
use ruma::api::client::room::{create_room, get_room_event, upgrade_room};
use ruma::api::client::state::{get_state_event_for_key, get_state_events, send_state_event};
use ruma::{OwnedRoomId, RoomId};
use serde_json::{Map, Value};

use crate::api::extract::{AppState, Requester, Ruma, RumaJson, RumaResponse};
use crate::endpoints::client::{create_room as local_create_room, get_message_events};
use crate::error::{ApiResult, MatrixError};
use crate::services::rooms::NewEvent;
use crate::services::rooms::create::CreateRoom;
use crate::services::rooms::filter::EventFilter;
use crate::services::rooms::format::raw_client_event;

/// `POST /createRoom` (the local type's comment says why not ruma's request).
pub async fn create_room(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<local_create_room::Request>,
) -> ApiResult<RumaResponse<create_room::v3::Response>> {
    let request = request.room;
    state.limits.room_creation.check_requester(&owner)?;
    let alias = match &request.room_alias_name {
        Some(localpart) => {
            let alias = state.room_directory.new_alias(localpart).await?;
            state.appservices.check_alias_not_reserved(alias.as_str(), &owner)?;
            Some(alias)
        }
        None => None,
    };
    let profile = state.profiles.get(&owner.user_id).await?;
    let create = CreateRoom { creator: owner.user_id.as_str(), creator_profile: &profile, request, alias };
    let room_id = state.joins.create_room(create).await?;
    Ok(create_room::v3::Response::new(stored_id(room_id)?).into())
}

pub async fn send_message(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<send_message_event::v3::Request>,
) -> ApiResult<RumaResponse<send_message_event::v3::Response>> {
    state.limits.message.check_requester(&owner)?;
    let event_type = request.event_type.to_string();
    let event = NewEvent {
        room_id: request.room_id.as_str(),
        sender: owner.user_id.as_str(),
        event_type: &event_type,
        state_key: None,
        content: raw_content(request.body.json())?,
        txn: Some((&owner.device_id, request.txn_id.as_str())),
    };
    let event_id = state.rooms.send(event).await?;
    Ok(send_message_event::v3::Response::new(stored_id(event_id)?).into())
}

/// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`, the state key being empty when
/// the path leaves it out.
pub async fn put_state(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<send_state_event::v3::Request>,
) -> ApiResult<RumaResponse<send_state_event::v3::Response>> {
    let sender = owner.user_id.as_str();
    state.limits.message.check(sender)?;
    let (event_type, state_key) = (request.event_type.to_string(), request.state_key.as_str());
    if event_type == "m.room.member" && <&ruma::UserId>::try_from(state_key).is_err() {
        return Err(MatrixError::invalid_param("The state key of a member event must be a user ID"));
    }
    let event = NewEvent {
        room_id: request.room_id.as_str(),
        sender,
        event_type: &event_type,
        state_key: Some(state_key),
        content: raw_content(request.body.json())?,
        txn: None,
    };
    let event_id = state.rooms.send(event).await?;
    Ok(send_state_event::v3::Response::new(stored_id(event_id)?).into())
}

/// Event content as the extractor checked it (a JSON object), as a value to build on.
fn raw_content(content: &serde_json::value::RawValue) -> ApiResult<Value> {
    serde_json::from_str(content.get()).map_err(|err| MatrixError::bad_json(err.to_string()))
}

pub async fn get_state(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_state_events::v3::Request>,
) -> ApiResult<RumaResponse<get_state_events::v3::Response>> {
    let room_state = state.rooms.visible_state(request.room_id.as_str(), owner.user_id.as_str()).await?;
    let events = state.rooms.state_events(&room_state).await?;
    let events = events.iter().map(raw_client_event).collect::<ApiResult<_>>()?;
    Ok(get_state_events::v3::Response::new(events).into())
}

/// `GET /rooms/{roomId}/state/{eventType}/{stateKey}`: the content (whatever `format`
/// asks, as kith has always answered), the state key being empty when the path leaves it
/// out.
pub async fn get_state_event(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_state_event_for_key::v3::Request>,
) -> ApiResult<RumaResponse<get_state_event_for_key::v3::Response>> {
    let event_type = request.event_type.to_string();
    let user_id = owner.user_id.as_str();
    state_event_content(&state, user_id, request.room_id.as_str(), &event_type, &request.state_key).await
}

async fn state_event_content(
    state: &AppState,
    user_id: &str,
    room_id: &str,
    event_type: &str,
    state_key: &str,
) -> ApiResult<RumaResponse<get_state_event_for_key::v3::Response>> {
    let room_state = state.rooms.visible_state(room_id, user_id).await?;
    let event_id = room_state
        .get(&(event_type.to_owned(), state_key.to_owned()))
        .ok_or_else(|| MatrixError::not_found("Event not found."))?;
    let event = state.rooms.require_event(event_id).await?;
    let content = event.json.get("content").cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let content = serde_json::value::to_raw_value(&content).map_err(|e| MatrixError::internal("a state event", e))?;
    Ok(get_state_event_for_key::v3::Response::new(content).into())
}

/// A member list of a room joined with a partial state waits this long for the resync
/// (then answers with what is known).
const MEMBERS_WAIT: std::time::Duration = std::time::Duration::from_secs(25);

pub async fn members(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_member_events::v3::Request>,
) -> ApiResult<RumaResponse<get_member_events::v3::Response>> {
    let (room_id, user_id) = (request.room_id.as_str(), owner.user_id.as_str());
    state.rooms.wait_for_full_state(room_id, MEMBERS_WAIT).await?;
    let mut room_state = state.rooms.visible_state(room_id, user_id).await?;
    if let Some(at) = &request.at {
        let until = state.rooms.visible_until(room_id, user_id).await?;
        room_state = state.rooms.state_at(room_id, parse_token(at)?.min(until)).await?.as_ref().clone();
    }
    room_state.retain(|(event_type, _), _| event_type == "m.room.member");
    let events = state.rooms.state_events(&room_state).await?;
    let (only, not) = (request.membership.as_ref(), request.not_membership.as_ref());
    let chunk = events
        .iter()
        .filter(|event| {
            let membership = event.json["content"]["membership"].as_str().unwrap_or_default();
            only.is_none_or(|m| m.as_str() == membership) && not.is_none_or(|m| m.as_str() != membership)
        })
        .map(raw_client_event)
        .collect::<ApiResult<_>>()?;
    Ok(get_member_events::v3::Response::new(chunk).into())
}

pub async fn joined_members(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<joined_members::v3::Request>,
) -> ApiResult<RumaResponse<joined_members::v3::Response>> {
    state.rooms.wait_for_full_state(request.room_id.as_str(), MEMBERS_WAIT).await?;
    let joined = state.rooms.joined_members(&request.room_id, &owner.user_id).await?;
    Ok(joined_members::v3::Response::new(joined).into())
}

pub async fn joined_rooms(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(_): Ruma<joined_rooms::v3::Request>,
) -> ApiResult<RumaResponse<joined_rooms::v3::Response>> {
    let rooms = state.rooms.joined_rooms(&owner.user_id).await?;
    Ok(joined_rooms::v3::Response::new(rooms.into_iter().filter_map(|id| OwnedRoomId::try_from(id).ok()).collect())
        .into())
}

pub async fn get_event(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_room_event::v3::Request>,
) -> ApiResult<RumaResponse<get_room_event::v3::Response>> {
    let event = state.rooms.event_for_user(&request.room_id, &owner.user_id, request.event_id.as_str()).await?;
    Ok(get_room_event::v3::Response::new(raw_client_event(&event)?).into())
}

/// Pagination tokens are event stream positions: `t123` from `/messages` and
/// `prev_batch`, or a whole `/sync` token (`s123_…`), whose event position is used.
pub fn parse_token(token: &str) -> ApiResult<i64> {
    if token.starts_with('s') {
        return Ok(crate::services::sync::SyncToken::parse(token)?.events);
    }
    token
        .strip_prefix('t')
        .and_then(|position| position.parse::<i64>().ok())
        .filter(|position| *position >= 0)
        .ok_or_else(|| MatrixError::invalid_param(format!("Invalid pagination token: {token}")))
}

/// `GET /rooms/{id}/messages`: a page of the timeline in either direction.
pub async fn messages(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(query): Ruma<get_message_events::Request>,
) -> ApiResult<RumaResponse<get_message_events::Response>> {
    let room_id: &RoomId = &query.room_id;
    let until = state.rooms.visible_until(room_id.as_str(), owner.user_id.as_str()).await?;
    let forwards = query.dir == Some(Direction::Forward);
    let limit = query.limit.unwrap_or(10).clamp(0, 1000);
    let filter = EventFilter::parse(query.filter.as_deref())?;
    let from = match &query.from {
        Some(token) => parse_token(token)?,
        None if forwards => 0,
        None => until,
    };
    let to = query.to.as_deref().map(parse_token).transpose()?;
    let (after, up_to) =
        if forwards { (from, to.unwrap_or(until).min(until)) } else { (to.unwrap_or(0), from.min(until)) };
    let page = state.rooms.timeline_page(room_id, &owner.user_id, (after, up_to), forwards, limit).await?;
    let chunk = page.events.iter().filter(|e| filter.matches(e)).map(raw_client_event).collect::<ApiResult<_>>()?;
    let (start, end) = (format!("t{from}"), page.end.map(|end| format!("t{end}")));
    Ok(get_message_events::Response { start, end, chunk, state: Vec::new() }.into())
}

pub async fn redact(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<redact_event::v3::Request>,
) -> ApiResult<RumaResponse<redact_event::v3::Response>> {
    let (room_id, event_id, txn_id) = (request.room_id.as_str(), request.event_id.as_str(), request.txn_id.as_str());
    let user_id = owner.user_id.as_str();
    let reason = request.reason.as_deref();
    let redaction_id = state.rooms.redact(room_id, user_id, &owner.device_id, event_id, txn_id, reason).await?;
    Ok(redact_event::v3::Response::new(stored_id(redaction_id)?).into())
}

/// `POST /rooms/{roomId}/upgrade`.
pub async fn upgrade(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<upgrade_room::v3::Request>,
) -> ApiResult<RumaResponse<upgrade_room::v3::Response>> {
    let (room_id, new_version) = (request.room_id, request.new_version.to_string());
    if !crate::config::SUPPORTED_ROOM_VERSIONS.contains(&new_version.as_str()) {
        return Err(MatrixError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "M_UNSUPPORTED_ROOM_VERSION",
            format!("Room version {new_version} is not supported"),
        ));
    }
    let profile = state.profiles.get(&owner.user_id).await?;
    let server_name = state.config.server_name.as_str();
    let user = owner.user_id.as_str();
    let new_room = state.rooms.upgrade(room_id.as_str(), user, &profile, &new_version, server_name).await?;
    Ok(upgrade_room::v3::Response::new(stored_id(new_room)?).into())
}

/// An ID kith made itself (a room or event just created), as ruma's type.
fn stored_id<T: TryFrom<String>>(id: String) -> ApiResult<T>
where
    T::Error: std::fmt::Display,
{
    T::try_from(id).map_err(|e| MatrixError::internal("a new ID", e))
}
