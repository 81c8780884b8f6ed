//! One ordinary user must not be able to stall the server or fill it: costly directory
//! searches, to-device messages fanned out to made-up servers, a flooded to-device
//! inbox. Each limit answers with a Matrix error and loses nothing it accepted.

mod common;

use std::time::Duration;

use common::fake_server::FakeServer;
use common::matrix::{V3, encode, eventually};
use common::{Db, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_backends!(
    huge_directory_terms_are_bounded,
    one_user_cannot_fill_an_inbox,
    one_server_cannot_fill_an_inbox,
    to_device_fan_out_to_unknown_servers_is_bounded,
);

/// A liveness bound, not a performance target: what used to take minutes of CPU under
/// the index lock must not keep the server from answering.
const ANSWERS_WITHIN: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(ANSWERS_WITHIN, request).await.unwrap_or_else(|_| panic!("{what}: no answer"))
}

/// A term of 150,000 distinct words (about 900 KB, under the body cap) costs what its
/// first words cost; two in flight leave the server answering others.
async fn huge_directory_terms_are_bounded(db: Db) {
    let server = TestServer::start_with(db, "user_directory: {search_all_users: true}").await;
    let (_, token) = server.register("alice", "pw").await;
    let (anna, _) = server.register("anna", "pw").await;
    let huge: String = (0..150_000).map(|i| format!("{i:x} ")).collect();
    let path = format!("{V3}/user_directory/search");
    let search = |term: String| server.post(&path, Some(&token), json!({ "search_term": term }));
    let (first, second, versions) = within(
        "two huge searches and /versions",
        futures_util::future::join3(search(huge.clone()), search(huge), server.get("/_matrix/client/versions", None)),
    )
    .await;
    for (status, body) in [first, second] {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["results"], json!([]), "the first words match nobody: {body}");
    }
    assert_eq!(versions.0, StatusCode::OK);

    // Repeated words count once: a long term of one name still finds its owner.
    let repeated = "anna ".repeat(100_000);
    let found = eventually("anna in the directory", Duration::from_secs(10), || async {
        let (status, body) = search(repeated.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let ids: Vec<Value> = body["results"].as_array()?.iter().map(|hit| hit["user_id"].clone()).collect();
        (!ids.is_empty()).then_some(ids)
    })
    .await;
    assert_eq!(found, vec![json!(anna)]);
}

/// Messages one sender may leave in a device's inbox (docs/limits.md).
const PER_SENDER: usize = 1_000;

async fn device_of(server: &TestServer, token: &str) -> String {
    let (_, whoami) = server.get(&format!("{V3}/account/whoami"), Some(token)).await;
    whoami["device_id"].as_str().expect("device id").to_owned()
}

async fn send_to_device(server: &TestServer, token: &str, txn: &str, messages: Value) -> (StatusCode, Value) {
    let path = format!("{V3}/sendToDevice/m.test/{}", encode(txn));
    server.put(&path, Some(token), json!({ "messages": messages })).await
}

/// Every to-device message a device's syncs hand out until none are left.
async fn drain_inbox(server: &TestServer, token: &str) -> Vec<Value> {
    let (_, first) = server.get(&format!("{V3}/sync?timeout=0"), Some(token)).await;
    let mut events: Vec<Value> = first["to_device"]["events"].as_array().cloned().unwrap_or_default();
    let mut since = first["next_batch"].as_str().expect("next_batch").to_owned();
    loop {
        let (_, synced) = server.get(&format!("{V3}/sync?timeout=0&since={}", encode(&since)), Some(token)).await;
        let batch = synced["to_device"]["events"].as_array().cloned().unwrap_or_default();
        since = synced["next_batch"].as_str().expect("next_batch").to_owned();
        if batch.is_empty() {
            return events;
        }
        events.extend(batch);
    }
}

