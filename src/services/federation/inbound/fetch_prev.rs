//! Step 5: prev events we lack, asked for with `/get_missing_events` and added oldest
//! first.

use axum::http::Method;
use ruma::ServerName;
use ruma::room_version_rules::RoomVersionRules;
use serde_json::json;

use super::Inbound;
use crate::services::federation::encode;
use crate::services::rooms::remote::CheckedEvent;

/// How many missing events one `/get_missing_events` asks for.
const MISSING_EVENTS_LIMIT: usize = 20;

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
        let earliest: Vec<String> = match self.store.forward_extremities(room_id).await {
            Ok(events) => events.into_iter().map(|e| e.event_id).collect(),
            Err(err) => return tracing::warn!(%err, "cannot read forward extremities"),
        };
        let request = json!({
            "earliest_events": earliest,
            "latest_events": [event.event_id],
            "limit": MISSING_EVENTS_LIMIT,
            "min_depth": 0,
        });
        let path = format!("/_matrix/federation/v1/get_missing_events/{}", encode(room_id));
        let body = match self.client.request(Method::POST, origin, &path, Some(&request)).await {
            Ok(body) => body,
            Err(err) => return tracing::info!(%origin, %err, "get_missing_events failed"),
        };
        let mut events = self.check_fetched(rules, room_id, &body["events"]).await;
        events.sort_by_key(CheckedEvent::depth);
        for missing in events {
            let event_id = missing.event_id.clone();
            if let Err(err) = Box::pin(self.accept(origin, rules, missing, false)).await {
                tracing::info!(%event_id, %err, "could not add a missing event");
            }
        }
    }
}
