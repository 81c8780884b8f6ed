//! Short-lived, bounded sets of single-use secrets: registration nonces and
//! user-interactive-auth sessions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct ExpiringSet {
    lifetime: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, Instant>>,
}

impl ExpiringSet {
    pub fn new(lifetime_secs: u64, capacity: usize) -> Self {
        Self { lifetime: Duration::from_secs(lifetime_secs), capacity, entries: Mutex::new(HashMap::new()) }
    }

    pub fn insert(&self, key: String) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, expires| *expires > now);
        }
        if entries.len() >= self.capacity {
            // Still full of live entries: drop the one closest to expiry.
            if let Some(oldest) = entries.iter().min_by_key(|(_, expires)| **expires).map(|(k, _)| k.clone()) {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, now + self.lifetime);
    }

    /// Whether `key` is live, without consuming it.
    pub fn contains(&self, key: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(key).is_some_and(|expires| *expires > Instant::now())
    }

    /// Consumes `key`; true if it was live.
    pub fn take(&self, key: &str) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.remove(key).is_some_and(|expires| expires > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_single_use_and_bounded() {
        let set = ExpiringSet::new(60, 2);
        set.insert("a".into());
        assert!(set.contains("a"));
        assert!(set.take("a"));
        assert!(!set.take("a"));
        set.insert("b".into());
        set.insert("c".into());
        set.insert("d".into());
        assert_eq!(set.entries.lock().unwrap().len(), 2);
    }

    #[test]
    fn expired_entries_are_refused() {
        let set = ExpiringSet::new(0, 10);
        set.insert("a".into());
        assert!(!set.take("a"));
    }
}
