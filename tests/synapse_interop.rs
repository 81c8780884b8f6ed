//! Interop with a real Synapse on loopback. So far: profile queries both ways, each
//! request X-Matrix signed and checked against keys fetched from the other server.

mod common;

use common::synapse::Synapse;
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_queries_both_ways_with_synapse() {
    println!("interop against matrix-synapse {}", Synapse::version());
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(Db::Sqlite).await;
    let (syn_user, syn_token) = synapse.register("synuser", "pw").await;
    let (kith_user, kith_token) = kith.register("kithuser", "pw").await;
    let path = format!("/_matrix/client/v3/profile/{syn_user}/displayname");
    let (status, _) =
        synapse.request(Method::PUT, &path, Some(&syn_token), Some(json!({ "displayname": "Synapse User" }))).await;
    assert_eq!(status, StatusCode::OK);
    kith.put(
        &format!("/_matrix/client/v3/profile/{kith_user}/displayname"),
        Some(&kith_token),
        json!({ "displayname": "Kith User" }),
    )
    .await;

    let (status, profile) = kith.get(&format!("/_matrix/client/v3/profile/{syn_user}"), Some(&kith_token)).await;
    assert_eq!(status, StatusCode::OK, "kith -> synapse: {profile}\n{}", synapse.log());
    assert_eq!(profile["displayname"], "Synapse User");

    let path = format!("/_matrix/client/v3/profile/{kith_user}");
    let (status, profile) = synapse.request(Method::GET, &path, Some(&syn_token), None).await;
    assert_eq!(status, StatusCode::OK, "synapse -> kith: {profile}\n{}", kith.log());
    assert_eq!(profile["displayname"], "Kith User");

    let path = format!("/_matrix/client/v3/profile/{}/displayname", kith_user.replace("kithuser", "nobody"));
    let (status, _) = synapse.request(Method::GET, &path, Some(&syn_token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

use std::time::Duration;

use common::matrix::{self, Homeserver, V3, eventually};

const PATIENCE: Duration = Duration::from_secs(60);

/// Waits until `server` shows `text` among a room's messages.
async fn wait_for_message(server: &impl Homeserver, token: &str, room: &str, text: &str) {
    let what = format!("{text:?} in {room} on {}", server.name());
    eventually(&what, PATIENCE, || async {
        matrix::message_bodies(server, token, room).await.iter().any(|b| b == text).then_some(())
    })
    .await;
}

/// Waits until both servers show the same room state and returns it.
async fn wait_for_same_state(
    a: &impl Homeserver,
    a_token: &str,
    b: &impl Homeserver,
    b_token: &str,
    room: &str,
) -> std::collections::BTreeMap<(String, String), String> {
    eventually("both servers to agree on the room state", PATIENCE, || async {
        let (left, right) = (matrix::state_ids(a, a_token, room).await, matrix::state_ids(b, b_token, room).await);
        (left == right).then_some(left)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kith_user_joins_a_synapse_room() {
    println!("interop against matrix-synapse {}", Synapse::version());
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(Db::Sqlite).await;
    let (syn_user, syn_token) = synapse.register("alice", "pw").await;
    let (kith_user, kith_token) = kith.register("bob", "pw").await;
    let room = matrix::create_room(
        &synapse,
        &syn_token,
        json!({ "preset": "public_chat", "room_alias_name": "lobby", "name": "Lobby" }),
    )
    .await;
    matrix::send_text(&synapse, &syn_token, &room, "before kith joined").await;

    let alias = format!("#lobby:{}", synapse.server_name);
    let (status, body) = matrix::join(&kith, &kith_token, &alias, &synapse.server_name).await;
    assert_eq!(status, StatusCode::OK, "join: {body}\n{}", kith.log());
    assert_eq!(body["room_id"], room);

    matrix::send_text(&kith, &kith_token, &room, "hello from kith").await;
    wait_for_message(&synapse, &syn_token, &room, "hello from kith").await;
    matrix::send_text(&synapse, &syn_token, &room, "hello from synapse").await;
    wait_for_message(&kith, &kith_token, &room, "hello from synapse").await;

    let state = wait_for_same_state(&kith, &kith_token, &synapse, &syn_token, &room).await;
    let members = matrix::memberships(&kith, &kith_token, &room).await;
    assert_eq!(members.get(&syn_user).map(String::as_str), Some("join"));
    assert_eq!(members.get(&kith_user).map(String::as_str), Some("join"));
    assert!(state.contains_key(&("m.room.name".into(), String::new())));

    // The room reaches kith's /sync too.
    let sync = matrix::ok(&kith, Method::GET, &format!("{V3}/sync"), &kith_token, None).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert!(timeline.to_string().contains("hello from synapse"), "{sync}");
}
