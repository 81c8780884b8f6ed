use std::time::Duration;

use super::*;
use crate::config::DatabaseTarget;

const MIN_MS: i64 = 10_000;
const MAX_MS: i64 = 100_000;

fn config(min_ms: i64, max_ms: i64) -> FederationConfig {
    FederationConfig {
        destination_min_retry_interval: Duration::from_millis(min_ms as u64),
        destination_retry_multiplier: 2.0,
        destination_max_retry_interval: Duration::from_millis(max_ms as u64),
    }
}

async fn health(dir: &tempfile::TempDir, min_ms: i64, max_ms: i64) -> ServerHealth {
    let path = dir.path().join("health.db").display().to_string();
    let store = Arc::new(Store::connect(&DatabaseTarget::Sqlite { path }).await.unwrap());
    ServerHealth::new(store, &config(min_ms, max_ms)).await.unwrap()
}

fn name(server: &str) -> OwnedServerName {
    OwnedServerName::try_from(server).unwrap()
}

#[tokio::test]
async fn one_backoff_is_shared_grows_is_capped_and_ends_with_a_sign_of_life() {
    let dir = tempfile::tempdir().unwrap();
    let health = health(&dir, MIN_MS, MAX_MS).await;
    let server = name("down.example");
    let now = now_ms();
    let first = health.failed_at(&server, now).unwrap();
    assert!(first.retry_interval_ms >= MIN_MS, "{first:?}");
    // The other callers that fail meanwhile (the directory, the profile fetcher) add
    // nothing: one outage is one step.
    assert_eq!(health.failed_at(&server, now + 1), None);
    assert_eq!(health.failed_at(&server, now + MIN_MS / 2), None);
    assert_eq!(health.retry(&server), Some(first));
    assert_eq!(health.contact(&server), Contact::NotBefore(first.next_try_ts()));
    assert_eq!(health.down_until(&server), Some(first.next_try_ts()));

    // When it ends, one caller's attempt finds out; the others wait for its outcome.
    let ended = first.next_try_ts();
    assert_eq!(health.contact_at(&server, ended, false), Contact::Now);
    assert_eq!(health.contact_at(&server, ended + 1, false), Contact::NotBefore(ended + ATTEMPT_MS));
    assert_eq!(health.contact_at(&server, ended + 2, true), Contact::NotBefore(ended + ATTEMPT_MS));
    assert_eq!(health.contact_at(&server, ended + ATTEMPT_MS, false), Contact::Now, "an attempt that never reported");

    // Each attempt after the backoff ends that fails again doubles it, up to the maximum.
    let mut retry = first;
    for _ in 0..10 {
        let next = health.failed_at(&server, retry.next_try_ts()).unwrap();
        assert!(next.retry_interval_ms >= (retry.retry_interval_ms * 2).min(MAX_MS), "{retry:?} {next:?}");
        assert!(next.retry_interval_ms <= MAX_MS, "{next:?}");
        retry = next;
    }
    assert_eq!((retry.failures, retry.retry_interval_ms), (11, MAX_MS));
    health.persist(&server).await;

    // Persisted: a restart remembers it.
    let reloaded = ServerHealth::new(health.store.clone(), &config(MIN_MS, MAX_MS)).await.unwrap();
    let mut recovered = reloaded.subscribe();
    assert_eq!(reloaded.retry(&server), Some(retry));
    assert_eq!(reloaded.backing_off_count(), 1);

    // A sign of life ends it for every caller at once, tells whoever waits, and is
    // persisted too.
    assert!(reloaded.alive(&server).await);
    assert_eq!((reloaded.contact(&server), reloaded.retry(&server)), (Contact::Now, None));
    assert_eq!(recovered.next().await, Some(server.clone()));
    assert!(!reloaded.alive(&server).await, "already up");
    assert!(reloaded.store.destination_retries().await.unwrap().is_empty());
    // The next outage starts from the minimum again.
    let again = reloaded.failed_at(&server, now_ms()).unwrap();
    assert_eq!(again.failures, 1);
    assert!(again.retry_interval_ms < MIN_MS * 6 / 5, "{again:?}");
}

#[tokio::test]
async fn watched_servers_are_probed_from_seconds_to_a_minute_while_down() {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3_600_000;
    let health = health(&dir, hour, 24 * hour).await;
    let (peer, other) = (name("peer.example"), name("other.example"));
    health.watch(std::slice::from_ref(&peer));
    let t0 = now_ms();
    assert_eq!(health.contact_at(&peer, t0, true), Contact::Now);
    let backoff = health.failed_at(&peer, t0).unwrap();
    let other_backoff = health.failed_at(&other, t0).unwrap();
    let later = t0 + 1_000;
    assert_eq!(health.contact_at(&other, later, true), Contact::NotBefore(other_backoff.next_try_ts()), "not watched");

    let Contact::NotBefore(first_probe) = health.contact_at(&peer, later, true) else { panic!("probed too soon") };
    assert_eq!(
        health.contact_at(&peer, first_probe, false),
        Contact::NotBefore(backoff.next_try_ts()),
        "only probers probe"
    );
    assert!((t0 + 2_000..t0 + 2_400).contains(&first_probe), "{}", first_probe - t0);
    // Probes come at growing intervals up to a minute; a failed probe leaves the shared
    // backoff alone.
    let mut at = first_probe;
    let mut gaps = Vec::new();
    for _ in 0..10 {
        assert_eq!(health.contact_at(&peer, at, true), Contact::Probe);
        assert_eq!(health.failed_at(&peer, at), None);
        let Contact::NotBefore(next) = health.contact_at(&peer, at, true) else { panic!("probed twice at once") };
        gaps.push(next - at);
        at = next;
    }
    assert!(gaps[..4].windows(2).all(|w| w[1] > w[0]), "{gaps:?}");
    assert!(gaps.iter().all(|gap| *gap <= 60_000) && gaps[9] == 60_000, "{gaps:?}");
    assert_eq!(health.retry(&peer), Some(backoff));
    // Once it answers, the next outage is probed from seconds again.
    assert!(health.alive(&peer).await);
    health.failed_at(&peer, at).unwrap();
    let Contact::NotBefore(probe) = health.contact_at(&peer, at, true) else { panic!("probed at once") };
    assert!(probe - at < 2_400, "{}", probe - at);
}
