//! What decides whether a server may see an event, kept across requests by state group.
//! A group never changes, and neither do the two things read of it here: its history
//! visibility (redaction keeps that field), and whether a member of a given server was
//! joined (or invited, where that counts) at it. A walk over a room's DAG
//! (`backfill`, `get_missing_events`) meets a new group at nearly every state event, and
//! would otherwise read each one's delta chain again in every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Entries kept in each map, at most; all are forgotten at once when that is reached,
/// to be learnt again.
const MAX_KEPT: usize = 100_000;

#[derive(Default)]
pub(super) struct Verdicts {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Group -> its history visibility.
    visibility: HashMap<i64, Arc<str>>,
    /// Group -> server -> whether a member of the server could see events at the group.
    members: HashMap<i64, HashMap<String, bool>>,
    members_kept: usize,
}

impl Verdicts {
    pub(super) fn visibility(&self, group: i64) -> Option<Arc<str>> {
        self.lock().visibility.get(&group).cloned()
    }

    pub(super) fn keep_visibility(&self, group: i64, visibility: Arc<str>) {
        let mut inner = self.lock();
        if inner.visibility.len() >= MAX_KEPT {
            inner.visibility.clear();
        }
        inner.visibility.insert(group, visibility);
    }

    pub(super) fn members(&self, group: i64, server: &str) -> Option<bool> {
        self.lock().members.get(&group)?.get(server).copied()
    }

    pub(super) fn keep_members(&self, group: i64, server: &str, seen: bool) {
        let mut inner = self.lock();
        if inner.members_kept >= MAX_KEPT {
            inner.members.clear();
            inner.members_kept = 0;
        }
        if inner.members.entry(group).or_default().insert(server.to_owned(), seen).is_none() {
            inner.members_kept += 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
