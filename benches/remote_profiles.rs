//! Remote profiles between kith servers on loopback, with the default settings:
//!
//! 1. how long after Alice (server A) renames herself Bob's directory (server B) shows the
//!    new name, over several renames;
//! 2. Alice in 100 rooms shared with three other servers renames herself 5 times in one
//!    second: how many profile EDUs each server receives, and how many profile requests
//!    reach A (the member events of the renames reach them all too).
//!
//! `cargo bench --bench remote_profiles`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::matrix::{self, Homeserver, V3, encode};
use common::{Db, TestServer};
use reqwest::StatusCode;
use serde_json::json;

const RENAMES: usize = 5;
const ROOMS: usize = 100;
const PEERS: usize = 3;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        rename_latency().await;
        burst_in_many_rooms().await;
    });
}

async fn rename(server: &TestServer, user: &str, token: &str, name: &str) {
    let path = format!("{V3}/profile/{}/displayname", encode(user));
    assert_eq!(server.put(&path, Some(token), json!({ "displayname": name })).await.0, StatusCode::OK);
}

async fn shows(server: &TestServer, token: &str, user: &str, name: &str) -> bool {
    let body = json!({ "search_term": name, "limit": 5 });
    let (_, found) = server.post(&format!("{V3}/user_directory/search"), Some(token), body).await;
    found["results"]
        .as_array()
        .is_some_and(|r| r.iter().any(|hit| hit["user_id"] == user && hit["display_name"] == name))
}

async fn rename_latency() {
    let a = TestServer::start_federating(Db::Sqlite).await;
    let b = TestServer::start_federating(Db::Sqlite).await;
    let (alice, alice_t) = a.register("alice", "pw").await;
    let (_, bob_t) = b.register("bob", "pw").await;
    // A private room: no member event can stand in for the profile in the directory.
    let (bob, bob_t) = (format!("@bob:{}", b.name()), bob_t);
    let room = matrix::create_room(&a, &alice_t, json!({ "preset": "private_chat", "invite": [bob] })).await;
    while !matrix::join(&b, &bob_t, &room, a.name()).await.0.is_success() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // B has fetched Alice's profile once she is found by it.
    while !shows(&b, &bob_t, &alice, "alice").await {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut times = Vec::new();
    for i in 0..RENAMES {
        let name = format!("Alicename{i}");
        let started = Instant::now();
        rename(&a, &alice, &alice_t, &name).await;
        while !shows(&b, &bob_t, &alice, &name).await {
            assert!(started.elapsed() < Duration::from_secs(60), "the rename never reached B");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        times.push(started.elapsed());
    }
    times.sort();
    let ms: Vec<String> = times.iter().map(|t| format!("{:.0}", t.as_secs_f64() * 1e3)).collect();
    println!(
        "remote_profiles: rename to the other server's directory: median {:.0} ms, max {:.0} ms ({} ms; target < 2000 ms)",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        ms.join(", ")
    );
}

async fn burst_in_many_rooms() {
    let a = TestServer::start_federating(Db::Sqlite).await;
    let (alice, alice_t) = a.register("alice", "pw").await;
    let mut peers = Vec::new();
    for i in 0..PEERS {
        let peer = TestServer::start_federating(Db::Sqlite).await;
        let (_, token) = peer.register(&format!("peer{i}"), "pw").await;
        peers.push((peer, token));
    }
    let started = Instant::now();
    for _ in 0..ROOMS {
        let room = matrix::create_room(&a, &alice_t, json!({ "preset": "public_chat" })).await;
        for (peer, token) in &peers {
            let (status, body) = matrix::join(peer, token, &room, a.name()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    println!(
        "remote_profiles: {ROOMS} rooms shared with {PEERS} servers set up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Let the joins' own profile fetches (one per peer, 2 s after the joins) settle
    // before counting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let edus_before: Vec<usize> = peers.iter().map(|(p, _)| p.log().matches("profile EDU received").count()).collect();
    let queries_before = a.log().matches("profile query").count();

    let burst = Instant::now();
    for i in 0..RENAMES {
        rename(&a, &alice, &alice_t, &format!("Burst{i}")).await;
        tokio::time::sleep(Duration::from_millis(1000 / RENAMES as u64)).await;
    }
    let last = format!("Burst{}", RENAMES - 1);
    for (peer, token) in &peers {
        while !shows(peer, token, &alice, &last).await {
            assert!(burst.elapsed() < Duration::from_secs(120), "the burst never reached {}", peer.name());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!(
        "remote_profiles: {RENAMES} renames in 1 s in {ROOMS} rooms reached all {PEERS} directories in {:.0} ms",
        burst.elapsed().as_secs_f64() * 1e3
    );
    // The member events of the renames keep arriving; give any fetch they cause its chance.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let edus: Vec<usize> = peers
        .iter()
        .zip(&edus_before)
        .map(|((peer, _), before)| peer.log().matches("profile EDU received").count() - before)
        .collect();
    let queries = a.log().matches("profile query").count() - queries_before;
    println!(
        "remote_profiles: profile EDUs received per server {edus:?} (target <= 2), profile requests reaching A {queries} (target 0)"
    );
}
