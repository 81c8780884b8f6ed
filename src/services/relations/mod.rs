//! Relations: the events that relate to another (`/relations`: edits, reactions,
//! thread replies…) and a room's threads (`/threads`), as far as the user may see them;
//! and the `m.thread` summary bundled into a thread root's `unsigned.m.relations`.

use std::sync::Arc;

use ruma::events::relation::{BundledThread, RelationType};
use ruma::events::{AnyMessageLikeEvent, AnyTimelineEvent, TimelineEventType};
use ruma::serde::Raw;
use ruma::{EventId, RoomId, UInt, UserId};

use super::rooms::Rooms;
use super::rooms::format::{client_event, raw_client_event, raw_event};
use crate::error::{ApiResult, MatrixError};
use crate::store::{RelationQuery, Store, StoredEvent};

/// Pages hold at most this many events.
const MAX_LIMIT: i64 = 100;

/// A `/relations` request, its tokens already parsed to stream positions.
pub struct RelationsRequest<'a> {
    pub parent: &'a EventId,
    pub rel_type: Option<&'a RelationType>,
    pub event_type: Option<&'a TimelineEventType>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub forwards: bool,
    pub limit: Option<i64>,
}

/// A page of `/relations`, with the tokens of the pages before and after it.
pub struct RelationsPage {
    pub chunk: Vec<Raw<AnyMessageLikeEvent>>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
}

/// A page of `/threads`: thread roots with their summaries.
pub struct ThreadsPage {
    pub chunk: Vec<Raw<AnyTimelineEvent>>,
    pub next_batch: Option<String>,
}

pub struct Relations {
    store: Arc<Store>,
    rooms: Arc<Rooms>,
}

impl Relations {
    pub fn new(store: Arc<Store>, rooms: Arc<Rooms>) -> Self {
        Self { store, rooms }
    }

    /// `GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`.
    pub async fn relations(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        request: RelationsRequest<'_>,
    ) -> ApiResult<RelationsPage> {
        self.rooms.event_for_user(room_id, user_id, request.parent.as_str()).await?;
        let until = self.rooms.visible_until(room_id.as_str(), user_id.as_str()).await?;
        let limit = request.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
        let (after, up_to) = match (request.forwards, request.from) {
            (true, from) => (from.unwrap_or(0), request.to.unwrap_or(until).min(until)),
            (false, from) => (request.to.unwrap_or(0), from.unwrap_or(until).min(until)),
        };
        let event_type = request.event_type.map(ToString::to_string);
        let query = RelationQuery {
            parent: request.parent.as_str(),
            rel_type: request.rel_type.map(RelationType::as_str),
            event_type: event_type.as_deref(),
            after,
            up_to,
            forwards: request.forwards,
            limit,
        };
        let page = self.store.related_events(&query).await?;
        let next = page
            .last()
            .filter(|_| page.len() as i64 == limit)
            .map(|last| if request.forwards { last.stream_ordering } else { last.stream_ordering - 1 });
        let events: Vec<StoredEvent> = page.into_iter().filter(|e| e.room_id == room_id.as_str()).collect();
        let events = self.rooms.visible_events(user_id.as_str(), events).await?;
        Ok(RelationsPage {
            chunk: events.iter().map(raw_client_event).collect::<ApiResult<_>>()?,
            next_batch: next.map(|next| format!("t{next}")),
            prev_batch: request.from.map(|from| format!("t{from}")),
        })
    }

    /// `GET /rooms/{roomId}/threads`: thread roots, most recently active first.
    pub async fn threads(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        participated_only: bool,
        from: Option<i64>,
        limit: Option<i64>,
    ) -> ApiResult<ThreadsPage> {
        let until = self.rooms.visible_until(room_id.as_str(), user_id.as_str()).await?;
        let limit = limit.unwrap_or(50).clamp(1, MAX_LIMIT);
        let before = from.unwrap_or(i64::MAX).min(until.saturating_add(1));
        let participant = participated_only.then_some(user_id.as_str());
        let roots = self.store.thread_roots(room_id.as_str(), participant, before, limit).await?;
        let ids: Vec<String> = roots.iter().map(|(id, _)| id.clone()).collect();
        let mut events = self.store.events_by_id(&ids).await?;
        events.retain(|e| e.room_id == room_id.as_str() && !e.outlier && !e.rejected);
        let events = self.rooms.visible_events(user_id.as_str(), events).await?;
        let mut chunk = Vec::new();
        for (id, _) in &roots {
            if let Some(root) = events.iter().find(|e| &e.event_id == id) {
                chunk.push(self.with_thread_summary(root, user_id).await?);
            }
        }
        let next_batch = match roots.last() {
            Some((_, latest)) if roots.len() as i64 == limit => Some(format!("t{latest}")),
            _ => None,
        };
        Ok(ThreadsPage { chunk, next_batch })
    }

    /// A thread root as clients see it, with its `m.thread` summary.
    async fn with_thread_summary(&self, root: &StoredEvent, user_id: &UserId) -> ApiResult<Raw<AnyTimelineEvent>> {
        let mut event = client_event(root);
        let Some((count, latest_id)) = self.store.thread_summary(&root.event_id).await? else {
            return raw_event(&event);
        };
        let latest =
            self.store.get_event(&latest_id).await?.ok_or_else(|| MatrixError::not_found("Event not found"))?;
        let participated = self.store.participated_in_thread(&root.event_id, user_id.as_str()).await?;
        let count = UInt::try_from(count).unwrap_or_default();
        let summary = BundledThread::new(raw_client_event(&latest)?, count, participated);
        let summary = serde_json::to_value(summary).map_err(|err| MatrixError::internal("a thread summary", err))?;
        event["unsigned"]["m.relations"]["m.thread"] = summary;
        raw_event(&event)
    }
}
