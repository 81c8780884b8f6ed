//! A room's summary: what the public room list and the space hierarchy show of it, read
//! from its room-level state.

use ruma::events::room::avatar::RoomAvatarEventContent;
use ruma::events::room::canonical_alias::RoomCanonicalAliasEventContent;
use ruma::events::room::create::RoomCreateEventContent;
use ruma::events::room::guest_access::{GuestAccess, RoomGuestAccessEventContent};
use ruma::events::room::history_visibility::{HistoryVisibility, RoomHistoryVisibilityEventContent};
use ruma::events::room::join_rules::RoomJoinRulesEventContent;
use ruma::events::room::name::RoomNameEventContent;
use ruma::events::room::topic::RoomTopicEventContent;
use ruma::room::{JoinRuleSummary, RoomSummary};
use ruma::{RoomId, UInt};
use serde::de::DeserializeOwned;

use super::Rooms;
use crate::error::ApiResult;
use crate::store::StoredEvent;

impl Rooms {
    /// The room's summary, in two queries whatever the room's size. What members set
    /// that does not fit its type (an alias that is no alias, a name that is no text) is
    /// left out; a join rule clients do not know reads as invite only, and no join rule
    /// as public, as the spec tells clients.
    pub async fn summary(&self, room_id: &RoomId) -> ApiResult<RoomSummary> {
        let state = self.store.room_level_state(room_id.as_str()).await?;
        let joined = self.store.joined_member_count(room_id.as_str()).await?;
        Ok(summary_of(room_id, &state, UInt::try_from(joined).unwrap_or(UInt::MAX)))
    }
}

fn summary_of(room_id: &RoomId, state: &[StoredEvent], joined: UInt) -> RoomSummary {
    let parsed = |event_type| ContentOf { state, event_type };
    let join_rule = match parsed("m.room.join_rules").get().map(|c: RoomJoinRulesEventContent| c.join_rule.into()) {
        None => JoinRuleSummary::Public,
        Some(JoinRuleSummary::_Custom(_)) => JoinRuleSummary::Invite,
        Some(rule) => rule,
    };
    let guests = parsed("m.room.guest_access")
        .get()
        .is_some_and(|c: RoomGuestAccessEventContent| c.guest_access == GuestAccess::CanJoin);
    let world_readable = parsed("m.room.history_visibility")
        .get()
        .is_some_and(|c: RoomHistoryVisibilityEventContent| c.history_visibility == HistoryVisibility::WorldReadable);
    let mut summary = RoomSummary::new(room_id.to_owned(), join_rule, guests, joined, world_readable);
    summary.name = parsed("m.room.name").get().map(|c: RoomNameEventContent| c.name);
    summary.topic = parsed("m.room.topic").get().map(|c: RoomTopicEventContent| c.topic);
    summary.canonical_alias =
        parsed("m.room.canonical_alias").get().and_then(|c: RoomCanonicalAliasEventContent| c.alias);
    summary.avatar_url = parsed("m.room.avatar").get().and_then(|c: RoomAvatarEventContent| c.url);
    summary.room_type = parsed("m.room.create").get().and_then(|c: RoomCreateEventContent| c.room_type);
    summary
}

/// The content of one room-level state event, read as `T` when it fits.
struct ContentOf<'a> {
    state: &'a [StoredEvent],
    event_type: &'a str,
}

impl ContentOf<'_> {
    fn get<T: DeserializeOwned>(&self) -> Option<T> {
        let event = self.state.iter().find(|event| event.json["type"] == self.event_type)?;
        serde_json::from_value(event.json.get("content")?.clone()).ok()
    }
}
