//! State groups kept in memory. A group never changes once written (group ids are
//! stream positions, never reused), so what one request reads serves the next: a
//! joiner's `send_join`, `state_ids` and `state` all read the state before its join, and
//! persisting an event reads the state after its parents. Groups are kept as stored (a
//! snapshot, or a delta on the group before) plus the full maps built from them, so a
//! group stored as a delta on a kept one costs only its delta, and a few entries of a
//! group (what decides whether a server may see an event) are found without building its
//! whole map.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::error::ApiResult;
use crate::store::{StateMap, Store};

/// State entries kept, summed over the kept groups, at most (about 200 bytes each: a
/// 100,000-member room's state is 100,000 entries).
const MAX_CACHED_ENTRIES: usize = 400_000;

#[derive(Default)]
pub struct StateGroups {
    cache: Mutex<Cache>,
}

/// A kept group.
#[derive(Clone)]
enum Kept {
    /// The whole state (a snapshot as stored, or built from deltas).
    Full(Arc<StateMap>),
    /// The entries stored with the group, and the group they apply to.
    Delta(i64, Arc<StateMap>),
}

impl Kept {
    fn size(&self) -> usize {
        match self {
            Kept::Full(map) | Kept::Delta(_, map) => map.len().max(1),
        }
    }
}

#[derive(Default)]
struct Cache {
    groups: HashMap<i64, Kept>,
    /// Full maps built from deltas, by group.
    built: HashMap<i64, Arc<StateMap>>,
    /// What was kept, oldest first: the first to go when the budget is spent.
    order: VecDeque<(i64, bool)>,
    entries: usize,
}

impl StateGroups {
    /// The full state `group` stands for.
    pub async fn get(&self, store: &Store, group: i64) -> ApiResult<Arc<StateMap>> {
        if let Some(map) = self.full(group) {
            return Ok(map);
        }
        // Back along the delta chain to a full map, then forwards.
        let mut deltas = Vec::new();
        let mut at = group;
        let base = loop {
            if let Some(map) = self.full(at) {
                break map;
            }
            match self.level(store, at).await? {
                Kept::Full(map) => break map,
                Kept::Delta(prev, delta) => {
                    deltas.push(delta);
                    at = prev;
                }
            }
        };
        if deltas.is_empty() {
            return Ok(base);
        }
        let mut state = StateMap::clone(&base);
        for delta in deltas.into_iter().rev() {
            state.extend(delta.iter().map(|(key, id)| (key.clone(), id.clone())));
        }
        let state = Arc::new(state);
        self.keep_built(group, state.clone());
        Ok(state)
    }

    /// The entries of `group` whose key `wanted` accepts, read along the delta chain
    /// without building the whole map.
    pub async fn select(
        &self,
        store: &Store,
        group: i64,
        wanted: impl Fn(&(String, String)) -> bool,
    ) -> ApiResult<StateMap> {
        let mut found = StateMap::new();
        let mut pick = |map: &StateMap| {
            for (key, id) in map.iter().filter(|(key, _)| wanted(key)) {
                // Newest level first: a key's first value found is its value here.
                found.entry(key.clone()).or_insert_with(|| id.clone());
            }
        };
        let mut at = group;
        loop {
            if let Some(map) = self.full(at) {
                pick(&map);
                return Ok(found);
            }
            match self.level(store, at).await? {
                Kept::Full(map) => {
                    pick(&map);
                    return Ok(found);
                }
                Kept::Delta(prev, delta) => {
                    pick(&delta);
                    at = prev;
                }
            }
        }
    }

    /// A full map kept or built for `group`.
    fn full(&self, group: i64) -> Option<Arc<StateMap>> {
        let cache = self.lock();
        match cache.groups.get(&group) {
            Some(Kept::Full(map)) => Some(map.clone()),
            _ => cache.built.get(&group).cloned(),
        }
    }

    /// One group as stored, from memory or the database.
    async fn level(&self, store: &Store, group: i64) -> ApiResult<Kept> {
        if let Some(kept) = self.lock().groups.get(&group).cloned() {
            return Ok(kept);
        }
        let (prev, entries) = store.state_group_delta(group).await?;
        let kept = match prev {
            Some(prev) => Kept::Delta(prev, Arc::new(entries)),
            None => Kept::Full(Arc::new(entries)),
        };
        let mut cache = self.lock();
        if !cache.groups.contains_key(&group) && cache.make_room(kept.size()) {
            cache.entries += kept.size();
            cache.groups.insert(group, kept.clone());
            cache.order.push_back((group, false));
        }
        Ok(kept)
    }

    fn keep_built(&self, group: i64, map: Arc<StateMap>) {
        let size = map.len().max(1);
        let mut cache = self.lock();
        // Another request may have built it meanwhile: the same map, kept once.
        if !cache.built.contains_key(&group) && cache.make_room(size) {
            cache.entries += size;
            cache.built.insert(group, map);
            cache.order.push_back((group, true));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Cache {
    /// Forgets the oldest entries until `size` more fit; false if they never can.
    fn make_room(&mut self, size: usize) -> bool {
        if size > MAX_CACHED_ENTRIES {
            return false;
        }
        while self.entries + size > MAX_CACHED_ENTRIES {
            let Some((oldest, built)) = self.order.pop_front() else { break };
            let gone = if built {
                self.built.remove(&oldest).map(|map| map.len().max(1))
            } else {
                self.groups.remove(&oldest).map(|kept| kept.size())
            };
            self.entries -= gone.unwrap_or(0);
        }
        true
    }
}
