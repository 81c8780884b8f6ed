//! Step 6: the state before an event whose prev events are still missing, from what the
//! origin says the state was at each of them.

use ruma::ServerName;
use ruma::room_version_rules::RoomVersionRules;

use ruma::api::federation::event::get_room_state;

use super::{Inbound, parse_id};
use crate::error::ApiResult;
use crate::store::StateMap;

impl Inbound {
    /// The state before an event whose prev events we lack: for each missing one, the
    /// state `origin` says it had (its state before, plus itself), resolved together with
    /// the states after the prev events we hold.
    pub(super) async fn state_before_from_remote(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        room_id: &str,
        prevs: &[String],
        missing: &[String],
    ) -> ApiResult<StateMap> {
        let mut maps = Vec::new();
        for prev in missing {
            maps.push(self.remote_state_after(origin, rules, room_id, prev).await?);
        }
        let held: Vec<String> = prevs.iter().filter(|p| !missing.contains(p)).cloned().collect();
        maps.extend(self.rooms.states_after(&held).await?);
        self.rooms.resolve(rules, maps).await
    }

    /// The state after `event_id` according to `origin`, with every event of it checked
    /// and held as an outlier.
    pub(super) async fn remote_state_after(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        room_id: &str,
        event_id: &str,
    ) -> ApiResult<StateMap> {
        let request = get_room_state::v1::Request::new(parse_id(event_id)?, parse_id(room_id)?);
        let answer =
            self.client.send(origin, request).await.map_err(|e| e.to_peer_error(origin, "the room's state"))?;
        let mut events = self.check_fetched(rules, room_id, &answer.auth_chain).await;
        let state = self.check_fetched(rules, room_id, &answer.pdus).await;
        let mut state_ids: Vec<String> = state.iter().map(|e| e.event_id.clone()).collect();
        events.extend(state);
        if let Some(prev) = self.fetch_event(origin, rules, room_id, event_id).await? {
            if prev.pdu.state_key.is_some() {
                state_ids.push(prev.event_id.clone());
            }
            events.push(prev);
        }
        self.rooms.persist_outliers(events, rules).await?;
        // The event itself comes last, so it replaces what it changed.
        self.rooms.state_map_of(&state_ids).await
    }
}
