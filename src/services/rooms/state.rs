//! Room state: the state after events (one state group, or several resolved with state
//! resolution v2), state maps from state events, and auth chains.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::OwnedEventId;
use ruma::events::StateEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::utils::event_id_set::EventIdSet;

use super::Rooms;
use super::pdu::Pdu;
use crate::error::{ApiResult, MatrixError};
use crate::store::{StateMap, StoredEvent};

impl Rooms {
    /// The state after a set of events (the forward extremities a new event follows, or
    /// a remote event's prev events): their one state group, reused, or else their
    /// states resolved together.
    pub(super) async fn state_after_all(
        &self,
        rules: &RoomVersionRules,
        events: &[StoredEvent],
    ) -> ApiResult<(Arc<StateMap>, Option<i64>)> {
        let mut groups = Vec::with_capacity(events.len());
        for event in events {
            let group = event
                .state_group_after
                .ok_or_else(|| MatrixError::internal("state", format!("no state known at {}", event.event_id)))?;
            groups.push(group);
        }
        groups.sort_unstable();
        groups.dedup();
        if let [single] = groups.as_slice() {
            // Shared with the kept group, not copied: a big room's state is 100,000 entries.
            return Ok((self.state_group(*single).await?, Some(*single)));
        }
        let mut maps = Vec::with_capacity(groups.len());
        for group in groups {
            maps.push(StateMap::clone(&*self.state_group(group).await?));
        }
        Ok((Arc::new(self.resolve(rules, maps).await?), None))
    }

    /// The states after those of `event_ids` that are held with state.
    pub async fn states_after(&self, event_ids: &[String]) -> ApiResult<Vec<StateMap>> {
        let mut maps = Vec::new();
        for event in self.store.events_by_id(event_ids).await? {
            if let Some(group) = event.state_group_after {
                maps.push(StateMap::clone(&*self.state_group(group).await?));
            }
        }
        Ok(maps)
    }

    /// The state made of the given state events, skipping rejected ones; a later id
    /// replaces an earlier one of the same type and state key.
    pub async fn state_map_of(&self, event_ids: &[String]) -> ApiResult<StateMap> {
        let held: HashMap<String, StoredEvent> =
            self.store.events_by_id(event_ids).await?.into_iter().map(|e| (e.event_id.clone(), e)).collect();
        let mut map = StateMap::new();
        for id in event_ids {
            let Some(event) = held.get(id).filter(|e| !e.rejected) else { continue };
            if let (Some(kind), Some(key)) = (event.json["type"].as_str(), event.json["state_key"].as_str()) {
                map.insert((kind.to_owned(), key.to_owned()), id.clone());
            }
        }
        Ok(map)
    }

    /// Loads events as PDUs, keyed by event id.
    pub(super) async fn load_events(&self, ids: impl Iterator<Item = String>) -> ApiResult<HashMap<String, Pdu>> {
        let ids: Vec<String> = ids.collect();
        let events = self.store.events_by_id(&ids).await?;
        events
            .iter()
            .map(|event| {
                let pdu = Pdu::from_json(&event.event_id, &event.json, event.rejected)
                    .map_err(|err| MatrixError::internal("stored event", err))?;
                Ok((event.event_id.clone(), pdu))
            })
            .collect()
    }

    /// Resolves several states of one room (state resolution v2).
    pub async fn resolve(&self, rules: &RoomVersionRules, maps: Vec<StateMap>) -> ApiResult<StateMap> {
        self.resolve_with_pending(rules, maps, None).await
    }

    /// Like [`Rooms::resolve`], where one state holds `pending`, an event being
    /// persisted: it is not in the database yet, and would otherwise be left out.
    pub async fn resolve_with_pending(
        &self,
        rules: &RoomVersionRules,
        maps: Vec<StateMap>,
        pending: Option<&Pdu>,
    ) -> ApiResult<StateMap> {
        match maps.len() {
            0 => Ok(StateMap::new()),
            1 => Ok(maps.into_iter().next().unwrap_or_default()),
            _ => resolve_states(self, rules, maps, pending).await,
        }
    }
}

/// Resolves several room states into one with state resolution v2.
async fn resolve_states(
    rooms: &Rooms,
    rules: &RoomVersionRules,
    maps: Vec<StateMap>,
    pending: Option<&Pdu>,
) -> ApiResult<StateMap> {
    let v2 = rules
        .state_res
        .v2_rules()
        .ok_or_else(|| MatrixError::internal("state resolution", "room version without state resolution v2"))?;
    let all_ids: HashSet<String> = maps.iter().flat_map(|state| state.values().cloned()).collect();
    let mut events = rooms.load_events(all_ids.iter().cloned()).await?;
    if let Some(pending) = pending {
        events.insert(pending.event_id.to_string(), pending.clone());
    }
    let mut auth_chains = Vec::new();
    for state in &maps {
        let chain = auth_chain(rooms, state.values().cloned(), &mut events).await?;
        auth_chains.push(chain.into_iter().filter_map(|id| OwnedEventId::try_from(id).ok()).collect::<EventIdSet<_>>());
    }
    // From v12 the create event is in no auth chain, but the auth rules read it.
    let create = events.values().find_map(Pdu::create_event_id);
    if let Some(create) = create.filter(|id| !events.contains_key(id)) {
        events.extend(rooms.load_events(std::iter::once(create)).await?);
    }
    let ruma_maps: Vec<ruma::state_res::StateMap<OwnedEventId>> = maps
        .iter()
        .map(|state| {
            state
                .iter()
                .filter_map(|((t, k), id)| {
                    Some(((StateEventType::from(t.as_str()), k.clone()), OwnedEventId::try_from(id.as_str()).ok()?))
                })
                .collect()
        })
        .collect();
    let by_id: HashMap<OwnedEventId, Pdu> = events.into_values().map(|p| (p.event_id.clone(), p)).collect();
    let resolved = ruma::state_res::resolve(
        &rules.authorization,
        v2,
        ruma_maps.iter(),
        auth_chains,
        |id| by_id.get(id).cloned(),
        |conflicted| Some(conflicted_subgraph(&by_id, conflicted)),
    )
    .map_err(|err| MatrixError::internal("state resolution", err))?;
    Ok(resolved.into_iter().map(|((t, k), id)| ((t.to_string(), k), id.to_string())).collect())
}

