//! Async locks by key (a room, a transaction), created on demand; the map forgets locks
//! nobody holds once it grows past a bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::{Mutex, OwnedMutexGuard};

pub struct KeyedLocks<K> {
    locks: StdMutex<HashMap<K, Arc<Mutex<()>>>>,
    /// Past this many entries, idle locks are dropped.
    idle_limit: usize,
}

impl<K: Hash + Eq + Clone> KeyedLocks<K> {
    pub fn new(idle_limit: usize) -> Self {
        Self { locks: StdMutex::new(HashMap::new()), idle_limit }
    }

    /// Waits for the lock of `key` (in the order callers asked for it).
    pub async fn lock(&self, key: &K) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if locks.len() > self.idle_limit {
                locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            locks.entry(key.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_idle_locks_are_forgotten() {
        let locks = KeyedLocks::new(2);
        let held = locks.lock(&"a").await;
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock(&"a")).await.is_err());
        let _other = locks.lock(&"b").await;
        drop(held);
        for key in ["c", "d", "e"] {
            drop(locks.lock(&key).await);
        }
        assert!(locks.locks.lock().unwrap().len() <= 3, "idle locks are dropped past the bound");
    }
}
