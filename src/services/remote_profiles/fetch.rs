//! The fetch worker: asks other servers for the profiles queued for fetching.

use crate::services::metrics::Metrics;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use ruma::{OwnedServerName, OwnedUserId};
use tokio::sync::Semaphore;

use super::RemoteProfiles;
use crate::services::federation::FederationError;
use crate::services::server_health::Contact;
use crate::services::workers::{Shutdown, Worker};
use crate::store::{Profile, ProfileSource, QueuedFetch, now_ms};
use ruma::api::federation::query::get_profile_information;

/// Queued fetches looked at per round.
const BATCH: i64 = 100;
/// The queue is looked at this often even without a wake-up.
const POLL_INTERVAL: Duration = Duration::from_secs(30);
/// Each failed attempt waits this many times longer than the one before.
const BACKOFF_FACTOR: i64 = 5;

pub struct ProfileFetcher {
    profiles: Arc<RemoteProfiles>,
    metrics: Arc<Metrics>,
}

/// What became of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetched {
    Profile,
    NoProfile,
    Failed,
    Deferred,
}

impl Fetched {
    fn label(&self) -> &'static str {
        match self {
            Self::Profile => "profile",
            Self::NoProfile => "no_profile",
            Self::Failed => "failed",
            Self::Deferred => "deferred",
        }
    }
}

impl Worker for ProfileFetcher {
    fn name(&self) -> &'static str {
        "remote profile fetcher"
    }

    fn run(self: Arc<Self>, mut stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut recoveries = self.profiles.health.subscribe();
            while !stop.is_stopping() {
                let wait = match self.round().await {
                    Ok(wait) => wait,
                    Err(err) => {
                        tracing::warn!(%err, "remote profile fetches failed; retrying");
                        POLL_INTERVAL
                    }
                };
                tokio::select! {
                    _ = stop.wait() => {}
                    _ = self.profiles.queued.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    back = recoveries.next() => self.hasten(back).await,
                }
            }
        })
    }
}

impl ProfileFetcher {
    pub fn new(profiles: Arc<RemoteProfiles>, metrics: Arc<Metrics>) -> Self {
        Self { profiles, metrics }
    }

    /// A server came back: its users' fetches are due now (`None`: some recoveries were
    /// missed; their fetches go when their time comes).
    async fn hasten(&self, back: Option<OwnedServerName>) {
        let Some(server) = back else { return };
        match self.profiles.store.hasten_profile_fetches(server.as_str(), now_ms()).await {
            Ok(0) => {}
            Ok(moved) => tracing::debug!(%server, moved, "server is back; fetching its users' profiles now"),
            Err(err) => tracing::warn!(%server, %err, "cannot hasten remote profile fetches"),
        }
    }

    /// Fetches what is due; returns how long to wait before the next round.
    async fn round(&self) -> anyhow::Result<Duration> {
        let store = &self.profiles.store;
        let due = store.due_profile_fetches(now_ms(), BATCH).await?;
        if !due.is_empty() {
            self.fetch_all(due).await;
        }
        let next = store.next_profile_fetch_ts().await?;
        Ok(next.map_or(POLL_INTERVAL, |ts| Duration::from_millis((ts - now_ms()).clamp(0, 30_000) as u64)))
    }

