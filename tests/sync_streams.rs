//! An incremental `/sync` reads only the rooms something moved in: each kind of news
//! (a message, a receipt, typing, room account data) shows in its own room and in no
//! other, a message in a room the user is not in is no news, and a change of push rules
//! applies to the next message although the evaluator keeps parsed rules. Over HTTP on
//! both backends.

mod common;

use std::time::Duration;

use common::matrix::{self, V3, encode, eventually};
use common::{Db, TestServer};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

struct Sync<'a> {
    server: &'a TestServer,
    token: String,
    since: String,
}

impl Sync<'_> {
    /// The next incremental answer (waiting up to `timeout_ms` for news).
    async fn next(&mut self, timeout_ms: u64) -> Value {
        let path = format!("{V3}/sync?timeout={timeout_ms}&since={}", encode(&self.since));
        let answer = matrix::ok(self.server, reqwest::Method::GET, &path, &self.token, None).await;
        self.since = answer["next_batch"].as_str().unwrap().to_owned();
        answer
    }
}

fn joined_rooms(answer: &Value) -> Vec<String> {
    let mut rooms: Vec<String> =
        answer["rooms"]["join"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default();
    rooms.sort();
    rooms
}

fn ephemeral_types(answer: &Value, room: &str) -> Vec<String> {
    let events = answer["rooms"]["join"][room]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
    events.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

async fn each_kind_of_news_shows_in_its_room_only(db: Db) {
    let server = TestServer::start(db).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let (_, bob) = server.register("bob", "pw").await;
    let (_, carol) = server.register("carol", "pw").await;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        let room = matrix::create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
        assert!(matrix::join(&server, &bob, &room, common::SERVER_NAME).await.0.is_success());
        rooms.push(room);
    }
    let (a, b, c) = (&rooms[0], &rooms[1], &rooms[2]);
    let receipt_target = matrix::send_text(&server, &bob, b, "in b").await;
    let carols = matrix::create_room(&server, &carol, json!({ "preset": "private_chat" })).await;
    let initial = matrix::ok(&server, reqwest::Method::GET, &format!("{V3}/sync"), &alice, None).await;
    let mut sync =
        Sync { server: &server, token: alice.clone(), since: initial["next_batch"].as_str().unwrap().to_owned() };

    assert_eq!(joined_rooms(&sync.next(0).await), Vec::<String>::new(), "nothing new");
    matrix::send_text(&server, &carol, &carols, "elsewhere").await;
    assert_eq!(joined_rooms(&sync.next(0).await), Vec::<String>::new(), "news in a room alice is not in");

    matrix::send_text(&server, &bob, a, "hello a").await;
    let answer = sync.next(5_000).await;
    assert_eq!(joined_rooms(&answer), vec![a.clone()], "a message: {answer}");
    assert_eq!(answer["rooms"]["join"][a]["timeline"]["events"][0]["content"]["body"], "hello a", "{answer}");

    let receipt = format!("{V3}/rooms/{}/receipt/m.read/{}", encode(b), encode(&receipt_target));
    matrix::ok(&server, reqwest::Method::POST, &receipt, &bob, Some(json!({}))).await;
    let answer = sync.next(5_000).await;
    assert_eq!(joined_rooms(&answer), vec![b.clone()], "a receipt: {answer}");
    assert_eq!(ephemeral_types(&answer, b), vec!["m.receipt"], "{answer}");

    let bob_id = format!("@bob:{}", common::SERVER_NAME);
    let typing = format!("{V3}/rooms/{}/typing/{}", encode(c), encode(&bob_id));
    matrix::ok(&server, reqwest::Method::PUT, &typing, &bob, Some(json!({ "typing": true, "timeout": 30_000 }))).await;
    let answer = sync.next(5_000).await;
    assert_eq!(joined_rooms(&answer), vec![c.clone()], "typing: {answer}");
    assert_eq!(ephemeral_types(&answer, c), vec!["m.typing"], "{answer}");

    let tag = format!("{V3}/user/{}/rooms/{}/account_data/org.example.note", encode(&alice_id), encode(a));
    matrix::ok(&server, reqwest::Method::PUT, &tag, &alice, Some(json!({ "note": "a" }))).await;
    let answer = sync.next(5_000).await;
    assert_eq!(joined_rooms(&answer), vec![a.clone()], "room account data: {answer}");
    assert_eq!(answer["rooms"]["join"][a]["account_data"]["events"][0]["type"], "org.example.note", "{answer}");
    assert_eq!(joined_rooms(&sync.next(0).await), Vec::<String>::new(), "nothing new again");
}

/// A room's notification count as alice's initial `/sync` gives it.
async fn notification_count(server: &TestServer, token: &str, room: &str) -> Option<i64> {
    let answer = matrix::ok(server, reqwest::Method::GET, &format!("{V3}/sync"), token, None).await;
    answer["rooms"]["join"][room]["unread_notifications"]["notification_count"].as_i64()
}

async fn changed_push_rules_apply_to_the_next_message(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice) = server.register("alice", "pw").await;
    let (_, bob) = server.register("bob", "pw").await;
    let room = matrix::create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    let marker = matrix::create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    for room in [&room, &marker] {
        assert!(matrix::join(&server, &bob, room, common::SERVER_NAME).await.0.is_success());
    }
    matrix::send_text(&server, &bob, &room, "first").await;
    eventually("the first message notifies", WAIT, || async {
        (notification_count(&server, &alice, &room).await == Some(1)).then_some(())
    })
    .await;
    // The evaluator has read alice's rules by now; she silences the room.
    let rule = format!("{V3}/pushrules/global/room/{}", encode(&room));
    matrix::ok(&server, reqwest::Method::PUT, &rule, &alice, Some(json!({ "actions": [] }))).await;
    matrix::send_text(&server, &bob, &room, "second").await;
    matrix::send_text(&server, &bob, &marker, "after").await;
    // Once the later message in the other room notifies, the second one was evaluated.
    eventually("the later message notifies", WAIT, || async {
        (notification_count(&server, &alice, &marker).await == Some(1)).then_some(())
    })
    .await;
    assert_eq!(notification_count(&server, &alice, &room).await, Some(1), "the silenced room's count");
}

both_backends!(each_kind_of_news_shows_in_its_room_only, changed_push_rules_apply_to_the_next_message);
