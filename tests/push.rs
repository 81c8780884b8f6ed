//! Push rules, notifications with unread counts in `/sync`, and pushers, over HTTP on
//! both backends.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::matrix::{self, V3, encode, eventually};
use common::{Db, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn push_rules_read_and_change(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let (status, rules) = server.get(&format!("{V3}/pushrules/"), Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{rules}");
    let ids = |kind: &str| -> Vec<String> {
        rules["global"][kind].as_array().unwrap().iter().map(|r| r["rule_id"].as_str().unwrap().to_owned()).collect()
    };
    for (kind, id) in [
        ("override", ".m.rule.master"),
        ("override", ".m.rule.is_user_mention"),
        ("underride", ".m.rule.message"),
        ("underride", ".m.rule.encrypted"),
    ] {
        assert!(ids(kind).contains(&id.to_owned()), "{kind} {id}: {rules}");
    }
    let (_, sync) = server.get(&format!("{V3}/sync"), Some(&token)).await;
    let in_sync = sync["account_data"]["events"].as_array().unwrap().iter().any(|e| e["type"] == "m.push_rules");
    assert!(in_sync, "the first sync carries the push rules: {sync}");

    let rule = format!("{V3}/pushrules/global/content/cats");
    let body = json!({ "pattern": "cat*", "actions": ["notify", { "set_tweak": "highlight" }] });
    assert_eq!(server.put(&rule, Some(&token), body).await.0, StatusCode::OK);
    let (_, got) = server.get(&rule, Some(&token)).await;
    assert_eq!((got["pattern"].as_str(), got["enabled"].as_bool()), (Some("cat*"), Some(true)), "{got}");
    assert_eq!(
        server.put(&format!("{rule}/enabled"), Some(&token), json!({ "enabled": false })).await.0,
        StatusCode::OK
    );
    let (_, enabled) = server.get(&format!("{rule}/enabled"), Some(&token)).await;
    assert_eq!(enabled, json!({ "enabled": false }));
    assert_eq!(server.put(&format!("{rule}/actions"), Some(&token), json!({ "actions": [] })).await.0, StatusCode::OK);
    let (_, actions) = server.get(&format!("{rule}/actions"), Some(&token)).await;
    assert_eq!(actions, json!({ "actions": [] }));
    let master = format!("{V3}/pushrules/global/override/.m.rule.master/enabled");
    assert_eq!(server.put(&master, Some(&token), json!({ "enabled": true })).await.0, StatusCode::OK);
    let (status, _) = server.request(reqwest::Method::DELETE, &rule, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get(&rule, Some(&token)).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")));

    for (path, body, expected) in [
        (format!("{V3}/pushrules/global/nonsense/x"), json!({ "actions": [] }), "M_INVALID_PARAM"),
        (format!("{V3}/pushrules/global/override/.m.rule.mine"), json!({ "actions": [] }), "M_INVALID_PARAM"),
        (format!("{V3}/pushrules/global/content/nopattern"), json!({ "actions": [] }), "M_MISSING_PARAM"),
        (format!("{V3}/pushrules/global/room/not-a-room"), json!({ "actions": [] }), "M_INVALID_PARAM"),
        (format!("{V3}/pushrules/device/override/x"), json!({ "actions": [] }), "M_INVALID_PARAM"),
        (format!("{V3}/pushrules/global/override/x"), json!({ "actions": 5 }), "M_BAD_JSON"),
    ] {
        let (status, answer) = server.put(&path, Some(&token), body).await;
        assert_eq!((status, answer["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some(expected)), "{path}: {answer}");
    }
}

async fn unread(server: &TestServer, token: &str, room: &str) -> (i64, i64) {
    let (_, sync) = server.get(&format!("{V3}/sync"), Some(token)).await;
    let counts = &sync["rooms"]["join"][room]["unread_notifications"];
    (counts["notification_count"].as_i64().unwrap_or(-1), counts["highlight_count"].as_i64().unwrap_or(-1))
}

async fn messages_notify_and_receipts_clear(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, alice_t) = server.register("alice", "pw").await;
    let (_, bob_t) = server.register("bob", "pw").await;
    let room = matrix::create_room(&server, &alice_t, json!({ "preset": "public_chat" })).await;
    assert_eq!(matrix::join(&server, &bob_t, &room, "kith.test").await.0, StatusCode::OK);
    matrix::send_text(&server, &bob_t, &room, "just chatting").await;
    // Mentions are explicit (`m.mentions`); a name in the body alone no longer highlights.
    let path = format!("{V3}/rooms/{}/send/m.room.message/mention", encode(&room));
    let content = json!({ "msgtype": "m.text", "body": "hey Alice, look", "m.mentions": { "user_ids": [alice] } });
    let mention = server.put(&path, Some(&bob_t), content).await.1["event_id"].as_str().unwrap().to_owned();
    eventually("two notifications, one highlighted", WAIT, || async {
        (unread(&server, &alice_t, &room).await == (2, 1)).then_some(())
    })
    .await;
    let (_, listed) = server.get(&format!("{V3}/notifications"), Some(&alice_t)).await;
    let events: Vec<&Value> = listed["notifications"].as_array().unwrap().iter().collect();
    assert_eq!(events.len(), 2, "{listed}");
    assert_eq!(events[0]["event"]["event_id"], mention, "newest first");
    let (_, highlights) = server.get(&format!("{V3}/notifications?only=highlight"), Some(&alice_t)).await;
    assert_eq!(highlights["notifications"].as_array().unwrap().len(), 1, "{highlights}");
    assert_eq!(unread(&server, &bob_t, &room).await, (0, 0), "one's own messages do not notify");

    let receipt = format!("{V3}/rooms/{}/receipt/m.read/{}", encode(&room), encode(&mention));
    assert_eq!(server.post(&receipt, Some(&alice_t), json!({})).await.0, StatusCode::OK);
    assert_eq!(unread(&server, &alice_t, &room).await, (0, 0), "read up to the mention");
    let (_, listed) = server.get(&format!("{V3}/notifications"), Some(&alice_t)).await;
    assert_eq!(listed["notifications"][0]["read"], true, "{listed}");
}

/// The evaluator keeps a room's members while the state before its messages stays the
/// same: a member who joins between two messages is notified of the second.
async fn members_who_join_are_notified_of_the_next_message(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice_t) = server.register("alice", "pw").await;
    let (_, bob_t) = server.register("bob", "pw").await;
    let (_, carol_t) = server.register("carol", "pw").await;
    let room = matrix::create_room(&server, &alice_t, json!({ "preset": "public_chat" })).await;
    assert_eq!(matrix::join(&server, &bob_t, &room, "kith.test").await.0, StatusCode::OK);
    matrix::send_text(&server, &bob_t, &room, "before carol").await;
    eventually("alice notified", WAIT, || async { (unread(&server, &alice_t, &room).await == (1, 0)).then_some(()) })
        .await;
    assert_eq!(matrix::join(&server, &carol_t, &room, "kith.test").await.0, StatusCode::OK);
    matrix::send_text(&server, &bob_t, &room, "after carol").await;
    eventually("carol notified of the message after her join", WAIT, || async {
        (unread(&server, &carol_t, &room).await == (1, 0)).then_some(())
    })
    .await;
    assert_eq!(unread(&server, &alice_t, &room).await, (2, 0));
}

async fn pushers_are_stored_listed_and_removed(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let pusher = json!({
        "app_id": "org.example.app", "pushkey": "key1", "kind": "http", "app_display_name": "App",
        "device_display_name": "Phone", "lang": "en", "data": { "url": "https://push.example/_matrix/push/v1/notify" },
    });
    assert_eq!(server.post(&format!("{V3}/pushers/set"), Some(&token), pusher).await.0, StatusCode::OK);
    let (_, listed) = server.get(&format!("{V3}/pushers"), Some(&token)).await;
    assert_eq!(listed["pushers"][0]["pushkey"], "key1", "{listed}");
    let bad = json!({ "app_id": "x", "pushkey": "k", "kind": "http", "app_display_name": "A", "device_display_name": "D", "lang": "en", "data": {} });
    let (status, body) = server.post(&format!("{V3}/pushers/set"), Some(&token), bad).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM")), "{body}");
    let remove = json!({ "app_id": "org.example.app", "pushkey": "key1", "kind": null });
    assert_eq!(server.post(&format!("{V3}/pushers/set"), Some(&token), remove).await.0, StatusCode::OK);
    let (_, listed) = server.get(&format!("{V3}/pushers"), Some(&token)).await;
    assert_eq!(listed, json!({ "pushers": [] }));

    // At most 50 pushers; with 50, one of them may still be changed, but none added.
    let url = "https://push.example/_matrix/push/v1/notify";
    for n in 0..50 {
        set_pusher(&server, &token, &format!("key{n}"), url).await;
    }
    set_pusher(&server, &token, "key7", "https://other.example/_matrix/push/v1/notify").await;
    let pusher = json!({ "app_id": "a", "pushkey": "key50", "kind": "http", "app_display_name": "App",
                         "device_display_name": "Phone", "lang": "en", "data": { "url": url } });
    let (status, body) = server.post(&format!("{V3}/pushers/set"), Some(&token), pusher).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_LIMIT_EXCEEDED")), "{body}");
    let (_, listed) = server.get(&format!("{V3}/pushers"), Some(&token)).await;
    let changed = listed["pushers"].as_array().into_iter().flatten().find(|p| p["pushkey"] == "key7");
    assert_eq!(changed.map(|p| p["data"]["url"].clone()), Some(json!("https://other.example/_matrix/push/v1/notify")));
}

/// A push gateway on loopback: it records what it is sent and rejects the push key
/// `gone`. It stops when dropped.
struct FakeGateway {
    url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeGateway {
    async fn start() -> Self {
        let received: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
        let kept = received.clone();
        let app = axum::Router::new().route(
            "/_matrix/push/v1/notify",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let rejected: Vec<Value> = body["notification"]["devices"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|d| d["pushkey"] == "gone")
                    .map(|d| d["pushkey"].clone())
                    .collect();
                kept.lock().unwrap_or_else(|p| p.into_inner()).push(body);
                async move { axum::Json(json!({ "rejected": rejected })) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the gateway");
        let url = format!("http://{}/_matrix/push/v1/notify", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, received, task }
    }

    fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A message to alice reaches her phone's push gateway with the event, her unread count
/// and the tweaks of the rule that matched; a push key the gateway rejects is removed.
async fn notifications_reach_the_push_gateway(db: Db) {
    let gateway = FakeGateway::start().await;
    let server = TestServer::start_with(db, "ip_range_whitelist: ['127.0.0.1']").await;
    let (_, alice_t) = server.register("alice", "pw").await;
    let (bob, bob_t) = server.register("bob", "pw").await;
    let pusher = |pushkey: &str, data: Value| {
        json!({ "app_id": "org.example.app", "pushkey": pushkey, "kind": "http", "app_display_name": "App",
                "device_display_name": "Phone", "lang": "en", "data": data })
    };
    let set = format!("{V3}/pushers/set");
    let full = pusher("phone", json!({ "url": gateway.url, "extra": "kept" }));
    assert_eq!(server.post(&set, Some(&alice_t), full).await.0, StatusCode::OK);
    let id_only = pusher("gone", json!({ "url": gateway.url, "format": "event_id_only" }));
    assert_eq!(server.post(&set, Some(&alice_t), id_only).await.0, StatusCode::OK);
    let wrong_path = pusher("k", json!({ "url": "https://push.example/notify" }));
    let (status, body) = server.post(&set, Some(&alice_t), wrong_path).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{body}");

    let room =
        matrix::create_room(&server, &alice_t, json!({ "preset": "trusted_private_chat", "invite": [bob] })).await;
    matrix::membership_action(&server, &bob_t, &room, "join", json!({})).await;
    let event_id = matrix::send_text(&server, &bob_t, &room, "ring ring").await;
    let pushes = eventually("both pushes", WAIT, || async {
        let pushes: Vec<Value> =
            gateway.received().into_iter().filter(|p| p["notification"]["event_id"] == event_id.as_str()).collect();
        (pushes.len() == 2).then_some(pushes)
    })
    .await;
    let by_key =
        |key: &str| pushes.iter().find(|p| p["notification"]["devices"][0]["pushkey"] == key).cloned().expect("a push");
    let full = &by_key("phone")["notification"];
    assert_eq!((full["room_id"].as_str(), full["type"].as_str()), (Some(room.as_str()), Some("m.room.message")));
    assert_eq!((full["sender"].as_str(), full["content"]["body"].as_str()), (Some(bob.as_str()), Some("ring ring")));
    assert_eq!((full["prio"].as_str(), full["counts"]["unread"].as_i64()), (Some("high"), Some(1)), "{full}");
    let device = &full["devices"][0];
    assert_eq!(device["app_id"], "org.example.app");
    assert_eq!(device["data"], json!({ "extra": "kept" }), "the URL is not sent on");
    assert_eq!(device["tweaks"]["sound"], "default", "a one-to-one room rings: {full}");
    let id_only = &by_key("gone")["notification"];
    assert!(id_only.get("content").is_none() && id_only.get("sender").is_none(), "{id_only}");
    assert_eq!(id_only["counts"]["unread"], 1);

    let pushers = eventually("the rejected pusher removed", WAIT, || async {
        let (_, listed) = server.get(&format!("{V3}/pushers"), Some(&alice_t)).await;
        (listed["pushers"].as_array().map(Vec::len) == Some(1)).then_some(listed)
    })
    .await;
    assert_eq!(pushers["pushers"][0]["pushkey"], "phone");
}

/// A gateway on a blacklisted address is never asked, nor one at `0.0.0.0` (which
/// reaches the host's own services whatever the blacklist says).
async fn blacklisted_gateways_are_not_asked(db: Db) {
    let gateway = FakeGateway::start().await;
    let server = TestServer::start(db).await;
    let (_, alice_t) = server.register("alice", "pw").await;
    let (bob, bob_t) = server.register("bob", "pw").await;
    let unspecified = gateway.url.replace("127.0.0.1", "0.0.0.0");
    for (pushkey, url) in [("k", &gateway.url), ("k0", &unspecified)] {
        let pusher = json!({ "app_id": "a", "pushkey": pushkey, "kind": "http", "app_display_name": "App",
                             "device_display_name": "Phone", "lang": "en", "data": { "url": url } });
        assert_eq!(server.post(&format!("{V3}/pushers/set"), Some(&alice_t), pusher).await.0, StatusCode::OK);
    }
    let room =
        matrix::create_room(&server, &alice_t, json!({ "preset": "trusted_private_chat", "invite": [bob] })).await;
    matrix::membership_action(&server, &bob_t, &room, "join", json!({})).await;
    matrix::send_text(&server, &bob_t, &room, "hello").await;
    eventually("both refusals logged", WAIT, || async {
        (server.log().matches("push gateway not allowed").count() == 2).then_some(())
    })
    .await;
    assert!(gateway.received().is_empty());
}

/// A gateway that never answers, counting the requests it holds open.
struct SilentGateway {
    url: String,
    open: Arc<AtomicUsize>,
    first_open: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// A gateway that answers 200 with an endless body, counting the answers cut short.
struct FloodingGateway {
    url: String,
    cut_short: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

const FLOOD_BYTES: usize = 300 * 1024 * 1024;

impl SilentGateway {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/_matrix/push/v1/notify", listener.local_addr().expect("address"));
        let (open, first_open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (held, first) = (open.clone(), first_open.clone());
        let task = tokio::spawn(async move {
            let mut accepted = 0;
            while let Ok((mut stream, _)) = listener.accept().await {
                accepted += 1;
                let is_first = accepted == 1;
                let (held, first) = (held.clone(), first.clone());
                held.fetch_add(1, Ordering::SeqCst);
                first.fetch_or(is_first, Ordering::SeqCst);
                tokio::spawn(async move {
                    // Read (and ignore) until the client gives up on us.
                    let mut sink = [0u8; 4096];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    held.fetch_sub(1, Ordering::SeqCst);
                    if is_first {
                        first.store(false, Ordering::SeqCst);
                    }
                });
            }
        });
        Self { url, open, first_open, task }
    }
}

impl FloodingGateway {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/_matrix/push/v1/notify", listener.local_addr().expect("address"));
        let cut_short = Arc::new(AtomicUsize::new(0));
        let counted = cut_short.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    if flood(stream).await.is_err() {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Self { url, cut_short, task }
    }
}

/// Reads a request's head, then answers 200 with `FLOOD_BYTES` of JSON-looking noise
/// and no length; an error means the client hung up first.
async fn flood(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n[").await?;
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..FLOOD_BYTES / chunk.len() {
        stream.write_all(&chunk).await?;
    }
    stream.write_all(b"]").await
}

impl Drop for SilentGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for FloodingGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn set_pusher(server: &TestServer, token: &str, pushkey: &str, url: &str) {
    let pusher = json!({ "app_id": "a", "pushkey": pushkey, "kind": "http", "app_display_name": "App",
                         "device_display_name": "Phone", "lang": "en", "data": { "url": url } });
    let (status, body) = server.post(&format!("{V3}/pushers/set"), Some(token), pusher).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Alice's gateways are hostile: one never answers, one answers with an endless body.
/// Neither holds up Bob's pushes, and the endless answer is not read.
async fn hostile_gateways_delay_only_their_own_pushes(db: Db) {
    let (silent, flooding, good) =
        (SilentGateway::start().await, FloodingGateway::start().await, FakeGateway::start().await);
    let server = TestServer::start_with(db, "ip_range_whitelist: ['127.0.0.1']").await;
    let (alice, alice_t) = server.register("alice", "pw").await;
    let (bob, bob_t) = server.register("bob", "pw").await;
    let (_, carol_t) = server.register("carol", "pw").await;
    set_pusher(&server, &alice_t, "silent", &silent.url).await;
    set_pusher(&server, &alice_t, "flood", &flooding.url).await;
    set_pusher(&server, &bob_t, "good", &good.url).await;
    let room = matrix::create_room(&server, &carol_t, json!({ "preset": "public_chat" })).await;
    for token in [&alice_t, &bob_t] {
        matrix::membership_action(&server, token, &room, "join", json!({})).await;
    }
    let baseline_kib = server.peak_resident_kib().expect("peak memory");

    let mention = |user: &str, text: &str| {
        json!({ "msgtype": "m.text", "body": format!("{user}: {text}"),
                                                  "m.mentions": { "user_ids": [user] } })
    };
    let send_path = |txn: &str| format!("{V3}/rooms/{}/send/m.room.message/{txn}", encode(&room));
    assert_eq!(server.put(&send_path("t1"), Some(&carol_t), mention(&alice, "first")).await.0, StatusCode::OK);
    eventually("the silent gateway holding alice's push", WAIT, || async {
        silent.first_open.load(Ordering::SeqCst).then_some(())
    })
    .await;
    let (status, second) = server.put(&send_path("t2"), Some(&carol_t), mention(&bob, "second")).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let event_id = second["event_id"].clone();
    eventually("bob's push", WAIT, || async {
        good.received().iter().any(|push| push["notification"]["event_id"] == event_id).then_some(())
    })
    .await;
    assert!(
        silent.first_open.load(Ordering::SeqCst),
        "bob's push went out while alice's first one was still held by her gateway ({} open)",
        silent.open.load(Ordering::SeqCst)
    );

    eventually("the endless answer cut short", WAIT, || async {
        (flooding.cut_short.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let grown_kib = server.peak_resident_kib().expect("peak memory").saturating_sub(baseline_kib);
    assert!(grown_kib < 64 * 1024, "a gateway's answer is not read whole: peak memory grew {grown_kib} KiB");
}

both_backends!(
    push_rules_read_and_change,
    messages_notify_and_receipts_clear,
    members_who_join_are_notified_of_the_next_message,
    pushers_are_stored_listed_and_removed,
    notifications_reach_the_push_gateway,
    blacklisted_gateways_are_not_asked,
    hostile_gateways_delay_only_their_own_pushes,
);
