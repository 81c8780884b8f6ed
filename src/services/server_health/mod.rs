//! Whether other servers are up: one answer for every part of kith that contacts them
//! (the federation client, the sender, the federated directory, the remote-profile
//! fetcher).
//!
//! - A server that fails is backed off from, on one schedule shared by every caller
//!   ([`policy::Backoff`]): several callers failing at once count once, and a failure
//!   while the backoff still runs (a probe) does not lengthen it. When it ends, one
//!   caller's attempt finds out whether the server is back; the others wait for that
//!   attempt's outcome. Backoffs are persisted, so a restart neither hammers a dead
//!   server nor forgets it.
//! - Any sign of life ends the backoff everywhere at once: an inbound request that passes
//!   X-Matrix authentication, or any answer to an outbound request other than a 5xx or a
//!   429. Whoever waits on the server hears of it through [`ServerHealth::subscribe`].
//! - The servers the configuration names (federated directory peers) are watched: while
//!   one is down, [`ServerHealth::contact`] lets it be probed every few seconds, growing
//!   to a minute, rather than only when the backoff ends.
//!
//! This is a bottom-layer service: it uses the store and the config, nothing above them.

pub mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};

use ruma::{OwnedServerName, ServerName};
use tokio::sync::{Mutex, broadcast};

use crate::config::FederationConfig;
use crate::store::{Retry, Store, now_ms};
use policy::{Backoff, probe_interval};

/// Servers remembered in backoff, at most; past it the one whose backoff ends soonest
/// is forgotten first.
const MAX_DOWN_SERVERS: usize = 100_000;
/// Recoveries a slow listener may fall behind by before it is told it lagged.
const RECOVERIES_BUFFERED: usize = 1_024;
/// The one attempt made when a backoff ends has this long to succeed or fail (an
/// outbound request's time limit) before another caller may try.
const ATTEMPT_MS: i64 = 30_000;

pub struct ServerHealth {
    store: Arc<Store>,
    backoff: Backoff,
    state: StdMutex<State>,
    /// Writes of one server's row follow its state in memory in order.
    persisting: Mutex<()>,
    recovered: broadcast::Sender<OwnedServerName>,
}

#[derive(Default)]
struct State {
    down: HashMap<OwnedServerName, Down>,
    /// The probe schedules of watched servers.
    probes: HashMap<OwnedServerName, Probe>,
}

/// A server that has not answered since it failed.
#[derive(Debug, Clone, Copy)]
struct Down {
    retry: Retry,
    /// Once the backoff is over: until when one caller's attempt is under way.
    attempt_until: i64,
}

impl Down {
    fn new(retry: Retry) -> Self {
        Self { retry, attempt_until: 0 }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    /// Probes made since the server went down.
    made: u32,
    next_ts: i64,
}

/// Whether a caller may contact a server now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// It is up; or its backoff is over and this caller makes the attempt that finds
    /// out whether it is back (it reports the outcome, as every caller does).
    Now,
    /// It is down, and due for a probe (the next one is scheduled already).
    Probe,
    /// Down: not before this time (milliseconds since the epoch).
    NotBefore(i64),
}

