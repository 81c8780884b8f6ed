//! Reading around and along events: `/context`, `/relations` and `/threads`.

use std::collections::HashSet;

use axum::extract::State;
use ruma::api::Direction;
use ruma::api::client::context::get_context;
use ruma::api::client::relations::{
    get_relating_events, get_relating_events_with_rel_type, get_relating_events_with_rel_type_and_event_type,
};
use ruma::api::client::threads::get_threads::{self, v1::IncludeThreads};
use ruma::events::relation::RelationType;
use ruma::events::{AnyStateEvent, AnyTimelineEvent, TimelineEventType};
use ruma::{EventId, RoomId, UInt};

use super::rooms::parse_token;
use crate::api::extract::{AppState, Requester, Ruma, RumaResponse};
use crate::error::{ApiResult, MatrixError};
use crate::services::accounts::AuthenticatedUser;
use crate::services::relations::{RelationsPage, RelationsRequest};
use crate::services::rooms::format::raw_client_event;

/// `GET /rooms/{roomId}/context/{eventId}`.
pub async fn context(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_context::v3::Request>,
) -> ApiResult<RumaResponse<get_context::v3::Response>> {
    let limit = i64::from(request.limit).clamp(0, 100);
    let lazy_members = !request.filter.lazy_load_options.is_disabled();
    let context = state.rooms.context(&request.room_id, &owner.user_id, request.event_id.as_str(), limit).await?;
    let senders: HashSet<&str> = std::iter::once(&context.event)
        .chain(&context.before)
        .chain(&context.after)
        .filter_map(|e| e.json["sender"].as_str())
        .collect();
    let state_events = context.state.iter().filter(|e| {
        !lazy_members
            || e.json["type"] != "m.room.member"
            || e.json["state_key"].as_str().is_some_and(|key| senders.contains(key))
    });
    let timeline = |events: &[_]| events.iter().map(raw_client_event::<AnyTimelineEvent>).collect::<ApiResult<_>>();
    let mut answer = get_context::v3::Response::new();
    answer.event = Some(raw_client_event(&context.event)?);
    answer.events_before = timeline(&context.before)?;
    answer.events_after = timeline(&context.after)?;
    answer.start = Some(format!("t{}", context.start));
    answer.end = Some(format!("t{}", context.end));
    answer.state = state_events.map(raw_client_event::<AnyStateEvent>).collect::<ApiResult<_>>()?;
    Ok(answer.into())
}

/// What the three `/relations` requests share.
struct PageRequest<'a> {
    room_id: &'a RoomId,
    parent: &'a EventId,
    from: Option<&'a str>,
    to: Option<&'a str>,
    dir: Direction,
    limit: Option<UInt>,
}

/// One page of `/relations`, optionally of one relation type and event type.
async fn relations_page(
    state: &AppState,
    owner: &AuthenticatedUser,
    page: PageRequest<'_>,
    rel_type: Option<&RelationType>,
    event_type: Option<&TimelineEventType>,
) -> ApiResult<RelationsPage> {
    let request = RelationsRequest {
        parent: page.parent,
        rel_type,
        event_type,
        from: page.from.map(parse_token).transpose()?,
        to: page.to.map(parse_token).transpose()?,
        forwards: page.dir == Direction::Forward,
        limit: page.limit.map(i64::from),
    };
    state.relations.relations(page.room_id, &owner.user_id, request).await
}

/// The page asked for by any of the three `/relations` requests (ruma has a type per
/// route, with the same paging fields).
macro_rules! page_request {
    ($request:expr) => {
        PageRequest {
            room_id: &$request.room_id,
            parent: &$request.event_id,
            from: $request.from.as_deref(),
            to: $request.to.as_deref(),
            dir: $request.dir,
            limit: $request.limit,
        }
    };
}

/// `GET /rooms/{roomId}/relations/{eventId}` (v1 of the API).
pub async fn relations(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_relating_events::v1::Request>,
) -> ApiResult<RumaResponse<get_relating_events::v1::Response>> {
    let page = page_request!(request);
    let page = relations_page(&state, &owner, page, None, None).await?;
    let mut answer = get_relating_events::v1::Response::new(page.chunk);
    (answer.next_batch, answer.prev_batch) = (page.next_batch, page.prev_batch);
    Ok(answer.into())
}

/// `GET /rooms/{roomId}/relations/{eventId}/{relType}`.
pub async fn relations_of_type(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> ApiResult<RumaResponse<get_relating_events_with_rel_type::v1::Response>> {
    let page = page_request!(request);
    let page = relations_page(&state, &owner, page, Some(&request.rel_type), None).await?;
    let mut answer = get_relating_events_with_rel_type::v1::Response::new(page.chunk);
    (answer.next_batch, answer.prev_batch) = (page.next_batch, page.prev_batch);
    Ok(answer.into())
}

/// `GET /rooms/{roomId}/relations/{eventId}/{relType}/{eventType}`.
pub async fn relations_of_type_and_event_type(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> ApiResult<RumaResponse<get_relating_events_with_rel_type_and_event_type::v1::Response>> {
    let page = page_request!(request);
    let page = relations_page(&state, &owner, page, Some(&request.rel_type), Some(&request.event_type)).await?;
    let mut answer = get_relating_events_with_rel_type_and_event_type::v1::Response::new(page.chunk);
    (answer.next_batch, answer.prev_batch) = (page.next_batch, page.prev_batch);
    Ok(answer.into())
}

/// `GET /rooms/{roomId}/threads`.
pub async fn threads(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_threads::v1::Request>,
) -> ApiResult<RumaResponse<get_threads::v1::Response>> {
    let participated = match request.include {
        IncludeThreads::All => false,
        IncludeThreads::Participated => true,
        _ => return Err(MatrixError::invalid_param("include must be all or participated")),
    };
    let from = request.from.as_deref().map(parse_token).transpose()?;
    let limit = request.limit.map(i64::from);
    let page = state.relations.threads(&request.room_id, &owner.user_id, participated, from, limit).await?;
    let mut answer = get_threads::v1::Response::new(page.chunk);
    answer.next_batch = page.next_batch;
    Ok(answer.into())
}
