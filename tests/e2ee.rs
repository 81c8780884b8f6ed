//! End-to-end encryption over HTTP, between two kith servers on both backends: device
//! and one-time keys uploaded, queried and claimed across servers (the fallback key once
//! the one-time keys are gone), to-device messages delivered once and acknowledged by
//! the next sync, device-list changes seen by a user of the other server, cross-signing
//! keys and signatures, and bad input refused with Matrix errors.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use common::matrix::{self, Homeserver, V3};
use common::{Db, TestServer};
use reqwest::StatusCode;
use ruma::canonical_json::CanonicalJsonObject;
use ruma::signatures::Ed25519KeyPair;
use serde_json::{Value, json};

const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A device (or cross-signing) signing key: its id and a way to sign JSON with it.
struct SigningKey {
    pair: Ed25519KeyPair,
    public: String,
}

impl SigningKey {
    fn new(name: &str) -> Self {
        let document = Ed25519KeyPair::generate();
        let pair = Ed25519KeyPair::from_der(&document, name.into()).expect("key pair");
        let public = STANDARD_NO_PAD.encode(pair.public_key());
        Self { pair, public }
    }

    fn id(&self) -> String {
        format!("ed25519:{}", self.pair.version())
    }

    fn sign(&self, signer: &str, object: Value) -> Value {
        let mut canonical: CanonicalJsonObject = serde_json::from_value(object).expect("canonical JSON");
        ruma::signatures::sign_json(signer, &self.pair, &mut canonical).expect("sign");
        serde_json::to_value(canonical).expect("JSON")
    }
}

/// A logged-in device: its user, token, id and signing key.
struct Device {
    user_id: String,
    token: String,
    device_id: String,
    key: SigningKey,
}

async fn device(server: &TestServer, user: &str) -> Device {
    let (status, login) = server.login(user, "pw").await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let device_id = login["device_id"].as_str().unwrap().to_owned();
    Device {
        user_id: login["user_id"].as_str().unwrap().to_owned(),
        token: login["access_token"].as_str().unwrap().to_owned(),
        key: SigningKey::new(&device_id),
        device_id,
    }
}

fn device_keys(device: &Device) -> Value {
    device.key.sign(
        &device.user_id,
        json!({
            "user_id": device.user_id, "device_id": device.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": { format!("curve25519:{}", device.device_id): "curve", device.key.id(): device.key.public },
        }),
    )
}

async fn upload(server: &TestServer, device: &Device, body: Value) -> (StatusCode, Value) {
    server.post(&format!("{V3}/keys/upload"), Some(&device.token), body).await
}

