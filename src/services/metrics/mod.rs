//! Prometheus metrics (text format, `prometheus-client`): request counts and latency by
//! endpoint, recorded as requests finish; directory search latency; and gauges read when
//! scraped (directory size, remote-profile queue, federation outbox and backoffs, in
//! total and per destination, peer directory sync lag, partial-state rooms, database
//! connections), so they are never stale and cost nothing between scrapes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::services::sender::DestinationQueue;
use crate::store::Store;

/// Destinations labelled at most, the longest queues first.
pub const MAX_LABELLED_DESTINATIONS: usize = 1_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route template (`/_matrix/client/v3/rooms/{room_id}/send/…`), never the raw
    /// path, so the label set stays small.
    pub endpoint: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    method: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    destination: String,
    /// `pdu` or `edu`.
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: String,
}

type LatencyFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// What the gauges show, gathered from the services at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub directory_users: u64,
    pub remote_profile_queue: i64,
    pub outbox_pdus: i64,
    pub destinations_backing_off: i64,
    /// Destinations with something waiting or in backoff, at most
    /// [`MAX_LABELLED_DESTINATIONS`].
    pub destination_queues: Vec<DestinationQueue>,
    /// Seconds since each peer's directory was last pulled.
    pub peer_sync_lag: Vec<(String, f64)>,
    pub partial_state_rooms: i64,
    /// Transactions waiting, per application service.
    pub appservice_waiting: Vec<(String, i64)>,
}

