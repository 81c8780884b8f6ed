//! Token-bucket rate limiting with Synapse's `rc_*` semantics: `burst_count` actions at
//! once, refilled at `per_second`. The bucket map is bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::RateLimit;
use crate::error::MatrixError;
use crate::services::accounts::AuthenticatedUser;

/// Buckets kept at most; beyond this, the fullest (idle) buckets are dropped first.
const MAX_BUCKETS: usize = 100_000;

pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`, or says how long to wait for one.
    pub fn check(&self, key: &str) -> Result<(), MatrixError> {
        self.check_many(key, 1)
    }

    /// [`Self::check`] keyed by the requester; an application service registered with
    /// `rate_limited: false` always passes.
    pub fn check_requester(&self, requester: &AuthenticatedUser) -> Result<(), MatrixError> {
        if !requester.rate_limited {
            return Ok(());
        }
        self.check(requester.user_id.as_str())
    }

    /// Takes `count` tokens for `key` at once, or none and says how long to wait for
    /// them (a count above the burst never passes).
    pub fn check_many(&self, key: &str, count: u32) -> Result<(), MatrixError> {
        let cost = f64::from(count);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            self.evict_refilled(&mut buckets, now);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: self.limit.burst_count, updated: now });
        bucket.tokens = self.refilled(bucket, now);
        bucket.updated = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            return Ok(());
        }
        let missing = cost - bucket.tokens;
        let retry_after_ms = if self.limit.per_second > 0.0 {
            (missing / self.limit.per_second * 1000.0).ceil() as u64
        } else {
            u64::MAX / 2
        };
        Err(MatrixError::limit_exceeded(retry_after_ms))
    }

    /// Whether `key` has a token left, without taking it.
    pub fn would_allow(&self, key: &str) -> bool {
        let buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets.get(key).is_none_or(|bucket| self.refilled(bucket, Instant::now()) >= 1.0)
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.limit.per_second).min(self.limit.burst_count)
    }

    fn evict_refilled(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| self.refilled(bucket, now) < self.limit.burst_count);
        if buckets.len() >= MAX_BUCKETS {
            // Everyone is mid-burst: forget all rather than grow without bound.
            buckets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refuses_with_a_wait() {
        let limiter = RateLimiter::new(RateLimit { per_second: 0.5, burst_count: 3.0 });
        for _ in 0..3 {
            limiter.check("a").unwrap();
        }
        let err = limiter.check("a").unwrap_err();
        assert_eq!(err.errcode, "M_LIMIT_EXCEEDED");
        let wait = err.extra["retry_after_ms"].as_u64().unwrap();
        assert!(wait > 1000 && wait <= 2000, "{wait}");
        limiter.check("b").unwrap();
    }

    #[test]
    fn several_tokens_are_taken_at_once_or_not_at_all() {
        let limiter = RateLimiter::new(RateLimit { per_second: 0.001, burst_count: 10.0 });
        limiter.check_many("a", 7).unwrap();
        assert!(limiter.check_many("a", 4).is_err(), "three left");
        limiter.check_many("a", 3).unwrap();
        assert!(limiter.check("a").is_err());
    }

    #[test]
    fn a_zero_burst_refuses_everything() {
        let limiter = RateLimiter::new(RateLimit { per_second: 0.0, burst_count: 0.0 });
        assert!(limiter.check("a").is_err());
    }
}