    /// Fetches a batch, at most `fetch_concurrency` at once and
    /// `fetch_concurrency_per_destination` to one server.
    async fn fetch_all(&self, due: Vec<QueuedFetch>) {
        let config = &self.profiles.config;
        let mut per_server: HashMap<String, Arc<Semaphore>> = HashMap::new();
        let jobs: Vec<_> = due
            .into_iter()
            .map(|queued| {
                let limit = per_server
                    .entry(queued.server_name.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(config.fetch_concurrency_per_destination.max(1))))
                    .clone();
                self.fetch_one(queued, limit)
            })
            .collect();
        let outcomes: Vec<Fetched> =
            futures_util::stream::iter(jobs).buffer_unordered(config.fetch_concurrency.max(1)).collect().await;
        for outcome in &outcomes {
            self.metrics.count_profile_fetch(outcome.label());
        }
        let count = |kind: Fetched| outcomes.iter().filter(|o| **o == kind).count();
        let queue = self.profiles.store.profile_fetch_queue_len().await.unwrap_or(-1);
        tracing::info!(
            fetched = count(Fetched::Profile),
            without_profile = count(Fetched::NoProfile),
            failed = count(Fetched::Failed),
            deferred = count(Fetched::Deferred),
            queue,
            "remote profile fetches"
        );
    }

    async fn fetch_one(&self, queued: QueuedFetch, limit: Arc<Semaphore>) -> Fetched {
        let _permit = limit.acquire_owned().await;
        match self.try_fetch(&queued).await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::warn!(user_id = %queued.user_id, %err, "remote profile fetch: storage error");
                Fetched::Failed
            }
        }
    }

    async fn try_fetch(&self, queued: &QueuedFetch) -> anyhow::Result<Fetched> {
        let store = &self.profiles.store;
        let (Ok(user_id), Ok(server)) =
            (OwnedUserId::try_from(queued.user_id.as_str()), OwnedServerName::try_from(queued.server_name.as_str()))
        else {
            store.remove_profile_fetch(&queued.user_id).await?;
            return Ok(Fetched::Failed);
        };
        if let Contact::NotBefore(until) = self.profiles.health.contact(&server) {
            // Not an attempt: the server is known to be down until then.
            store.retry_profile_fetch(&queued.user_id, queued.attempts, until).await?;
            return Ok(Fetched::Deferred);
        }
        let request = get_profile_information::v1::Request::new(user_id.clone());
        let answer = self.profiles.client.send(&server, request).await;
        let outcome = match answer {
            Ok(answer) => {
                let profile: Profile =
                    answer.data.iter().map(|(field, value)| (field.clone(), value.clone())).collect();
                self.store(&user_id, &profile, Fetched::Profile).await?
            }
            Err(FederationError::InvalidResponse(err)) => {
                self.failed(queued, &format!("not a profile: {err}"), false).await?
            }
            Err(FederationError::Remote { status, .. }) if status == StatusCode::NOT_FOUND => {
                self.store(&user_id, &Profile::new(), Fetched::NoProfile).await?
            }
            Err(FederationError::NotAllowed(_)) => {
                store.remove_profile_fetch(&queued.user_id).await?;
                Fetched::Failed
            }
            Err(err) => self.failed(queued, &err.to_string(), err.is_down()).await?,
        };
        Ok(outcome)
    }

    /// Stores what the user's server said and ends the queue entry. An answer that does
    /// not pass the checks counts as no profile.
    async fn store(&self, user_id: &OwnedUserId, profile: &Profile, outcome: Fetched) -> anyhow::Result<Fetched> {
        let stored = self.profiles.store_profile(user_id, profile, ProfileSource::Query).await;
        let outcome = match stored {
            Ok(changed) => {
                if changed {
                    tracing::debug!(%user_id, "remote profile updated");
                }
                outcome
            }
            Err(reason) => {
                tracing::info!(%user_id, %reason, "refusing a remote profile");
                Fetched::NoProfile
            }
        };
        self.profiles.store.remove_profile_fetch(user_id.as_str()).await?;
        Ok(outcome)
    }

    /// Schedules the next attempt, or gives up after the last one.
    async fn failed(&self, queued: &QueuedFetch, reason: &str, unreachable: bool) -> anyhow::Result<Fetched> {
        let store = &self.profiles.store;
        let config = &self.profiles.config;
        let attempts = queued.attempts + 1;
        if unreachable && let Ok(server) = OwnedServerName::try_from(queued.server_name.as_str()) {
            self.profiles.health.failed(&server).await;
        }
        if attempts >= i64::from(config.max_attempts) {
            tracing::info!(user_id = %queued.user_id, attempts, reason, "giving up on a remote profile until the next hint");
            store.remove_profile_fetch(&queued.user_id).await?;
            return Ok(Fetched::Failed);
        }
        let wait = config.retry_interval.as_millis() as i64 * BACKOFF_FACTOR.saturating_pow(attempts as u32 - 1);
        tracing::debug!(user_id = %queued.user_id, attempts, wait_ms = wait, reason, "remote profile fetch failed");
        store.retry_profile_fetch(&queued.user_id, attempts, now_ms().saturating_add(wait)).await?;
        Ok(Fetched::Failed)
    }
}
