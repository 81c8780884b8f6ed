//! Reading a room's timeline as a user: single events and pages of `/messages`.

use ruma::{RoomId, UserId};

use super::Rooms;
use crate::error::{ApiResult, MatrixError};
use crate::store::StoredEvent;

/// A page of the timeline: the events a user may see and where the page ends.
pub struct TimelinePage {
    pub events: Vec<StoredEvent>,
    /// The stream position to continue from, when the page is full.
    pub end: Option<i64>,
}

impl Rooms {
    /// An event of a room, if the user may see it.
    pub async fn event_for_user(&self, room_id: &RoomId, user_id: &UserId, event_id: &str) -> ApiResult<StoredEvent> {
        let until = self.visible_until(room_id.as_str(), user_id.as_str()).await?;
        let not_found = || MatrixError::not_found("Event not found.");
        let event = self.store.get_event(event_id).await?.ok_or_else(not_found)?;
        if event.room_id != room_id.as_str() || event.rejected || event.stream_ordering > until {
            return Err(not_found());
        }
        let visible = self.visible_events(user_id.as_str(), vec![event]).await?;
        visible.into_iter().next().ok_or_else(not_found)
    }

    /// Up to `limit` events between stream positions `after` and `up_to` (both capped at
    /// what the user may read), oldest first when `forwards`.
    pub async fn timeline_page(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        (after, up_to): (i64, i64),
        forwards: bool,
        limit: i64,
    ) -> ApiResult<TimelinePage> {
        let page = self.store.room_events(room_id.as_str(), after, up_to, forwards, limit).await?;
        let end = page.last().map(|last| if forwards { last.stream_ordering } else { last.stream_ordering - 1 });
        let end = end.filter(|_| page.len() as i64 == limit);
        let events = self.visible_events(user_id.as_str(), page).await?;
        Ok(TimelinePage { events, end })
    }
}

/// An event with the events around it, for `/context`.
pub struct EventContext {
    pub event: StoredEvent,
    /// Newest first.
    pub before: Vec<StoredEvent>,
    /// Oldest first.
    pub after: Vec<StoredEvent>,
    /// Tokens for `/messages`: backwards from `start`, forwards from `end`.
    pub start: i64,
    pub end: i64,
    pub state: Vec<StoredEvent>,
}

impl Rooms {
    /// `GET /rooms/{roomId}/context/{eventId}`: up to `limit` events around the event
    /// (half before, half after), all of them visible to the user, and the room state
    /// at the newest of them.
    pub async fn context(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        event_id: &str,
        limit: i64,
    ) -> ApiResult<EventContext> {
        let event = self.event_for_user(room_id, user_id, event_id).await?;
        let until = self.visible_until(room_id.as_str(), user_id.as_str()).await?;
        let before_limit = limit / 2;
        let after_limit = limit - before_limit;
        let position = event.stream_ordering;
        let before = self.store.room_events(room_id.as_str(), 0, position - 1, false, before_limit).await?;
        let after = self.store.room_events(room_id.as_str(), position, until, true, after_limit).await?;
        let start = before.last().map_or(position - 1, |oldest| oldest.stream_ordering - 1);
        let end = after.last().map_or(position, |newest| newest.stream_ordering);
        let before = self.visible_events(user_id.as_str(), before).await?;
        let after = self.visible_events(user_id.as_str(), after).await?;
        let state = self.state_at(room_id.as_str(), end).await?;
        let state = self.state_events(&state).await?;
        Ok(EventContext { event, before, after, start, end, state })
    }
}
