//! The federated user directory on loopback, kith and kith, with a peer of 100,000 users
//! (loaded straight into its database):
//!
//! - the initial sync: how long until the other server finds the last user, and the
//!   bytes of kith's paged snapshot against BWI's full list;
//! - after 1% of the users change: the bytes of one incremental pull against a full BWI
//!   re-download (the ratio);
//! - the resident memory each federated user costs the pulling server;
//! - live search p50/p99 with one healthy peer and one that never answers.
//!
//! `cargo bench --features bench-fixtures --bench federated_directory [-- --users N]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::fake_server::FakeServer;
use common::matrix::{Homeserver, V3, encode};
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CHANGES: &str = "/_matrix/federation/unstable/io.kith.user_directory/changes";
const BWI: &str = "/_matrix/federation/unstable/de.bwi.federated_user_dir/user_directory/search";
const SEARCHES: usize = 200;

fn main() {
    let users =
        std::env::args().skip_while(|a| a != "--users").nth(1).and_then(|n| n.parse().ok()).unwrap_or(100_000usize);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(run(users));
}

fn peers(names: &[&str]) -> String {
    let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!(
        "log_level: warn\nfederated_user_directory:\n  enabled: true\n  peers: [{}]\n  sync_interval: 1h\n  live_search: true\n  live_search_timeout: 2s\n",
        list.join(", ")
    )
}

