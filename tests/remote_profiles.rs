//! Remote users in the directory, shown with their public profile from their own server:
//! kith and kith, and kith with a fake peer whose answers and requests the test controls.
//! (The same against a real Synapse is in `synapse_interop.rs`.)

mod common;

use std::time::Duration;

use common::fake_server::FakeServer;
use common::matrix::{self, Homeserver, V3, encode, eventually};
use common::{Db, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
/// Short delays so the tests do not wait on the production defaults.
const FAST: &str = "remote_profiles:\n  hint_delay: 200ms\n  retry_interval: 1s\n  edu_coalesce_window: 200ms\n";

async fn search(server: &TestServer, token: &str, term: &str) -> Vec<(String, Option<String>)> {
    let body = json!({ "search_term": term, "limit": 50 });
    let (_, found) = server.post(&format!("{V3}/user_directory/search"), Some(token), body).await;
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

async fn wait_for_search(server: &TestServer, token: &str, term: &str, expected: Vec<(String, Option<String>)>) {
    let what = format!("{term:?} to find {expected:?}");
    eventually(&what, WAIT, || async { (search(server, token, term).await == expected).then_some(()) }).await;
}

async fn set_name(server: &TestServer, user: &str, token: &str, name: &str) {
    let path = format!("{V3}/profile/{}/displayname", encode(user));
    assert_eq!(server.put(&path, Some(token), json!({ "displayname": name })).await.0, StatusCode::OK);
}

/// Complement's `TestRoomSpecificUsernameChange`, across two kith servers: Alice (A) has
/// the public name "Alice Cooper" and a public room Bob (B) joined; in a private room with
/// Bob (created by Bob with Alice in `invite`, over federation) she calls herself
/// "Freddy". Eve and Bob on B find "Alice Cooper" and never "Freddy".
async fn room_nicknames_never_reach_the_directory(db: Db) {
    let a = TestServer::start_federating_with(db, FAST).await;
    let b = TestServer::start_federating_with(db, FAST).await;
    let (alice, alice_t) = a.register("alice", "pw").await;
    let (_, bob_t) = b.register("bob", "pw").await;
    let (_, eve_t) = b.register("eve", "pw").await;
    set_name(&a, &alice, &alice_t, "Alice Cooper").await;
    let public = matrix::create_room(&a, &alice_t, json!({ "preset": "public_chat" })).await;
    assert_eq!(matrix::join(&b, &bob_t, &public, a.name()).await.0, StatusCode::OK);

    let private =
        matrix::create_room(&b, &bob_t, json!({ "preset": "private_chat", "invite": [alice], "is_direct": true }))
            .await;
    let invite = eventually("alice's invite on A", WAIT, || async {
        let (_, sync) = a.get(&format!("{V3}/sync"), Some(&alice_t)).await;
        sync["rooms"]["invite"].get(&private).cloned()
    })
    .await;
    let is_direct =
        invite["invite_state"]["events"].as_array().unwrap().iter().any(|e| e["content"]["is_direct"] == true);
    assert!(is_direct, "the invite carries is_direct: {invite}");
    assert_eq!(matrix::join(&a, &alice_t, &private, b.name()).await.0, StatusCode::OK);
    let member = format!("{V3}/rooms/{}/state/m.room.member/{}", encode(&private), encode(&alice));
    let nickname = json!({ "membership": "join", "displayname": "Freddy" });
    assert_eq!(a.put(&member, Some(&alice_t), nickname).await.0, StatusCode::OK);
    eventually("the nickname on B", WAIT, || async {
        let (_, event) = b.get(&member, Some(&bob_t)).await;
        (event["displayname"] == "Freddy").then_some(())
    })
    .await;

    let cooper = vec![(alice.clone(), Some("Alice Cooper".to_owned()))];
    for token in [&eve_t, &bob_t] {
        wait_for_search(&b, token, "alice cooper", cooper.clone()).await;
        assert_eq!(search(&b, token, &alice).await, cooper, "by user id");
        assert!(search(&b, token, "freddy").await.is_empty(), "the nickname never shows");
    }
}

/// A remote user seen only in a private room is shown by their public name once their
/// server answered; a rename reaches the other server's directory by EDU, without a
/// profile request.
async fn private_room_users_get_their_public_name_and_renames_travel_by_edu(db: Db) {
    let a = TestServer::start_federating_with(db, FAST).await;
    let b = TestServer::start_federating_with(db, FAST).await;
    let (gina, gina_t) = a.register("gina", "pw").await;
    let (bob, bob_t) = b.register("bob", "pw").await;
    set_name(&a, &gina, &gina_t, "Gina Public").await;
    let private = matrix::create_room(&a, &gina_t, json!({ "preset": "private_chat" })).await;
    matrix::membership_action(&a, &gina_t, &private, "invite", json!({ "user_id": bob })).await;
    eventually("bob's invite", WAIT, || async {
        let (_, sync) = b.get(&format!("{V3}/sync"), Some(&bob_t)).await;
        sync["rooms"]["invite"].get(&private).map(|_| ())
    })
    .await;
    assert_eq!(matrix::join(&b, &bob_t, &private, a.name()).await.0, StatusCode::OK);
    wait_for_search(&b, &bob_t, "gina public", vec![(gina.clone(), Some("Gina Public".to_owned()))]).await;
    // B asks for Gina's whole profile once (whether an EDU or the join told it of her).
    eventually("B's first profile request", WAIT, || async { a.log().contains("profile query").then_some(()) }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let queries_before = a.log().matches("profile query").count();

    set_name(&a, &gina, &gina_t, "Gina Renamed").await;
    wait_for_search(&b, &bob_t, "renamed", vec![(gina.clone(), Some("Gina Renamed".to_owned()))]).await;
    assert!(b.log().contains("profile EDU received"), "B heard of the rename by EDU");
    // The member event of the rename arrives too; the EDU made its fetch unnecessary.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        a.log().matches("profile query").count(),
        queries_before,
        "no profile request for the rename:\n{}",
        a.log()
    );
}

/// A peer whose user renames 50 times in a burst is asked for the profile once; the
/// directory shows what the server says, not the member events.
async fn a_burst_of_renames_is_one_fetch(db: Db) {
    let fake = FakeServer::start().await;
    let kith = TestServer::start_federating_with(db, "remote_profiles:\n  hint_delay: 1s\n").await;
    let (_, token) = kith.register("kim", "pw").await;
    let room = matrix::create_room(&kith, &token, json!({ "preset": "public_chat" })).await;
    let mallory = fake.user_id("mallory");
    fake.set_profile(&mallory, json!({ "displayname": "Mallory Public" }));
    let joined = fake.join(&kith, &room, "mallory").await;
    wait_for_search(&kith, &token, "mallory public", vec![(mallory.clone(), Some("Mallory Public".to_owned()))]).await;
    assert_eq!(fake.profile_queries(&mallory), 1);

    let mut prev = vec![joined.join_event_id.clone()];
    let mut pdus = Vec::new();
    for i in 0..50 {
        let content = json!({ "membership": "join", "displayname": format!("Nick {i}") });
        let depth = joined.join_depth + 1 + i;
        let mut event = fake.pdu(&joined, &mallory, "m.room.member", Some(&mallory), content, &prev, depth);
        // A join (a rename is one) is authorised by the join rules too.
        let join_rules = joined.state_id("m.room.join_rules", "").expect("join rules").to_owned();
        event["auth_events"].as_array_mut().expect("auth events").push(json!(join_rules));
        let (id, signed) = fake.sign_event(&joined.rules, event);
        prev = vec![id];
        pdus.push(signed);
    }
    for batch in pdus.chunks(50) {
        let (status, answer) = fake.send_pdus(&kith, batch).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let fetched = matrix::try_eventually(WAIT, || async { (fake.profile_queries(&mallory) >= 2).then_some(()) }).await;
    assert!(fetched.is_some(), "no profile request after the renames:\n{}", kith.log());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.profile_queries(&mallory), 2, "50 renames, one fetch");
    assert_eq!(search(&kith, &token, "mallory").await, vec![(mallory.clone(), Some("Mallory Public".to_owned()))]);
    assert!(search(&kith, &token, "nick").await.is_empty(), "member-event names never show once the server answered");
}

/// Profile EDUs: for a tracked user of the sending server they apply at once; for a user
/// of another server, or with hostile fields, they change nothing.
async fn profile_edus_are_checked(db: Db) {
    let fake = FakeServer::start().await;
    let kith = TestServer::start_federating_with(db, FAST).await;
    let (_, token) = kith.register("kim", "pw").await;
    let room = matrix::create_room(&kith, &token, json!({ "preset": "public_chat" })).await;
    let mallory = fake.user_id("mallory");
    fake.set_profile(&mallory, json!({ "displayname": "Mallory Public" }));
    fake.join(&kith, &room, "mallory").await;
    let public = vec![(mallory.clone(), Some("Mallory Public".to_owned()))];
    wait_for_search(&kith, &token, "mallory", public.clone()).await;

    let edu = |user: &str, fields: Value| json!({ "edu_type": "uk.tcpip.msc4259.profile", "content": { "user_id": user, "fields": fields } });
    let hostile = [
        edu("@mallory:elsewhere.example", json!({ "displayname": "Spoofed" })),
        edu(&mallory, json!([1, 2])),
        edu(&mallory, json!({ "displayname": 5 })),
        edu(&mallory, json!({ "displayname": "x".repeat(70_000) })),
        edu(&mallory, json!({ "displayname": "nul\u{0}" })),
        json!({ "edu_type": "m.profile", "content": "not an object" }),
    ];
    let (status, answer) = fake.send_edus(&kith, &hostile).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(search(&kith, &token, "mallory").await, public, "hostile EDUs changed nothing");

    let (status, _) = fake.send_edus(&kith, &[edu(&mallory, json!({ "displayname": "Mallory Pushed" }))]).await;
    assert_eq!(status, StatusCode::OK);
    wait_for_search(&kith, &token, "pushed", vec![(mallory.clone(), Some("Mallory Pushed".to_owned()))]).await;
    let stable =
        json!({ "edu_type": "m.profile", "content": { "user_id": mallory, "fields": { "displayname": null } } });
    fake.send_edus(&kith, &[stable]).await;
    wait_for_search(&kith, &token, "mallory", vec![(mallory.clone(), None)]).await;
}

/// A dead server: its users' fetches back off, and the queue survives a restart.
async fn fetches_from_a_dead_server_back_off_and_survive_a_restart(db: Db) {
    let fake = FakeServer::start().await;
    let mut kith = TestServer::start_federating_with(db, "remote_profiles:\n  hint_delay: 1s\n").await;
    let (_, token) = kith.register("kim", "pw").await;
    let room = matrix::create_room(&kith, &token, json!({ "preset": "private_chat", "invite": [] })).await;
    let public = format!("{V3}/rooms/{}/state/m.room.join_rules/", encode(&room));
    kith.put(&public, Some(&token), json!({ "join_rule": "public" })).await;
    let mallory = fake.user_id("mallory");
    fake.join(&kith, &room, "mallory").await;
    let fake_name = fake.name.clone();
    drop(fake);
    let config = kith::config::Config::load(&kith.config_path).unwrap();
    let store = kith::store::Store::connect(&config.database_target().unwrap()).await.unwrap();
    let failed = eventually("a failed fetch", WAIT, || async {
        let queued = store.due_profile_fetches(i64::MAX, 10).await.unwrap();
        queued.into_iter().find(|q| q.user_id == mallory && q.attempts >= 1)
    })
    .await;
    assert_eq!(failed.server_name, fake_name);
    kith.restart().await;
    let queued = store.due_profile_fetches(i64::MAX, 10).await.unwrap();
    let after = queued.into_iter().find(|q| q.user_id == mallory).expect("still queued after a restart");
    assert!(after.attempts >= failed.attempts, "the attempts were kept: {after:?}");
    store.close().await;
}

both_backends!(
    room_nicknames_never_reach_the_directory,
    private_room_users_get_their_public_name_and_renames_travel_by_edu,
    a_burst_of_renames_is_one_fetch,
    profile_edus_are_checked,
    fetches_from_a_dead_server_back_off_and_survive_a_restart,
);
