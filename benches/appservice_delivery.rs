//! Transactions pushed to an application service on loopback, kith and then Synapse
//! (when its virtualenv is there) with the same registration file and the same service:
//! a receiver in this process that takes every `PUT /_matrix/app/v1/transactions/{id}`.
//! The service's bot is in a room where a local user writes.
//!
//! 1. latency: a message at a time, from the start of the send to its transaction
//!    reaching the service;
//! 2. throughput: 500 messages from 5 concurrent writers, until the last is delivered:
//!    events per second and how many transactions carried them.
//!
//! `cargo bench --bench appservice_delivery`

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, Uri};
use common::matrix::{self, Homeserver, V3, encode};
use common::synapse::Synapse;
use common::{Db, TestServer};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const AS_TOKEN: &str = "bench-as-token";
const HS_TOKEN: &str = "bench-hs-token";
const BOT: &str = "benchbot";
const LATENCY_ROUNDS: usize = 20;
const BURST: usize = 500;
const WRITERS: usize = 5;
/// The longest any message may take to reach the service.
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (receiver, port) = Receiver::start().await;
        let mut receiver = receiver;
        let registration = tempfile::tempdir().expect("tempdir");
        let file = registration.path().join("bench-registration.yaml");
        std::fs::write(&file, registration_yaml(port)).expect("registration");
        let config = format!("app_service_config_files: ['{}']\n", file.display());

        let kith = TestServer::start_with(Db::Sqlite, &config).await;
        let (_, token) = kith.register("alice", "pw").await;
        measure("kith", &kith, common::SERVER_NAME, &token, &mut receiver).await;
        drop(kith);

        if !common::synapse_venv().join("bin/python").exists() {
            return println!("appservice_delivery: Synapse left out (no virtualenv; scripts/test installs it)");
        }
        let mut synapse = Synapse::start().await;
        synapse.stop();
        let yaml = synapse.dir.path().join("homeserver.yaml");
        let mut text = std::fs::read_to_string(&yaml).expect("synapse config");
        text.push_str(&config);
        std::fs::write(&yaml, text).expect("synapse config");
        synapse.start_again().await;
        let (_, token) = synapse.register_fast("alice").await;
        let label = format!("Synapse {}", Synapse::version());
        measure(&label, &synapse, &synapse.server_name, &token, &mut receiver).await;
        synapse.stop();
    });
}

fn registration_yaml(port: u16) -> String {
    format!(
        "id: bench\nurl: http://127.0.0.1:{port}\nas_token: {AS_TOKEN}\nhs_token: {HS_TOKEN}\n\
         sender_localpart: {BOT}\nrate_limited: false\n\
         namespaces:\n  users:\n    - exclusive: true\n      regex: '@bench_.*'\n  aliases: []\n  rooms: []\n"
    )
}

/// What one transaction carried: when it arrived and its message bodies.
struct Delivery {
    at: Instant,
    bodies: Vec<String>,
}

struct Receiver {
    deliveries: mpsc::Receiver<Delivery>,
}

impl Receiver {
    async fn start() -> (Self, u16) {
        let (tx, deliveries) = mpsc::channel(10_000);
        let app = axum::Router::new().fallback(take).with_state(tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (Self { deliveries }, port)
    }

    /// Waits until every body in `wanted` has arrived; returns when the last did and how
    /// many transactions carried them.
    async fn until_delivered(&mut self, mut wanted: HashSet<String>) -> (Instant, usize) {
        let deadline = Instant::now() + DELIVERY_LIMIT;
        let mut transactions = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let delivery = tokio::time::timeout(left, self.deliveries.recv())
                .await
                .unwrap_or_else(|_| panic!("{} messages never reached the service", wanted.len()))
                .expect("the receiver runs");
            let before = wanted.len();
            delivery.bodies.iter().for_each(|body| _ = wanted.remove(body));
            transactions += usize::from(wanted.len() < before);
            if wanted.is_empty() {
                return (delivery.at, transactions);
            }
        }
    }

    fn drain(&mut self) {
        while self.deliveries.try_recv().is_ok() {}
    }
}

/// The service's side: every transaction is taken at once.
async fn take(State(tx): State<mpsc::Sender<Delivery>>, method: Method, uri: Uri, body: Bytes) -> axum::Json<Value> {
    let at = Instant::now();
    if method == Method::PUT && uri.path().starts_with("/_matrix/app/v1/transactions/") {
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let events = body["events"].as_array().cloned().unwrap_or_default();
        let bodies = events.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect();
        let _ = tx.send(Delivery { at, bodies }).await;
    }
    axum::Json(json!({}))
}

/// `domain`: the server's name, that of its users.
async fn measure(label: &str, server: &impl Homeserver, domain: &str, token: &str, receiver: &mut Receiver) {
    let room = matrix::create_room(server, token, json!({ "preset": "private_chat" })).await;
    let bot = format!("@{BOT}:{domain}");
    let invite = json!({ "user_id": bot });
    matrix::ok(server, reqwest::Method::POST, &format!("{V3}/rooms/{}/invite", encode(&room)), token, Some(invite))
        .await;
    let (status, body) = matrix::join(server, AS_TOKEN, &room, domain).await;
    assert!(status.is_success(), "the bot joins on {label}: {body}");
    matrix::send_text(server, token, &room, "warm-up").await;
    receiver.until_delivered(HashSet::from(["warm-up".to_owned()])).await;
    receiver.drain();

    let mut latencies = Vec::new();
    for round in 0..LATENCY_ROUNDS {
        let text = format!("latency {round}");
        let started = Instant::now();
        matrix::send_text(server, token, &room, &text).await;
        let (arrived, _) = receiver.until_delivered(HashSet::from([text])).await;
        latencies.push(arrived - started);
    }
    latencies.sort();
    receiver.drain();

    let texts: Vec<String> = (0..BURST).map(|i| format!("burst {i}")).collect();
    let room = room.as_str();
    let started = Instant::now();
    let writers = texts.chunks(BURST / WRITERS).map(|chunk| async move {
        for text in chunk {
            matrix::send_text(server, token, room, text).await;
        }
    });
    let writing = async {
        futures_util::future::join_all(writers).await;
        Instant::now()
    };
    let (sent, (arrived, transactions)) =
        tokio::join!(writing, receiver.until_delivered(texts.iter().cloned().collect()));
    let elapsed = arrived - started;
    println!(
        "appservice_delivery {label}: latency from send to the service median {:.1} ms, max {:.1} ms \
         over {LATENCY_ROUNDS}; {BURST} messages from {WRITERS} writers delivered in {:.0} ms \
         ({:.0} events/s) in {transactions} transactions, the last {:.0} ms after the last send was answered",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1]),
        ms(elapsed),
        BURST as f64 / elapsed.as_secs_f64(),
        ms(arrived.saturating_duration_since(sent))
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
