//! The federated user directory between kith servers on loopback (and with a fake peer
//! that speaks BWI's format, or lies): users of a peer are found with no shared room,
//! changes and removals arrive, only peers are served, and a dead or hostile peer costs
//! nothing but itself.

mod common;

use std::time::Duration;

use common::fake_server::FakeServer;
use common::matrix::{self, Homeserver, V3, encode};
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const CHANGES: &str = "/_matrix/federation/unstable/io.kith.user_directory/changes";
const BWI: &str = "/_matrix/federation/unstable/de.bwi.federated_user_dir/user_directory/search";
const MSC4258: &str = "/_matrix/federation/unstable/org.matrix.msc4258/user_directory/search";

fn peers(names: &[&str], sync_interval: &str) -> String {
    let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!(
        "federated_user_directory:\n  enabled: true\n  peers: [{}]\n  sync_interval: {sync_interval}\n  live_search: true\n  live_search_timeout: 2s\n",
        list.join(", ")
    )
}

async fn search(server: &TestServer, token: &str, term: &str) -> Vec<(String, Option<String>)> {
    let body = json!({ "search_term": term, "limit": 20 });
    let (status, found) = server.post(&format!("{V3}/user_directory/search"), Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    found["results"]
        .as_array()
        .map(|results| {
            let row = |r: &Value| {
                (r["user_id"].as_str().unwrap_or_default().to_owned(), r["display_name"].as_str().map(str::to_owned))
            };
            results.iter().map(row).collect()
        })
        .unwrap_or_default()
}

async fn wait_for(server: &TestServer, token: &str, term: &str, expected: Vec<(String, Option<String>)>) {
    let found =
        matrix::try_eventually(WAIT, || async { (search(server, token, term).await == expected).then_some(()) });
    if found.await.is_none() {
        let last = search(server, token, term).await;
        panic!("{term:?} found {last:?}, not {expected:?}, on {}:\n{}", server.name(), server.log());
    }
}

async fn set_name(server: &TestServer, user: &str, token: &str, name: &str) {
    let path = format!("{V3}/profile/{}/displayname", encode(user));
    assert_eq!(server.put(&path, Some(token), json!({ "displayname": name })).await.0, StatusCode::OK);
}

/// Two kith servers trusting each other, each knowing the other's name.
async fn two_peers(db: Db, sync_interval: &str) -> (TestServer, TestServer) {
    let mut a = TestServer::start_federating(db).await;
    let b = TestServer::start_federating_with(db, &peers(&[a.name()], sync_interval)).await;
    a.reconfigure(&peers(&[b.name()], sync_interval)).await;
    (a, b)
}

/// A peer's users are found with no shared room; a rename, a deactivation and an
/// opt-out reach the other server; a hidden user leaves the local search too.
async fn peers_find_each_other_and_follow_changes(db: Db) {
    let (a, b) = two_peers(db, "1s").await;
    let (alice, alice_t) = a.register("alice", "pw").await;
    let (carol, carol_t) = a.register("carol", "pw").await;
    let (_, dora_t) = a.register("dora", "pw").await;
    let (_, bob_t) = b.register("bob", "pw").await;
    // Dora finds Carol on A through a public room they share.
    let room = matrix::create_room(&a, &dora_t, json!({ "preset": "public_chat" })).await;
    assert_eq!(matrix::join(&a, &carol_t, &room, a.name()).await.0, StatusCode::OK);
    set_name(&a, &alice, &alice_t, "Alice Anders").await;
    set_name(&a, &carol, &carol_t, "Carol Candle").await;

    wait_for(&b, &bob_t, "anders", vec![(alice.clone(), Some("Alice Anders".into()))]).await;
    wait_for(&b, &bob_t, &alice, vec![(alice.clone(), Some("Alice Anders".into()))]).await;
    wait_for(&b, &bob_t, "candle", vec![(carol.clone(), Some("Carol Candle".into()))]).await;

    set_name(&a, &alice, &alice_t, "Alice Renamed").await;
    wait_for(&b, &bob_t, "renamed", vec![(alice.clone(), Some("Alice Renamed".into()))]).await;

    // Carol keeps to her own server: gone from B, still found on A.
    let visibility = format!("{V3}/user/{}/account_data/org.matrix.msc4258.user_directory", encode(&carol));
    assert_eq!(a.put(&visibility, Some(&carol_t), json!({ "visibility": "local" })).await.0, StatusCode::OK);
    wait_for(&b, &bob_t, "candle", vec![]).await;
    assert_eq!(search(&a, &dora_t, "candle").await, vec![(carol.clone(), Some("Carol Candle".into()))]);
    // Hidden: found nowhere.
    assert_eq!(a.put(&visibility, Some(&carol_t), json!({ "visibility": "hidden" })).await.0, StatusCode::OK);
    wait_for(&a, &dora_t, "candle", vec![]).await;

    let auth = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw" } });
    assert_eq!(a.post(&format!("{V3}/account/deactivate"), Some(&alice_t), auth).await.0, StatusCode::OK);
    wait_for(&b, &bob_t, "renamed", vec![]).await;
}

/// Only peers are served; the wire formats (kith's changes, BWI's list, MSC4258) as a
/// peer sees them.
async fn only_peers_are_served_in_every_format(db: Db) {
    let fake = FakeServer::start().await;
    let stranger = FakeServer::start().await;
    let kith = TestServer::start_federating_with(db, &peers(&[&fake.name], "1h")).await;
    let (alice, alice_t) = kith.register("alice", "pw").await;
    set_name(&kith, &alice, &alice_t, "Alice Anders").await;
    kith.register("support", "pw").await;

    for (method, path) in [(Method::GET, CHANGES.to_owned()), (Method::GET, BWI.to_owned())] {
        let (status, body) = stranger.request(&kith, method, &path, None).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{path}");
    }
    let (status, page) = fake.request(&kith, Method::GET, &format!("{CHANGES}?limit=1"), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["users"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["limited"], true);
    let next = page["next_batch"].as_str().unwrap().to_owned();
    let (_, rest) = fake.request(&kith, Method::GET, &format!("{CHANGES}?since={}", encode(&next)), None).await;
    let mut seen: Vec<String> = [&page, &rest]
        .iter()
        .flat_map(|p| p["users"].as_array().unwrap().iter().map(|u| u["user_id"].as_str().unwrap().to_owned()))
        .collect();
    seen.sort();
    assert!(seen.contains(&alice), "{seen:?}");
    let token = rest["next_batch"].as_str().unwrap().to_owned();
    let (_, nothing) = fake.request(&kith, Method::GET, &format!("{CHANGES}?since={}", encode(&token)), None).await;
    assert_eq!((nothing["users"].as_array().unwrap().len(), nothing["limited"].as_bool()), (0, Some(false)));
    let garbage = fake.request(&kith, Method::GET, &format!("{CHANGES}?since=s99999999"), None).await;
    assert_eq!(garbage.0, StatusCode::BAD_REQUEST);

    let (status, list) = fake.request(&kith, Method::GET, BWI, None).await;
    assert_eq!(status, StatusCode::OK);
    let entry = list["results"].as_array().unwrap().iter().find(|u| u["user_id"] == alice).cloned().unwrap();
    assert_eq!(entry, json!({ "user_id": alice, "display_name": "Alice Anders" }), "absent fields are left out");

    let requester = fake.user_id("searcher");
    let live = json!({ "requester": requester, "search_term": "anders", "limit": 5 });
    let (status, found) = fake.request(&kith, Method::POST, MSC4258, Some(&live)).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["results"][0]["user_id"], alice);
    let short = json!({ "requester": requester, "search_term": "and" });
    let (_, none) = fake.request(&kith, Method::POST, MSC4258, Some(&short)).await;
    assert_eq!(none, json!({ "limited": false, "results": [] }), "terms under 4 characters find nothing");
    let spoofed = json!({ "requester": "@x:elsewhere.example", "search_term": "anders" });
    assert_eq!(fake.request(&kith, Method::POST, MSC4258, Some(&spoofed)).await.0, StatusCode::FORBIDDEN);
}

/// A peer speaking only BWI's format is pulled through its list, removals included; a
/// hostile page (users of other servers, malformed entries) changes nothing.
async fn bwi_peers_and_hostile_pages(db: Db) {
    let fake = FakeServer::start().await;
    let kith = TestServer::start_federating_with(db, &peers(&[&fake.name], "1s")).await;
    let (_, token) = kith.register("kim", "pw").await;
    let (ana, ben) = (fake.user_id("ana"), fake.user_id("ben"));
    let list = |users: Value| json!({ "results": users });
    fake.answer(
        BWI,
        StatusCode::OK,
        list(json!([{ "user_id": ana, "display_name": "Ana Bwi" }, { "user_id": ben }])),
        Duration::ZERO,
    );
    wait_for(&kith, &token, "bwi", vec![(ana.clone(), Some("Ana Bwi".into()))]).await;
    wait_for(&kith, &token, &ben, vec![(ben.clone(), None)]).await;

    // Ben leaves the list: removed. A spoofed user of another server is dropped.
    let spoof = json!({ "user_id": "@spoof:elsewhere.example", "display_name": "Spoofed Bwi" });
    fake.answer(
        BWI,
        StatusCode::OK,
        list(json!([{ "user_id": ana, "display_name": "Ana Bwi" }, spoof])),
        Duration::ZERO,
    );
    wait_for(&kith, &token, &ben, vec![]).await;
    assert!(search(&kith, &token, "spoofed").await.is_empty());

    // Malformed answers change nothing.
    for bad in [json!({ "results": "nope" }), list(json!([{ "user_id": ana, "display_name": 5 }])), json!([1])] {
        fake.answer(BWI, StatusCode::OK, bad, Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(search(&kith, &token, "bwi").await, vec![(ana.clone(), Some("Ana Bwi".into()))]);
    }
    // Kith's own endpoint, when the peer has it, wins; hostile pages change nothing:
    // users of another server, a page far larger than asked for.
    let page = json!({ "users": [{ "user_id": "@x:elsewhere.example", "displayname": "Kith Spoof" }], "next_batch": "s1", "limited": false });
    fake.answer(CHANGES, StatusCode::OK, page, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(search(&kith, &token, "spoof").await.is_empty());
    let many: Vec<Value> =
        (0..3000).map(|i| json!({ "user_id": fake.user_id(&format!("flood{i}")), "displayname": "Flood" })).collect();
    fake.answer(
        CHANGES,
        StatusCode::OK,
        json!({ "users": many, "next_batch": "s2", "limited": false }),
        Duration::ZERO,
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(search(&kith, &token, "flood").await.is_empty(), "an oversized page is refused whole");
    assert_eq!(search(&kith, &token, "bwi").await, vec![(ana.clone(), Some("Ana Bwi".into()))]);
}

/// Removing a peer from the config purges its users at the next start; a peer that
/// restarts resumes from its token.
async fn removed_peers_are_purged_and_restarts_resume(db: Db) {
    let (a, mut b) = two_peers(db, "1s").await;
    let (alice, alice_t) = a.register("alice", "pw").await;
    let (_, bob_t) = b.register("bob", "pw").await;
    set_name(&a, &alice, &alice_t, "Alice Anders").await;
    wait_for(&b, &bob_t, "anders", vec![(alice.clone(), Some("Alice Anders".into()))]).await;
    // (Live search finds Alice at once; wait until B has pulled and kept a token.)
    let pulled = matrix::try_eventually(WAIT, || async { b.log().contains("resumed=true").then_some(()) }).await;
    assert!(pulled.is_some(), "B never pulled from A:\n{}", b.log());

    b.restart().await;
    let (erin, _) = a.register("erin", "pw").await;
    wait_for(&b, &bob_t, &erin, vec![(erin.clone(), Some("erin".into()))]).await;
    let log = b.log();
    let since_restart = &log[log.rfind("user directory built").unwrap_or(0)..];
    assert!(since_restart.contains("resumed=true"), "B resumed from its token:\n{since_restart}");
    assert!(!since_restart.contains("resumed=false"), "B started over:\n{since_restart}");

    b.reconfigure("federated_user_directory:\n  enabled: true\n  peers: []\n").await;
    wait_for(&b, &bob_t, "anders", vec![]).await;
}

/// A slow peer never holds a search past the timeout; live search finds a peer's user
/// before any pull (MSC4258 both ways).
async fn live_search_is_bounded_by_the_timeout(db: Db) {
    let slow = FakeServer::start().await;
    let mut a = TestServer::start_federating(db).await;
    let b = TestServer::start_federating_with(db, &peers(&[a.name(), &slow.name], "1h")).await;
    a.reconfigure(&peers(&[b.name()], "1h")).await;
    slow.answer(MSC4258, StatusCode::OK, json!({ "limited": false, "results": [] }), Duration::from_secs(60));
    slow.answer(
        CHANGES,
        StatusCode::OK,
        json!({ "users": [], "next_batch": "s0", "limited": false }),
        Duration::from_secs(60),
    );
    let (alice, alice_t) = a.register("alice", "pw").await;
    set_name(&a, &alice, &alice_t, "Alice Lively").await;
    let (_, bob_t) = b.register("bob", "pw").await;
    // The client gives up after 30 s; B must answer well within that, having waited 2 s
    // for the slow peer at most.
    let found = search(&b, &bob_t, "lively").await;
    assert_eq!(found, vec![(alice.clone(), Some("Alice Lively".into()))], "found live on A");
    // The slow peer is skipped now (backing off): searching again is local and quick.
    assert_eq!(search(&b, &bob_t, "lively").await, found);
}

/// Three servers, each trusting the other two: everyone finds the users of the others.
async fn three_servers(db: Db) {
    let mut a = TestServer::start_federating(db).await;
    let mut b = TestServer::start_federating(db).await;
    let c = TestServer::start_federating_with(db, &peers(&[a.name(), b.name()], "1s")).await;
    a.reconfigure(&peers(&[b.name(), c.name()], "1s")).await;
    b.reconfigure(&peers(&[a.name(), c.name()], "1s")).await;
    let mut found = Vec::new();
    for (server, name) in [(&a, "Ann Alpha"), (&b, "Bea Beta"), (&c, "Cid Gamma")] {
        let (user, token) = server.register(&name.split(' ').next().unwrap().to_lowercase(), "pw").await;
        set_name(server, &user, &token, name).await;
        found.push((user, token));
    }
    for (server, (me, token)) in [(&a, &found[0]), (&b, &found[1]), (&c, &found[2])] {
        let people = [(&found[0].0, "Ann Alpha"), (&found[1].0, "Bea Beta"), (&found[2].0, "Cid Gamma")];
        // Everyone on the other two servers (one's own server lists by shared rooms).
        for (other, name) in people.into_iter().filter(|(other, _)| *other != me) {
            let term = name.split(' ').nth(1).unwrap().to_lowercase();
            wait_for(server, token, &term, vec![(other.clone(), Some(name.to_owned()))]).await;
        }
    }
}

/// Peers without live search: what is found was pulled into the directory.
fn pulled_peers(names: &[&str]) -> String {
    peers(names, "1h").replace("live_search: true", "live_search: false")
}

/// Waits until `server`'s admin API lists `destination` in backoff.
async fn wait_until_backing_off(server: &TestServer, admin: &str, destination: &str) {
    let list = "/_synapse/admin/v1/federation/destinations";
    let backing_off = matrix::try_eventually(WAIT, || async {
        let (_, listed) = server.get(list, Some(admin)).await;
        let destinations = listed["destinations"].as_array().cloned().unwrap_or_default();
        destinations.iter().any(|d| d["destination"] == destination && d["retry_interval"] != 0).then_some(())
    });
    assert!(backing_off.await.is_some(), "{} never backed off from {destination}:\n{}", server.name(), server.log());
}

/// Two peers restarted in the worst order (A up while B is down, then B up while A is
/// down, then both up) find each other's users soon after: a configured peer is probed
/// every few seconds while it is down, and the answer to one probe ends the backoff on
/// both sides. The directory is pulled only hourly here, so the pull that finds the
/// users is the one the recovery starts; what B's sender kept for A goes at once too.
async fn peers_restarted_in_the_worst_order_find_each_other(db: Db) {
    let mut a = TestServer::start_federating(db).await;
    let mut b = TestServer::start_federating_with(db, &pulled_peers(&[a.name()])).await;
    let (_, b_admin) = b.register_as("badmin", "pw", true).await;
    let (bob, bob_t) = b.register("bob", "pw").await;
    set_name(&b, &bob, &bob_t, "Bob Builder").await;
    b.terminate();

    a.reconfigure(&pulled_peers(&[b.name()])).await;
    let (_, a_admin) = a.register_as("aadmin", "pw", true).await;
    let (alice, alice_t) = a.register("alice", "pw").await;
    set_name(&a, &alice, &alice_t, "Alice Anders").await;
    wait_until_backing_off(&a, &a_admin, b.name()).await;
    a.terminate();

    b.start_again().await;
    let note = json!({ "messages": { alice.clone(): { "*": { "note": "sent while A was down" } } } });
    assert_eq!(b.put(&format!("{V3}/sendToDevice/m.test/t1"), Some(&bob_t), note).await.0, StatusCode::OK);
    wait_until_backing_off(&b, &b_admin, a.name()).await;
    a.start_again().await;

    wait_for(&a, &alice_t, "builder", vec![(bob.clone(), Some("Bob Builder".into()))]).await;
    wait_for(&b, &bob_t, "anders", vec![(alice.clone(), Some("Alice Anders".into()))]).await;
    let delivered = matrix::try_eventually(WAIT, || async {
        let (_, synced) = a.get(&format!("{V3}/sync?timeout=0"), Some(&alice_t)).await;
        (synced["to_device"]["events"][0]["content"]["note"] == "sent while A was down").then_some(())
    });
    assert!(delivered.await.is_some(), "B's sender never sent what it kept for A:\n{}", b.log());
}

both_backends!(
    peers_restarted_in_the_worst_order_find_each_other,
    three_servers,
    peers_find_each_other_and_follow_changes,
    only_peers_are_served_in_every_format,
    bwi_peers_and_hostile_pages,
    removed_peers_are_purged_and_restarts_resume,
    live_search_is_bounded_by_the_timeout,
);
