//! Bad input from clients, on both backends alike: U+0000 and broken escapes, sizes and
//! shapes the spec refuses, bodies on every body-taking route, tokens, alias squatting,
//! and long polls at shutdown. Every refusal is a Matrix error (never a 5xx), and what
//! the refused request would have changed is left as it was.

mod common;

use common::matrix::{self, V3, encode};
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Asserts a Matrix error with this status and errcode.
fn refused((status, body): (StatusCode, Value), expected: (StatusCode, &str), what: &str) {
    assert_eq!((status, body["errcode"].as_str()), (expected.0, Some(expected.1)), "{what}: {body}");
    assert!(body["error"].is_string(), "{what}: an error message: {body}");
}

const INVALID: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
const BAD_JSON: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "M_BAD_JSON");

async fn nul_characters_are_refused_everywhere(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, token) = server.register("alice", "pw").await;
    let room = matrix::create_room(&server, &token, json!({})).await;
    let room_path = format!("{V3}/rooms/{}", encode(&room));
    for path in [
        format!("{V3}/rooms/!a%00b:kith.test/state"),
        format!("{room_path}/state/m.room%00.name/"),
        format!("{room_path}/state/m.room.topic/key%00"),
        format!("{room_path}/send/m.room%00.message/txn1"),
        format!("{room_path}/event/$ev%00ent"),
        format!("{V3}/user/{}/account_data/%00", encode(&alice)),
        format!("{V3}/profile/{}/key%00", encode(&alice)),
    ] {
        let (status, body) = server.request(Method::PUT, &path, Some(&token), Some(json!({ "x": "y" }))).await;
        refused((status, body), INVALID, &path);
    }
    let profile = format!("{V3}/profile/{}/displayname", encode(&alice));
    refused(server.put(&profile, Some(&token), json!({ "displayname": "A\u{0}B" })).await, BAD_JSON, "displayname");
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" },
        "password": "pw", "device_id": "D\u{0}X" });
    refused(server.post(&format!("{V3}/login"), None, login).await, BAD_JSON, "device_id");
    let markers = json!({ "m.fully_read": "$x\u{0}" });
    refused(server.post(&format!("{room_path}/read_markers"), Some(&token), markers).await, BAD_JSON, "read marker");
    let alias = format!("{V3}/directory/room/{}", encode("#nul:kith.test"));
    refused(server.put(&alias, Some(&token), json!({ "room_id": "!a\u{0}:kith.test" })).await, BAD_JSON, "room_id");

    // Nothing was stored: the user's name is intact and rooms can still be created.
    let (_, name) = server.get(&profile, None).await;
    assert_eq!(name["displayname"], "alice");
    matrix::create_room(&server, &token, json!({ "name": "still fine" })).await;
    let (_, sync) = server.get(&format!("{V3}/sync"), Some(&token)).await;
    let stored: Vec<&Value> =
        sync["account_data"]["events"].as_array().unwrap().iter().filter(|e| e["type"] != "m.push_rules").collect();
    assert!(stored.is_empty(), "only the default push rules: {stored:?}");
}

async fn broken_escapes_and_empty_ids_are_refused(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, token) = server.register("alice", "pw").await;
    let me = encode(&alice);
    refused(server.get(&format!("{V3}/profile/%ZZ"), None).await, INVALID, "%ZZ");
    refused(server.get(&format!("{V3}/rooms/%ZZ/state"), Some(&token)).await, INVALID, "%ZZ room");
    let global = format!("{V3}/user/{me}/account_data/org.example");
    assert_eq!(server.put(&global, Some(&token), json!({ "a": 1 })).await.0, StatusCode::OK);
    let empty_room = format!("{V3}/user/{me}/rooms//account_data/org.example");
    refused(server.get(&empty_room, Some(&token)).await, INVALID, "empty room id");
}

async fn event_sizes_and_shapes_follow_the_spec(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let room = matrix::create_room(&server, &token, json!({})).await;
    let room_path = format!("{V3}/rooms/{}", encode(&room));
    let long_key = "k".repeat(3_000);
    let long_type = "t".repeat(300);
    for (path, what) in [
        (format!("{room_path}/state/org.example/{long_key}"), "3000-byte state key"),
        (format!("{room_path}/state/{long_type}/"), "300-byte type"),
        (format!("{room_path}/send/{long_type}/txn1"), "300-byte message type"),
        (format!("{room_path}/state//key"), "empty state type"),
        (format!("{room_path}/send//txn2"), "empty message type"),
    ] {
        refused(server.put(&path, Some(&token), json!({ "a": 1 })).await, INVALID, what);
    }
    let name = format!("{room_path}/state/m.room.name/");
    refused(server.put(&name, Some(&token), json!({ "name": 5 })).await, BAD_JSON, "numeric name");
    let topic = format!("{room_path}/state/m.room.topic/");
    refused(server.put(&topic, Some(&token), json!({ "topic": ["x"] })).await, BAD_JSON, "list topic");
    assert_eq!(server.put(&name, Some(&token), json!({ "name": "Fine" })).await.0, StatusCode::OK);
    let (_, state) = server.get(&format!("{room_path}/state/m.room.name/"), Some(&token)).await;
    assert_eq!(state["name"], "Fine");
}

