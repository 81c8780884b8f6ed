//! Faster joins, the resident side (MSC3706), on both backends: a server joining with
//! `omit_members=true` gets the state without member events (but the heroes of an
//! unnamed room), `members_omitted`, the servers in the room, and an auth chain that
//! does not repeat the state yet lets every event sent be checked. (Synapse joining kith
//! this way is in `synapse_interop.rs`.)

mod common;

use std::collections::HashSet;

use common::fake_server::{FakeServer, event_id_of};
use common::matrix::{self, Homeserver};
use common::{Db, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A kith room with an owner and `members` more local users.
async fn busy_room(kith: &TestServer, members: usize, create: Value) -> String {
    let (_, owner_t) = kith.register("owner", "pw").await;
    let room = matrix::create_room(kith, &owner_t, create).await;
    for i in 0..members {
        let (_, token) = kith.register(&format!("member{i}"), "pw").await;
        assert_eq!(matrix::join(kith, &token, &room, kith.name()).await.0, StatusCode::OK);
    }
    room
}

fn member_keys(state: &[Value]) -> Vec<String> {
    state
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn partial_state_leaves_members_out(db: Db) {
    let kith = TestServer::start_federating(db).await;
    let room = busy_room(&kith, 8, json!({ "preset": "public_chat" })).await;
    let fake = FakeServer::start().await;
    let joined = fake.join_partially(&kith, &room, "zoe").await;
    let answer = &joined.send_join_response;
    assert_eq!(answer["members_omitted"], true, "{answer}");
    let state = answer["state"].as_array().unwrap();
    let members = member_keys(state);
    assert_eq!(members.len(), 5, "an unnamed room sends five heroes: {members:?}");
    assert!(members.contains(&format!("@owner:{}", kith.name())), "the longest-standing members first: {members:?}");
    assert!(
        state.iter().any(|e| e["type"] == "m.room.create") && state.iter().any(|e| e["type"] == "m.room.power_levels")
    );
    let servers: Vec<&str> = answer["servers_in_room"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(servers.contains(&common::fake_server::name_of(&kith).as_str()), "{servers:?}");

    // The auth chain repeats nothing of the state, and with it every event sent (and the
    // join) has its auth events at hand.
    let rules = &joined.rules;
    let state_ids: HashSet<String> = state.iter().map(|e| event_id_of(e, rules)).collect();
    let chain = answer["auth_chain"].as_array().unwrap();
    let chain_ids: HashSet<String> = chain.iter().map(|e| event_id_of(e, rules)).collect();
    assert!(state_ids.is_disjoint(&chain_ids), "the auth chain repeats state");
    let known: HashSet<&String> = state_ids.iter().chain(&chain_ids).collect();
    for event in state.iter().chain(chain).chain([&answer["event"]]) {
        for auth in event["auth_events"].as_array().unwrap() {
            assert!(known.contains(&auth.as_str().unwrap().to_owned()), "missing auth event {auth}");
        }
    }

    // Without the flag the answer is whole, as before.
    let full = fake.join(&kith, &room, "yann").await;
    assert_eq!(full.send_join_response["members_omitted"], false);
    assert_eq!(member_keys(full.send_join_response["state"].as_array().unwrap()).len(), 10, "owner, 8 members, zoe");
    let path = format!("/_matrix/federation/v2/send_join/{}/x?omit_members=maybe", matrix::encode(&room));
    let (status, body) = fake.request(&kith, reqwest::Method::PUT, &path, Some(&json!({}))).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")));
}

async fn a_named_room_sends_no_heroes(db: Db) {
    let kith = TestServer::start_federating(db).await;
    let room = busy_room(&kith, 3, json!({ "preset": "public_chat", "name": "Named" })).await;
    let fake = FakeServer::start().await;
    let joined = fake.join_partially(&kith, &room, "zoe").await;
    let state = joined.send_join_response["state"].as_array().unwrap();
    assert_eq!(member_keys(state), Vec::<String>::new(), "no member events in a named room");
    // The joiner's server can talk in the room right away.
    let message = fake.message(
        &joined,
        &joined.user_id,
        "hello with partial state",
        std::slice::from_ref(&joined.join_event_id),
        joined.join_depth + 1,
    );
    let (_, message) = fake.sign_event(&joined.rules, message);
    let (status, answer) = fake.send_pdus(&kith, &[message]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, reader_t) = kith.register("reader", "pw").await;
    assert_eq!(matrix::join(&kith, &reader_t, &room, kith.name()).await.0, StatusCode::OK);
    let bodies = matrix::message_bodies(&kith, &reader_t, &room).await;
    assert!(bodies.contains(&"hello with partial state".to_owned()), "{bodies:?} {answer}");
}

both_backends!(partial_state_leaves_members_out, a_named_room_sends_no_heroes);
