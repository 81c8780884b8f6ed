//! Step 4: auth events we do not hold, with their whole auth chain, from the origin.

use ruma::ServerName;
use ruma::room_version_rules::RoomVersionRules;

use ruma::api::federation::authorization::get_event_authorization;

use super::{Inbound, parse_id};
use crate::error::ApiResult;
use crate::services::rooms::remote::CheckedEvent;

impl Inbound {
    /// Fetches auth events we do not hold (their whole auth chain, from `origin`).
    pub(super) async fn fetch_auth_events(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        room_id: &str,
        event: &CheckedEvent,
    ) -> ApiResult<()> {
        let wanted: Vec<String> = event.pdu.auth_events.iter().map(ToString::to_string).collect();
        let held = self.store.events_by_id(&wanted).await?;
        if held.len() == wanted.len() {
            return Ok(());
        }
        let request = get_event_authorization::v1::Request::new(parse_id(room_id)?, parse_id(&event.event_id)?);
        let answer = self.client.send(origin, request).await.map_err(|e| e.to_peer_error(origin, "the auth events"))?;
        let chain = self.check_fetched(rules, room_id, &answer.auth_chain).await;
        self.rooms.persist_outliers(chain, rules).await
    }
}
