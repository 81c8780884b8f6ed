//! The newest positions of the event stream, kept in memory by the transactions that
//! write them. Each message sent wakes the background workers and every long poll of
//! the room's members, and each asks for the events after its position: almost always
//! the ones just written. Answering from memory saves each a statement, and on SQLite
//! the hand-off to the connection's thread and back that every statement costs.
//!
//! The kept positions are always one unbroken run (a position that holds no event is
//! kept as `None`), so a range is answered from memory when the run covers it, and from
//! the database otherwise. A write that changes stored events in place (a redaction, a
//! resync's verdicts, a purge) drops what is kept, as does a commit whose bookkeeping was
//! cut short. On PostgreSQL commits of the event stream happen in position order (each
//! holds the stream's row until it commits) but their bookkeeping may not: a commit
//! whose bookkeeping comes after another's keeps nothing (its positions are read from
//! the database), so an older copy never comes back over what a later commit replaced.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, PoisonError};

use super::{Store, StoredEvent};

/// Positions kept, at most: several seconds of a busy server's events.
const KEPT_POSITIONS: usize = 4_096;
/// Bytes of event JSON kept, at most (events may be 64 KiB each).
const KEPT_BYTES: usize = 16 << 20;

#[derive(Default)]
pub(super) struct RecentEvents {
    /// Stream position -> the event written at it; `None` for a position that holds no
    /// event (a resync's mark, an outlier's row since replaced by its timeline copy).
    slots: BTreeMap<i64, Slot>,
    /// The JSON bytes of the kept events.
    bytes: usize,
    /// Moves with every change of what is kept (see the module's comment).
    epoch: u64,
}

struct Slot {
    event: Option<Arc<StoredEvent>>,
    bytes: usize,
}

/// An event a transaction wrote, with the length of its JSON.
pub(super) type WrittenEvent = (StoredEvent, usize);

impl RecentEvents {
    /// The kept events of `(after, up_to]`, if the run covers it.
    fn covering(&self, after: i64, up_to: i64) -> Option<impl DoubleEndedIterator<Item = &Arc<StoredEvent>>> {
        let up_to = up_to.max(after);
        let (&oldest, _) = self.slots.first_key_value()?;
        let (&newest, _) = self.slots.last_key_value()?;
        let covered = oldest <= after.saturating_add(1) && newest >= up_to;
        let range = (Bound::Excluded(after), Bound::Included(up_to));
        covered.then(|| self.slots.range(range).filter_map(|(_, slot)| slot.event.as_ref()))
    }

    /// The newest kept position, when the run starts at or before `after + 1`.
    fn newest_from(&self, after: i64) -> Option<i64> {
        let (&newest, _) = self.slots.last_key_value()?;
        let (&oldest, _) = self.slots.first_key_value()?;
        (oldest <= after.saturating_add(1)).then_some(newest.max(after))
    }

    /// See [`Store::keep_recent_events`].
    fn keep(&mut self, epoch: u64, positions: &[i64], events: Vec<WrittenEvent>, replaced: &[String]) {
        if !replaced.is_empty() {
            for slot in self.slots.values_mut() {
                if slot.event.as_ref().is_some_and(|event| replaced.contains(&event.event_id)) {
                    slot.event = None;
                }
            }
        }
        if self.epoch != epoch {
            // Another commit's bookkeeping came first: this one's positions are left to
            // the database, and the run starts again after them.
            self.clear();
            return;
        }
        self.epoch += 1;
        let mut written: HashMap<i64, WrittenEvent> = events.into_iter().map(|e| (e.0.stream_ordering, e)).collect();
        let mut positions = positions.to_vec();
        positions.sort_unstable();
        for position in positions {
            let event = written.remove(&position).filter(|(e, _)| !(e.outlier && replaced.contains(&e.event_id)));
            self.push(position, event);
        }
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.bytes = 0;
        self.epoch += 1;
    }

    /// Adds a position at the run's end; one that does not follow it starts a new run.
    fn push(&mut self, position: i64, event: Option<WrittenEvent>) {
        if self.slots.last_key_value().is_some_and(|(&newest, _)| newest.checked_add(1) != Some(position)) {
            self.clear();
        }
        let (event, bytes) = match event {
            Some((event, bytes)) => (Some(Arc::new(event)), bytes),
            None => (None, 0),
        };
        self.bytes += bytes;
        self.slots.insert(position, Slot { event, bytes });
        while self.slots.len() > KEPT_POSITIONS || self.bytes > KEPT_BYTES {
            let Some((_, dropped)) = self.slots.pop_first() else { break };
            self.bytes -= dropped.bytes;
        }
    }
}

impl Store {
    fn recent(&self) -> std::sync::MutexGuard<'_, RecentEvents> {
        self.recent_events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The epoch a transaction reads before it commits, for `keep_recent_events`.
    pub(super) fn recent_events_epoch(&self) -> u64 {
        self.recent().epoch
    }

