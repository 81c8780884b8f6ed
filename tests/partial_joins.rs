//! Faster joins (MSC3706/MSC3902), on both backends. The resident side: a server
//! joining with `omit_members=true` gets the state without member events (but the heroes
//! of an unnamed room), `members_omitted`, the servers in the room, and an auth chain
//! that does not repeat the state yet lets every event sent be checked. The joining
//! side, kith joining kith: `/join` returns at once, the resync completes in the
//! background (after restarts of either server), and what must wait or be refused while
//! the state is partial is. (Synapse in either role is in `synapse_interop.rs`.)

mod common;

use std::collections::HashSet;

use common::fake_resident::FakeRoom;
use common::fake_server::{FakeServer, event_id_of};
use common::matrix::{self, Homeserver, V3};
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
    let omitted = full.send_join_response.get("members_omitted").and_then(Value::as_bool);
    assert!(!omitted.unwrap_or(false), "a whole state: absent or false");
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

const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

async fn joined_count(server: &TestServer, token: &str, room: &str) -> usize {
    let path = format!("{V3}/rooms/{}/joined_members", matrix::encode(room));
    let (_, joined) = server.get(&path, Some(token)).await;
    joined["joined"].as_object().map_or(0, |members| members.len())
}

async fn found_in_directory(server: &TestServer, token: &str, user: &str) -> bool {
    let body = json!({ "search_term": user.trim_start_matches('@').split(':').next().unwrap_or(user), "limit": 10 });
    let (_, found) = server.post(&format!("{V3}/user_directory/search"), Some(token), body).await;
    found["results"].as_array().is_some_and(|r| r.iter().any(|hit| hit["user_id"] == user))
}

/// B joins A's room of 13 members with a partial state and, once resynced (from one
/// `/state` answer, without `/state_ids` first), lists them all and finds them in its
/// directory.
async fn kith_joins_kith_and_resyncs(db: Db) {
    let a = TestServer::start_federating(db).await;
    let b = TestServer::start_federating(db).await;
    let room = busy_room(&a, 12, json!({ "preset": "public_chat" })).await;
    let (_, bob_t) = b.register("bob", "pw").await;
    assert_eq!(matrix::join(&b, &bob_t, &room, a.name()).await.0, StatusCode::OK);
    assert!(b.log().contains("joined with a partial state"), "{}", b.log());
    matrix::eventually("the resync", WAIT, || async {
        b.log().contains("partial-state resync complete").then_some(())
    })
    .await;
    assert_eq!(joined_count(&b, &bob_t, &room).await, 14, "owner, 12 members and bob");
    let asked =
        |endpoint: &str| a.log().lines().any(|l| l.contains(&format!("path=/_matrix/federation/v1/{endpoint}/")));
    assert!(asked("state"), "the state asked once: {}", a.log());
    assert!(!asked("state_ids"), "not asked twice: {}", a.log());
    let member = format!("@member11:{}", a.name());
    matrix::eventually("the directory to find a member", WAIT, || async {
        found_in_directory(&b, &bob_t, &member).await.then_some(())
    })
    .await;
}

