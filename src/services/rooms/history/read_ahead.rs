//! The events a walk back over a room's DAG meets (`get_missing_events`, `backfill`),
//! read ahead along `prev_events` edges: one query reads an event and what lies a few
//! dozen edges before it, so a walk over a chain of events costs one query, not one per
//! event. Only what is read changes; the walk decides as before what it takes.

use std::collections::{HashMap, HashSet};

use crate::error::ApiResult;
use crate::store::{Store, StoredEvent};

pub(super) struct ReadAhead<'a> {
    store: &'a Store,
    /// Where the walk stops (`earliest_events`): read, not read past.
    stop: Vec<String>,
    /// How far one read goes: the walk takes at most `limit` events, so it looks at most
    /// `limit + 1` edges back from where it starts.
    steps: i64,
    limit: usize,
    /// Every id read, with its event when held.
    known: HashMap<String, Option<StoredEvent>>,
}

impl<'a> ReadAhead<'a> {
    pub(super) fn new(store: &'a Store, stop: Vec<String>, limit: usize) -> Self {
        let steps = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        Self { store, stop, steps, limit, known: HashMap::new() }
    }

    /// Reads `ids` and what lies before them, unless read already.
    pub(super) async fn read(&mut self, ids: &[String]) -> ApiResult<()> {
        let mut unique = HashSet::new();
        let unread: Vec<String> =
            ids.iter().filter(|id| !self.known.contains_key(*id) && unique.insert(*id)).cloned().collect();
        if unread.is_empty() {
            return Ok(());
        }
        // Enough for a chain of `limit` events behind each start and as many beside it.
        let cap = i64::try_from(unread.len() + 2 * self.limit).unwrap_or(i64::MAX);
        for (id, event) in self.store.events_back_from(&unread, &self.stop, self.steps, cap).await? {
            self.known.entry(id).or_insert(event);
        }
        for id in unread {
            self.known.entry(id).or_insert(None);
        }
        Ok(())
    }

    /// The event `id` when held. Read with it, if it was not read yet: the ids still
    /// `pending` in the walk's queue that were not read either.
    pub(super) async fn event<'q>(
        &mut self,
        id: &str,
        pending: impl Iterator<Item = &'q String>,
    ) -> ApiResult<Option<StoredEvent>> {
        if !self.known.contains_key(id) {
            let mut ids = vec![id.to_owned()];
            ids.extend(
                pending
                    .filter(|queued| !self.known.contains_key(*queued) && !self.stop.contains(*queued))
                    .take(self.limit)
                    .cloned(),
            );
            self.read(&ids).await?;
        }
        Ok(self.known.get(id).cloned().flatten())
    }
}