    /// Keeps what a committed transaction wrote on the event stream: `positions` it
    /// took, `events` it wrote at some of them, `replaced` outliers whose rows it removed;
    /// `epoch` is what [`Self::recent_events_epoch`] said before it committed.
    pub(super) fn keep_recent_events(
        &self,
        epoch: u64,
        positions: &[i64],
        events: Vec<WrittenEvent>,
        replaced: &[String],
    ) {
        self.recent().keep(epoch, positions, events, replaced);
    }

    pub(super) fn forget_recent_events(&self) {
        self.recent().clear();
    }

    /// Events after `after`, oldest first, outliers included, at most `limit`, when
    /// memory holds every position from `after + 1` on. Positions committed and not yet
    /// kept are announced once they are, so their followers come back for them.
    pub(super) fn kept_events_after(&self, after: i64, limit: i64) -> Option<Vec<StoredEvent>> {
        let found: Vec<Arc<StoredEvent>> = {
            let recent = self.recent();
            let newest = recent.newest_from(after)?;
            recent.covering(after, newest)?.take(limit.max(0) as usize).cloned().collect()
        };
        // Copied once the lock is released: commits wait on it.
        Some(found.iter().map(|event| event.as_ref().clone()).collect())
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
        let found: Vec<Arc<StoredEvent>> = {
            let recent = self.recent();
            let events = recent.covering(after, up_to)?;
            let timeline = events.filter(|event| event.room_id == room_id && !event.rejected && !event.outlier);
            let limit = limit.max(0) as usize;
            if forwards {
                timeline.take(limit).cloned().collect()
            } else {
                timeline.rev().take(limit).cloned().collect()
            }
        };
        Some(found.iter().map(|event| event.as_ref().clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: i64, event_id: &str, outlier: bool, bytes: usize) -> WrittenEvent {
        let json = serde_json::Value::from("x".repeat(bytes));
        let event = StoredEvent {
            event_id: event_id.to_owned(),
            room_id: "!r:x".to_owned(),
            stream_ordering: position,
            depth: 1,
            json,
            rejected: false,
            state_group_before: None,
            state_group_after: None,
            outlier,
        };
        (event, bytes)
    }

    fn ids(recent: &RecentEvents, after: i64, up_to: i64) -> Option<Vec<String>> {
        Some(recent.covering(after, up_to)?.map(|event| event.event_id.clone()).collect())
    }

    #[test]
    fn a_range_is_answered_only_when_the_run_covers_it() {
        let mut recent = RecentEvents::default();
        recent.keep(0, &[5, 6, 7], vec![event(5, "$a", false, 10), event(7, "$c", false, 10)], &[]);
        assert_eq!(ids(&recent, 4, 7), Some(vec!["$a".to_owned(), "$c".to_owned()]), "6 holds no event");
        assert_eq!(ids(&recent, 3, 7), None, "4 is not kept");
        assert_eq!(ids(&recent, 6, 8), None, "8 is not kept yet");
        assert_eq!(ids(&recent, 7, 7), Some(vec![]), "an empty range");
        assert_eq!(recent.newest_from(3), None);
        // A client's token at the end of the range: nothing after it, and no overflow.
        assert_eq!(recent.newest_from(i64::MAX), Some(i64::MAX));
        assert!(ids(&recent, i64::MAX, i64::MAX).unwrap_or_default().is_empty());
        // A position that does not follow the run starts a new one.
        let epoch = recent.epoch;
        recent.keep(epoch, &[9], vec![event(9, "$d", false, 10)], &[]);
        assert_eq!(ids(&recent, 8, 9), Some(vec!["$d".to_owned()]));
        assert_eq!(ids(&recent, 6, 9), None);
    }

    #[test]
    fn bookkeeping_that_comes_late_keeps_nothing_and_replaced_outliers_go() {
        let mut recent = RecentEvents::default();
        recent.keep(0, &[1], vec![event(1, "$o", true, 10)], &[]);
        // The transaction at 2 read the epoch before the one at 3 kept its events.
        let read_by_second = recent.epoch;
        recent.keep(read_by_second, &[3], vec![event(3, "$o", false, 10)], &["$o".to_owned()]);
        recent.keep(read_by_second, &[2], vec![event(2, "$x", false, 10)], &[]);
        assert_eq!(recent.slots.len(), 0, "the late commit's positions are left to the database");
        let mut recent = RecentEvents::default();
        recent.keep(0, &[1, 2], vec![event(1, "$o", true, 10)], &[]);
        let epoch = recent.epoch;
        recent.keep(epoch, &[3], vec![event(3, "$o", false, 10)], &["$o".to_owned()]);
        assert_eq!(ids(&recent, 0, 3), Some(vec!["$o".to_owned()]));
        assert!(!recent.slots[&3].event.as_ref().is_some_and(|e| e.outlier));
    }

    #[test]
    fn kept_json_stays_within_its_budget() {
        let mut recent = RecentEvents::default();
        let big = KEPT_BYTES / 4 + 1;
        for position in 1..=8 {
            let epoch = recent.epoch;
            recent.keep(epoch, &[position], vec![event(position, &format!("${position}"), false, big)], &[]);
        }
        assert!(recent.bytes <= KEPT_BYTES);
        assert_eq!(recent.slots.len(), 3);
        assert_eq!(ids(&recent, 5, 8).map(|ids| ids.len()), Some(3));
    }
}