/// Kith joins a room of a scripted resident that serves the full state only when told.
/// While the state is partial: other servers cannot join or read state through kith,
/// eager syncs leave the room out and lazy ones show it, local users talk, set aliases
/// and names, and a second local user joins at once; a message from a member who had in
/// fact left is accepted, and nobody of the room is in the directory yet. A restart
/// keeps the room partial. Once the resident answers, the retry completes the resync: a
/// waiting long-poll sync and `/joined_members` get the whole room, the message is
/// rejected after all, and the members' public profiles reach the directory.
async fn what_waits_while_the_state_is_partial(db: Db) {
    let mut kith = TestServer::start_federating(db).await;
    let fake = FakeServer::start().await;
    let mut room = FakeRoom::create(&fake, "alice");
    for i in 0..4 {
        let member = fake.user_id(&format!("member{i}"));
        fake.set_profile(&member, json!({ "displayname": format!("Public Member{i}") }));
        room.add_state(
            &fake,
            &member,
            "m.room.member",
            &member,
            json!({ "membership": "join", "displayname": format!("Nick{i}") }),
        );
    }
    let leaver = fake.user_id("leaver");
    let leaver_join = room.add_state(&fake, &leaver, "m.room.member", &leaver, json!({ "membership": "join" }));
    room.add_state(&fake, &leaver, "m.room.member", &leaver, json!({ "membership": "leave" }));
    let (bob, bob_t) = kith.register("bob", "pw").await;
    let (carol, carol_t) = kith.register("carol", "pw").await;
    room.serve_partial_join(&fake, &bob);
    room.serve_events(&fake);
    room.refuse_state_ids(&fake);
    let (_, before) = kith.get(&format!("{V3}/sync"), Some(&bob_t)).await;
    let since = before["next_batch"].as_str().unwrap().to_owned();
    let room_id = room.room_id.clone();
    assert_eq!(matrix::join(&kith, &bob_t, &room_id, &fake.name).await.0, StatusCode::OK, "{}", kith.log());
    assert!(kith.log().contains("joined with a partial state"), "{}", kith.log());

    refusals_while_partial(&kith, &fake, &room_id).await;
    for path in [format!("{V3}/sync?since={since}"), format!("{V3}/sync")] {
        let (_, eager) = kith.get(&path, Some(&bob_t)).await;
        assert!(eager["rooms"]["join"][&room_id].is_null(), "eager sync leaves the room out: {eager}");
    }
    let lazy = json!({ "room": { "state": { "lazy_load_members": true } } }).to_string();
    let (_, lazily) = kith.get(&format!("{V3}/sync?filter={}", matrix::encode(&lazy)), Some(&bob_t)).await;
    assert!(lazily["rooms"]["join"][&room_id].is_object(), "lazy sync shows it: {lazily}");

    let bobs_message = matrix::send_text(&kith, &bob_t, &room_id, "talking while partial").await;
    matrix::eventually("bob's message sent to the resident", WAIT, || async {
        fake.received().iter().any(|line| line.starts_with("PUT /_matrix/federation/v1/send/")).then_some(())
    })
    .await;
    assert_eq!(
        matrix::join(&kith, &carol_t, &room_id, &fake.name).await.0,
        StatusCode::OK,
        "a second local user joins at once"
    );
    let name = format!("{V3}/profile/{}/displayname", matrix::encode(&carol));
    assert_eq!(kith.put(&name, Some(&carol_t), json!({ "displayname": "Carol K" })).await.0, StatusCode::OK);
    let alias = format!("{V3}/directory/room/{}", matrix::encode(&format!("#partial:{}", kith.name())));
    assert_eq!(kith.put(&alias, Some(&bob_t), json!({ "room_id": room_id })).await.0, StatusCode::OK);
    assert_eq!(kith.get(&alias, Some(&bob_t)).await.1["room_id"], room_id.as_str());
    assert_eq!(kith.request(reqwest::Method::DELETE, &alias, Some(&bob_t), None).await.0, StatusCode::OK);

    // The leaver's message names its old join: the partial state cannot tell.
    let bob_join = event_id_in_timeline(&kith, &bob_t, &room_id, &bob).await;
    let content = json!({ "msgtype": "m.text", "body": "sent after leaving" });
    let message = json!({
        "room_id": room_id, "sender": leaver, "origin": fake.name, "origin_server_ts": common::fake_server::now_ms(),
        "type": "m.room.message", "content": content, "prev_events": [bob_join], "depth": room.depth + 2,
        "auth_events": [room.state[&("m.room.create".to_owned(), String::new())], room.state[&("m.room.power_levels".to_owned(), String::new())], leaver_join],
    });
    let (message_id, message) = fake.sign_event(&room.rules, message);
    room.serve_event_auth(&fake, &message_id, &message);
    let (status, answer) = fake.send_pdus(&kith, &[message]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        answer["pdus"][&message_id].get("error").is_none(),
        "accepted while partial: {answer} {:?}\n{}",
        fake.received(),
        kith.log()
    );
    assert!(matrix::message_bodies(&kith, &bob_t, &room_id).await.contains(&"sent after leaving".to_owned()));
    assert!(!found_in_directory(&kith, &bob_t, &fake.user_id("member0")).await, "nobody of the room is known yet");
    ephemeral_while_partial(&kith, &fake, &bob_t, &room_id, &bobs_message, &leaver).await;

    kith.restart().await;
    let (_, eager) = kith.get(&format!("{V3}/sync?since={since}"), Some(&bob_t)).await;
    assert!(eager["rooms"]["join"][&room_id].is_null(), "still partial after a restart: {eager}");
    // Waiting from here: nothing else happens until the resync completes.
    let latest = eager["next_batch"].as_str().unwrap().to_owned();
    room.serve_state_ids(&fake);
    resync_ends_the_waits(&kith, &bob_t, &room_id, &latest).await;

    let bodies = matrix::message_bodies(&kith, &bob_t, &room_id).await;
    assert!(bodies.contains(&"talking while partial".to_owned()), "{bodies:?}");
    assert!(!bodies.contains(&"sent after leaving".to_owned()), "rejected once the state is known: {bodies:?}");
    assert!(kith.log().contains("resync corrected an event's verdict"), "{}", kith.log());
    matrix::eventually("a member's public profile in the directory", WAIT, || async {
        let body = json!({ "search_term": "Public Member0", "limit": 10 });
        let (_, found) = kith.post(&format!("{V3}/user_directory/search"), Some(&bob_t), body).await;
        let hit = found["results"]
            .as_array()
            .and_then(|r| r.iter().find(|hit| hit["user_id"] == fake.user_id("member0")).cloned());
        hit.map(|hit| assert_eq!(hit["display_name"], "Public Member0", "never the room nickname"))
    })
    .await;
    assert!(!found_in_directory(&kith, &bob_t, &leaver).await, "the leaver shares no room with bob");
}

