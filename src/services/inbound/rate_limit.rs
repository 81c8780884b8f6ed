//! Step 1b: how hard an origin may press (Synapse's `rc_federation`). Per origin server,
//! at most `concurrent` requests are handled at once and the others wait their turn,
//! first come first served. A request that arrives when more than `sleep_limit` came in
//! the last `window_size` first sleeps `sleep_delay`. While more than `reject_limit` of an
//! origin's requests are waiting (sleeping or queued for a turn), its next ones are
//! refused with `M_LIMIT_EXCEEDED`.
//!
//! The state is in memory and bounded: an origin is forgotten once it has nothing in
//! flight, nothing waiting and no request in the window, and at most [`MAX_ORIGINS`] are
//! tracked at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use ruma::{OwnedServerName, ServerName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::FederationRateLimit;
use crate::error::MatrixError;

/// Origins tracked at once.
const MAX_ORIGINS: usize = 10_000;
/// How often origins that went quiet are forgotten.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

pub struct FederationRateLimiter {
    settings: FederationRateLimit,
    origins: StdMutex<Origins>,
}

struct Origins {
    by_name: HashMap<OwnedServerName, Origin>,
    next_sweep: Instant,
}

/// One origin server's recent requests, waiting requests and turns.
struct Origin {
    /// When its latest requests arrived, oldest first: at most `sleep_limit + 1`, which is
    /// all the sleep decision needs.
    arrivals: VecDeque<Instant>,
    /// Its requests sleeping or queued for a turn.
    waiting: Arc<AtomicUsize>,
    /// Its turns: `concurrent` permits.
    turns: Arc<Semaphore>,
}

/// A request's turn to be handled; the next waiting request of its origin goes when this
/// is dropped.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
}

/// Counts a request as waiting for as long as it lives, cancelled requests included.
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What happened to a request on arrival.
enum Arrival {
    Admitted(Turn),
    Wait { sleep: bool, turns: Arc<Semaphore>, waiting: Waiting },
}

impl FederationRateLimiter {
    pub fn new(settings: FederationRateLimit) -> Self {
        let origins = Origins { by_name: HashMap::new(), next_sweep: Instant::now() + SWEEP_INTERVAL };
        Self { settings, origins: StdMutex::new(origins) }
    }

    /// Waits for a turn to handle a request from `origin`, or refuses it.
    pub async fn admit(&self, origin: &ServerName) -> Result<Turn, MatrixError> {
        let (sleep, turns, waiting) = match self.arrive(origin)? {
            Arrival::Admitted(turn) => return Ok(turn),
            Arrival::Wait { sleep, turns, waiting } => (sleep, turns, waiting),
        };
        if sleep {
            tracing::debug!(%origin, "delaying a federation request");
            tokio::time::sleep(self.settings.sleep_delay).await;
        }
        // The semaphore is never closed.
        let turn = turns.acquire_owned().await.map_err(|err| MatrixError::internal("no federation turn", err))?;
        drop(waiting);
        Ok(Turn { _permit: turn })
    }

    /// Records the arrival and decides, under the lock, whether the request is refused,
    /// handled at once or waits.
    fn arrive(&self, origin: &ServerName) -> Result<Arrival, MatrixError> {
        let now = Instant::now();
        let mut origins = self.origins.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if now >= origins.next_sweep {
            origins.forget(|origin| origin.is_idle(now, &self.settings));
            origins.next_sweep = now + SWEEP_INTERVAL;
        }
        if !origins.by_name.contains_key(origin) && !origins.make_room(now, &self.settings) {
            tracing::warn!(%origin, "too many servers sending requests at once; refusing one more");
            return Err(MatrixError::limit_exceeded(self.settings.window_size.as_millis().max(1) as u64));
        }
        let state = origins.by_name.entry(origin.to_owned()).or_insert_with(|| Origin::new(&self.settings));
        state.forget_arrivals_before(now, self.settings.window_size);
        if state.waiting.load(Ordering::Relaxed) as u64 > self.settings.reject_limit {
            tracing::debug!(%origin, "refusing a federation request");
            return Err(MatrixError::limit_exceeded(self.retry_after_ms()));
        }
        state.arrivals.push_back(now);
        // Only whether more than `sleep_limit` arrived matters, so older ones can go.
        while state.arrivals.len() as u64 > self.settings.sleep_limit.saturating_add(1) {
            state.arrivals.pop_front();
        }
        let sleep = state.arrivals.len() as u64 > self.settings.sleep_limit;
        if !sleep && let Ok(turn) = state.turns.clone().try_acquire_owned() {
            return Ok(Arrival::Admitted(Turn { _permit: turn }));
        }
        state.waiting.fetch_add(1, Ordering::Relaxed);
        Ok(Arrival::Wait { sleep, turns: state.turns.clone(), waiting: Waiting(state.waiting.clone()) })
    }

