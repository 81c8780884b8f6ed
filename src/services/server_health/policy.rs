//! The two schedules of server health, written once: the backoff every caller shares
//! (Synapse's retry semantics: `destination_min_retry_interval`, multiplied by
//! `destination_retry_multiplier` at each failure, up to `destination_max_retry_interval`)
//! and the probes of configured peers (seconds, growing to a minute).

use std::time::Duration;

use rand::Rng;

use crate::config::FederationConfig;
use crate::store::Retry;

/// A configured peer that is down is probed this long after it failed, then twice as
/// long after each failed probe, up to `MAX_PROBE_INTERVAL`.
const FIRST_PROBE_INTERVAL: Duration = Duration::from_secs(2);
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(60);

/// The shared backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: f64,
    multiplier: f64,
    max: f64,
}

impl Backoff {
    pub fn new(config: &FederationConfig) -> Self {
        Self {
            min: config.destination_min_retry_interval.as_millis() as f64,
            multiplier: config.destination_retry_multiplier,
            max: config.destination_max_retry_interval.as_millis() as f64,
        }
    }

    /// The backoff after one more failure at `now`.
    pub fn next(&self, previous: Option<Retry>, now: i64) -> Retry {
        let base = previous.map_or(self.min, |retry| retry.retry_interval_ms as f64 * self.multiplier);
        let interval = lengthened(base).clamp(self.min, self.max.max(self.min));
        Retry {
            failures: previous.map_or(1, |r| r.failures + 1),
            retry_last_ts: now,
            retry_interval_ms: interval as i64,
        }
    }
}

/// How long after its `probes`-th failed probe (0: after the failure that made it
/// down) a configured peer is probed again.
pub fn probe_interval(probes: u32) -> Duration {
    let base = FIRST_PROBE_INTERVAL.as_millis() as f64 * 2f64.powi(probes.min(16) as i32);
    Duration::from_millis(lengthened(base).min(MAX_PROBE_INTERVAL.as_millis() as f64) as u64)
}

/// Jitter only lengthens a wait (by up to a fifth), so servers that failed together
/// spread out.
fn lengthened(base: f64) -> f64 {
    base * rand::thread_rng().gen_range(1.0..1.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_grows_from_the_minimum_to_the_maximum() {
        let backoff = Backoff::new(&FederationConfig {
            destination_min_retry_interval: Duration::from_secs(10),
            destination_retry_multiplier: 2.0,
            destination_max_retry_interval: Duration::from_secs(100),
        });
        let mut retry = None;
        let mut intervals = Vec::new();
        for _ in 0..8 {
            let next = backoff.next(retry, 0);
            intervals.push(next.retry_interval_ms);
            retry = Some(next);
        }
        assert!(intervals[0] >= 10_000 && intervals[0] < 12_000, "{intervals:?}");
        assert!(intervals.windows(2).all(|w| w[1] >= w[0]), "{intervals:?}");
        assert!(intervals[1] >= 20_000, "{intervals:?}");
        assert_eq!(*intervals.last().unwrap(), 100_000, "capped: {intervals:?}");
        assert_eq!(retry.unwrap().failures, 8);
    }

    #[test]
    fn probes_go_from_seconds_to_a_minute() {
        let first = probe_interval(0);
        assert!(first >= FIRST_PROBE_INTERVAL && first < FIRST_PROBE_INTERVAL * 6 / 5, "{first:?}");
        let intervals: Vec<Duration> = (0..40).map(probe_interval).collect();
        assert!(intervals[1] >= FIRST_PROBE_INTERVAL * 2, "{intervals:?}");
        assert!(intervals.iter().all(|i| *i <= MAX_PROBE_INTERVAL), "{intervals:?}");
        assert_eq!(intervals[39], MAX_PROBE_INTERVAL, "{intervals:?}");
    }
}