/// Typing and a read receipt from a member the partial state does not name yet reach a
/// lazy-loading sync, which also names the member of the timeline from its auth events.
async fn ephemeral_while_partial(
    kith: &TestServer,
    fake: &FakeServer,
    token: &str,
    room_id: &str,
    read: &str,
    sender: &str,
) {
    let member = fake.user_id("member0");
    let typing =
        json!({ "edu_type": "m.typing", "content": { "room_id": room_id, "user_id": member, "typing": true } });
    let receipt = json!({ "edu_type": "m.receipt", "content": { room_id: { "m.read": { member.clone(): {
        "event_ids": [read], "data": { "ts": common::fake_server::now_ms() } } } } } });
    assert_eq!(fake.send_edus(kith, &[typing, receipt]).await.0, StatusCode::OK);
    let lazy = json!({ "room": { "state": { "lazy_load_members": true } } }).to_string();
    let path = format!("{V3}/sync?filter={}", matrix::encode(&lazy));
    let room = matrix::eventually("typing and the receipt in a lazy sync", WAIT, || async {
        let (_, synced) = kith.get(&path, Some(token)).await;
        let room = synced["rooms"]["join"][room_id].clone();
        let ephemeral = room["ephemeral"]["events"].to_string();
        (ephemeral.contains("m.typing") && ephemeral.contains("m.receipt") && ephemeral.contains(&member))
            .then_some(room)
    })
    .await;
    let state = room["state"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(room["timeline"]["events"].as_array().into_iter().flatten());
    let members: Vec<&str> =
        state.filter(|e| e["type"] == "m.room.member").filter_map(|e| e["state_key"].as_str()).collect();
    assert!(members.contains(&sender), "the timeline sender's membership: {room}");
}

/// Leaving a room whose state is partial does not wait for the resync, which stops.
async fn leaving_during_the_resync(db: Db) {
    let kith = TestServer::start_federating(db).await;
    let fake = FakeServer::start().await;
    let room = FakeRoom::create(&fake, "alice");
    let (bob, bob_t) = kith.register("bob", "pw").await;
    room.serve_partial_join(&fake, &bob);
    room.serve_events(&fake);
    room.refuse_state_ids(&fake);
    assert_eq!(matrix::join(&kith, &bob_t, &room.room_id, &fake.name).await.0, StatusCode::OK);
    let leave = format!("{V3}/rooms/{}/leave", matrix::encode(&room.room_id));
    let (status, body) = kith.post(&leave, Some(&bob_t), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    room.serve_state_ids(&fake);
    matrix::eventually("the resync to stop", WAIT, || async {
        kith.log().contains("left a partial-state room; its resync stops").then_some(())
    })
    .await;
    assert!(!kith.log().contains("partial-state resync complete"), "{}", kith.log());
    let (_, synced) = kith.get(&format!("{V3}/sync"), Some(&bob_t)).await;
    assert!(synced["rooms"]["join"][&room.room_id].is_null(), "{synced}");
}

/// The server joined through cannot give the full state; another server of the room,
/// named in `servers_in_room`, can: the resync completes from it.
async fn resyncing_from_another_server_of_the_room(db: Db) {
    let kith = TestServer::start_federating(db).await;
    let fake = FakeServer::start().await;
    let other = FakeServer::start().await;
    let mut room = FakeRoom::create(&fake, "alice");
    let charlie = other.user_id("charlie");
    room.add_state(&other, &charlie, "m.room.member", &charlie, json!({ "membership": "join" }));
    let (bob, bob_t) = kith.register("bob", "pw").await;
    room.serve_partial_join(&fake, &bob);
    room.serve_events(&fake);
    room.refuse_state_ids(&fake);
    room.serve_events(&other);
    room.serve_state_ids(&other);
    assert_eq!(matrix::join(&kith, &bob_t, &room.room_id, &fake.name).await.0, StatusCode::OK);
    matrix::eventually("the resync through the other server", WAIT, || async {
        kith.log().lines().any(|l| l.contains("partial-state resync complete") && l.contains(&other.name)).then_some(())
    })
    .await;
    assert!(kith.log().contains("could not resync from this server"), "the server joined through was asked first");
    let members = matrix::memberships(&kith, &bob_t, &room.room_id).await;
    assert_eq!(members.get(&charlie).map(String::as_str), Some("join"), "{members:?}");
}

/// Devices while the state is partial: a change of a local user's devices reaches the
/// servers the resident named; a to-device message from the room's server arrives; a
/// member the partial state does not name changes a device, and the local user hears of
/// him once the resync completes, and of his changes from then on.
async fn device_lists_while_partial(db: Db) {
    let kith = TestServer::start_federating(db).await;
    let fake = FakeServer::start().await;
    let mut room = FakeRoom::create(&fake, "alice");
    let derek = fake.user_id("derek");
    room.add_state(&fake, &derek, "m.room.member", &derek, json!({ "membership": "join" }));
    let (bob, bob_t) = kith.register("bob", "pw").await;
    let (_, whoami) = kith.get(&format!("{V3}/account/whoami"), Some(&bob_t)).await;
    let bob_device = whoami["device_id"].as_str().unwrap().to_owned();
    room.serve_partial_join(&fake, &bob);
    room.serve_events(&fake);
    room.refuse_state_ids(&fake);
    assert_eq!(matrix::join(&kith, &bob_t, &room.room_id, &fake.name).await.0, StatusCode::OK);
    let since = sync_token(&kith, &bob_t).await;

    let (_, second) = kith.login("bob", "pw").await;
    let second_token = second["access_token"].as_str().unwrap().to_owned();
    assert_eq!(kith.post(&format!("{V3}/logout"), Some(&second_token), json!({})).await.0, StatusCode::OK);
    matrix::eventually("bob's device-list update at the resident", WAIT, || async {
        let edus = fake.received_edus();
        let update = |e: &Value| e["edu_type"] == "m.device_list_update" && e["content"]["user_id"] == bob.as_str();
        edus.iter().any(update).then_some(())
    })
    .await;

    let to_device = json!({ "edu_type": "m.direct_to_device", "content": {
        "sender": derek, "type": "m.test", "message_id": "partial1",
        "messages": { bob.clone(): { bob_device.clone(): { "while": "partial" } } },
    } });
    assert_eq!(fake.send_edus(&kith, &[to_device]).await.0, StatusCode::OK);
    let update = |stream_id: u64| {
        let prev: Vec<u64> = (1..stream_id).collect();
        json!({ "edu_type": "m.device_list_update", "content": {
            "user_id": derek, "device_id": format!("D{stream_id}"), "stream_id": stream_id, "prev_id": prev,
        } })
    };
    assert_eq!(fake.send_edus(&kith, &[update(1)]).await.0, StatusCode::OK);
    let synced = matrix::eventually("the to-device message", WAIT, || async {
        let (_, synced) = kith.get(&format!("{V3}/sync?timeout=0&since={since}"), Some(&bob_t)).await;
        synced["to_device"]["events"].to_string().contains("partial").then_some(synced)
    })
    .await;
    assert_eq!(synced["to_device"]["events"][0]["sender"], derek.as_str(), "{synced}");

    room.serve_state_ids(&fake);
    let changed = |since: String| {
        let (kith, bob_t, derek) = (&kith, &bob_t, &derek);
        async move {
            let (_, synced) = kith.get(&format!("{V3}/sync?timeout=0&since={since}"), Some(bob_t)).await;
            let changed = synced["device_lists"]["changed"].as_array().cloned().unwrap_or_default();
            changed.iter().any(|u| u == derek.as_str()).then_some(())
        }
    };
    matrix::eventually("derek's change after the resync", WAIT, || changed(since.clone())).await;
    let since = sync_token(&kith, &bob_t).await;
    assert_eq!(fake.send_edus(&kith, &[update(2)]).await.0, StatusCode::OK);
    matrix::eventually("derek's next change", WAIT, || changed(since.clone())).await;
}

async fn sync_token(kith: &TestServer, token: &str) -> String {
    let (_, synced) = kith.get(&format!("{V3}/sync?timeout=0"), Some(token)).await;
    synced["next_batch"].as_str().expect("next_batch").to_owned()
}

/// An admin deletes a room whose state is partial: the member leaves at once, the purge
/// does not wait for the resync, and the resync does not bring the room back.
async fn purging_during_the_resync(db: Db) {
    let mut kith = TestServer::start_federating(db).await;
    let fake = FakeServer::start().await;
    let room = FakeRoom::create(&fake, "alice");
    let (_, admin) = kith.register_as("root", "pw", true).await;
    let (bob, bob_t) = kith.register("bob", "pw").await;
    room.serve_partial_join(&fake, &bob);
    room.serve_events(&fake);
    room.refuse_state_ids(&fake);
    assert_eq!(matrix::join(&kith, &bob_t, &room.room_id, &fake.name).await.0, StatusCode::OK);
    let path = format!("/_synapse/admin/v1/rooms/{}", room.room_id);
    let (status, report) = kith.request(reqwest::Method::DELETE, &path, Some(&admin), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["kicked_users"], json!([bob]));
    // The leave went to the resident; the room is gone here, partial flag and all.
    assert!(fake.received().iter().any(|r| r.starts_with("PUT /_matrix/federation/v1/send/")));
    let (status, _) = kith.get(&path, Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    room.serve_state_ids(&fake);
    kith.restart().await;
    let (status, _) = kith.get(&path, Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, synced) = kith.get(&format!("{V3}/sync"), Some(&bob_t)).await;
    assert!(synced["rooms"]["join"][&room.room_id].is_null(), "{synced}");
    assert!(!kith.log().contains("partial-state resync complete"), "{}", kith.log());
}

/// While partial, the room's state is not served to others and nobody joins through us.
async fn refusals_while_partial(kith: &TestServer, fake: &FakeServer, room_id: &str) {
    let room = matrix::encode(room_id);
    for path in [
        format!("/_matrix/federation/v1/state_ids/{room}?event_id=%24x"),
        format!("/_matrix/federation/v1/state/{room}?event_id=%24x"),
        format!("/_matrix/federation/v1/event_auth/{room}/%24x"),
    ] {
        let (status, body) = fake.request(kith, reqwest::Method::GET, &path, None).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_UNABLE_DUE_TO_PARTIAL_STATE")),
            "{path}: {body}"
        );
    }
    let user = matrix::encode(&fake.user_id("newcomer"));
    for path in [
        format!("/_matrix/federation/v1/make_join/{room}/{user}?ver=10"),
        format!("/_matrix/federation/v1/make_knock/{room}/{user}?ver=10"),
    ] {
        let (status, body) = fake.request(kith, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    for path in [
        format!("/_matrix/federation/v2/send_join/{room}/%24x"),
        format!("/_matrix/federation/v1/send_knock/{room}/%24x"),
    ] {
        let (status, body) = fake.request(kith, reqwest::Method::PUT, &path, Some(&json!({}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
}

const SLIDING: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// Simplified sliding sync shows a partial-state room at once with what is known (the
/// room's name and bob's own membership, not the members the join left out), and sends
/// it again when the resync completes: a long poll on the connection wakes with the
/// whole membership and the counts, and the room is not `initial` the second time.
async fn sliding_sync_while_partial(db: Db) {
    let kith = TestServer::start_federating(db).await;
    let fake = FakeServer::start().await;
    let mut room = FakeRoom::create(&fake, "alice");
    let alice = fake.user_id("alice");
    room.add_state(&fake, &alice, "m.room.name", "", json!({ "name": "Partial" }));
    let members: Vec<String> = (0..3).map(|i| fake.user_id(&format!("member{i}"))).collect();
    for member in &members {
        room.add_state(&fake, member, "m.room.member", member, json!({ "membership": "join" }));
    }
    let (bob, bob_t) = kith.register("bob", "pw").await;
    room.serve_partial_join(&fake, &bob);
    room.serve_events(&fake);
    room.refuse_state_ids(&fake);
    let room_id = room.room_id.clone();
    assert_eq!(matrix::join(&kith, &bob_t, &room_id, &fake.name).await.0, StatusCode::OK);
    assert!(kith.log().contains("joined with a partial state"), "{}", kith.log());

    let request = json!({
        "conn_id": "room-list",
        "lists": { "all": {
            "ranges": [[0, 9]], "timeline_limit": 5,
            "required_state": [["m.room.name", ""], ["m.room.member", "*"]],
        } },
    });
    let (status, first) = kith.post(SLIDING, Some(&bob_t), request.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["lists"]["all"]["count"], 1, "{first}");
    let entry = &first["rooms"][&room_id];
    assert_eq!(entry["initial"], true, "{first}");
    assert_eq!(entry["name"], "Partial", "{first}");
    let known = member_keys(entry["required_state"].as_array().map_or(&[][..], Vec::as_slice));
    assert!(known.contains(&bob), "bob's own membership: {first}");
    assert!(!known.contains(&members[0]), "the join left the members out: {first}");

    room.serve_state_ids(&fake);
    // Other news (bob's own receipts, say) may come first: poll on until the room does.
    let mut answer = first.clone();
    let deadline = std::time::Instant::now() + WAIT;
    while !answer["rooms"][&room_id].is_object() || answer["pos"] == first["pos"] {
        assert!(std::time::Instant::now() < deadline, "no resync in time: {answer}\n{}", kith.log());
        let pos = answer["pos"].as_str().expect("pos").to_owned();
        let path = format!("{SLIDING}?pos={}&timeout=20000", matrix::encode(&pos));
        let (status, next) = kith.post(&path, Some(&bob_t), request.clone()).await;
        assert_eq!(status, StatusCode::OK, "{next}");
        answer = next;
    }
    let entry = &answer["rooms"][&room_id];
    assert!(entry.is_object(), "the room sent again after the resync: {answer}\n{}", kith.log());
    assert!(entry["initial"].is_null(), "an update, not a first look: {answer}");
    let whole = member_keys(entry["required_state"].as_array().map_or(&[][..], Vec::as_slice));
    for member in members.iter().chain([&alice, &bob]) {
        assert!(whole.contains(member), "{member} after the resync: {answer}");
    }
    assert_eq!(entry["joined_count"], 5, "alice, three members and bob: {answer}");
}

/// A long-polling eager sync and `/joined_members`, both waiting, get the whole room
/// when the resync completes.
async fn resync_ends_the_waits(kith: &TestServer, token: &str, room_id: &str, since: &str) {
    let path = format!("{V3}/sync?since={since}&timeout=25000");
    let sync = kith.get(&path, Some(token));
    let members = joined_count(kith, token, room_id);
    let members_path = format!("{V3}/rooms/{}/members", matrix::encode(room_id));
    let listed = kith.get(&members_path, Some(token));
    let ((_, synced), count, (_, listed)) = tokio::join!(sync, members, listed);
    let chunk = listed["chunk"].as_array().map_or(0, Vec::len);
    assert_eq!(chunk, 8, "/members waited: alice, four members, the leaver, bob and carol: {listed}");
    let joined = &synced["rooms"]["join"][room_id];
    let state = joined["state"]["events"].as_array().map_or(0, Vec::len)
        + joined["timeline"]["events"].as_array().map_or(0, Vec::len);
    assert!(state >= 9, "the room arrives whole: {synced}\n{}", kith.log());
    assert_eq!(count, 7, "alice, four members, bob and carol");
}

/// The id of `sender`'s most recent event in the room's timeline.
async fn event_id_in_timeline(server: &TestServer, token: &str, room_id: &str, sender: &str) -> String {
    let path = format!("{V3}/rooms/{}/messages?dir=b&limit=50", matrix::encode(room_id));
    let (_, page) = server.get(&path, Some(token)).await;
    let events = page["chunk"].as_array().cloned().unwrap_or_default();
    let event = events.iter().find(|e| e["sender"] == sender && e["type"] == "m.room.member");
    event
        .and_then(|e| e["event_id"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no join of {sender}: {page}"))
}

both_backends!(
    partial_state_leaves_members_out,
    a_named_room_sends_no_heroes,
    kith_joins_kith_and_resyncs,
    what_waits_while_the_state_is_partial,
    leaving_during_the_resync,
    purging_during_the_resync,
    resyncing_from_another_server_of_the_room,
    device_lists_while_partial,
    sliding_sync_while_partial,
);
