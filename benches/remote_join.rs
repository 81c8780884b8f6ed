//! Joining a big remote room: how long a kith user takes to join a public room on a real
//! Synapse (from the test virtualenv, on loopback) that has 200 members, against the
//! same join of a 2-member room. Each run uses a fresh kith server, so every join is a
//! full federated join (make_join, send_join, checking and storing the room's state).
//!
//! `cargo bench --bench remote_join` (needs the virtualenv `bash scripts/test` installs).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::matrix::{self, Homeserver};
use common::synapse::Synapse;
use common::{Db, TestServer};
use reqwest::StatusCode;
use serde_json::json;

const MEMBERS: usize = 200;
const RUNS: usize = 5;

fn main() {
    if !common::synapse_venv().join("bin/python").exists() {
        println!("remote_join: skipped, no matrix-synapse virtualenv (run `bash scripts/test` once)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let synapse = Synapse::start().await;
    println!("remote_join: matrix-synapse {}", Synapse::version());
    let (_, owner) = synapse.register_fast("owner").await;
    let small = matrix::create_room(&synapse, &owner, json!({ "preset": "public_chat" })).await;
    let big = matrix::create_room(&synapse, &owner, json!({ "preset": "public_chat" })).await;
    let (_, guest) = synapse.register_fast("guest").await;
    join_ok(&synapse, &guest, &small, &synapse.server_name).await;
    let started = Instant::now();
    for i in 1..MEMBERS {
        let (_, token) = synapse.register_fast(&format!("member{i}")).await;
        join_ok(&synapse, &token, &big, &synapse.server_name).await;
    }
    println!("remote_join: {MEMBERS} members joined on Synapse in {:.1} s", started.elapsed().as_secs_f64());

    let small_times = join_times(&synapse, &small).await;
    let big_times = join_times(&synapse, &big).await;
    let (small_median, big_median) = (median(&small_times), median(&big_times));
    println!("remote_join: 2-member room, {RUNS} runs: {}", describe(&small_times));
    println!("remote_join: {MEMBERS}-member room, {RUNS} runs: {}", describe(&big_times));
    println!(
        "remote_join: median {:.0} ms for {MEMBERS} members, {:.0} ms for 2 ({:.1}x)",
        big_median.as_secs_f64() * 1e3,
        small_median.as_secs_f64() * 1e3,
        big_median.as_secs_f64() / small_median.as_secs_f64()
    );
}

/// One fresh kith server per run: the time its user's `POST /join` takes.
async fn join_times(synapse: &Synapse, room: &str) -> Vec<Duration> {
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let kith = TestServer::start_federating(Db::Sqlite).await;
        let (_, token) = kith.register("joiner", "pw").await;
        let started = Instant::now();
        join_ok(&kith, &token, room, &synapse.server_name).await;
        times.push(started.elapsed());
    }
    times
}

async fn join_ok(server: &impl Homeserver, token: &str, room: &str, via: &str) {
    let (status, body) = matrix::join(server, token, room, via).await;
    assert_eq!(status, StatusCode::OK, "join on {}: {body}", server.name());
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn describe(times: &[Duration]) -> String {
    let ms: Vec<String> = times.iter().map(|t| format!("{:.0}", t.as_secs_f64() * 1e3)).collect();
    format!("median {:.0} ms ({} ms)", median(times).as_secs_f64() * 1e3, ms.join(", "))
}