async fn sync(server: &TestServer, token: &str, since: Option<&str>) -> Value {
    let path = match since {
        Some(since) => format!("{V3}/sync?since={since}&timeout=0"),
        None => format!("{V3}/sync"),
    };
    let (status, body) = server.get(&path, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Two federating servers (the second with `extra_yaml`), Alice on the first and Bob on
/// the second, each logged in on one device.
async fn alice_and_bob(db: Db, extra_yaml: &str) -> (TestServer, TestServer, Device, Device) {
    let a = TestServer::start_federating(db).await;
    let b = TestServer::start_federating_with(db, extra_yaml).await;
    a.register("alice", "pw").await;
    b.register("bob", "pw").await;
    let alice = device(&a, "alice").await;
    let bob = device(&b, "bob").await;
    (a, b, alice, bob)
}

async fn keys_across_servers(db: Db) {
    let (a, b, alice, bob) = alice_and_bob(db, "").await;

    // Uploads: only the device's own keys, signed by itself.
    let mut forged = device_keys(&alice);
    forged["keys"]["curve25519:x"] = json!("changed after signing");
    let (status, body) = upload(&a, &alice, json!({ "device_keys": forged })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_SIGNATURE")));
    let mut other_device = device_keys(&alice);
    other_device["device_id"] = json!("SOMEONEELSE");
    assert_eq!(upload(&a, &alice, json!({ "device_keys": other_device })).await.0, StatusCode::BAD_REQUEST);
    let one_time: Value =
        (0..3).map(|i| (format!("signed_curve25519:k{i}"), json!({ "key": format!("otk{i}") }))).collect();
    let body = json!({ "device_keys": device_keys(&alice), "one_time_keys": one_time,
        "fallback_keys": { "signed_curve25519:fb": { "key": "fallback", "fallback": true } } });
    let (status, counts) = upload(&a, &alice, body).await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    assert_eq!(counts["one_time_key_counts"]["signed_curve25519"], 3);

    // Bob's server asks Alice's; an unreachable server is a failure, not an error.
    let query = json!({ "device_keys": { alice.user_id.clone(): [], "@nobody:127.0.0.1:1": [] }, "timeout": 5000 });
    let (status, found) = b.post(&format!("{V3}/keys/query"), Some(&bob.token), query).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let keys = &found["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(keys["keys"][alice.key.id()], alice.key.public.as_str(), "{found}");
    assert!(found["failures"]["127.0.0.1:1"].is_object(), "{found}");

    // Three one-time keys, then the fallback key, again and again.
    let claim = json!({ "one_time_keys": { alice.user_id.clone(): { alice.device_id.clone(): "signed_curve25519" } } });
    let mut claimed = Vec::new();
    for _ in 0..5 {
        let (status, answer) = b.post(&format!("{V3}/keys/claim"), Some(&bob.token), claim.clone()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let keys = answer["one_time_keys"][&alice.user_id][&alice.device_id].as_object().cloned().unwrap_or_default();
        claimed.extend(keys.values().map(|k| k["key"].as_str().unwrap_or_default().to_owned()));
    }
    assert_eq!(claimed, ["otk0", "otk1", "otk2", "fallback", "fallback"]);
    let synced = sync(&a, &alice.token, None).await;
    assert_eq!(synced["device_one_time_keys_count"]["signed_curve25519"], 0, "{synced}");
    assert_eq!(synced["device_unused_fallback_key_types"], json!([]), "the fallback key was used");

    to_device_across_servers(&a, &b, &alice, &bob).await;
    device_list_changes_reach_the_other_server(&a, &b, &alice, &bob).await;
}

/// A message to Alice's device from Bob's server arrives once, and goes once the next
/// sync acknowledges it.
async fn to_device_across_servers(a: &TestServer, b: &TestServer, alice: &Device, bob: &Device) {
    let before = sync(a, &alice.token, None).await;
    let since = before["next_batch"].as_str().unwrap().to_owned();
    let messages =
        json!({ "messages": { alice.user_id.clone(): { alice.device_id.clone(): { "secret": "for alice" } } } });
    for _ in 0..2 {
        let path = format!("{V3}/sendToDevice/m.test/txn1");
        assert_eq!(b.put(&path, Some(&bob.token), messages.clone()).await.0, StatusCode::OK);
    }
    let arrived = matrix::eventually("the to-device message", WAIT, || async {
        let synced = sync(a, &alice.token, Some(&since)).await;
        let events = synced["to_device"]["events"].as_array().cloned().unwrap_or_default();
        (!events.is_empty()).then_some(synced)
    })
    .await;
    let events = arrived["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "a retried transaction is delivered once: {arrived}");
    assert_eq!(events[0]["sender"], bob.user_id.as_str());
    assert_eq!(events[0]["type"], "m.test");
    assert_eq!(events[0]["content"]["secret"], "for alice");
    let next = arrived["next_batch"].as_str().unwrap();
    let after = sync(a, &alice.token, Some(next)).await;
    assert!(after["to_device"]["events"].as_array().is_none_or(Vec::is_empty), "acknowledged: {after}");

    // Locally, `*` reaches every device of the user.
    let second = device(a, "alice").await;
    let all = json!({ "messages": { alice.user_id.clone(): { "*": { "to": "all" } } } });
    assert_eq!(a.put(&format!("{V3}/sendToDevice/m.test/txn2"), Some(&alice.token), all).await.0, StatusCode::OK);
    let synced = sync(a, &second.token, None).await;
    assert!(synced["to_device"]["events"].to_string().contains("\"all\""), "{synced}");
}

/// Bob shares a room with Alice; a new device of hers shows in his sync's
/// `device_lists.changed` and in `/keys/changes`, and his query finds it.
async fn device_list_changes_reach_the_other_server(a: &TestServer, b: &TestServer, alice: &Device, bob: &Device) {
    let room = matrix::create_room(a, &alice.token, json!({ "preset": "public_chat" })).await;
    let before_join = sync(b, &bob.token, None).await["next_batch"].as_str().unwrap().to_owned();
    assert_eq!(matrix::join(b, &bob.token, &room, a.name()).await.0, StatusCode::OK);
    let joined = sync(b, &bob.token, Some(&before_join)).await;
    let changed = joined["device_lists"]["changed"].as_array().cloned().unwrap_or_default();
    assert!(changed.contains(&json!(alice.user_id)), "a new room-mate to track: {joined}");
    let since = joined["next_batch"].as_str().unwrap().to_owned();
    let laptop = device(a, "alice").await;
    assert_eq!(upload(a, &laptop, json!({ "device_keys": device_keys(&laptop) })).await.0, StatusCode::OK);
    let synced = matrix::eventually("alice in bob's device_lists.changed", WAIT, || async {
        let synced = sync(b, &bob.token, Some(&since)).await;
        synced["device_lists"]["changed"]
            .as_array()
            .is_some_and(|c| c.contains(&json!(alice.user_id)))
            .then_some(synced)
    })
    .await;
    let to = synced["next_batch"].as_str().unwrap();
    let (_, changes) = b.get(&format!("{V3}/keys/changes?from={since}&to={to}"), Some(&bob.token)).await;
    assert!(changes["changed"].as_array().is_some_and(|c| c.contains(&json!(alice.user_id))), "{changes}");
    let query = json!({ "device_keys": { alice.user_id.clone(): [] } });
    let (_, found) = b.post(&format!("{V3}/keys/query"), Some(&bob.token), query).await;
    assert!(found["device_keys"][&alice.user_id][&laptop.device_id].is_object(), "{found}");

    // The laptop logs out: its keys go, and Bob's server hears of it.
    assert_eq!(a.post(&format!("{V3}/logout"), Some(&laptop.token), json!({})).await.0, StatusCode::OK);
    matrix::eventually("the logged-out device gone from Bob's view", WAIT, || async {
        let query = json!({ "device_keys": { alice.user_id.clone(): [] } });
        let (_, found) = b.post(&format!("{V3}/keys/query"), Some(&bob.token), query).await;
        let devices = found["device_keys"][&alice.user_id].as_object().cloned().unwrap_or_default();
        (devices.contains_key(&alice.device_id) && !devices.contains_key(&laptop.device_id)).then_some(())
    })
    .await;

    // Bob leaves their only shared room: Alice is in his device_lists.left.
    let since = sync(b, &bob.token, None).await["next_batch"].as_str().unwrap().to_owned();
    let leave = format!("{V3}/rooms/{}/leave", matrix::encode(&room));
    assert_eq!(b.post(&leave, Some(&bob.token), json!({})).await.0, StatusCode::OK);
    let synced = sync(b, &bob.token, Some(&since)).await;
    assert_eq!(synced["device_lists"]["left"], json!([alice.user_id]), "{synced}");
}

fn cross_signing_key(user: &str, usage: &str, key: &SigningKey, signer: Option<(&SigningKey, &str)>) -> Value {
    let object = json!({ "user_id": user, "usage": [usage], "keys": { key.id(): key.public } });
    match signer {
        Some((signing, as_user)) => signing.sign(as_user, object),
        None => object,
    }
}

async fn cross_signing(db: Db) {
    let (a, b, alice, bob) = alice_and_bob(db, "").await;
    assert_eq!(upload(&a, &alice, json!({ "device_keys": device_keys(&alice) })).await.0, StatusCode::OK);
    let user = alice.user_id.as_str();
    let (master, ssk, usk) = (SigningKey::new("master"), SigningKey::new("ssk"), SigningKey::new("usk"));
    let master_key = cross_signing_key(user, "master", &master, None);
    let upload_path = format!("{V3}/keys/device_signing/upload");
    let unsigned =
        json!({ "master_key": master_key, "self_signing_key": cross_signing_key(user, "self_signing", &ssk, None) });
    let (status, body) = a.post(&upload_path, Some(&alice.token), unsigned).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_SIGNATURE")), "{body}");
    let keys = json!({
        "master_key": master_key,
        "self_signing_key": cross_signing_key(user, "self_signing", &ssk, Some((&master, user))),
        "user_signing_key": cross_signing_key(user, "user_signing", &usk, Some((&master, user))),
    });
    let (status, body) = a.post(&upload_path, Some(&alice.token), keys).await;
    assert_eq!(status, StatusCode::OK, "the first upload needs no password: {body}");

    // A new master key needs the password.
    let other = SigningKey::new("other");
    let replacement = json!({ "master_key": cross_signing_key(user, "master", &other, None) });
    let (status, challenge) = a.post(&upload_path, Some(&alice.token), replacement.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    assert!(challenge["session"].is_string(), "{challenge}");

    // Alice signs her device with her self-signing key; Bob's server sees it all but
    // her user-signing key.
    let signed_device = ssk.sign(user, device_keys(&alice));
    let signatures = json!({ user: { alice.device_id.clone(): signed_device } });
    let (status, answer) = a.post(&format!("{V3}/keys/signatures/upload"), Some(&alice.token), signatures).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.get("failures").is_none_or(|f| f == &json!({})), "no failures: {answer}");
    let forged = json!({ user: { alice.device_id.clone(): SigningKey::new("ssk").sign(user, device_keys(&alice)) } });
    let (_, answer) = a.post(&format!("{V3}/keys/signatures/upload"), Some(&alice.token), forged).await;
    assert!(answer["failures"][user][&alice.device_id].is_object(), "a signature by another key fails: {answer}");
    let query = json!({ "device_keys": { user: [] } });
    let (_, found) = b.post(&format!("{V3}/keys/query"), Some(&bob.token), query).await;
    assert_eq!(found["master_keys"][user]["keys"][master.id()], master.public.as_str(), "{found}");
    assert!(found["self_signing_keys"][user].is_object(), "{found}");
    assert!(found["user_signing_keys"][user].is_null(), "only Alice sees her user-signing key: {found}");
    let device = &found["device_keys"][user][&alice.device_id];
    assert!(device["signatures"][user][ssk.id()].is_string(), "the cross-signature travels: {found}");
}

async fn bad_input_is_refused(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("carol", "pw").await;
    let cases = [
        ("/keys/query", json!({ "device_keys": [] })),
        ("/keys/query", json!({ "device_keys": { "not a user": [] } })),
        ("/keys/claim", json!({ "one_time_keys": { "@a:b": "x" } })),
        ("/keys/upload", json!({ "one_time_keys": { "nocolon": { "key": "k" } } })),
        ("/keys/upload", json!({ "one_time_keys": { "a:b": 5 } })),
        ("/keys/upload", json!({ "device_keys": "nope" })),
        ("/keys/signatures/upload", json!([])),
        (
            "/keys/device_signing/upload",
            json!({ "master_key": { "user_id": "@someone:else", "usage": ["master"], "keys": {} } }),
        ),
    ];
    for (path, body) in cases {
        let (status, answer) = server.post(&format!("{V3}{path}"), Some(&token), body.clone()).await;
        assert!(status.is_client_error(), "{path} {body}: {status} {answer}");
        assert!(answer["errcode"].is_string(), "{path}: {answer}");
    }
    for messages in [json!("x"), json!({ "bad user": { "D": {} } }), json!({ "@a:b": { "D": "not an object" } })] {
        let (status, answer) =
            server.put(&format!("{V3}/sendToDevice/m.test/t"), Some(&token), json!({ "messages": messages })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }
    let too_many: serde_json::Map<String, Value> = (0..10_001).map(|i| (format!("D{i}"), json!({}))).collect();
    let messages = json!({ "messages": { "@carol:kith.test": too_many } });
    let (status, _) = server.put(&format!("{V3}/sendToDevice/m.test/big"), Some(&token), messages).await;
    assert!(status.is_client_error(), "{status}");
}

both_backends!(
    keys_across_servers,
    cross_signing,
    bad_input_is_refused,
    to_device_messages_survive_restarts,
    a_backlog_of_to_device_messages_arrives_whole_and_in_order,
    remote_keys_are_cached_while_a_room_is_shared,
);

/// A to-device message for a server that is down waits in the database: it arrives once
/// that server is back, though the sender restarted in between.
async fn to_device_messages_survive_restarts(db: Db) {
    let backoff = "federation:\n  destination_min_retry_interval: 500ms\n  destination_max_retry_interval: 2s\n";
    let (mut a, mut b, alice, bob) = alice_and_bob(db, backoff).await;
    let since = sync(&a, &alice.token, None).await["next_batch"].as_str().unwrap().to_owned();
    a.terminate();
    let messages = json!({ "messages": { alice.user_id.clone(): { alice.device_id.clone(): { "kept": "yes" } } } });
    assert_eq!(b.put(&format!("{V3}/sendToDevice/m.test/kept"), Some(&bob.token), messages).await.0, StatusCode::OK);
    matrix::eventually("a failed attempt", WAIT, || async { b.log().contains("transaction failed").then_some(()) })
        .await;
    b.restart().await;
    a.start_again().await;
    let synced = matrix::eventually("the kept message", WAIT, || async {
        let synced = sync(&a, &alice.token, Some(&since)).await;
        synced["to_device"]["events"].as_array().is_some_and(|e| !e.is_empty()).then_some(synced)
    })
    .await;
    assert_eq!(synced["to_device"]["events"][0]["content"]["kept"], "yes", "{synced}");
}

/// More to-device messages than the sender keeps in memory pile up for a server that is
/// down: once it is back, every one of them arrives, in the order sent, without the
/// sender restarting.
async fn a_backlog_of_to_device_messages_arrives_whole_and_in_order(db: Db) {
    const SENT: usize = 1_200;
    let backoff = "federation:\n  destination_min_retry_interval: 500ms\n  destination_max_retry_interval: 2s\n";
    let (mut a, b, alice, bob) = alice_and_bob(db, backoff).await;
    let mut since = sync(&a, &alice.token, None).await["next_batch"].as_str().unwrap().to_owned();
    a.terminate();
    for n in 0..SENT {
        let messages = json!({ "messages": { alice.user_id.clone(): { alice.device_id.clone(): { "n": n } } } });
        let path = format!("{V3}/sendToDevice/m.test/backlog{n}");
        assert_eq!(b.put(&path, Some(&bob.token), messages).await.0, StatusCode::OK);
    }
    a.start_again().await;
    let mut received: Vec<u64> = Vec::new();
    let deadline = std::time::Instant::now() + 2 * WAIT;
    while received.len() < SENT && std::time::Instant::now() < deadline {
        let synced = sync(&a, &alice.token, Some(&since)).await;
        let events = synced["to_device"]["events"].as_array().cloned().unwrap_or_default();
        received.extend(events.iter().filter_map(|e| e["content"]["n"].as_u64()));
        since = synced["next_batch"].as_str().unwrap().to_owned();
        if events.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
    let in_order = received.iter().enumerate().all(|(i, n)| *n == i as u64);
    assert!(received.len() == SENT && in_order, "{} received, from {:?}", received.len(), received.first());
}

/// Bob's server keeps Alice's keys while they share a room: answered with her server
/// down, refreshed after her device-list update, forgotten once they share no room.
async fn remote_keys_are_cached_while_a_room_is_shared(db: Db) {
    let (mut a, b, alice, bob) = alice_and_bob(db, "").await;
    assert_eq!(upload(&a, &alice, json!({ "device_keys": device_keys(&alice) })).await.0, StatusCode::OK);
    let room = matrix::create_room(&a, &alice.token, json!({ "preset": "public_chat" })).await;
    assert_eq!(matrix::join(&b, &bob.token, &room, a.name()).await.0, StatusCode::OK);
    let query = || {
        let body = json!({ "device_keys": { alice.user_id.clone(): [] }, "timeout": 3000 });
        let b = &b;
        let token = bob.token.clone();
        async move { b.post(&format!("{V3}/keys/query"), Some(&token), body).await.1 }
    };
    let devices = |found: &Value| found["device_keys"][&alice.user_id].as_object().map_or(0, |d| d.len());
    assert_eq!(devices(&query().await), 1);
    a.terminate();
    let cached = query().await;
    assert_eq!((devices(&cached), &cached["failures"]), (1, &json!({})), "answered from the cache: {cached}");
    a.start_again().await;
    let laptop = device(&a, "alice").await;
    assert_eq!(upload(&a, &laptop, json!({ "device_keys": device_keys(&laptop) })).await.0, StatusCode::OK);
    matrix::eventually("the new device after the update", WAIT, || async {
        (devices(&query().await) == 2).then_some(())
    })
    .await;
    let leave = format!("{V3}/rooms/{}/leave", matrix::encode(&room));
    assert_eq!(b.post(&leave, Some(&bob.token), json!({})).await.0, StatusCode::OK);
    a.terminate();
    let gone = query().await;
    assert!(gone["failures"].as_object().is_some_and(|f| !f.is_empty()), "no longer cached: {gone}");
}

/// A device-list update that arrives while kith waits for a slow key query keeps the
/// older answer out of the cache: the next query asks again and sees the new device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_during_a_slow_key_query_is_not_lost() {
    use common::fake_server::FakeServer;
    let kith = TestServer::start_federating(Db::Sqlite).await;
    let fake = FakeServer::start().await;
    kith.register("alice", "pw").await;
    let alice = device(&kith, "alice").await;
    let room = matrix::create_room(&kith, &alice.token, json!({ "preset": "public_chat" })).await;
    let mallory = fake.join(&kith, &room, "mallory").await.user_id;
    let answer = |device: &str| {
        json!({ "device_keys": { mallory.clone(): { device: {
            "user_id": mallory, "device_id": device, "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
            "keys": { format!("ed25519:{device}"): "key" }, "signatures": {},
        } } } })
    };
    let query_path = "/_matrix/federation/v1/user/keys/query";
    fake.answer(query_path, StatusCode::OK, answer("OLD"), std::time::Duration::from_secs(2));
    let devices_of_mallory = async |kith: &TestServer| {
        let body = json!({ "device_keys": { mallory.clone(): [] } });
        let (status, found) = kith.post(&format!("{V3}/keys/query"), Some(&alice.token), body).await;
        assert_eq!(status, StatusCode::OK, "{found}");
        let devices = found["device_keys"][&mallory].as_object().cloned().unwrap_or_default();
        devices.keys().cloned().collect::<Vec<_>>()
    };
    let slow_query = devices_of_mallory(&kith);
    let update = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let edu = json!({ "edu_type": "m.device_list_update", "content": {
            "user_id": mallory, "device_id": "NEW", "stream_id": 1, "prev_id": [], "deleted": false,
        } });
        let (status, body) = fake.send_edus(&kith, &[edu]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        fake.answer(query_path, StatusCode::OK, answer("NEW"), std::time::Duration::ZERO);
    };
    let (during, ()) = tokio::join!(slow_query, update);
    assert_eq!(during, ["OLD"], "the answer given while the update was on its way");
    assert_eq!(devices_of_mallory(&kith).await, ["NEW"], "the stale answer was cached");
}
