//! The state before a new event: the state after the single forward extremity, or the
//! state-resolution-v2 result over several.

use std::collections::{HashMap, HashSet, VecDeque};

use ruma::OwnedEventId;
use ruma::events::StateEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::utils::event_id_set::EventIdSet;

use super::Rooms;
use super::pdu::Pdu;
use crate::error::{ApiResult, MatrixError};
use crate::store::{StateMap, StoredEvent};

/// Auth chains are walked at most this deep, so a hostile DAG cannot make us loop.
const MAX_AUTH_CHAIN_EVENTS: usize = 100_000;

/// Returns the state before an event whose parents are `extremities`, and the state
/// group holding it when there is one (a single parent).
pub(super) async fn state_before(
    rooms: &Rooms,
    rules: &RoomVersionRules,
    extremities: &[StoredEvent],
) -> ApiResult<(StateMap, Option<i64>)> {
    match extremities {
        [] => Ok((StateMap::new(), None)),
        [single] => {
            let group =
                single.state_group_after.ok_or_else(|| MatrixError::internal("state", "event without state"))?;
            Ok((rooms.store.state_group(group).await?, Some(group)))
        }
        many => Ok((resolve(rooms, rules, many).await?, None)),
    }
}

/// Loads events as PDUs, keyed by event id.
pub(super) async fn load_events(rooms: &Rooms, ids: impl Iterator<Item = String>) -> ApiResult<HashMap<String, Pdu>> {
    let ids: Vec<String> = ids.collect();
    let events = rooms.store.events_by_id(&ids).await?;
    events
        .iter()
        .map(|event| {
            let pdu = Pdu::from_json(&event.event_id, &event.json, event.rejected)
                .map_err(|err| MatrixError::internal("stored event", err))?;
            Ok((event.event_id.clone(), pdu))
        })
        .collect()
}

async fn resolve(rooms: &Rooms, rules: &RoomVersionRules, extremities: &[StoredEvent]) -> ApiResult<StateMap> {
    let mut maps = Vec::new();
    for extremity in extremities {
        let group = extremity.state_group_after.ok_or_else(|| MatrixError::internal("state", "no state group"))?;
        maps.push(rooms.store.state_group(group).await?);
    }
    resolve_states(rooms, rules, maps).await
}

/// Resolves several room states into one with state resolution v2.
pub(super) async fn resolve_states(
    rooms: &Rooms,
    rules: &RoomVersionRules,
    maps: Vec<StateMap>,
) -> ApiResult<StateMap> {
    let v2 = rules
        .state_res
        .v2_rules()
        .ok_or_else(|| MatrixError::internal("state resolution", "room version without state resolution v2"))?;
    let all_ids: HashSet<String> = maps.iter().flat_map(|state| state.values().cloned()).collect();
    let mut events = load_events(rooms, all_ids.iter().cloned()).await?;
    let mut auth_chains = Vec::new();
    for state in &maps {
        let chain = auth_chain(rooms, state.values().cloned(), &mut events).await?;
        auth_chains.push(chain.into_iter().filter_map(|id| OwnedEventId::try_from(id).ok()).collect::<EventIdSet<_>>());
    }
    // From v12 the create event is in no auth chain, but the auth rules read it.
    let create = events.values().find_map(super::remote::create_event_id);
    if let Some(create) = create.filter(|id| !events.contains_key(id)) {
        events.extend(load_events(rooms, std::iter::once(create)).await?);
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
        let mut events = HashMap::new();
        auth_chain(self, ids.into_iter(), &mut events).await
    }
}

/// The auth chain of `ids`: every event reachable through `auth_events`.
async fn auth_chain(
    rooms: &Rooms,
    ids: impl Iterator<Item = String>,
    events: &mut HashMap<String, Pdu>,
) -> ApiResult<HashSet<String>> {
    let mut chain = HashSet::new();
    let mut queue: VecDeque<String> = ids.collect();
    while let Some(id) = queue.pop_front() {
        if chain.len() >= MAX_AUTH_CHAIN_EVENTS {
            return Err(MatrixError::internal("auth chain", "auth chain too long"));
        }
        if !events.contains_key(&id) {
            events.extend(load_events(rooms, std::iter::once(id.clone())).await?);
        }
        let Some(pdu) = events.get(&id) else { continue };
        for auth in &pdu.auth_events {
            let auth = auth.to_string();
            if chain.insert(auth.clone()) {
                queue.push_back(auth);
            }
        }
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pdu(id: &str, auth: &[&str]) -> (OwnedEventId, Pdu) {
        let json = json!({
            "room_id": "!r:x", "sender": "@a:x", "type": "m.room.member", "state_key": "@a:x",
            "content": {}, "origin_server_ts": 1, "prev_events": [], "auth_events": auth,
        });
        let pdu = Pdu::from_json(id, &json, false).unwrap();
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