async fn sessions_filters_and_account_data_are_checked(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, token) = server.register("alice", "pw").await;
    let me = encode(&alice);
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" },
        "password": "pw", "initial_device_display_name": "d".repeat(101) });
    refused(server.post(&format!("{V3}/login"), None, login).await, (StatusCode::BAD_REQUEST, "M_TOO_LARGE"), "name");

    let filter_path = format!("{V3}/user/{me}/filter");
    for filter in [
        json!({ "room": 0 }),
        json!({ "room": { "timeline": { "limit": -1 } } }),
        json!({ "room": { "timeline": { "limit": "ten" } } }),
        json!({ "event_fields": 1e308 }),
    ] {
        refused(server.post(&filter_path, Some(&token), filter.clone()).await, BAD_JSON, &filter.to_string());
        let inline = format!("{V3}/sync?filter={}", encode(&filter.to_string()));
        refused(server.get(&inline, Some(&token)).await, BAD_JSON, "inline filter");
    }
    let (status, _) = server.post(&filter_path, Some(&token), json!({ "room": { "timeline": { "limit": 5 } } })).await;
    assert_eq!(status, StatusCode::OK);

    let room = matrix::create_room(&server, &token, json!({})).await;
    for kind in ["m.fully_read", "m.push_rules"] {
        let path = format!("{V3}/user/{me}/rooms/{}/account_data/{kind}", encode(&room));
        let expected = (StatusCode::METHOD_NOT_ALLOWED, "M_BAD_JSON");
        refused(server.put(&path, Some(&token), json!({ "event_id": "$x" })).await, expected, kind);
    }
    let markers = format!("{V3}/rooms/{}/read_markers", encode(&room));
    let missing = json!({ "m.fully_read": "$nosuchevent:kith.test" });
    refused(
        server.post(&markers, Some(&token), missing).await,
        (StatusCode::NOT_FOUND, "M_NOT_FOUND"),
        "missing event",
    );
    let huge = json!({ "m.fully_read": "x".repeat(100_000) });
    refused(server.post(&markers, Some(&token), huge).await, INVALID, "huge event id");

    let (_, sync) = server.get(&format!("{V3}/sync"), Some(&token)).await;
    let next = sync["next_batch"].as_str().unwrap();
    let future = next.replacen(&next[1..next.find('_').unwrap()], "999999999", 1);
    refused(server.get(&format!("{V3}/sync?since={future}"), Some(&token)).await, INVALID, "future token");
}

