//! Auth chains: every event reachable from some events through `auth_events`.
//!
//! An event's auth events never change, so the edges a walk learns are kept in memory
//! (at most `MAX_CACHED_EVENTS` events; all are forgotten at once when that is reached,
//! to be learnt again). A chain is walked level by level: the events of a level whose
//! edges are not known yet are read in one query, and only their `auth_events`. Serving
//! the state of a big room (`/state_ids`, `/state`, `send_join`) or resolving its state
//! then costs one query per level of the DAG instead of one per event.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::pdu::Pdu;
use crate::error::{ApiResult, MatrixError};
use crate::store::Store;

/// Events whose auth events are kept in memory, at most.
const MAX_CACHED_EVENTS: usize = 500_000;
/// A chain is walked no further than this many events, so a hostile DAG cannot make us
/// walk without end (Matrix HQ's state and auth chain are about 200,000 events).
pub const MAX_AUTH_CHAIN_EVENTS: usize = 1_000_000;

type EventId = Arc<str>;

/// The auth edges learnt so far: event -> its auth events.
#[derive(Default)]
pub struct AuthChains {
    edges: Mutex<HashMap<EventId, Arc<[EventId]>>>,
}

impl AuthChains {
    /// The auth chain of `roots`. `pending` holds events not stored yet (one being
    /// persisted), whose auth events are read from them.
    pub async fn walk(
        &self,
        store: &Store,
        roots: impl IntoIterator<Item = String>,
        pending: &HashMap<String, Pdu>,
    ) -> ApiResult<HashSet<String>> {
        let mut chain: HashSet<EventId> = HashSet::new();
        let mut level: Vec<EventId> = roots.into_iter().map(EventId::from).collect();
        while !level.is_empty() {
            let unknown = self.unknown(&level, pending);
            if !unknown.is_empty() {
                let loaded = store.auth_events_of(&unknown).await?;
                self.learn(loaded);
            }
            level = self.next_level(&level, pending, &mut chain);
            if chain.len() > MAX_AUTH_CHAIN_EVENTS {
                return Err(MatrixError::internal("auth chain", "auth chain too long"));
            }
        }
        Ok(chain.into_iter().map(|id| id.to_string()).collect())
    }

    /// The events of `level` whose edges are neither cached nor pending.
    fn unknown(&self, level: &[EventId], pending: &HashMap<String, Pdu>) -> Vec<String> {
        let edges = self.lock();
        level
            .iter()
            .filter(|id| !edges.contains_key(*id) && !pending.contains_key(&***id))
            .map(|id| id.to_string())
            .collect()
    }

    /// The auth events of `level` not in `chain` yet, added to it. Events that are
    /// nowhere to be found (not held) end their branch.
    fn next_level(
        &self,
        level: &[EventId],
        pending: &HashMap<String, Pdu>,
        chain: &mut HashSet<EventId>,
    ) -> Vec<EventId> {
        let edges = self.lock();
        let mut next = Vec::new();
        for id in level {
            let pending_auth: Vec<EventId>;
            let auth: &[EventId] = match (edges.get(id), pending.get(&**id)) {
                (Some(auth), _) => auth,
                (None, Some(pdu)) => {
                    pending_auth = pdu.auth_events.iter().map(|a| EventId::from(a.as_str())).collect();
                    &pending_auth
                }
                (None, None) => &[],
            };
            for auth_id in auth {
                if chain.insert(auth_id.clone()) {
                    next.push(auth_id.clone());
                }
            }
        }
        next
    }

    /// Keeps what was read; the ids the edges point to share the cached keys' strings.
    fn learn(&self, loaded: Vec<(String, Vec<String>)>) {
        let mut edges = self.lock();
        if edges.len() + loaded.len() > MAX_CACHED_EVENTS {
            edges.clear();
        }
        for (event_id, auth_events) in loaded {
            let auth: Arc<[EventId]> = auth_events
                .into_iter()
                .map(|auth_id| {
                    edges.get_key_value(auth_id.as_str()).map_or_else(|| EventId::from(auth_id), |(k, _)| k.clone())
                })
                .collect();
            edges.insert(EventId::from(event_id), auth);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EventId, Arc<[EventId]>>> {
        self.edges.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
