//! Rooms over HTTP, against SQLite and PostgreSQL: creation, membership and the auth
//! rules' refusals, messages, state, redaction, sync, and the stored DAG verified with
//! ruma.

mod common;

use std::collections::BTreeMap;

use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

both_backends!(
    create_room_with_presets_and_options,
    membership_lifecycle_and_refusals,
    send_state_and_messages,
    redaction_strips_content,
    aliases_and_public_rooms,
    sync_initial_incremental_and_long_poll,
    sync_filters_account_data_typing_receipts,
    stored_events_verify_and_replay_to_current_state,
    concurrent_sends_keep_one_consistent_order,
    global_profile_changes_reach_every_joined_room,
    history_visibility_is_enforced,
);

const V3: &str = "/_matrix/client/v3";

async fn create(server: &TestServer, token: &str, body: Value) -> String {
    let (status, response) = server.post(&format!("{V3}/createRoom"), Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response["room_id"].as_str().unwrap().to_owned()
}

async fn send_text(server: &TestServer, token: &str, room: &str, txn: &str, text: &str) -> (StatusCode, Value) {
    let path = format!("{V3}/rooms/{room}/send/m.room.message/{txn}");
    server.put(&path, Some(token), json!({ "msgtype": "m.text", "body": text })).await
}

async fn state_content(server: &TestServer, token: &str, room: &str, kind: &str, key: &str) -> (StatusCode, Value) {
    server.get(&format!("{V3}/rooms/{room}/state/{kind}/{key}"), Some(token)).await
}

fn errcode(body: &Value) -> Option<&str> {
    body["errcode"].as_str()
}

async fn create_room_with_presets_and_options(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, token) = server.register("alice", "pw").await;
    let (bob, _) = server.register("bob", "pw").await;
    let room = create(
        &server,
        &token,
        json!({
            "preset": "trusted_private_chat", "name": "Team", "topic": "Plans", "invite": [bob], "is_direct": true,
            "initial_state": [{ "type": "m.room.history_visibility", "content": { "history_visibility": "joined" } }],
            "power_level_content_override": { "events_default": 10 },
        }),
    )
    .await;
    let (_, create_event) = state_content(&server, &token, &room, "m.room.create", "").await;
    assert_eq!(create_event["room_version"], "10");
    assert_eq!(create_event["creator"], alice);
    let (_, name) = state_content(&server, &token, &room, "m.room.name", "").await;
    assert_eq!(name["name"], "Team");
    let (_, rules) = state_content(&server, &token, &room, "m.room.join_rules", "").await;
    assert_eq!(rules["join_rule"], "invite");
    let (_, history) = state_content(&server, &token, &room, "m.room.history_visibility", "").await;
    assert_eq!(history["history_visibility"], "joined");
    let (_, levels) = state_content(&server, &token, &room, "m.room.power_levels", "").await;
    assert_eq!(levels["users"][&alice], 100);
    assert_eq!(levels["users"][&bob], 100, "trusted_private_chat makes invitees admins");
    assert_eq!(levels["events_default"], 10);
    let (_, invite) = state_content(&server, &token, &room, "m.room.member", &bob).await;
    assert_eq!((invite["membership"].as_str(), invite["is_direct"].as_bool()), (Some("invite"), Some(true)));

    // Public preset and room version 11 (no `creator` in the create event).
    let room = create(&server, &token, json!({ "preset": "public_chat", "room_version": "11" })).await;
    let (_, create_event) = state_content(&server, &token, &room, "m.room.create", "").await;
    assert_eq!(create_event["room_version"], "11");
    assert!(create_event.get("creator").is_none());
    let (_, rules) = state_content(&server, &token, &room, "m.room.join_rules", "").await;
    assert_eq!(rules["join_rule"], "public");

    // Refusals.
    let (status, body) = server.post(&format!("{V3}/createRoom"), Some(&token), json!({ "room_version": "1" })).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, Some("M_UNSUPPORTED_ROOM_VERSION")));
    let (status, body) = server.post(&format!("{V3}/createRoom"), Some(&token), json!({ "preset": "nope" })).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")));
    let (status, body) =
        server.post(&format!("{V3}/createRoom"), Some(&token), json!({ "invite": ["not-a-user"] })).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")));
    let (status, _) = server.post(&format!("{V3}/createRoom"), None, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn membership_lifecycle_and_refusals(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice) = server.register("alice", "pw").await;
    let (bob_id, bob) = server.register("bob", "pw").await;
    let (carol_id, carol) = server.register("carol", "pw").await;
    let room = create(&server, &alice, json!({ "preset": "private_chat" })).await;

    // Invite-only: joining uninvited is refused, sending as a non-member too.
    let (status, body) = server.post(&format!("{V3}/rooms/{room}/join"), Some(&bob), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
    let (status, body) = send_text(&server, &bob, &room, "t1", "hi").await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")));
    let (status, _) = server.get(&format!("{V3}/rooms/{room}/state"), Some(&bob)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Invite, join, talk.
    let (status, body) =
        server.post(&format!("{V3}/rooms/{room}/invite"), Some(&alice), json!({ "user_id": bob_id })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.post(&format!("{V3}/join/{room}"), Some(&bob), json!({})).await;
    assert_eq!((status, body["room_id"].as_str()), (StatusCode::OK, Some(room.as_str())), "{body}");
    let (status, _) = send_text(&server, &bob, &room, "t1", "hello").await;
    assert_eq!(status, StatusCode::OK);
    let (_, joined) = server.get(&format!("{V3}/joined_rooms"), Some(&bob)).await;
    assert_eq!(joined["joined_rooms"], json!([room]));

    // Bob (power 0) may not kick; Alice may. A kicked user may not rejoin an invite-only room.
    let (status, body) =
        server.post(&format!("{V3}/rooms/{room}/invite"), Some(&alice), json!({ "user_id": carol_id })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.post(&format!("{V3}/rooms/{room}/join"), Some(&carol), json!({})).await;
    let (status, body) =
        server.post(&format!("{V3}/rooms/{room}/kick"), Some(&bob), json!({ "user_id": carol_id })).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
    let (status, _) = server
        .post(&format!("{V3}/rooms/{room}/kick"), Some(&alice), json!({ "user_id": carol_id, "reason": "bye" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, member) = state_content(&server, &alice, &room, "m.room.member", &carol_id).await;
    assert_eq!((member["membership"].as_str(), member["reason"].as_str()), (Some("leave"), Some("bye")));
    let (status, _) = server.post(&format!("{V3}/rooms/{room}/join"), Some(&carol), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Ban: a banned user cannot come back, even invited; unban lets an invite through again.
    let (status, _) = server.post(&format!("{V3}/rooms/{room}/ban"), Some(&alice), json!({ "user_id": bob_id })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(&format!("{V3}/rooms/{room}/join"), Some(&bob), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        server.post(&format!("{V3}/rooms/{room}/invite"), Some(&alice), json!({ "user_id": bob_id })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        server.post(&format!("{V3}/rooms/{room}/unban"), Some(&alice), json!({ "user_id": bob_id })).await;
    assert_eq!(status, StatusCode::OK);
    server.post(&format!("{V3}/rooms/{room}/invite"), Some(&alice), json!({ "user_id": bob_id })).await;
    let (status, _) = server.post(&format!("{V3}/rooms/{room}/join"), Some(&bob), json!({})).await;
    assert_eq!(status, StatusCode::OK);

    // Leave (empty body), then forget; a left member still reads history up to leaving.
    let (status, _) = server.raw(Method::POST, &format!("{V3}/rooms/{room}/leave"), Some(&bob), Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    send_text(&server, &alice, &room, "t2", "after bob left").await;
    let (status, messages) = server.get(&format!("{V3}/rooms/{room}/messages?dir=b&limit=50"), Some(&bob)).await;
    assert_eq!(status, StatusCode::OK);
    let bodies: Vec<&str> =
        messages["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert!(bodies.contains(&"hello") && !bodies.contains(&"after bob left"), "{bodies:?}");
    let (status, _) = server.post(&format!("{V3}/rooms/{room}/forget"), Some(&bob), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(&format!("{V3}/rooms/{room}/forget"), Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a joined user cannot forget");
    let (status, body) = server.post(&format!("{V3}/rooms/{room}/leave"), Some(&bob), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")));

    // Unknown rooms and bad ids.
    let (status, body) = server.post(&format!("{V3}/rooms/!nope:kith.test/join"), Some(&bob), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")));
    let (status, body) = server.post(&format!("{V3}/join/not-a-room"), Some(&bob), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")));
    let (status, body) = server.post(&format!("{V3}/rooms/{room}/invite"), Some(&alice), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM")));
}

async fn send_state_and_messages(db: Db) {
    let server = TestServer::start(db).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let (bob_id, bob) = server.register("bob", "pw").await;
    let room = create(&server, &alice, json!({ "preset": "public_chat", "name": "Lobby" })).await;
    server.post(&format!("{V3}/rooms/{room}/join"), Some(&bob), json!({})).await;

    // Transaction ids make sends idempotent per device.
    let (_, first) = send_text(&server, &alice, &room, "same", "once").await;
    let (_, again) = send_text(&server, &alice, &room, "same", "once").await;
    assert_eq!(first["event_id"], again["event_id"]);
    for i in 0..5 {
        send_text(&server, &bob, &room, &format!("b{i}"), &format!("message {i}")).await;
    }

    // A per-room nickname is a member event; the global profile is untouched.
    let (_, before_nick) = server.get(&format!("{V3}/sync"), Some(&alice)).await;
    let before_nick = before_nick["next_batch"].as_str().unwrap().to_owned();
    let path = format!("{V3}/rooms/{room}/state/m.room.member/{bob_id}");
    let (status, body) = server.put(&path, Some(&bob), json!({ "membership": "join", "displayname": "Bobby" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, profile) = server.get(&format!("{V3}/profile/{bob_id}"), None).await;
    assert_eq!(profile["displayname"], "bob");
    let (_, joined) = server.get(&format!("{V3}/rooms/{room}/joined_members"), Some(&alice)).await;
    assert_eq!(joined["joined"][&bob_id]["display_name"], "Bobby");
    assert_eq!(joined["joined"][&alice_id]["display_name"], "alice");

    // Power levels: bob may not rename the room, nor set someone else's member event.
    let (status, body) =
        server.put(&format!("{V3}/rooms/{room}/state/m.room.name"), Some(&bob), json!({ "name": "Mine" })).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")));
    let other = format!("{V3}/rooms/{room}/state/m.room.member/{alice_id}");
    let (status, _) = server.put(&other, Some(&bob), json!({ "membership": "join", "displayname": "x" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = server
        .put(
            &format!("{V3}/rooms/{room}/state/m.room.member/not-a-user"),
            Some(&alice),
            json!({ "membership": "join" }),
        )
        .await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")));
    let (status, _) =
        server.put(&format!("{V3}/rooms/{room}/state/m.room.topic/"), Some(&alice), json!({ "topic": "New" })).await;
    assert_eq!(status, StatusCode::OK);
    let (_, topic) = state_content(&server, &bob, &room, "m.room.topic", "").await;
    assert_eq!(topic["topic"], "New");
    let (status, body) = state_content(&server, &bob, &room, "m.room.avatar", "").await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")));

    // Oversized events and non-object bodies.
    let (status, body) = send_text(&server, &alice, &room, "big", &"x".repeat(70_000)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::PAYLOAD_TOO_LARGE, Some("M_TOO_LARGE")), "{body}");
    let path = format!("{V3}/rooms/{room}/send/m.room.message/arr");
    let (status, body) = server.raw(Method::PUT, &path, Some(&alice), b"[1]".to_vec()).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")));

    // /messages backwards and forwards with tokens, and a filter.
    let (_, page) = server.get(&format!("{V3}/rooms/{room}/messages?dir=b&limit=3"), Some(&alice)).await;
    let chunk = page["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 3);
    assert_eq!(chunk[0]["type"], "m.room.topic", "newest first: {page}");
    let end = page["end"].as_str().unwrap();
    let (_, older) = server.get(&format!("{V3}/rooms/{room}/messages?dir=b&limit=3&from={end}"), Some(&alice)).await;
    let older_ids: Vec<&Value> = older["chunk"].as_array().unwrap().iter().map(|e| &e["event_id"]).collect();
    assert!(older_ids.iter().all(|id| !chunk.iter().any(|e| &&e["event_id"] == id)), "pages do not overlap");
    let (_, forwards) = server.get(&format!("{V3}/rooms/{room}/messages?dir=f&limit=100"), Some(&alice)).await;
    let types: Vec<&str> = forwards["chunk"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types[0], "m.room.create");
    let filter = urlencode(&json!({ "types": ["m.room.message"] }).to_string());
    let (_, filtered) =
        server.get(&format!("{V3}/rooms/{room}/messages?dir=f&limit=100&filter={filter}"), Some(&alice)).await;
    let bodies: Vec<&str> =
        filtered["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies, vec!["once", "message 0", "message 1", "message 2", "message 3", "message 4"]);
    let (status, _) = server.get(&format!("{V3}/rooms/{room}/messages?dir=x"), Some(&alice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.get(&format!("{V3}/rooms/{room}/messages?from=garbage"), Some(&alice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Single events, members with filters.
    let event_id = first["event_id"].as_str().unwrap();
    let (status, event) = server.get(&format!("{V3}/rooms/{room}/event/{event_id}"), Some(&bob)).await;
    assert_eq!((status, event["content"]["body"].as_str()), (StatusCode::OK, Some("once")));
    let (status, _) = server.get(&format!("{V3}/rooms/{room}/event/$unknown"), Some(&bob)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, members) = server.get(&format!("{V3}/rooms/{room}/members?membership=join"), Some(&alice)).await;
    assert_eq!(members["chunk"].as_array().unwrap().len(), 2);
    let (_, members) = server.get(&format!("{V3}/rooms/{room}/members?not_membership=join"), Some(&alice)).await;
    assert_eq!(members["chunk"].as_array().unwrap().len(), 0);
    // `at` gives the members as of an earlier sync token.
    let bob_name = |members: &Value| {
        members["chunk"].as_array().unwrap().iter().find(|e| e["state_key"] == bob_id.as_str()).unwrap()["content"]
            ["displayname"]
            .clone()
    };
    let (_, now) = server.get(&format!("{V3}/rooms/{room}/members"), Some(&alice)).await;
    assert_eq!(bob_name(&now), "Bobby");
    let (status, then) = server.get(&format!("{V3}/rooms/{room}/members?at={before_nick}"), Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{then}");
    assert_eq!(bob_name(&then), "bob");
    let (_, state) = server.get(&format!("{V3}/rooms/{room}/state"), Some(&bob)).await;
    assert!(state.as_array().unwrap().iter().any(|e| e["type"] == "m.room.name"));
}

async fn redaction_strips_content(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice) = server.register("alice", "pw").await;
    let (_, bob) = server.register("bob", "pw").await;
    let room = create(&server, &alice, json!({ "preset": "public_chat" })).await;
    server.post(&format!("{V3}/rooms/{room}/join"), Some(&bob), json!({})).await;
    let (_, sent) = send_text(&server, &alice, &room, "m1", "secret").await;
    let event_id = sent["event_id"].as_str().unwrap();

    let (status, body) = server.put(&format!("{V3}/rooms/{room}/redact/{event_id}/r1"), Some(&bob), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "bob lacks the redact level");
    let (status, body) =
        server.put(&format!("{V3}/rooms/{room}/redact/{event_id}/r1"), Some(&alice), json!({ "reason": "oops" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, event) = server.get(&format!("{V3}/rooms/{room}/event/{event_id}"), Some(&bob)).await;
    assert_eq!(event["content"], json!({}), "{event}");
    assert_eq!(event["unsigned"]["redacted_because"]["event_id"], body["event_id"]);
    let (status, _) = server.put(&format!("{V3}/rooms/{room}/redact/$nope/r2"), Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn aliases_and_public_rooms(db: Db) {
    let server = TestServer::start(db).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let (_, bob) = server.register("bob", "pw").await;
    let room = create(
        &server,
        &alice,
        json!({ "visibility": "public", "room_alias_name": "lobby", "name": "Lobby", "topic": "Hi" }),
    )
    .await;
    let alias = "%23lobby:kith.test";
    let (status, body) = server.get(&format!("{V3}/directory/room/{alias}"), None).await;
    assert_eq!((status, body["room_id"].as_str()), (StatusCode::OK, Some(room.as_str())));
    let (_, canonical) = state_content(&server, &alice, &room, "m.room.canonical_alias", "").await;
    assert_eq!(canonical["alias"], "#lobby:kith.test");
    let (status, body) =
        server.post(&format!("{V3}/createRoom"), Some(&bob), json!({ "room_alias_name": "lobby" })).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, Some("M_ROOM_IN_USE")));

    // Join by alias.
    let (status, body) = server.post(&format!("{V3}/join/{alias}"), Some(&bob), json!({})).await;
    assert_eq!((status, body["room_id"].as_str()), (StatusCode::OK, Some(room.as_str())), "{body}");

    // Extra aliases: only the creator (or an admin) deletes them.
    let (status, _) =
        server.put(&format!("{V3}/directory/room/%23second:kith.test"), Some(&alice), json!({ "room_id": room })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        server.put(&format!("{V3}/directory/room/%23second:kith.test"), Some(&bob), json!({ "room_id": room })).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) =
        server.put(&format!("{V3}/directory/room/%23x:other.server"), Some(&alice), json!({ "room_id": room })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) =
        server.request(Method::DELETE, &format!("{V3}/directory/room/%23second:kith.test"), Some(&bob), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        server.request(Method::DELETE, &format!("{V3}/directory/room/%23second:kith.test"), Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get(&format!("{V3}/directory/room/%23second:kith.test"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Only published rooms are listed.
    create(&server, &alice, json!({ "preset": "public_chat", "name": "Unlisted" })).await;
    let (status, list) = server.get(&format!("{V3}/publicRooms"), None).await;
    assert_eq!(status, StatusCode::OK);
    let chunk = list["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 1, "{list}");
    assert_eq!(chunk[0]["name"], "Lobby");
    assert_eq!(chunk[0]["topic"], "Hi");
    assert_eq!(chunk[0]["num_joined_members"], 2);
    assert_eq!(chunk[0]["canonical_alias"], "#lobby:kith.test");
    let _ = alice_id;
}

async fn sync_initial_incremental_and_long_poll(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice) = server.register("alice", "pw").await;
    let (bob_id, bob) = server.register("bob", "pw").await;
    let room = create(&server, &alice, json!({ "preset": "private_chat", "name": "Sync room" })).await;
    for i in 0..12 {
        send_text(&server, &alice, &room, &format!("m{i}"), &format!("message {i}")).await;
    }

    let (status, initial) = server.get(&format!("{V3}/sync"), Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{initial}");
    let joined = &initial["rooms"]["join"][&room];
    let timeline = joined["timeline"]["events"].as_array().unwrap();
    assert_eq!(timeline.len(), 10, "default timeline limit");
    assert_eq!(joined["timeline"]["limited"], true);
    assert_eq!(timeline.last().unwrap()["content"]["body"], "message 11");
    let state_types: Vec<&str> =
        joined["state"]["events"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(state_types.contains(&"m.room.create") && state_types.contains(&"m.room.name"), "{state_types:?}");
    // prev_batch continues backwards from the timeline.
    let prev = joined["timeline"]["prev_batch"].as_str().unwrap();
    let (_, older) = server.get(&format!("{V3}/rooms/{room}/messages?dir=b&limit=2&from={prev}"), Some(&alice)).await;
    assert_eq!(older["chunk"][0]["content"]["body"], "message 1");
    let next = initial["next_batch"].as_str().unwrap().to_owned();

    // Nothing new: an incremental sync with timeout 0 returns at once and empty (empty
    // sections left out, as Synapse leaves them out).
    let (_, empty) = server.get(&format!("{V3}/sync?since={next}&timeout=0"), Some(&alice)).await;
    assert!(empty["rooms"]["join"].as_object().is_none_or(|joined| joined.is_empty()), "{empty}");

    // An invite shows up for bob, with stripped state.
    server.post(&format!("{V3}/rooms/{room}/invite"), Some(&alice), json!({ "user_id": bob_id })).await;
    let (_, bob_sync) = server.get(&format!("{V3}/sync"), Some(&bob)).await;
    let invite_state = bob_sync["rooms"]["invite"][&room]["invite_state"]["events"].as_array().unwrap();
    assert!(invite_state.iter().any(|e| e["type"] == "m.room.name"), "{bob_sync}");
    assert!(invite_state.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == bob_id.as_str()));

    // A long poll is woken by a new message.
    let (_, caught_up) = server.get(&format!("{V3}/sync?since={next}"), Some(&alice)).await;
    let next = caught_up["next_batch"].as_str().unwrap().to_owned();
    let url = format!("{V3}/sync?since={next}&timeout=20000");
    let waiting = {
        let server_base = server.base.clone();
        let token = alice.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .get(format!("{server_base}{url}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    send_text(&server, &alice, &room, "wake", "wake up").await;
    let woken =
        tokio::time::timeout(std::time::Duration::from_secs(15), waiting).await.expect("long poll woke").unwrap();
    let events = woken["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    let bodies: Vec<&str> = events.iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies, vec!["wake up"], "{woken}");
    // Not limited (ruma leaves `limited: false` out, as the spec lets it).
    assert!(!woken["rooms"]["join"][&room]["timeline"]["limited"].as_bool().unwrap_or(false), "{woken}");

    // Bob joins, then leaves: his incremental sync has the room under leave.
    server.post(&format!("{V3}/rooms/{room}/join"), Some(&bob), json!({})).await;
    let (_, bob_sync) = server.get(&format!("{V3}/sync"), Some(&bob)).await;
    assert!(bob_sync["rooms"]["join"][&room].is_object(), "{bob_sync}");
    let bob_next = bob_sync["next_batch"].as_str().unwrap().to_owned();
    server.post(&format!("{V3}/rooms/{room}/leave"), Some(&bob), json!({})).await;
    let (_, bob_sync) = server.get(&format!("{V3}/sync?since={bob_next}"), Some(&bob)).await;
    assert!(bob_sync["rooms"]["leave"][&room].is_object(), "{bob_sync}");

    let (status, body) = server.get(&format!("{V3}/sync?since=garbage"), Some(&bob)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")));
    let (_, full) = server.get(&format!("{V3}/sync?since={next}&full_state=true"), Some(&alice)).await;
    assert!(!full["rooms"]["join"][&room]["state"]["events"].as_array().unwrap().is_empty());
}

async fn sync_filters_account_data_typing_receipts(db: Db) {
    let server = TestServer::start(db).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let (bob_id, bob) = server.register("bob", "pw").await;
    let room = create(&server, &alice, json!({ "preset": "public_chat" })).await;
    server.post(&format!("{V3}/rooms/{room}/join"), Some(&bob), json!({})).await;
    let (_, sent) = send_text(&server, &bob, &room, "b1", "from bob").await;
    for i in 0..3 {
        send_text(&server, &alice, &room, &format!("a{i}"), "from alice").await;
    }

    // A stored filter: timeline limit 2 and lazy-loaded members.
    let filter = json!({ "room": { "timeline": { "limit": 2 }, "state": { "lazy_load_members": true } } });
    let (status, created) = server.post(&format!("{V3}/user/{alice_id}/filter"), Some(&alice), filter.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let filter_id = created["filter_id"].as_str().unwrap();
    let (_, fetched) = server.get(&format!("{V3}/user/{alice_id}/filter/{filter_id}"), Some(&alice)).await;
    assert_eq!(fetched, filter);
    let (status, _) = server.get(&format!("{V3}/user/{alice_id}/filter/{filter_id}"), Some(&bob)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, synced) = server.get(&format!("{V3}/sync?filter={filter_id}"), Some(&alice)).await;
    let joined = &synced["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["events"].as_array().unwrap().len(), 2);
    let members: Vec<&str> = joined["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    assert_eq!(members, vec![alice_id.as_str()], "lazy loading leaves out bob, who is not in the timeline");
    let inline = urlencode(&json!({ "room": { "timeline": { "limit": 1 } } }).to_string());
    let (_, synced) = server.get(&format!("{V3}/sync?filter={inline}"), Some(&alice)).await;
    assert_eq!(synced["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap().len(), 1);
    let next = synced["next_batch"].as_str().unwrap().to_owned();

    // Account data, global and per room.
    let (status, _) = server
        .put(
            &format!("{V3}/user/{alice_id}/account_data/org.example.settings"),
            Some(&alice),
            json!({ "theme": "dark" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, settings) =
        server.get(&format!("{V3}/user/{alice_id}/account_data/org.example.settings"), Some(&alice)).await;
    assert_eq!(settings["theme"], "dark");
    let (status, _) = server.get(&format!("{V3}/user/{alice_id}/account_data/org.example.none"), Some(&alice)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.put(&format!("{V3}/user/{bob_id}/account_data/x"), Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server
        .put(&format!("{V3}/user/{alice_id}/rooms/{room}/account_data/m.tag"), Some(&alice), json!({ "tags": {} }))
        .await;

    // Typing and receipts.
    let (status, _) = server
        .put(&format!("{V3}/rooms/{room}/typing/{alice_id}"), Some(&alice), json!({ "typing": true, "timeout": 10000 }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let receipt_path = format!("{V3}/rooms/{room}/receipt/m.read/{}", sent["event_id"].as_str().unwrap());
    let (status, _) = server.post(&receipt_path, Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(&format!("{V3}/rooms/{room}/receipt/m.bogus/$x"), Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let markers = json!({ "m.fully_read": sent["event_id"], "m.read": sent["event_id"] });
    let (status, _) = server.post(&format!("{V3}/rooms/{room}/read_markers"), Some(&alice), markers).await;
    assert_eq!(status, StatusCode::OK);

    let (_, synced) = server.get(&format!("{V3}/sync?since={next}"), Some(&bob)).await;
    let ephemeral = synced["rooms"]["join"][&room]["ephemeral"]["events"].as_array().unwrap();
    let typing = ephemeral.iter().find(|e| e["type"] == "m.typing").expect("typing event");
    assert_eq!(typing["content"]["user_ids"], json!([alice_id]));
    let receipt = ephemeral.iter().find(|e| e["type"] == "m.receipt").expect("receipt event");
    assert!(receipt["content"][sent["event_id"].as_str().unwrap()]["m.read"][&alice_id]["ts"].is_number());

    let (_, synced) = server.get(&format!("{V3}/sync?since={next}"), Some(&alice)).await;
    let global: Vec<&str> =
        synced["account_data"]["events"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(global, vec!["org.example.settings"]);
    let room_data: Vec<&str> = synced["rooms"]["join"][&room]["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(room_data, vec!["m.tag", "m.fully_read"]);

    // Typing stops.
    server.put(&format!("{V3}/rooms/{room}/typing/{alice_id}"), Some(&alice), json!({ "typing": false })).await;
    let (_, synced) = server.get(&format!("{V3}/sync?since={next}"), Some(&bob)).await;
    let ephemeral = synced["rooms"]["join"][&room]["ephemeral"]["events"].as_array().unwrap();
    let typing = ephemeral.iter().find(|e| e["type"] == "m.typing").expect("typing event");
    assert_eq!(typing["content"]["user_ids"], json!([]));
}

/// Every stored event's hashes and signature verify with ruma, and replaying the events
/// through ruma's auth rules in order rebuilds exactly the stored current state.
async fn stored_events_verify_and_replay_to_current_state(db: Db) {
    let mut server = TestServer::start(db).await;
    let (_, alice) = server.register("alice", "pw").await;
    let (bob_id, bob) = server.register("bob", "pw").await;
    let room = create(&server, &alice, json!({ "preset": "private_chat", "name": "Audit" })).await;
    let levels = json!({ "users": { "@alice:kith.test": 100, bob_id.clone(): 50 }, "users_default": 0, "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0, "events": {} });
    server.put(&format!("{V3}/rooms/{room}/state/m.room.power_levels/"), Some(&alice), levels).await;
    server
        .put(&format!("{V3}/rooms/{room}/state/m.room.join_rules/"), Some(&alice), json!({ "join_rule": "public" }))
        .await;
    server.post(&format!("{V3}/rooms/{room}/join"), Some(&bob), json!({})).await;
    server
        .put(&format!("{V3}/rooms/{room}/state/m.room.topic/"), Some(&bob), json!({ "topic": "bob can, at 50" }))
        .await;
    send_text(&server, &bob, &room, "t", "hi").await;
    // A refused change is not stored.
    let (status, _) =
        server.put(&format!("{V3}/rooms/{room}/state/m.room.power_levels/"), Some(&bob), json!({ "users": {} })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server.terminate();

    let config = kith::config::Config::load(&server.config_path).unwrap();
    let store = kith::store::Store::connect(&config.database_target().unwrap()).await.unwrap();
    let keys = kith::services::server_keys::ServerKeys::load(
        config.server_name.clone(),
        &config.signing_key_path(server.dir.path()),
    )
    .unwrap();
    let public_keys = keys.public_key_map();
    let rules = ruma::RoomVersionId::V10.rules().unwrap();
    let events = store.all_room_events(&room).await.unwrap();
    assert!(events.len() >= 10, "{}", events.len());
    let mut state: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut by_id = std::collections::HashMap::new();
    for event in &events {
        let object: ruma::CanonicalJsonObject = serde_json::from_value(event.json.clone()).unwrap();
        let verified =
            ruma::signatures::verify_event(&public_keys, &object, &rules).expect("signature and hashes verify");
        assert_eq!(verified, ruma::signatures::Verified::All);
        let reference = ruma::signatures::reference_hash(&object, &rules).unwrap();
        assert_eq!(event.event_id, format!("${reference}"), "event id is the reference hash");
        let pdu = kith::services::rooms::pdu::Pdu::from_json(&event.event_id, &event.json, false).unwrap();
        let auth_events = by_id.clone();
        ruma::state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, |id: &ruma::EventId| {
            auth_events.get(id.as_str()).cloned()
        })
        .expect("passes auth against its auth events");
        let current = state.clone();
        let all = by_id.clone();
        ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, &pdu, |kind, key| {
            current.get(&(kind.to_string(), key.to_owned())).and_then(|id| all.get(id.as_str()).cloned())
        })
        .expect("passes auth against the state before it");
        if let Some(key) = &pdu.state_key {
            state.insert((pdu.kind.to_string(), key.clone()), event.event_id.clone());
        }
        by_id.insert(event.event_id.clone(), pdu);
    }
    let stored: BTreeMap<(String, String), String> = store.current_state(&room).await.unwrap();
    assert_eq!(state, stored, "replaying the events reproduces the current state");
    let deltas = store.current_state_deltas_since(0, 10_000).await.unwrap();
    assert_eq!(
        deltas.iter().filter(|d| d.room_id == room).count(),
        events.iter().filter(|e| e.json.get("state_key").is_some()).count()
    );
    store.close().await;
}

/// Several clients send into one room at once: every event is stored, in one linear
/// order (each event's only parent is the previous one), and the state is intact.
async fn concurrent_sends_keep_one_consistent_order(db: Db) {
    const CLIENTS: usize = 6;
    const PER_CLIENT: usize = 8;
    let mut server = TestServer::start(db).await;
    let (_, alice) = server.register("alice", "pw").await;
    let room = create(&server, &alice, json!({ "preset": "public_chat", "name": "Busy" })).await;
    let mut tokens = Vec::new();
    for i in 0..CLIENTS {
        let (_, token) = server.register(&format!("user{i}"), "pw").await;
        server.post(&format!("{V3}/rooms/{room}/join"), Some(&token), json!({})).await;
        tokens.push(token);
    }
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (base, room) = (server.base.clone(), room.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..PER_CLIENT {
                let url = format!("{base}{V3}/rooms/{room}/send/m.room.message/c{i}n{n}");
                let response = client
                    .put(url)
                    .bearer_auth(&token)
                    .json(&json!({ "msgtype": "m.text", "body": format!("{i}/{n}") }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (_, page) = server.get(&format!("{V3}/rooms/{room}/messages?dir=f&limit=1000"), Some(&alice)).await;
    let bodies: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies.len(), CLIENTS * PER_CLIENT);
    let (_, name) = state_content(&server, &alice, &room, "m.room.name", "").await;
    assert_eq!(name["name"], "Busy");
    server.terminate();

    let config = kith::config::Config::load(&server.config_path).unwrap();
    let store = kith::store::Store::connect(&config.database_target().unwrap()).await.unwrap();
    let events = store.all_room_events(&room).await.unwrap();
    for pair in events.windows(2) {
        assert_eq!(pair[1].json["prev_events"], json!([pair[0].event_id]), "one linear order, no forks");
        assert_eq!(pair[1].depth, pair[0].depth + 1);
    }
    assert_eq!(store.forward_extremities(&room).await.unwrap().len(), 1);
    store.close().await;
}

async fn history_visibility_is_enforced(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice) = server.register("alice", "pw").await;
    let (_, bob) = server.register("bob", "pw").await;
    for (visibility, bob_sees_early) in [("joined", false), ("shared", true)] {
        let initial = json!([{ "type": "m.room.history_visibility", "content": { "history_visibility": visibility } }]);
        let room = create(&server, &alice, json!({ "preset": "public_chat", "initial_state": initial })).await;
        let (_, early) = send_text(&server, &alice, &room, "early", "before bob").await;
        server.post(&format!("{V3}/rooms/{room}/join"), Some(&bob), json!({})).await;
        send_text(&server, &alice, &room, "late", "after bob").await;

        let (_, page) = server.get(&format!("{V3}/rooms/{room}/messages?dir=b&limit=100"), Some(&bob)).await;
        let bodies: Vec<&str> =
            page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
        assert_eq!(bodies.contains(&"before bob"), bob_sees_early, "{visibility}: {bodies:?}");
        assert!(bodies.contains(&"after bob"));
        let early_id = early["event_id"].as_str().unwrap();
        let (status, _) = server.get(&format!("{V3}/rooms/{room}/event/{early_id}"), Some(&bob)).await;
        assert_eq!(status == StatusCode::OK, bob_sees_early, "{visibility}");
        let (_, synced) = server.get(&format!("{V3}/sync"), Some(&bob)).await;
        let timeline = synced["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
        let bodies: Vec<&str> = timeline.iter().filter_map(|e| e["content"]["body"].as_str()).collect();
        assert_eq!(bodies.contains(&"before bob"), bob_sees_early, "{visibility} sync: {bodies:?}");
    }
}

/// Waits (bounded) until `check` holds, for work done in the background.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn global_profile_changes_reach_every_joined_room(db: Db) {
    let mut server = TestServer::start(db).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let mut rooms = Vec::new();
    for i in 0..3 {
        rooms.push(create(&server, &alice, json!({ "preset": "private_chat", "name": format!("r{i}") })).await);
    }
    let left = create(&server, &alice, json!({})).await;
    server.post(&format!("{V3}/rooms/{left}/leave"), Some(&alice), json!({})).await;
    // A per-room nickname in the first room.
    let member_path = |room: &str| format!("{V3}/rooms/{room}/state/m.room.member/{alice_id}");
    server.put(&member_path(&rooms[0]), Some(&alice), json!({ "membership": "join", "displayname": "Nick" })).await;

    let profile = format!("{V3}/profile/{alice_id}");
    let (status, _) =
        server.put(&format!("{profile}/displayname"), Some(&alice), json!({ "displayname": "Alice Cooper" })).await;
    assert_eq!(status, StatusCode::OK);
    for room in &rooms {
        eventually("the member event to show the new name", || async {
            let (_, member) = server.get(&member_path(room), Some(&alice)).await;
            member["displayname"] == "Alice Cooper"
        })
        .await;
    }

    // After a restart the propagation resumes; nothing is sent twice.
    server.put(&format!("{profile}/avatar_url"), Some(&alice), json!({ "avatar_url": "mxc://kith.test/a" })).await;
    server.restart().await;
    for room in &rooms {
        eventually("the member event to show the new avatar", || async {
            let (_, member) = server.get(&member_path(room), Some(&alice)).await;
            member["avatar_url"] == "mxc://kith.test/a" && member["displayname"] == "Alice Cooper"
        })
        .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, page) = server.get(&format!("{V3}/rooms/{}/messages?dir=f&limit=100", rooms[1]), Some(&alice)).await;
    let member_events = page["chunk"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.member").count();
    assert_eq!(member_events, 3, "join, new name, new avatar: {page}");
    // The room alice left got nothing.
    let (_, member) = server.get(&member_path(&left), Some(&alice)).await;
    assert_eq!(member["membership"], "leave");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