async fn every_body_taking_route_parses_its_body(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let room = matrix::create_room(&server, &token, json!({ "preset": "public_chat" })).await;
    let event = matrix::send_text(&server, &token, &room, "hello").await;
    let room = encode(&room);
    let routes = [
        format!("{V3}/join/{room}"),
        format!("{V3}/rooms/{room}/join"),
        format!("{V3}/rooms/{room}/receipt/m.read/{}", encode(&event)),
        format!("{V3}/rooms/{room}/forget"),
        format!("{V3}/publicRooms"),
        format!("{V3}/logout/all"),
    ];
    let oversized = vec![b' '; 2 * 1024 * 1024];
    for path in &routes {
        let bodies: [(Vec<u8>, (StatusCode, &str)); 4] = [
            (vec![0xff, 0xfe], (StatusCode::BAD_REQUEST, "M_NOT_JSON")),
            (b"{not json".to_vec(), (StatusCode::BAD_REQUEST, "M_NOT_JSON")),
            (b"[]".to_vec(), BAD_JSON),
            (b"null".to_vec(), BAD_JSON),
        ];
        for (body, expected) in bodies {
            refused(server.raw(Method::POST, path, Some(&token), body).await, expected, path);
        }
    }
    // The server closes a connection whose body it refused unread: a fresh connection
    // for each oversized request.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for path in &routes {
        let request = client.post(format!("{}{path}", server.base)).bearer_auth(&token).body(oversized.clone());
        let response = request.send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        refused((status, body), (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"), path);
    }
    // The account still works: nothing was logged out by a refused request.
    let (status, _) = server.get(&format!("{V3}/account/whoami"), Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
}

async fn tokens_are_checked_where_they_are_optional(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let room = matrix::create_room(&server, &token, json!({ "room_alias_name": "town" })).await;
    let unknown = (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    refused(server.get(&format!("{V3}/publicRooms"), Some("wrong")).await, unknown, "GET publicRooms");
    refused(server.post(&format!("{V3}/publicRooms"), Some("wrong"), json!({})).await, unknown, "POST publicRooms");
    let alias = format!("{V3}/directory/room/{}", encode("#town:kith.test"));
    refused(server.get(&alias, Some("wrong")).await, unknown, "GET alias");
    let (status, body) = server.get(&alias, None).await;
    assert_eq!((status, body["room_id"].as_str()), (StatusCode::OK, Some(room.as_str())));
    let missing = (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    refused(server.post(&format!("{V3}/publicRooms"), None, json!({})).await, missing, "POST publicRooms, no token");
    let mixed = format!("{V3}/account/whoami?access_token=wrong");
    refused(server.get(&mixed, Some(&token)).await, missing, "header and query token");
}

async fn public_room_lists_page_and_search(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    for name in ["Apples", "Bananas", "Cherries"] {
        matrix::create_room(&server, &token, json!({ "preset": "public_chat", "visibility": "public", "name": name }))
            .await;
    }
    let path = format!("{V3}/publicRooms");
    let (_, first) = server.post(&path, Some(&token), json!({ "limit": 2 })).await;
    assert_eq!(first["chunk"].as_array().unwrap().len(), 2, "{first}");
    let next = first["next_batch"].as_str().expect("next_batch").to_owned();
    let (_, second) = server.post(&path, Some(&token), json!({ "limit": 2, "since": next })).await;
    assert_eq!(second["chunk"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["total_room_count_estimate"], 3);
    let search = json!({ "filter": { "generic_search_term": "banana" } });
    let (_, found) = server.post(&path, Some(&token), search).await;
    let names: Vec<&str> = found["chunk"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, vec!["Bananas"]);
    refused(server.get(&format!("{path}?limit=-1"), None).await, INVALID, "negative limit");
    refused(server.post(&path, Some(&token), json!({ "since": "abc" })).await, INVALID, "bad since");
    refused(server.post(&path, Some(&token), json!({ "limit": 1e308 })).await, BAD_JSON, "float limit");
}

async fn only_members_alias_a_room(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice) = server.register("alice", "pw").await;
    let (_, bob) = server.register("bob", "pw").await;
    let private = matrix::create_room(&server, &bob, json!({ "preset": "private_chat" })).await;
    let squat = format!("{V3}/directory/room/{}", encode("#squat:kith.test"));
    let forbidden = (StatusCode::FORBIDDEN, "M_FORBIDDEN");
    refused(server.put(&squat, Some(&alice), json!({ "room_id": private })).await, forbidden, "non-member alias");
    let (status, _) = server.get(&squat, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the alias was not created");
    assert_eq!(server.put(&squat, Some(&bob), json!({ "room_id": private })).await.0, StatusCode::OK);
}

/// Long polls open at SIGTERM are answered (with what there is) rather than dropped.
async fn long_polls_are_answered_at_shutdown(db: Db) {
    let mut server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let (_, sync) = server.get(&format!("{V3}/sync"), Some(&token)).await;
    let since = sync["next_batch"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let mut polls = Vec::new();
    for _ in 0..20 {
        let url = format!("{}{V3}/sync?timeout=60000&since={}", server.base, encode(&since));
        polls.push(tokio::spawn(client.get(url).bearer_auth(&token).send()));
    }
    // Each poll is waiting once the server has registered it; give them a moment to arrive.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let terminate = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, server)
    });
    for poll in polls {
        let response = poll.await.unwrap().expect("a long poll was dropped at shutdown");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert!(body["next_batch"].is_string(), "{body}");
    }
    let (status, server) = terminate.await.unwrap();
    assert!(status.success(), "{}", server.log());
}

both_backends!(
    nul_characters_are_refused_everywhere,
    broken_escapes_and_empty_ids_are_refused,
    event_sizes_and_shapes_follow_the_spec,
    sessions_filters_and_account_data_are_checked,
    every_body_taking_route_parses_its_body,
    tokens_are_checked_where_they_are_optional,
    public_room_lists_page_and_search,
    only_members_alias_a_room,
    long_polls_are_answered_at_shutdown,
);
