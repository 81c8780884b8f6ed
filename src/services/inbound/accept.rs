//! Step 7: a checked remote event into its room, after fetching what it refers to and
//! we lack (steps 4 to 6).

use ruma::ServerName;
use ruma::room_version_rules::RoomVersionRules;

use super::Inbound;
use crate::error::ApiResult;
use crate::services::rooms::remote::{CheckedEvent, Outcome, PriorState};

impl Inbound {
    /// Adds a checked remote event to its room: fetches missing auth events, then missing
    /// prev events (or the state before the event), then applies the auth rules. Whether
    /// the room already has it is decided once, by the room, under its lock.
    pub async fn accept(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        event: CheckedEvent,
        fetch_prev_events: bool,
    ) -> ApiResult<Outcome> {
        let room_id = event.pdu.room_id.to_string();
        self.fetch_auth_events(origin, rules, &room_id, &event).await?;
        let prevs: Vec<String> = event.pdu.prev_events.iter().map(ToString::to_string).collect();
        let mut missing = self.rooms.missing_prev_events(&prevs).await?;
        if !missing.is_empty() && fetch_prev_events {
            self.fetch_missing_events(origin, rules, &room_id, &event).await;
            missing = self.rooms.missing_prev_events(&prevs).await?;
        }
        let prior = if missing.is_empty() {
            PriorState::FromPrevEvents
        } else {
            tracing::info!(event_id = %event.event_id, missing = missing.len(), "prev events still missing: asking for the state at them");
            PriorState::Given(self.state_before_from_remote(origin, rules, &room_id, &prevs, &missing).await?)
        };
        self.rooms.persist_remote(rules, &event, prior).await
    }
}