    /// When to try again: the time one request takes at the sleep limit, as in Synapse.
    fn retry_after_ms(&self) -> u64 {
        let per_request = self.settings.window_size.as_millis() as u64 / self.settings.sleep_limit.max(1);
        per_request.max(1)
    }
}

impl Origins {
    fn forget(&mut self, forgettable: impl Fn(&Origin) -> bool) {
        self.by_name.retain(|_, origin| !forgettable(origin));
    }

    /// Room for one more origin: idle ones go first, then those with nothing in flight
    /// (whose recent arrivals are forgotten). False if every origin has requests under way.
    fn make_room(&mut self, now: Instant, settings: &FederationRateLimit) -> bool {
        if self.by_name.len() < MAX_ORIGINS {
            return true;
        }
        self.forget(|origin| origin.is_idle(now, settings));
        if self.by_name.len() < MAX_ORIGINS {
            return true;
        }
        self.forget(|origin| !origin.is_busy(settings));
        self.by_name.len() < MAX_ORIGINS
    }
}

impl Origin {
    fn new(settings: &FederationRateLimit) -> Self {
        Self { arrivals: VecDeque::new(), waiting: Arc::default(), turns: Arc::new(Semaphore::new(turns(settings))) }
    }

    fn forget_arrivals_before(&mut self, now: Instant, window: Duration) {
        while self.arrivals.front().is_some_and(|arrival| now.duration_since(*arrival) >= window) {
            self.arrivals.pop_front();
        }
    }

    /// Requests in flight or waiting.
    fn is_busy(&self, settings: &FederationRateLimit) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0 || self.turns.available_permits() < turns(settings)
    }

    /// Nothing to remember: not busy, and no request within the window.
    fn is_idle(&self, now: Instant, settings: &FederationRateLimit) -> bool {
        let recent = self.arrivals.back().is_some_and(|last| now.duration_since(*last) < settings.window_size);
        !recent && !self.is_busy(settings)
    }
}

/// Requests of one origin handled at once.
fn turns(settings: &FederationRateLimit) -> usize {
    usize::try_from(settings.concurrent).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(sleep_limit: u64, reject_limit: u64, concurrent: u64) -> Arc<FederationRateLimiter> {
        Arc::new(FederationRateLimiter::new(FederationRateLimit {
            window_size: Duration::from_secs(60),
            sleep_limit,
            sleep_delay: Duration::from_millis(20),
            reject_limit,
            concurrent,
        }))
    }

    fn origin(name: &str) -> OwnedServerName {
        OwnedServerName::try_from(name).unwrap()
    }

    #[tokio::test]
    async fn requests_beyond_concurrent_wait_for_a_turn() {
        let limiter = limiter(100, 100, 2);
        let a = origin("a.example");
        let first = limiter.admit(&a).await.unwrap();
        let _second = limiter.admit(&a).await.unwrap();
        let third = tokio::spawn({
            let (limiter, a) = (limiter.clone(), a.clone());
            async move { limiter.admit(&a).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished(), "the third waits");
        limiter.admit(&origin("b.example")).await.unwrap();
        drop(first);
        third.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn requests_are_refused_while_too_many_wait() {
        // One in flight; beyond the sleep limit, the next ones sleep and count as waiting.
        let limiter = limiter(1, 1, 1);
        let a = origin("a.example");
        let _in_flight = limiter.admit(&a).await.unwrap();
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let (limiter, a) = (limiter.clone(), a.clone());
                tokio::spawn(async move { limiter.admit(&a).await.map(|_| ()) })
            })
            .collect();
        tokio::task::yield_now().await;
        while limiter.origins.lock().unwrap().by_name[&a].waiting.load(Ordering::Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
        let refused = limiter.admit(&a).await.err().expect("refused");
        assert_eq!(refused.errcode, "M_LIMIT_EXCEEDED");
        assert_eq!(refused.extra["retry_after_ms"], 60_000);
        limiter.admit(&origin("b.example")).await.unwrap();
        waiting.iter().for_each(|task| task.abort());
    }

    #[test]
    fn idle_origins_are_forgotten_and_busy_ones_kept() {
        let limiter = limiter(10, 10, 1);
        let mut origins = limiter.origins.lock().unwrap();
        let now = Instant::now();
        let settings = limiter.settings;
        let busy = Origin::new(&settings);
        let turn = busy.turns.clone().try_acquire_owned().unwrap();
        origins.by_name.insert(origin("busy.example"), busy);
        let mut recent = Origin::new(&settings);
        recent.arrivals.push_back(now);
        origins.by_name.insert(origin("recent.example"), recent);
        origins.by_name.insert(origin("idle.example"), Origin::new(&settings));
        origins.forget(|origin| origin.is_idle(now, &settings));
        assert_eq!(origins.by_name.len(), 2);
        origins.forget(|origin| !origin.is_busy(&settings));
        assert!(origins.by_name.contains_key(&origin("busy.example")) && origins.by_name.len() == 1);
        drop(turn);
    }
}