async fn run(users: usize) {
    let reader = FakeServer::start().await.without_connection_reuse();
    // A peer that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_name = format!("127.0.0.1:{}", silent.local_addr().expect("addr").port());
    let mut puller = TestServer::start_federating_with(Db::Sqlite, "log_level: warn\n").await;
    let mut peer = TestServer::start_federating_with(Db::Sqlite, &peers(&[puller.name(), &reader.name])).await;
    load_users(&mut peer, users).await;
    println!("federated_directory: peer with {users} users loaded");

    // BWI's full list and kith's snapshot, as bytes on the wire.
    let (bwi_bytes, bwi_users) = read_bwi(&reader, &peer).await;
    let (snapshot_bytes, token, pages) = read_changes(&reader, &peer, None).await;
    let (bwi_bytes, bwi_users) = (bwi_bytes, bwi_users);
    println!(
        "federated_directory: full BWI list {:.1} MB ({bwi_users} users, its cap); kith snapshot {:.1} MB in {pages} pages",
        mb(bwi_bytes),
        mb(snapshot_bytes)
    );

    let before = puller.resident_kib().unwrap_or(0);
    let started = Instant::now();
    puller.reconfigure(&peers(&[peer.name(), &silent_name])).await;
    let (_, token_b) = puller.register("searcher", "pw").await;
    let last = format!("@user{:06}:{}", users - 1, peer.name());
    while !finds(&puller, &token_b, &last).await {
        assert!(started.elapsed() < Duration::from_secs(900), "the initial sync never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = puller.resident_kib().unwrap_or(0);
    println!(
        "federated_directory: initial sync of {users} users in {:.1} s (restart included); {:.0} bytes of resident memory per federated user",
        started.elapsed().as_secs_f64(),
        (after.saturating_sub(before) as f64 * 1024.0) / users as f64
    );

    // 1% of the users change; one incremental pull against a BWI re-download.
    change_users(&mut peer, users / 100).await;
    let (incremental_bytes, _, _) = read_changes(&reader, &peer, Some(&token)).await;
    let (bwi_again, bwi_users) = read_bwi(&reader, &peer).await;
    // Per user, so that BWI's cap does not flatter it.
    let bwi_full = bwi_again as f64 / bwi_users.max(1) as f64 * users as f64;
    println!(
        "federated_directory: after {} changes, incremental pull {:.1} KB vs a full BWI download of {users} users {:.1} MB: {:.0}x less",
        users / 100,
        incremental_bytes as f64 / 1024.0,
        bwi_full / 1e6,
        bwi_full / incremental_bytes.max(1) as f64
    );

    live_search(&puller, &token_b, users).await;
    drop(silent);
}

/// Users `@userNNNNNN` with display names, inserted into the peer's database.
async fn load_users(peer: &mut TestServer, users: usize) {
    peer.terminate();
    let config = kith::config::Config::load(&peer.config_path).expect("config");
    let store = kith::store::Store::connect(&config.database_target().expect("db")).await.expect("store");
    let name = peer.name().to_owned();
    let ids: Vec<(String, String)> =
        (0..users).map(|i| (format!("@user{i:06}:{name}"), format!("Person {} {}", i % 977, i))).collect();
    let fixtures: Vec<kith::store::FixtureUser<'_>> = ids
        .iter()
        .map(|(user_id, display)| kith::store::FixtureUser { user_id, display_name: Some(display), avatar_url: None })
        .collect();
    store.bulk_insert_local_users(&fixtures).await.expect("users");
    store.close().await;
    peer.start_again().await;
}

/// Renames `count` users through the database (the peer stopped meanwhile: SQLite has
/// one writer).
async fn change_users(peer: &mut TestServer, count: usize) {
    peer.terminate();
    let config = kith::config::Config::load(&peer.config_path).expect("config");
    let store = kith::store::Store::connect(&config.database_target().expect("db")).await.expect("store");
    for i in 0..count {
        let user = format!("@user{:06}:{}", i * 100, peer.name());
        let name = json!(format!("Renamed {i}"));
        store.update_profile_field(&user, "displayname", Some(&name), |_| true).await.expect("rename");
    }
    store.close().await;
    peer.start_again().await;
}

async fn read_bwi(reader: &FakeServer, peer: &TestServer) -> (usize, usize) {
    let (status, body) = reader.request(peer, Method::GET, BWI, None).await;
    assert_eq!(status, StatusCode::OK);
    (body.to_string().len(), body["results"].as_array().map_or(0, Vec::len))
}

/// Reads kith's endpoint until caught up: bytes, the last token, pages.
async fn read_changes(reader: &FakeServer, peer: &TestServer, since: Option<&str>) -> (usize, String, usize) {
    let (mut bytes, mut pages) = (0, 0);
    let mut token = since.map(str::to_owned);
    loop {
        let mut path = format!("{CHANGES}?limit=1000");
        if let Some(token) = &token {
            path.push_str(&format!("&since={}", encode(token)));
        }
        let (status, body) = reader.request(peer, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        bytes += body.to_string().len();
        pages += 1;
        token = body["next_batch"].as_str().map(str::to_owned);
        if body["limited"] != true {
            return (bytes, token.unwrap_or_default(), pages);
        }
    }
}

async fn finds(server: &TestServer, token: &str, term: &str) -> bool {
    let body = json!({ "search_term": term, "limit": 5 });
    let (_, found) = server.post(&format!("{V3}/user_directory/search"), Some(token), body).await;
    found["results"].as_array().is_some_and(|r| r.iter().any(|hit| hit["user_id"] == term))
}

async fn live_search(puller: &TestServer, token: &str, users: usize) {
    let mut times = Vec::with_capacity(SEARCHES);
    for i in 0..SEARCHES {
        let term = format!("person {}", (i * 7919) % 977);
        let started = Instant::now();
        let body = json!({ "search_term": term, "limit": 10 });
        let (status, found): (StatusCode, Value) =
            puller.post(&format!("{V3}/user_directory/search"), Some(token), body).await;
        assert_eq!(status, StatusCode::OK, "{found}");
        times.push(started.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "federated_directory: {SEARCHES} searches of a {users}-user peer's names, one healthy and one silent peer: \
         p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms (the silent peer is skipped once found unreachable; before that a search waits at most the 2 s timeout)",
        ms(times[SEARCHES / 2]),
        ms(times[SEARCHES * 99 / 100]),
        ms(times[SEARCHES - 1])
    );
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}
