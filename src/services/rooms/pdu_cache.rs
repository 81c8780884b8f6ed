//! Events as other servers get them, kept in memory. A big room's whole state goes to
//! every server that joins it (`send_join`, `/state`), and reading and checking ten
//! thousand events' JSON costs far more than copying them. A PDU changes only when its
//! event is redacted, which forgets it here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use serde_json::value::RawValue;

/// Bytes of JSON kept, at most.
const MAX_KEPT_BYTES: usize = 64 << 20;

#[derive(Default)]
pub struct PduCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// `event id -> (stream ordering, PDU)`.
    by_id: HashMap<String, (i64, Box<RawValue>)>,
    /// Ids in the order they were kept: the first to go when the budget is spent.
    order: VecDeque<String>,
    bytes: usize,
    /// Counts what was forgotten: JSON read before a redaction is not kept after it.
    forgotten: u64,
}

/// A PDU with its stream ordering (answers list events in stream order).
pub type OrderedPdu = (i64, Box<RawValue>);

impl PduCache {
    /// The kept PDUs of `ids` (each once), and the ids not kept.
    pub fn get_many(&self, ids: &[String]) -> (Vec<OrderedPdu>, Vec<String>) {
        let inner = self.lock();
        let mut unique = HashSet::with_capacity(ids.len());
        let (mut found, mut missing) = (Vec::with_capacity(ids.len()), Vec::new());
        for id in ids.iter().filter(|id| unique.insert(id.as_str())) {
            match inner.by_id.get(id) {
                Some((ordering, pdu)) => found.push((*ordering, pdu.clone())),
                None => missing.push(id.clone()),
            }
        }
        (found, missing)
    }

    /// A mark to take before reading PDUs from the database, for [`Self::put`].
    pub fn mark(&self) -> u64 {
        self.lock().forgotten
    }

    /// Keeps a PDU read after `mark` was taken, unless an event was forgotten since.
    pub fn put(&self, mark: u64, event_id: &str, ordering: i64, pdu: &RawValue) {
        let size = pdu.get().len() + event_id.len();
        if size > MAX_KEPT_BYTES {
            return;
        }
        let mut inner = self.lock();
        if inner.forgotten != mark || inner.by_id.contains_key(event_id) {
            return;
        }
        while inner.bytes + size > MAX_KEPT_BYTES {
            let Some(oldest) = inner.order.pop_front() else { break };
            inner.forget(&oldest);
        }
        inner.bytes += size;
        inner.by_id.insert(event_id.to_owned(), (ordering, pdu.to_owned()));
        inner.order.push_back(event_id.to_owned());
    }

    /// Forgets an event whose stored JSON changed (a redaction).
    pub fn forget(&self, event_id: &str) {
        let mut inner = self.lock();
        inner.forget(event_id);
        inner.forgotten += 1;
        // Ids forgotten stay in the order until they come up; rebuild it if they pile up.
        if inner.order.len() > 2 * inner.by_id.len() + 1_024 {
            let Inner { by_id, order, .. } = &mut *inner;
            order.retain(|id| by_id.contains_key(id));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn forget(&mut self, event_id: &str) {
        if let Some((_, pdu)) = self.by_id.remove(event_id) {
            self.bytes -= pdu.get().len() + event_id.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdu(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn kept_pdus_are_found_once_and_forgotten_ones_are_missing() {
        let cache = PduCache::default();
        cache.put(cache.mark(), "$a", 1, &pdu(r#"{"a":1}"#));
        let before_redaction = cache.mark();
        cache.put(before_redaction, "$b", 2, &pdu(r#"{"b":2}"#));
        cache.forget("$b");
        cache.put(before_redaction, "$b", 2, &pdu(r#"{"b":2}"#));
        let (found, missing) = cache.get_many(&["$a".into(), "$a".into(), "$b".into()]);
        assert_eq!(found.iter().map(|(o, p)| (*o, p.get())).collect::<Vec<_>>(), vec![(1, r#"{"a":1}"#)]);
        assert_eq!(missing, vec!["$b".to_owned()]);
    }
}