/// The conflicted state subgraph (state resolution since v12): the conflicted events and
/// every event on an `auth_events` path from one of them to another.
fn conflicted_subgraph(
    events: &HashMap<OwnedEventId, Pdu>,
    conflicted: &ruma::state_res::StateMap<Vec<OwnedEventId>>,
) -> EventIdSet<OwnedEventId> {
    let targets: HashSet<&OwnedEventId> = conflicted.values().flatten().collect();
    // Whether an event's auth chain holds a conflicted event, memoised; iterative so a
    // deep auth chain cannot overflow the stack.
    let mut reaches: HashMap<&OwnedEventId, bool> = HashMap::new();
    let mut subgraph = EventIdSet::new();
    for start in &targets {
        let mut stack: Vec<(&OwnedEventId, bool)> = vec![(start, false)];
        while let Some((id, expanded)) = stack.pop() {
            let Some(pdu) = events.get(id) else {
                reaches.insert(id, false);
                continue;
            };
            if expanded {
                let result = pdu.auth_events.iter().any(|a| targets.contains(a) || reaches.get(a) == Some(&true));
                reaches.insert(id, result);
                continue;
            }
            if reaches.contains_key(id) {
                continue;
            }
            stack.push((id, true));
            for auth in &pdu.auth_events {
                if !reaches.contains_key(auth) {
                    stack.push((auth, false));
                }
            }
        }
    }
    for (id, on_path) in &reaches {
        if *on_path || targets.contains(id) {
            subgraph.insert((*id).clone());
        }
    }
    for id in targets {
        subgraph.insert(id.clone());
    }
    subgraph
}

impl Rooms {
    /// The auth chain of `ids`: every event reachable through `auth_events`.
    pub async fn auth_chain_of(&self, ids: Vec<String>) -> ApiResult<HashSet<String>> {
        self.auth_chains.walk(&self.store, ids, &HashMap::new()).await
    }
}

/// The auth chain of `ids`, whose events are added to `events` (which may hold events
/// not stored yet) for state resolution to read.
async fn auth_chain(
    rooms: &Rooms,
    ids: impl Iterator<Item = String>,
    events: &mut HashMap<String, Pdu>,
) -> ApiResult<HashSet<String>> {
    let chain = rooms.auth_chains.walk(&rooms.store, ids, events).await?;
    let missing: Vec<String> = chain.iter().filter(|id| !events.contains_key(*id)).cloned().collect();
    if !missing.is_empty() {
        events.extend(rooms.load_events(missing.into_iter()).await?);
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::rooms::pdu::fixture::PduFixture;

    fn pdu(id: &str, auth: &[&str]) -> (OwnedEventId, Pdu) {
        let fields = PduFixture {
            kind: "m.room.member",
            state_key: Some("@a:x"),
            auth_events: auth.to_vec(),
            ..PduFixture::message()
        };
        let pdu = Pdu::from_json(id, &fields.to_value(), false).unwrap();
        (pdu.event_id.clone(), pdu)
    }

    #[test]
    fn the_conflicted_subgraph_holds_the_paths_between_conflicted_events() {
        // create <- power <- x <- c2 ; power <- c1 ; c2 also names y, which leads to no
        // conflicted event.
        let events: HashMap<OwnedEventId, Pdu> = [
            pdu("$create", &[]),
            pdu("$power", &["$create"]),
            pdu("$c1", &["$power"]),
            pdu("$x", &["$c1"]),
            pdu("$y", &["$create"]),
            pdu("$c2", &["$x", "$y"]),
        ]
        .into_iter()
        .collect();
        let mut conflicted = ruma::state_res::StateMap::new();
        let ids = |list: &[&str]| list.iter().map(|id| OwnedEventId::try_from(*id).unwrap()).collect::<Vec<_>>();
        conflicted.insert((StateEventType::RoomMember, "@a:x".to_owned()), ids(&["$c1", "$c2"]));
        let subgraph = conflicted_subgraph(&events, &conflicted);
        let mut found: Vec<String> = subgraph.iter().map(ToString::to_string).collect();
        found.sort();
        assert_eq!(found, vec!["$c1", "$c2", "$x"]);
    }
}
