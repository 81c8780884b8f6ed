//! History visibility: which events of a room a user may read, from the
//! `m.room.history_visibility` and the user's membership at each event.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Rooms;
use crate::error::ApiResult;
use crate::services::bounded::BoundedMap;
use crate::store::StoredEvent;

/// Verdicts kept: a state group never changes, so neither does what a user may see at it.
const KEPT_VERDICTS: usize = 100_000;

/// Whether a user may see events at a state group, remembered: every `/sync` of a room's
/// members asks it again for the same few groups.
pub(super) struct Verdicts(Mutex<BoundedMap<(i64, String), bool>>);

impl Default for Verdicts {
    fn default() -> Self {
        Self(Mutex::new(BoundedMap::new(KEPT_VERDICTS)))
    }
}

impl Verdicts {
    fn get(&self, group: i64, user_id: &str) -> Option<bool> {
        let kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.get(&(group, user_id.to_owned())).copied()
    }

    fn keep(&self, group: i64, user_id: &str, allowed: bool) {
        let mut kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.insert((group, user_id.to_owned()), allowed);
    }
}

impl Rooms {
    /// Keeps the events `user_id` may see. Events sharing a state group are judged once.
    pub async fn visible_events(&self, user_id: &str, events: Vec<StoredEvent>) -> ApiResult<Vec<StoredEvent>> {
        let mut verdicts: HashMap<i64, bool> = HashMap::new();
        let mut visible = Vec::with_capacity(events.len());
        for event in events {
            let Some(group) = event.state_group_after else { continue };
            let allowed = match verdicts.get(&group) {
                Some(allowed) => *allowed,
                None => {
                    let allowed = self.visible_at(user_id, group).await?;
                    verdicts.insert(group, allowed);
                    allowed
                }
            };
            if allowed {
                visible.push(event);
            }
        }
        Ok(visible)
    }

    async fn visible_at(&self, user_id: &str, group: i64) -> ApiResult<bool> {
        if let Some(allowed) = self.verdicts.get(group, user_id) {
            return Ok(allowed);
        }
        let allowed = self.read_visible_at(user_id, group).await?;
        self.verdicts.keep(group, user_id, allowed);
        Ok(allowed)
    }

    async fn read_visible_at(&self, user_id: &str, group: i64) -> ApiResult<bool> {
        let keys = [("m.room.history_visibility", ""), ("m.room.member", user_id)];
        let ids = self.store.state_group_entries(group, &keys).await?;
        // Both events in one read.
        let wanted: Vec<String> = ids.iter().flatten().cloned().collect();
        let events = if wanted.is_empty() { Vec::new() } else { self.store.events_by_id(&wanted).await? };
        let content_of = |id: &Option<String>| {
            let event = id.as_ref().and_then(|id| events.iter().find(|e| &e.event_id == id));
            event.map(|e| &e.json["content"])
        };
        let (visibility, membership) = (content_of(&ids[0]), content_of(&ids[1]));
        let visibility = visibility.and_then(|c| c["history_visibility"].as_str()).unwrap_or("shared");
        let membership = membership.and_then(|c| c["membership"].as_str()).unwrap_or("leave");
        // The caller has already limited reads to members (and to the moment they left),
        // so `shared` and `world_readable` history is visible to them.
        Ok(match visibility {
            "world_readable" | "shared" => true,
            "invited" => membership == "join" || membership == "invite",
            _ => membership == "join",
        })
    }
}
