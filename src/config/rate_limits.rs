//! Synapse's `rc_*` sections in Synapse's shapes, each field defaulting to Synapse's
//! value when left out (`rc_joins: {local: {per_second: 1}}` keeps the local burst and
//! the whole remote section). `rc_federation` has Synapse's own shape (windows, delays
//! and a concurrency limit instead of a token bucket). Sections kith has no action for
//! are not listed here, so the config loader warns about them as ignored keys.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A token bucket: `per_second` refill, up to `burst_count` requests at once.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst_count: f64,
}

/// A section as written: either field may be missing.
#[derive(Deserialize)]
struct WrittenLimit {
    per_second: Option<f64>,
    burst_count: Option<f64>,
}

/// For each section: `NAME()` its default and `parse::NAME` its deserializer.
macro_rules! sections {
    ($($name:ident: $per_second:expr, $burst_count:expr;)*) => {
        $(
            pub fn $name() -> RateLimit {
                RateLimit { per_second: $per_second, burst_count: $burst_count }
            }
        )*
        pub mod parse {
            use super::*;
            $(
                pub fn $name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<RateLimit, D::Error> {
                    let written = WrittenLimit::deserialize(deserializer)?;
                    let default = super::$name();
                    Ok(RateLimit {
                        per_second: written.per_second.unwrap_or(default.per_second),
                        burst_count: written.burst_count.unwrap_or(default.burst_count),
                    })
                }
            )*
        }
    };
}

sections! {
    message: 0.2, 10.0;
    registration: 0.17, 3.0;
    login_address: 0.003, 5.0;
    login_account: 0.003, 5.0;
    login_failed_attempts: 0.17, 3.0;
    user_directory: 0.016, 200.0;
    joins_local: 0.1, 10.0;
    joins_remote: 0.01, 10.0;
    joins_per_room: 1.0, 10.0;
    invites_per_room: 0.3, 10.0;
    invites_per_user: 0.003, 5.0;
    invites_per_issuer: 0.3, 10.0;
    room_creation: 0.016, 10.0;
    profile: 1.0, 500.0;
    reports: 1.0, 5.0;
    media_create: 10.0, 50.0;
    to_device: 10.0, 100.0;
    registration_token_validity: 0.1, 5.0;
}

#[derive(Debug, Clone, Deserialize)]
pub struct LoginRateLimits {
    #[serde(default = "login_address", deserialize_with = "parse::login_address")]
    pub address: RateLimit,
    #[serde(default = "login_account", deserialize_with = "parse::login_account")]
    pub account: RateLimit,
    #[serde(default = "login_failed_attempts", deserialize_with = "parse::login_failed_attempts")]
    pub failed_attempts: RateLimit,
}

impl Default for LoginRateLimits {
    fn default() -> Self {
        Self { address: login_address(), account: login_account(), failed_attempts: login_failed_attempts() }
    }
}

/// `rc_joins`: joins of rooms this server is in (`local`) and of rooms it joins over
/// federation (`remote`). Kith's older flat form (`{per_second, burst_count}`) is read
/// as the local limit.
#[derive(Debug, Clone)]
pub struct JoinRateLimits {
    pub local: RateLimit,
    pub remote: RateLimit,
}

impl Default for JoinRateLimits {
    fn default() -> Self {
        Self { local: joins_local(), remote: joins_remote() }
    }
}

impl<'de> Deserialize<'de> for JoinRateLimits {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Split {
            #[serde(default = "joins_local", deserialize_with = "parse::joins_local")]
            local: RateLimit,
            #[serde(default = "joins_remote", deserialize_with = "parse::joins_remote")]
            remote: RateLimit,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Flat { per_second: f64, burst_count: Option<f64> },
            Split(Split),
        }
        Ok(match Written::deserialize(deserializer)? {
            Written::Flat { per_second, burst_count } => Self {
                local: RateLimit { per_second, burst_count: burst_count.unwrap_or(joins_local().burst_count) },
                remote: joins_remote(),
            },
            Written::Split(split) => Self { local: split.local, remote: split.remote },
        })
    }
}

/// `rc_invites`: per room, per invited user and per inviter.
#[derive(Debug, Clone, Deserialize)]
pub struct InviteRateLimits {
    #[serde(default = "invites_per_room", deserialize_with = "parse::invites_per_room")]
    pub per_room: RateLimit,
    #[serde(default = "invites_per_user", deserialize_with = "parse::invites_per_user")]
    pub per_user: RateLimit,
    #[serde(default = "invites_per_issuer", deserialize_with = "parse::invites_per_issuer")]
    pub per_issuer: RateLimit,
}

impl Default for InviteRateLimits {
    fn default() -> Self {
        Self { per_room: invites_per_room(), per_user: invites_per_user(), per_issuer: invites_per_issuer() }
    }
}

/// `rc_federation`: how hard one other server may press on this one. Per origin, at
/// most `concurrent` requests are handled at once; past `sleep_limit` requests within
/// `window_size`, each waits `sleep_delay` first; and while more than `reject_limit` are
/// waiting, more are refused.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct FederationRateLimit {
    #[serde(default = "FederationRateLimit::window_size", deserialize_with = "super::duration")]
    pub window_size: Duration,
    #[serde(default = "FederationRateLimit::sleep_limit")]
    pub sleep_limit: u64,
    #[serde(default = "FederationRateLimit::sleep_delay", deserialize_with = "super::duration")]
    pub sleep_delay: Duration,
    #[serde(default = "FederationRateLimit::reject_limit")]
    pub reject_limit: u64,
    #[serde(default = "FederationRateLimit::concurrent")]
    pub concurrent: u64,
}

/// Synapse's defaults.
impl FederationRateLimit {
    fn window_size() -> Duration {
        Duration::from_millis(1000)
    }
    fn sleep_limit() -> u64 {
        10
    }
    fn sleep_delay() -> Duration {
        Duration::from_millis(500)
    }
    fn reject_limit() -> u64 {
        50
    }
    fn concurrent() -> u64 {
        3
    }
}

impl Default for FederationRateLimit {
    fn default() -> Self {
        Self {
            window_size: Self::window_size(),
            sleep_limit: Self::sleep_limit(),
            sleep_delay: Self::sleep_delay(),
            reject_limit: Self::reject_limit(),
            concurrent: Self::concurrent(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_synapses_defaults() {
        let joins: JoinRateLimits = serde_yaml_ng::from_str("local: {per_second: 2}").unwrap();
        assert_eq!(joins.local, RateLimit { per_second: 2.0, burst_count: 10.0 });
        assert_eq!(joins.remote, joins_remote());
        let flat: JoinRateLimits = serde_yaml_ng::from_str("{per_second: 0.5, burst_count: 3}").unwrap();
        assert_eq!(flat.local, RateLimit { per_second: 0.5, burst_count: 3.0 });
        let login: LoginRateLimits = serde_yaml_ng::from_str("address: {burst_count: 9}").unwrap();
        assert_eq!(login.address, RateLimit { per_second: 0.003, burst_count: 9.0 });
        assert_eq!(login.failed_attempts, login_failed_attempts());
        let federation: FederationRateLimit = serde_yaml_ng::from_str("{sleep_limit: 2, sleep_delay: 2s}").unwrap();
        assert_eq!(
            federation,
            FederationRateLimit {
                sleep_limit: 2,
                sleep_delay: Duration::from_secs(2),
                ..FederationRateLimit::default()
            }
        );
        assert_eq!(FederationRateLimit::default().window_size, Duration::from_millis(1000));
    }
}
