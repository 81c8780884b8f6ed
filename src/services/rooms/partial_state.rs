//! Rooms joined with a partial state (MSC3706/MSC3902). Until the resync, events are
//! checked against the partial state plus their own auth events (which name their
//! sender's membership, the one thing the partial state lacks), and nothing is
//! soft-failed. Once the full state before the join is known, every event from the join
//! on is checked again in order against it, its state rewritten, and the room's
//! current state replaced, which the directory and `/sync` follow.

use std::sync::Arc;
use std::time::Duration;

use ruma::room_version_rules::RoomVersionRules;

use super::Rooms;
use super::pdu::Pdu;
use crate::error::{ApiResult, MatrixError};
use crate::store::{PartialStateRoom, StateBefore, StateMap, StoredEvent};

impl Rooms {
    /// Rooms whose resync has not completed.
    pub async fn partial_state_room_count(&self) -> ApiResult<i64> {
        Ok(self.store.partial_state_rooms().await?.len() as i64)
    }

    pub async fn is_partial_state(&self, room_id: &str) -> ApiResult<bool> {
        Ok(self.store.partial_state_room(room_id).await?.is_some())
    }

    /// Waits (at most `limit`) for a room's resync to complete; true if its state is full.
    pub async fn wait_for_full_state(&self, room_id: &str, limit: Duration) -> ApiResult<bool> {
        let mut written = self.events_written.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if !self.is_partial_state(room_id).await? {
                return Ok(true);
            }
            if tokio::time::timeout_at(deadline, written.changed()).await.is_err() {
                return Ok(false);
            }
        }
    }

    /// `state` with the event's own auth events added where it has no entry: what an
    /// event of a partial-state room is checked against.
    pub(super) async fn with_auth_events(&self, pdu: &Pdu, state: &StateMap) -> ApiResult<StateMap> {
        let ids: Vec<String> = pdu.auth_events.iter().map(ToString::to_string).collect();
        let mut augmented = state.clone();
        for event in self.store.events_by_id(&ids).await? {
            if event.rejected {
                continue;
            }
            if let (Some(kind), Some(key)) = (event.json["type"].as_str(), event.json["state_key"].as_str()) {
                augmented.entry((kind.to_owned(), key.to_owned())).or_insert(event.event_id);
            }
        }
        Ok(augmented)
    }

    /// Completes a resync: `full_state` is the state before the join, from a resident.
    /// Returns how many verdicts changed.
    pub async fn complete_partial_state(
        &self,
        rules: &RoomVersionRules,
        room: &PartialStateRoom,
        full_state: StateMap,
    ) -> ApiResult<usize> {
        let _guard = self.lock_room(&room.room_id).await;
        let join = self.require_event(&room.join_event_id).await?;
        if join.outlier {
            return Err(MatrixError::internal("resync", "the join is not in the timeline"));
        }
        let events = self.store.room_events_from(&room.room_id, join.stream_ordering).await?;
        let mut corrected = 0;
        let mut last_group = None;
        for event in &events {
            let (state_before, group) = if event.event_id == join.event_id {
                (Arc::new(full_state.clone()), None)
            } else {
                self.restated_state_before(rules, event, last_group).await?
            };
            let pdu =
                Pdu::from_json(&event.event_id, &event.json, false).map_err(|e| MatrixError::internal("event", e))?;
            let rejected = self.check_against_state(rules, &pdu, &state_before).await?.is_err();
            if rejected != event.rejected {
                corrected += 1;
                tracing::info!(event_id = %event.event_id, rejected, "resync corrected an event's verdict");
            }
            let before = match group {
                Some(group) => StateBefore::Group(group),
                None => StateBefore::Snapshot(&state_before),
            };
            let (_, after) = self.store.restate_event(event, before, rejected).await?;
            last_group = Some(after);
        }
        let extremities = self.store.forward_extremities(&room.room_id).await?;
        let (current, _) = self.state_after_all(rules, &extremities).await?;
        let position = self.store.finish_partial_state(&room.room_id, &current).await?;
        self.events_written.send_replace(position);
        Ok(corrected)
    }

    /// The state before an event being restated: after its prev events (restated
    /// already, as they come first), or after the event restated before it when its prev
    /// events are not held with state.
    async fn restated_state_before(
        &self,
        rules: &RoomVersionRules,
        event: &StoredEvent,
        previous_group: Option<i64>,
    ) -> ApiResult<(Arc<StateMap>, Option<i64>)> {
        let prevs: Vec<String> = event.json["prev_events"]
            .as_array()
            .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let held: Vec<StoredEvent> =
            self.store.events_by_id(&prevs).await?.into_iter().filter(|e| e.state_group_after.is_some()).collect();
        if !held.is_empty() && held.len() == prevs.len() {
            return self.state_after_all(rules, &held).await;
        }
        let group = previous_group.ok_or_else(|| MatrixError::internal("resync", "no state before the event"))?;
        Ok((self.state_group(group).await?, Some(group)))
    }
}