impl ServerHealth {
    /// Loads the persisted backoffs.
    pub async fn new(store: Arc<Store>, config: &FederationConfig) -> anyhow::Result<Self> {
        let mut retries = store.destination_retries().await?;
        // Over the bound, the backoffs that end soonest are the ones forgotten.
        retries.sort_by_key(|(_, retry)| std::cmp::Reverse(retry.next_try_ts()));
        retries.truncate(MAX_DOWN_SERVERS);
        let mut state = State::default();
        for (server, retry) in retries {
            if let Ok(server) = OwnedServerName::try_from(server) {
                state.down.insert(server, Down::new(retry));
            }
        }
        Ok(Self {
            store,
            backoff: Backoff::new(config),
            state: StdMutex::new(state),
            persisting: Mutex::new(()),
            recovered: broadcast::channel(RECOVERIES_BUFFERED).0,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Probes these servers while they are down (the first at once if one is down now).
    pub fn watch(&self, servers: &[OwnedServerName]) {
        let mut state = self.state();
        for server in servers {
            state.probes.entry(server.clone()).or_default();
        }
    }

    /// Until when not to contact `server`: the end of its backoff, or of another
    /// caller's attempt once the backoff is over. A question only: see [`Self::contact`].
    pub fn down_until(&self, server: &ServerName) -> Option<i64> {
        let now = now_ms();
        let down = self.state().down.get(server).copied()?;
        Some(down.retry.next_try_ts().max(down.attempt_until)).filter(|until| *until > now)
    }

    /// May a caller contact `server` now? Ask right before contacting it, and report a
    /// failure with [`Self::failed`].
    pub fn contact(&self, server: &ServerName) -> Contact {
        self.contact_at(server, now_ms(), false)
    }

    /// As [`Self::contact`], for the caller that probes watched servers: one that is
    /// down may also be probed (`Probe`, which schedules the next probe).
    pub fn contact_or_probe(&self, server: &ServerName) -> Contact {
        self.contact_at(server, now_ms(), true)
    }

    fn contact_at(&self, server: &ServerName, now: i64, probing: bool) -> Contact {
        let mut state = self.state();
        let Some(down) = state.down.get_mut(server) else { return Contact::Now };
        let until = down.retry.next_try_ts();
        if until <= now {
            if down.attempt_until > now {
                return Contact::NotBefore(down.attempt_until);
            }
            down.attempt_until = now.saturating_add(ATTEMPT_MS);
            return Contact::Now;
        }
        let probe = state.probes.get_mut(server).filter(|_| probing);
        let Some(probe) = probe else { return Contact::NotBefore(until) };
        if probe.next_ts > now {
            return Contact::NotBefore(until.min(probe.next_ts));
        }
        probe.made = probe.made.saturating_add(1);
        probe.next_ts = now.saturating_add(probe_interval(probe.made).as_millis() as i64);
        Contact::Probe
    }

    /// The backoff of `server`, while it has not answered since it failed.
    pub fn retry(&self, server: &ServerName) -> Option<Retry> {
        self.state().down.get(server).map(|down| down.retry)
    }

    /// Every server that has not answered since it failed.
    pub fn backing_off(&self) -> Vec<(OwnedServerName, Retry)> {
        let mut down: Vec<(OwnedServerName, Retry)> =
            self.state().down.iter().map(|(server, down)| (server.clone(), down.retry)).collect();
        down.sort_by(|a, b| a.0.cmp(&b.0));
        down
    }

    pub fn backing_off_count(&self) -> usize {
        self.state().down.len()
    }

    /// The servers that come back (their backoff ended), as they do.
    pub fn subscribe(&self) -> Recoveries {
        Recoveries(self.recovered.subscribe())
    }

    /// A sign of life from `server`: its backoff ends for everyone, and whoever waits
    /// on it is told. True if it was backing off (an admin's reset is the same).
    pub async fn alive(&self, server: &ServerName) -> bool {
        if self.state().down.remove(server).is_none() {
            return false;
        }
        tracing::info!(%server, "server is up again");
        self.persist(server).await;
        // Nobody listening is fine: nothing waits on the server then.
        let _ = self.recovered.send(server.to_owned());
        true
    }

    /// `server` could not be reached, or answered "not now" (a 5xx, a 429, a 401).
    pub async fn failed(&self, server: &ServerName) {
        if let Some(retry) = self.failed_at(server, now_ms()) {
            tracing::info!(%server, failures = retry.failures, retry_in_ms = retry.retry_interval_ms, "backing off");
            self.persist(server).await;
        }
    }

    /// Records a failure; the new backoff, or `None` when one already runs (another
    /// caller failed first, or this was a probe).
    fn failed_at(&self, server: &ServerName, now: i64) -> Option<Retry> {
        let mut state = self.state();
        let previous = state.down.get(server).map(|down| down.retry);
        if previous.is_some_and(|retry| retry.next_try_ts() > now) {
            return None;
        }
        let retry = self.backoff.next(previous, now);
        if previous.is_none() {
            if let Some(probe) = state.probes.get_mut(server) {
                *probe = Probe { made: 0, next_ts: now.saturating_add(probe_interval(0).as_millis() as i64) };
            }
            if state.down.len() >= MAX_DOWN_SERVERS {
                forget_soonest(&mut state.down);
            }
        }
        state.down.insert(server.to_owned(), Down::new(retry));
        Some(retry)
    }

    /// Writes `server`'s row as memory has it now (a backoff, or none).
    async fn persist(&self, server: &ServerName) {
        let _order = self.persisting.lock().await;
        let written = match self.retry(server) {
            Some(retry) => self.store.set_destination_retry(server.as_str(), retry).await,
            None => self.store.clear_destination_retry(server.as_str()).await,
        };
        if let Err(err) = written {
            tracing::warn!(%server, %err, "cannot persist a server's backoff");
        }
    }
}

/// Servers coming back, heard by one listener.
pub struct Recoveries(broadcast::Receiver<OwnedServerName>);

impl Recoveries {
    /// The next server that comes back; `None` when some were missed (any may have).
    /// Never resolves once server health is gone.
    pub async fn next(&mut self) -> Option<OwnedServerName> {
        match self.0.recv().await {
            Ok(server) => Some(server),
            Err(broadcast::error::RecvError::Lagged(_)) => None,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }

    /// Resolves when `server` comes back (or may have).
    pub async fn of(&mut self, server: &ServerName) {
        while let Some(back) = self.next().await {
            if back == server {
                return;
            }
        }
    }

    /// Forgets what was heard so far.
    pub fn clear(&mut self) {
        self.0 = self.0.resubscribe();
    }
}

fn forget_soonest(down: &mut HashMap<OwnedServerName, Down>) {
    let soonest = down.iter().min_by_key(|(_, down)| down.retry.next_try_ts()).map(|(server, _)| server.clone());
    if let Some(server) = soonest {
        down.remove(&server);
    }
}

#[cfg(test)]
mod tests;