pub struct Metrics {
    store: Arc<Store>,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_latency: LatencyFamily,
    directory_search: Histogram,
    profile_fetches: Family<OutcomeLabels, Counter>,
    directory_users: Gauge,
    remote_profile_queue: Gauge,
    outbox_pdus: Gauge,
    destinations_backing_off: Gauge,
    destination_queue: Family<QueueLabels, Gauge>,
    destination_backing_off: Family<DestinationLabels, Gauge>,
    destination_retry_interval: Family<DestinationLabels, Gauge<f64, AtomicU64>>,
    peer_sync_lag: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    partial_state_rooms: Gauge,
    db_connections: Family<PoolLabels, Gauge>,
    worker_restarts: Family<WorkerLabels, Counter>,
    appservice_sent: Family<AppServiceLabels, Counter>,
    appservice_failures: Family<AppServiceLabels, Counter>,
    appservice_last_success: Family<AppServiceLabels, Gauge>,
    appservice_waiting: Family<AppServiceLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppServiceLabels {
    appservice: String,
}

impl Metrics {
    pub fn new(store: Arc<Store>) -> Self {
        let mut registry = Registry::with_prefix("kith");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by endpoint and status", requests.clone());
        let request_latency = LatencyFamily::new_with_constructor(latency_histogram);
        registry.register("http_request_duration_seconds", "Time to answer HTTP requests", request_latency.clone());
        let directory_search = latency_histogram();
        registry.register(
            "user_directory_search_duration_seconds",
            "Time to answer user directory searches",
            directory_search.clone(),
        );
        let profile_fetches = Family::<OutcomeLabels, Counter>::default();
        // Every outcome shows from the start, at zero.
        for outcome in ["profile", "no_profile", "failed", "deferred"] {
            let _ = profile_fetches.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() });
        }
        registry.register("remote_profile_fetches", "Remote profile fetches, by outcome", profile_fetches.clone());
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let directory_users = gauge(&mut registry, "user_directory_users", "Users in the directory index");
        let remote_profile_queue =
            gauge(&mut registry, "remote_profile_queue_length", "Remote profiles waiting to be fetched");
        let outbox_pdus = gauge(&mut registry, "federation_outbox_pdus", "PDUs waiting to be sent to other servers");
        let destinations_backing_off = gauge(
            &mut registry,
            "federation_destinations_backing_off",
            "Servers backed off from (server health: they failed and have not answered since)",
        );
        let destination_queue = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "federation_destination_queue",
            "PDUs and EDUs waiting for a server, by kind; only servers with something waiting or in backoff",
            destination_queue.clone(),
        );
        let destination_backing_off = Family::<DestinationLabels, Gauge>::default();
        registry.register(
            "federation_destination_backing_off",
            "Whether a server is backed off from (1) or not (0)",
            destination_backing_off.clone(),
        );
        let destination_retry_interval = Family::<DestinationLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "federation_destination_retry_interval_seconds",
            "How long kith waits between attempts at a server it backs off from",
            destination_retry_interval.clone(),
        );
        let partial_state_rooms =
            gauge(&mut registry, "partial_state_rooms", "Rooms joined with a partial state, resync in progress");
        let peer_sync_lag = Family::<PeerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "peer_directory_sync_lag_seconds",
            "Time since a peer's directory was last pulled",
            peer_sync_lag.clone(),
        );
        let db_connections = Family::<PoolLabels, Gauge>::default();
        registry.register("database_connections", "Database pool connections, by state", db_connections.clone());
        let worker_restarts = Family::<WorkerLabels, Counter>::default();
        registry.register(
            "worker_restarts",
            "Background workers started again after they stopped on their own or panicked",
            worker_restarts.clone(),
        );
        let appservice_sent = Family::<AppServiceLabels, Counter>::default();
        registry.register(
            "appservice_transactions_sent",
            "Transactions an application service took",
            appservice_sent.clone(),
        );
        let appservice_failures = Family::<AppServiceLabels, Counter>::default();
        registry.register(
            "appservice_transaction_failures",
            "Attempts to send a transaction that the application service refused or did not answer",
            appservice_failures.clone(),
        );
        let appservice_last_success = Family::<AppServiceLabels, Gauge>::default();
        registry.register(
            "appservice_last_success_timestamp_seconds",
            "When an application service last took a transaction (Unix time)",
            appservice_last_success.clone(),
        );
        let appservice_waiting = Family::<AppServiceLabels, Gauge>::default();
        registry.register(
            "appservice_transactions_waiting",
            "Transactions waiting to be taken by an application service",
            appservice_waiting.clone(),
        );
        Self {
            store,
            registry,
            requests,
            request_latency,
            directory_search,
            profile_fetches,
            directory_users,
            remote_profile_queue,
            outbox_pdus,
            destinations_backing_off,
            destination_queue,
            destination_backing_off,
            destination_retry_interval,
            peer_sync_lag,
            partial_state_rooms,
            db_connections,
            worker_restarts,
            appservice_sent,
            appservice_failures,
            appservice_last_success,
            appservice_waiting,
        }
    }

    /// An application service took a transaction.
    pub fn appservice_success(&self, appservice: &str) {
        let labels = AppServiceLabels { appservice: appservice.to_owned() };
        self.appservice_sent.get_or_create(&labels).inc();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.appservice_last_success.get_or_create(&labels).set(now.as_secs() as i64);
    }

    /// An application service refused a transaction or did not answer.
    pub fn appservice_failure(&self, appservice: &str) {
        self.appservice_failures.get_or_create(&AppServiceLabels { appservice: appservice.to_owned() }).inc();
    }

    pub fn count_worker_restart(&self, worker: &str) {
        self.worker_restarts.get_or_create(&WorkerLabels { worker: worker.to_owned() }).inc();
    }

    pub fn observe_request(&self, labels: RequestLabels, elapsed: Duration) {
        let endpoint = EndpointLabels { method: labels.method.clone(), endpoint: labels.endpoint.clone() };
        self.request_latency.get_or_create(&endpoint).observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    pub fn observe_directory_search(&self, elapsed: Duration) {
        self.directory_search.observe(elapsed.as_secs_f64());
    }

    /// A remote profile fetch ended: `fetched`, `not_found`, `failed`…
    pub fn count_profile_fetch(&self, outcome: &str) {
        self.profile_fetches.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc();
    }

    /// The text exposition, with the gauges set from `snapshot` and the pool.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        self.directory_users.set(snapshot.directory_users as i64);
        self.remote_profile_queue.set(snapshot.remote_profile_queue);
        self.outbox_pdus.set(snapshot.outbox_pdus);
        self.destinations_backing_off.set(snapshot.destinations_backing_off);
        self.partial_state_rooms.set(snapshot.partial_state_rooms);
        self.set_destination_queues(&snapshot.destination_queues);
        self.appservice_waiting.clear();
        for (appservice, waiting) in &snapshot.appservice_waiting {
            self.appservice_waiting.get_or_create(&AppServiceLabels { appservice: appservice.clone() }).set(*waiting);
        }
        self.peer_sync_lag.clear();
        for (peer, lag) in &snapshot.peer_sync_lag {
            self.peer_sync_lag.get_or_create(&PeerLabels { peer: peer.clone() }).set(*lag);
        }
        let (size, idle) = self.store.pool_connections();
        let pool = |state: &str| PoolLabels { state: state.to_owned() };
        self.db_connections.get_or_create(&pool("idle")).set(idle as i64);
        self.db_connections.get_or_create(&pool("in_use")).set((size as usize).saturating_sub(idle) as i64);
        let mut text = String::new();
        if let Err(err) = encode(&mut text, &self.registry) {
            tracing::warn!(%err, "could not encode metrics");
        }
        text
    }

    /// Rebuilt on every scrape, so a destination with nothing waiting and no backoff
    /// loses its series and the label set stays bounded.
    fn set_destination_queues(&self, queues: &[DestinationQueue]) {
        self.destination_queue.clear();
        self.destination_backing_off.clear();
        self.destination_retry_interval.clear();
        for queue in queues.iter().take(MAX_LABELLED_DESTINATIONS) {
            let destination = DestinationLabels { destination: queue.destination.clone() };
            for (kind, waiting) in [("pdu", queue.pdus), ("edu", queue.edus)] {
                let labels = QueueLabels { destination: queue.destination.clone(), kind: kind.to_owned() };
                self.destination_queue.get_or_create(&labels).set(waiting);
            }
            self.destination_backing_off.get_or_create(&destination).set(i64::from(queue.retry_interval.is_some()));
            if let Some(interval) = queue.retry_interval {
                self.destination_retry_interval.get_or_create(&destination).set(interval.as_secs_f64());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseTarget;

    fn behind(destination: &str) -> DestinationQueue {
        DestinationQueue {
            destination: destination.to_owned(),
            pdus: 3,
            edus: 1,
            retry_interval: Some(Duration::from_secs(600)),
        }
    }

    #[tokio::test]
    async fn destinations_are_labelled_while_behind_and_at_most_a_thousand() {
        let dir = tempfile::tempdir().unwrap();
        let target = DatabaseTarget::Sqlite { path: dir.path().join("metrics.db").display().to_string() };
        let metrics = Metrics::new(Arc::new(Store::connect(&target).await.unwrap()));
        let text = metrics.render(&Snapshot { destination_queues: vec![behind("b.example")], ..Snapshot::default() });
        for line in [
            r#"kith_federation_destination_queue{destination="b.example",kind="pdu"} 3"#,
            r#"kith_federation_destination_queue{destination="b.example",kind="edu"} 1"#,
            r#"kith_federation_destination_backing_off{destination="b.example"} 1"#,
            r#"kith_federation_destination_retry_interval_seconds{destination="b.example"} 600.0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        let text = metrics.render(&Snapshot::default());
        assert!(!text.contains("b.example"), "caught up, its series are gone:\n{text}");

        let many = (0..=MAX_LABELLED_DESTINATIONS).map(|i| behind(&format!("s{i}.example"))).collect();
        let text = metrics.render(&Snapshot { destination_queues: many, ..Snapshot::default() });
        let labelled = text.lines().filter(|l| l.starts_with("kith_federation_destination_backing_off{")).count();
        assert_eq!(labelled, MAX_LABELLED_DESTINATIONS);
    }
}
