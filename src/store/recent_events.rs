//! The newest positions of the event stream, kept in memory by the transactions that
//! write them. Each message sent wakes the background workers and every long poll of
//! the room's members, and each asks for the events after its position: almost always
//! the ones just written. Answering from memory saves each a statement, and on SQLite
//! the hand-off to the connection's thread and back that every statement costs.
//!
//! A range is answered from memory only when every position in it is kept (a position
//! that holds no event is kept as `None`); anything else reads the database. A write
//! that changes stored events in place (a redaction, a resync's verdicts, a purge)
//! drops what is kept, as does a commit whose bookkeeping was cut short.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError};

use super::{Store, StoredEvent};

/// Positions kept, at most: several seconds of a busy server's events, a few megabytes.
const KEPT_POSITIONS: usize = 4_096;

#[derive(Default)]
pub(super) struct RecentEvents {
    /// Stream position -> the event written at it; `None` for a position that holds no
    /// event (a resync's mark, an outlier's row since replaced by its timeline copy).
    slots: BTreeMap<i64, Option<Arc<StoredEvent>>>,
}

impl RecentEvents {
    /// The kept slots of `(after, up_to]`, if every position in it is kept.
    fn covering(&self, after: i64, up_to: i64) -> Option<impl DoubleEndedIterator<Item = &Arc<StoredEvent>>> {
        let up_to = up_to.max(after);
        let range = self.slots.range(after + 1..up_to + 1);
        let kept = range.clone().count() as i64;
        (kept == up_to - after).then(|| range.filter_map(|(_, slot)| slot.as_ref()))
    }

    /// The newest kept position, when the positions from `after + 1` on are all kept.
    fn newest_from(&self, after: i64) -> Option<i64> {
        let (&newest, _) = self.slots.last_key_value()?;
        let (&oldest, _) = self.slots.first_key_value()?;
        (oldest <= after + 1).then_some(newest.max(after))
    }
}

impl Store {
    fn recent(&self) -> std::sync::MutexGuard<'_, RecentEvents> {
        self.recent_events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps what a committed transaction wrote on the event stream: `positions` it
    /// took, `events` it wrote at some of them, `replaced` outliers whose rows it removed.
    pub(super) fn keep_recent_events(&self, positions: &[i64], events: Vec<StoredEvent>, replaced: &[String]) {
        let mut recent = self.recent();
        if !replaced.is_empty() {
            for slot in recent.slots.values_mut() {
                if slot.as_ref().is_some_and(|event| replaced.contains(&event.event_id)) {
                    *slot = None;
                }
            }
        }
        let mut written: HashMap<i64, StoredEvent> = events.into_iter().map(|e| (e.stream_ordering, e)).collect();
        for &position in positions {
            let event = written.remove(&position).filter(|e| !(e.outlier && replaced.contains(&e.event_id)));
            recent.slots.insert(position, event.map(Arc::new));
        }
        while recent.slots.len() > KEPT_POSITIONS {
            recent.slots.pop_first();
        }
    }

    pub(super) fn forget_recent_events(&self) {
        self.recent().slots.clear();
    }

    /// Events after `after`, oldest first, outliers included, at most `limit`, when
    /// memory holds every position from `after + 1` on. Positions committed and not yet
    /// kept are announced once they are, so their followers come back for them.
    pub(super) fn kept_events_after(&self, after: i64, limit: i64) -> Option<Vec<StoredEvent>> {
        let recent = self.recent();
        let newest = recent.newest_from(after)?;
        let events = recent.covering(after, newest)?;
        Some(events.take(limit.max(0) as usize).map(|event| event.as_ref().clone()).collect())
    }

    /// As `rooms_with_events_between`, when memory holds the whole range.
    pub(super) fn kept_rooms_with_events(&self, after: i64, up_to: i64) -> Option<Vec<(String, bool)>> {
        let recent = self.recent();
        let mut rooms: Vec<(String, bool)> = Vec::new();
        for event in recent.covering(after, up_to)? {
            let membership = event.json["type"] == "m.room.member";
            match rooms.iter_mut().find(|(room, _)| *room == event.room_id) {
                Some((_, any)) => *any |= membership,
                None => rooms.push((event.room_id.clone(), membership)),
            }
        }
        Some(rooms)
    }

    /// As `room_events`, when memory holds the whole range.
    pub(super) fn kept_room_events(
        &self,
        room_id: &str,
        after: i64,
        up_to: i64,
        forwards: bool,
        limit: i64,
    ) -> Option<Vec<StoredEvent>> {
        let recent = self.recent();
        let events = recent.covering(after, up_to)?;
        let timeline = events.filter(|event| event.room_id == room_id && !event.rejected && !event.outlier);
        let limit = limit.max(0) as usize;
        let found = if forwards {
            timeline.take(limit).map(|event| event.as_ref().clone()).collect()
        } else {
            timeline.rev().take(limit).map(|event| event.as_ref().clone()).collect()
        };
        Some(found)
    }
}