/// Alice's messages to Bob's device past her share are refused (and not stored); Carol's
/// still arrive, and Bob gets each accepted message once.
async fn one_user_cannot_fill_an_inbox(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice_t) = server.register("alice", "pw").await;
    let (bob, bob_t) = server.register("bob", "pw").await;
    let (_, carol_t) = server.register("carol", "pw").await;
    let bob_device = device_of(&server, &bob_t).await;
    let to_bob = |n: usize| json!({ bob.as_str(): { bob_device.as_str(): { "n": n } } });
    for batch in (0..PER_SENDER).collect::<Vec<_>>().chunks(8) {
        let txns: Vec<(String, usize)> = batch.iter().map(|n| (format!("a{n}"), *n)).collect();
        let sends = txns.iter().map(|(txn, n)| send_to_device(&server, &alice_t, txn, to_bob(*n)));
        for (status, body) in futures_util::future::join_all(sends).await {
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    let (status, body) = send_to_device(&server, &alice_t, "over", to_bob(PER_SENDER)).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("M_LIMIT_EXCEEDED")), "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains(&bob_device)), "{body}");
    let (status, body) =
        send_to_device(&server, &carol_t, "c1", json!({ bob.as_str(): { "*": { "from": "carol" } } })).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let events = drain_inbox(&server, &bob_t).await;
    let mut from_alice: Vec<u64> = events
        .iter()
        .filter(|e| e["sender"] == format!("@alice:{}", common::SERVER_NAME))
        .map(|e| e["content"]["n"].as_u64().unwrap())
        .collect();
    from_alice.sort_unstable();
    assert_eq!(
        from_alice,
        (0..PER_SENDER as u64).collect::<Vec<_>>(),
        "each accepted message once, the refused one never"
    );
    assert_eq!(events.iter().filter(|e| e["content"]["from"] == "carol").count(), 1);
    // Read, the share is free again.
    let (status, body) = send_to_device(&server, &alice_t, "after", to_bob(PER_SENDER + 1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Another server's messages past its share of an inbox are dropped with a warning
/// naming it; local messages still arrive.
async fn one_server_cannot_fill_an_inbox(db: Db) {
    let kith = TestServer::start_federating(db).await;
    let fake = FakeServer::start().await;
    let (bob, bob_t) = kith.register("bob", "pw").await;
    let (_, carol_t) = kith.register("carol", "pw").await;
    let bob_device = device_of(&kith, &bob_t).await;
    let sent = PER_SENDER + 50;
    for transaction in (0..sent).collect::<Vec<_>>().chunks(100) {
        let edus: Vec<Value> = transaction
            .iter()
            .map(|n| {
                json!({ "edu_type": "m.direct_to_device", "content": {
                // Many users of one server: the server's share is what is bounded.
                "sender": fake.user_id(&format!("u{}", n % 7)), "type": "m.test", "message_id": format!("m{n}"),
                "messages": { bob.as_str(): { bob_device.as_str(): { "n": n } } },
            } })
            })
            .collect();
        let (status, body) = fake.send_edus(&kith, &edus).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    eventually("the drop logged", ANSWERS_WITHIN, || async {
        kith.log()
            .lines()
            .any(|line| line.contains("to-device messages dropped") && line.contains(&fake.name))
            .then_some(())
    })
    .await;
    let (status, body) =
        send_to_device(&kith, &carol_t, "c1", json!({ bob.as_str(): { "*": { "from": "carol" } } })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = drain_inbox(&kith, &bob_t).await;
    let remote = events.iter().filter(|e| e["content"]["n"].is_u64()).count();
    assert_eq!(remote, PER_SENDER, "the server's share, each once");
    assert_eq!(events.iter().filter(|e| e["content"]["from"] == "carol").count(), 1);
}

/// Servers kith never dealt with: ten per request and a small budget per user, so one
/// user cannot make kith keep messages for endless made-up servers; the route is rate
/// limited (`rc_to_device`).
async fn to_device_fan_out_to_unknown_servers_is_bounded(db: Db) {
    let server = TestServer::start_with(db, "rc_to_device: {per_second: 0.001, burst_count: 4}").await;
    let (_, admin) = server.register_as("admin", "pw", true).await;
    let (_, alice_t) = server.register("alice", "pw").await;
    let made_up = |servers: std::ops::Range<usize>| -> Value {
        servers
            .map(|n| (format!("@a:h{n}.invalid"), json!({ "D": { "x": n } })))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let (status, body) = send_to_device(&server, &alice_t, "t1", made_up(0..11)).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{body}");
    let destinations = || async {
        let (_, listed) = server.get("/_synapse/admin/v1/federation/destinations", Some(&admin)).await;
        listed["destinations"]
            .as_array()
            .map_or(0, |d| d.iter().filter(|d| d["destination"].to_string().contains(".invalid")).count())
    };
    assert_eq!(destinations().await, 0, "nothing kept for a refused request");

    let (status, body) = send_to_device(&server, &alice_t, "t2", made_up(0..10)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(destinations().await, 10);
    let (status, body) = send_to_device(&server, &alice_t, "t3", made_up(10..11)).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("M_LIMIT_EXCEEDED")), "{body}");
    // Servers already dealt with cost nothing more.
    let (status, body) = send_to_device(&server, &alice_t, "t4", made_up(0..10)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The fifth request is past `rc_to_device`'s burst.
    let (status, body) = send_to_device(&server, &alice_t, "t5", made_up(0..1)).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("M_LIMIT_EXCEEDED")), "{body}");
    assert!(body["retry_after_ms"].is_u64(), "{body}");
    assert_eq!(destinations().await, 10);
}
