//! Step 5: prev events we lack, asked for with `/get_missing_events` and added oldest
//! first.

use ruma::api::federation::event::get_missing_events;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedEventId, ServerName};

use super::{Inbound, parse_id};
use crate::services::rooms::remote::CheckedEvent;

/// How many missing events one `/get_missing_events` asks for.
const MISSING_EVENTS_LIMIT: u32 = 20;

impl Inbound {
    /// Asks `origin` for the events between our forward extremities and `event`, and
    /// adds them oldest first.
    pub(super) async fn fetch_missing_events(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        room_id: &str,
        event: &CheckedEvent,
    ) {
        let earliest = match self.store.forward_extremities(room_id).await {
            Ok(events) => events.into_iter().filter_map(|e| OwnedEventId::try_from(e.event_id).ok()).collect(),
            Err(err) => return tracing::warn!(%err, "cannot read forward extremities"),
        };
        let (Ok(room), Ok(latest)) = (parse_id(room_id), parse_id(&event.event_id)) else { return };
        let mut request = get_missing_events::v1::Request::new(room, earliest, vec![latest]);
        request.limit = MISSING_EVENTS_LIMIT.into();
        let answer = match self.client.send(origin, request).await {
            Ok(answer) => answer,
            Err(err) => return tracing::info!(%origin, %err, "get_missing_events failed"),
        };
        let mut events = self.check_fetched(rules, room_id, &answer.events).await;
        events.sort_by_key(CheckedEvent::depth);
        for missing in events {
            let event_id = missing.event_id.clone();
            if let Err(err) = Box::pin(self.accept(origin, rules, missing, false)).await {
                tracing::info!(%event_id, %err, "could not add a missing event");
            }
        }
    }
}
