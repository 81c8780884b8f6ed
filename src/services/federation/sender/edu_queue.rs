//! A destination's EDUs waiting to go: keyed ones replace older ones with the same key
//! (typing per room and user, a receipt per room and user), and the queue is bounded.

use std::collections::HashMap;

use serde_json::Value;

/// EDUs waiting for one destination at most; past it the oldest go.
pub const MAX_QUEUED_EDUS: usize = 1_000;

#[derive(Default)]
pub struct EduQueue {
    next: u64,
    by_key: HashMap<String, (u64, Value)>,
}

impl EduQueue {
    pub fn push(&mut self, key: String, edu: Value) {
        self.next += 1;
        self.by_key.insert(key, (self.next, edu));
        if self.by_key.len() > MAX_QUEUED_EDUS
            && let Some(oldest) = self.by_key.iter().min_by_key(|(_, (seq, _))| *seq).map(|(k, _)| k.clone())
        {
            self.by_key.remove(&oldest);
        }
    }

    /// The oldest EDUs, up to `limit`, with their keys (to put back on failure).
    pub fn take(&mut self, limit: usize) -> Vec<(String, u64, Value)> {
        let mut all: Vec<(String, u64, Value)> = self.by_key.drain().map(|(key, (seq, edu))| (key, seq, edu)).collect();
        all.sort_by_key(|(_, seq, _)| *seq);
        for (key, seq, edu) in all.drain(limit.min(all.len())..) {
            self.by_key.insert(key, (seq, edu));
        }
        all
    }

    /// Puts EDUs back after a failed send, unless a newer one took their key.
    pub fn restore(&mut self, edus: Vec<(String, u64, Value)>) {
        for (key, seq, edu) in edus {
            self.by_key.entry(key).or_insert((seq, edu));
        }
    }
}
