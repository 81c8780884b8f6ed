//! Forged events from a federation peer: a fake server on loopback joins one of its
//! users to a kith room honestly, then sends events with a bad signature, a wrong content
//! hash, a sender of another server, and auth-rule violations. None of them may reach a
//! kith client; the honest ones must. Hostile transactions get errors, not panics.

mod common;

use std::time::Duration;

use common::fake_server::{FakeServer, JoinedRoom, sign_event_with};
use common::matrix::{self, V3, encode, eventually};
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The longest the test waits for anything to show.
const WAIT: Duration = Duration::from_secs(20);

/// Marks every forged body, so one search finds any that leaked.
const FORGED: &str = "FORGED";

struct Setup {
    kith: TestServer,
    fake: FakeServer,
    alice: String,
    token: String,
    room: JoinedRoom,
}

/// Kith with a public room of alice's holding one message, and mallory of the fake
/// server joined to it: proof that the fake server's honest events are accepted.
async fn setup() -> Setup {
    let kith = TestServer::start_federating(Db::Sqlite).await;
    let fake = FakeServer::start().await;
    let (alice, token) = kith.register("alice", "pw").await;
    let room_id = matrix::create_room(&kith, &token, json!({ "preset": "public_chat", "name": "Forgeries" })).await;
    matrix::send_text(&kith, &token, &room_id, "hello from alice").await;
    let room = fake.join(&kith, &room_id, "mallory").await;
    let mallory = room.user_id.clone();
    eventually("mallory joined on kith", WAIT, || async {
        let members = matrix::memberships(&kith, &token, &room_id).await;
        (members.get(&mallory).map(String::as_str) == Some("join")).then_some(())
    })
    .await;
    Setup { kith, fake, alice, token, room }
}

/// Whether a per-PDU result says the PDU was dropped: absent, or with an `error`.
fn refused(results: &Value, event_id: &str) -> bool {
    results.get(event_id).is_none_or(|result| result.get("error").is_some())
}

fn timeline_bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

fn event_ids(events: &[Value]) -> Vec<String> {
    events.iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect()
}

/// A `/sync` of alice's with a timeline long enough for the whole test room.
async fn sync(kith: &TestServer, token: &str, since: Option<&str>) -> Value {
    let filter = encode(r#"{"room":{"timeline":{"limit":100}}}"#);
    let since = since.map(|s| format!("&since={}", encode(s))).unwrap_or_default();
    let path = format!("{V3}/sync?timeout=0&filter={filter}{since}");
    matrix::ok(kith, Method::GET, &path, token, None).await
}

/// The timeline events and state events of a room in a `/sync` answer.
fn synced_room(sync: &Value, room_id: &str) -> (Vec<Value>, Vec<Value>) {
    let room = &sync["rooms"]["join"][room_id];
    let list = |value: &Value| value.as_array().cloned().unwrap_or_default();
    (list(&room["timeline"]["events"]), list(&room["state"]["events"]))
}

/// The events `/messages` returns, newest first.
async fn messages(kith: &TestServer, token: &str, room_id: &str) -> Vec<Value> {
    let path = format!("{V3}/rooms/{}/messages?dir=b&limit=100", encode(room_id));
    let response = matrix::ok(kith, Method::GET, &path, token, None).await;
    response["chunk"].as_array().cloned().unwrap_or_default()
}

/// The current power levels event of a room.
async fn power_levels(kith: &TestServer, token: &str, room_id: &str) -> Value {
    let path = format!("{V3}/rooms/{}/state", encode(room_id));
    let state = matrix::ok(kith, Method::GET, &path, token, None).await;
    state.as_array().expect("state list").iter().find(|e| e["type"] == "m.room.power_levels").cloned().expect("power")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_events_are_rejected_and_never_reach_sync() {
    let Setup { kith, fake, alice, token, room } = setup().await;
    let room_id = room.room_id.clone();
    let mallory = room.user_id.clone();
    let eve = fake.user_id("eve");
    let power_before = power_levels(&kith, &token, &room_id).await;
    let since = sync(&kith, &token, None).await["next_batch"].as_str().expect("next_batch").to_owned();
    let prev = vec![room.join_event_id.clone()];
    let depth = room.join_depth + 1;

    // a. Signed with a key the fake server does not publish (same key id).
    let (bad_signature_id, bad_signature) = sign_event_with(
        &fake.impostor_keys(),
        &room.rules,
        fake.message(&room, &mallory, "FORGED a: bad signature", &prev, depth),
    );
    // b. Content changed after signing: the hash no longer matches.
    let (wrong_hash_id, mut wrong_hash) =
        fake.sign_event(&room.rules, fake.message(&room, &mallory, "b: as signed", &prev, depth));
    wrong_hash["content"]["body"] = json!("FORGED b: wrong hash");
    // c. Senders of other servers, signed by the fake server alone.
    let (as_alice_id, as_alice) =
        fake.sign_event(&room.rules, fake.message(&room, &alice, "FORGED c: sent as alice", &prev, depth));
    let (elsewhere_id, elsewhere) =
        fake.sign_event(&room.rules, fake.message(&room, "@x:127.0.0.1:1", "FORGED c: another server", &prev, depth));
    // d. Auth violations, correctly signed: mallory (power 0) raising herself to 100,
    // and eve, who never joined, talking.
    let mut raised = room.state_content("m.room.power_levels", "").expect("power levels in send_join state");
    raised["users"][&mallory] = json!(100);
    raised["FORGED"] = json!(true);
    let (raise_id, raise) =
        fake.sign_event(&room.rules, fake.pdu(&room, &mallory, "m.room.power_levels", Some(""), raised, &prev, depth));
    let (eve_id, eve_message) =
        fake.sign_event(&room.rules, fake.message(&room, &eve, "FORGED d: eve never joined", &prev, depth));
    // e. Honest.
    let (honest_id, honest) =
        fake.sign_event(&room.rules, fake.message(&room, &mallory, "honest from mallory", &prev, depth));

    let (status, answer) =
        fake.send_pdus(&kith, &[bad_signature, wrong_hash, as_alice, elsewhere, raise, eve_message, honest]).await;
    assert_eq!(status, StatusCode::OK, "{answer}\n{}", kith.log());
    let results = &answer["pdus"];
    for (what, id) in [
        ("a. bad signature", &bad_signature_id),
        ("c. sent as alice", &as_alice_id),
        ("c. sent as a user of another server", &elsewhere_id),
        ("d. power levels raised without power", &raise_id),
        ("d. message of a user who never joined", &eve_id),
    ] {
        assert!(refused(results, id), "{what} was accepted: {answer}\n{}", kith.log());
    }
    for (what, id) in [("d. power levels", &raise_id), ("d. eve's message", &eve_id)] {
        assert!(results[id]["error"].is_string(), "{what}: an auth failure has an error result: {answer}");
    }
    assert_eq!(results[&honest_id], json!({}), "e. the honest message: {answer}\n{}", kith.log());
    // b. The spec redacts an event whose hash does not match, then applies the auth rules
    // to what is left: kith may accept the redacted event, never its forged content.
    let wrong_hash_result = &results[&wrong_hash_id];
    assert!(
        *wrong_hash_result == json!({}) || wrong_hash_result["error"].is_string() || wrong_hash_result.is_null(),
        "b. {answer}"
    );
    let path = format!("{V3}/rooms/{}/event/{}", encode(&room_id), encode(&wrong_hash_id));
    let (status, event) = kith.get(&path, Some(&token)).await;
    if status == StatusCode::OK {
        assert_eq!(event["content"], json!({}), "b. an event with a wrong hash is served redacted: {event}");
    }

    // A second honest message, after the forgeries, in a transaction of its own.
    let (again_id, again) = fake.sign_event(
        &room.rules,
        fake.message(&room, &mallory, "honest again", std::slice::from_ref(&honest_id), depth + 1),
    );
    let (status, answer) = fake.send_pdus(&kith, &[again]).await;
    assert_eq!((status, &answer["pdus"][&again_id]), (StatusCode::OK, &json!({})), "{answer}\n{}", kith.log());

    let forged_ids = [&bad_signature_id, &as_alice_id, &elsewhere_id, &raise_id, &eve_id];
    let honest_bodies = ["hello from alice", "honest from mallory", "honest again"];
    let assert_clean = |source: &str, events: &[Value]| {
        let bodies = timeline_bodies(events);
        for body in &bodies {
            assert!(!body.contains(FORGED) && body != "b: as signed", "{source} shows {body:?}: {events:?}");
        }
        let text = serde_json::to_string(events).unwrap_or_default();
        assert!(!text.contains(FORGED), "{source} carries forged content: {text}");
        let ids = event_ids(events);
        for id in forged_ids {
            assert!(!ids.contains(id), "{source} shows the forged event {id}: {events:?}");
        }
    };

    // Alice's initial /sync: the honest messages, none of the forged ones.
    let (timeline, state) = eventually("the honest messages in alice's /sync", WAIT, || async {
        let (timeline, state) = synced_room(&sync(&kith, &token, None).await, &room_id);
        let bodies = timeline_bodies(&timeline);
        honest_bodies.iter().all(|b| bodies.iter().any(|s| s == b)).then_some((timeline, state))
    })
    .await;
    assert_clean("the initial /sync timeline", &timeline);
    assert_clean("the initial /sync state", &state);
    // Her incremental /sync from before the forgeries.
    let (timeline, state) = eventually("the honest messages in alice's incremental /sync", WAIT, || async {
        let (timeline, state) = synced_room(&sync(&kith, &token, Some(&since)).await, &room_id);
        let bodies = timeline_bodies(&timeline);
        honest_bodies[1..].iter().all(|b| bodies.iter().any(|s| s == b)).then_some((timeline, state))
    })
    .await;
    assert_clean("the incremental /sync timeline", &timeline);
    assert_clean("the incremental /sync state", &state);
    // /messages.
    let chunk = messages(&kith, &token, &room_id).await;
    let bodies = timeline_bodies(&chunk);
    for body in honest_bodies {
        assert!(bodies.iter().any(|b| b == body), "/messages lacks {body:?}: {bodies:?}");
    }
    assert_clean("/messages", &chunk);
    // No forged event can be fetched by id.
    for id in forged_ids {
        let path = format!("{V3}/rooms/{}/event/{}", encode(&room_id), encode(id));
        let (status, body) = kith.get(&path, Some(&token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "the forged event {id} is served: {body}");
    }

    // The room's state: power levels unchanged, mallory joined, eve absent.
    let power_after = power_levels(&kith, &token, &room_id).await;
    assert_eq!(power_after["event_id"], power_before["event_id"], "the power levels changed: {power_after}");
    assert_eq!(power_after["content"], power_before["content"]);
    assert!(power_after["content"]["users"].get(&mallory).is_none(), "{power_after}");
    let members = matrix::memberships(&kith, &token, &room_id).await;
    assert_eq!(members.get(&mallory).map(String::as_str), Some("join"), "{members:?}");
    assert_eq!(members.get(&alice).map(String::as_str), Some("join"), "{members:?}");
    assert!(!members.contains_key(&eve), "eve is in the room: {members:?}");
    assert!(!members.contains_key("@x:127.0.0.1:1"), "{members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_transactions_get_errors_not_panics() {
    let Setup { kith, fake, token, room, .. } = setup().await;
    let room_id = room.room_id.clone();
    let mallory = room.user_id.clone();
    let mut prev = room.join_event_id.clone();
    let mut depth = room.join_depth + 1;
    let send_path = || format!("/_matrix/federation/v1/send/hostile-{}", fake_server_txn());

    // More PDUs than a transaction may hold.
    let too_many = vec![json!({ "room_id": room_id }); 51];
    let (status, body) = fake.send_pdus(&kith, &too_many).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "51 PDUs: {body}");
    assert!(body["errcode"].as_str().is_some_and(|c| c.starts_with("M_")), "51 PDUs: {body}");

    // PDUs that are not objects, or lack what a PDU needs, beside an honest one.
    let (honest_id, honest) =
        fake.sign_event(&room.rules, fake.message(&room, &mallory, "honest 1", std::slice::from_ref(&prev), depth));
    let pdus = [json!(5), json!("pdu"), json!(null), json!([1, 2]), json!({ "room_id": room_id }), honest];
    let (status, answer) = fake.send_pdus(&kith, &pdus).await;
    assert_eq!(status, StatusCode::OK, "{answer}\n{}", kith.log());
    assert_eq!(answer["pdus"][&honest_id], json!({}), "{answer}");
    let others: Vec<_> =
        answer["pdus"].as_object().expect("results").iter().filter(|(id, _)| **id != honest_id).collect();
    assert!(others.iter().all(|(_, r)| r["error"].is_string()), "{answer}");
    (prev, depth) = (honest_id, depth + 1);

    // A PDU whose JSON repeats a key (the later `depth` wins, breaking the signature) and
    // one whose body repeats a key (the later body wins, breaking the hash).
    let (_, repeated_depth) = fake
        .sign_event(&room.rules, fake.message(&room, &mallory, "repeated depth", std::slice::from_ref(&prev), depth));
    let (repeated_body_id, repeated_body) = fake
        .sign_event(&room.rules, fake.message(&room, &mallory, "repeated body", std::slice::from_ref(&prev), depth));
    let (honest_id, honest) =
        fake.sign_event(&room.rules, fake.message(&room, &mallory, "honest 2", std::slice::from_ref(&prev), depth));
    let body = json!({
        "origin": fake.name,
        "origin_server_ts": common::fake_server::now_ms(),
        "pdus": [repeated_depth, repeated_body, honest],
    });
    let text = serde_json::to_string(&body).expect("serialize");
    let depth_field = format!("\"depth\":{depth}");
    let text = text.replacen(&depth_field, &format!("{depth_field},\"depth\":{}", depth + 7), 1);
    let text = text.replacen("\"body\":\"repeated body\"", "\"body\":\"repeated body\",\"body\":\"FORGED dup\"", 1);
    assert!(text.contains(&format!("\"depth\":{}", depth + 7)) && text.contains("FORGED dup"), "{text}");
    // The signature covers the body as a JSON parser that keeps the last of repeated keys
    // reads it.
    let parsed: Value = serde_json::from_str(&text).expect("repeated keys parse");
    let signed = serde_json::to_vec(&parsed).expect("serialize");
    let (status, answer) = fake.raw_request(&kith, Method::PUT, &send_path(), text.into_bytes(), signed).await;
    assert_eq!(status, StatusCode::OK, "repeated keys: {answer}\n{}", kith.log());
    assert_eq!(answer["pdus"][&honest_id], json!({}), "{answer}");
    let path = format!("{V3}/rooms/{}/event/{}", encode(&room_id), encode(&repeated_body_id));
    let (status, event) = kith.get(&path, Some(&token)).await;
    if status == StatusCode::OK {
        assert_eq!(event["content"], json!({}), "the event with a repeated body is served redacted: {event}");
    }
    (prev, depth) = (honest_id, depth + 1);

    // Still answering: federation, and clients, who see none of the hostile content.
    let (status, body) = fake.request(&kith, Method::GET, "/_matrix/federation/v1/version", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (last_id, last) =
        fake.sign_event(&room.rules, fake.message(&room, &mallory, "honest last", std::slice::from_ref(&prev), depth));
    let (status, answer) = fake.send_pdus(&kith, &[last]).await;
    assert_eq!((status, &answer["pdus"][&last_id]), (StatusCode::OK, &json!({})), "{answer}\n{}", kith.log());
    let chunk = eventually("the last honest message in /messages", WAIT, || async {
        let chunk = messages(&kith, &token, &room_id).await;
        timeline_bodies(&chunk).iter().any(|b| b == "honest last").then_some(chunk)
    })
    .await;
    let text = serde_json::to_string(&chunk).expect("serialize");
    assert!(!text.contains(FORGED), "hostile content reached /messages: {text}");
    for body in ["honest 1", "honest 2", "repeated depth"] {
        let found = timeline_bodies(&chunk).iter().any(|b| b == body);
        assert_eq!(found, body != "repeated depth", "{body:?} in /messages: {chunk:?}");
    }
}

/// PDUs with a float, and with a depth beyond 2^53 (neither exists in canonical JSON),
/// each beside an honest PDU in a transaction signed as a lenient signer would sign it.
/// Kith verifies such a body as that signer encoded it and answers per PDU: the hostile
/// one is refused (room versions since 6 forbid such numbers in events), the honest one
/// in the same transaction is accepted, kith stays up, and the hostile content never
/// reaches clients. A lenient signature that does not match is still a 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_canonical_numbers_cost_only_their_own_pdu() {
    let Setup { kith, fake, token, room, .. } = setup().await;
    let room_id = room.room_id.clone();
    let mallory = room.user_id.clone();
    let mut prev = room.join_event_id.clone();
    let mut depth = room.join_depth + 1;
    for what in ["a float", "a depth beyond 2^53"] {
        let (_, mut hostile) =
            fake.sign_event(&room.rules, fake.message(&room, &mallory, what, std::slice::from_ref(&prev), depth));
        hostile["content"]["FORGED"] = json!(true);
        match what {
            "a float" => hostile["content"]["FORGED"] = json!(1.5),
            _ => hostile["depth"] = json!(9_007_199_254_740_993_u64),
        }
        let (honest_id, honest) = fake.sign_event(
            &room.rules,
            fake.message(&room, &mallory, &format!("honest beside {what}"), std::slice::from_ref(&prev), depth),
        );
        let path = format!("/_matrix/federation/v1/send/numbers-{}", fake_server_txn());
        let body = json!({
            "origin": fake.name,
            "origin_server_ts": common::fake_server::now_ms(),
            "pdus": [hostile, honest],
        });
        let bytes = serde_json::to_vec(&body).expect("serialize");
        let other_path = format!("{path}-other");
        let wrong = fake.lenient_authorization(&kith, &Method::PUT, &other_path, &body);
        let (status, answer) = fake.request_with_authorization(&kith, Method::PUT, &path, bytes.clone(), &wrong).await;
        assert_eq!((status, answer["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_UNAUTHORIZED")), "{what}");
        let authorization = fake.lenient_authorization(&kith, &Method::PUT, &path, &body);
        let (status, answer) = fake.request_with_authorization(&kith, Method::PUT, &path, bytes, &authorization).await;
        assert_eq!(status, StatusCode::OK, "{what}: {answer}\n{}", kith.log());
        assert_eq!(answer["pdus"][&honest_id], json!({}), "the honest PDU beside {what}: {answer}");
        let results = answer["pdus"].as_object().expect("per-PDU results");
        assert!(results.values().all(|r| r == &json!({})) && results.len() == 1, "only the honest PDU: {answer}");
        (prev, depth) = (honest_id, depth + 1);
        let (status, body) = fake.request(&kith, Method::GET, "/_matrix/federation/v1/version", None).await;
        assert_eq!(status, StatusCode::OK, "kith stopped answering after {what}: {body}");
    }
    let chunk = messages(&kith, &token, &room_id).await;
    let text = serde_json::to_string(&chunk).expect("serialize");
    assert!(!text.contains(FORGED), "hostile content reached /messages: {text}");
    for what in ["a float", "a depth beyond 2^53"] {
        let body = format!("honest beside {what}");
        assert!(timeline_bodies(&chunk).contains(&body), "{body:?} in /messages: {chunk:?}");
    }
}

/// A `/send` body that is not JSON is a 400 `M_NOT_JSON`, as Synapse answers it (it
/// parses the body before checking the signature), whatever the signature covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_is_not_json_is_m_not_json() {
    let kith = TestServer::start_federating(Db::Sqlite).await;
    let fake = FakeServer::start().await;
    let not_json = b"{\"pdus\": [not json".to_vec();
    // Signed as a request without content, and as one whose content is the text itself.
    let text = String::from_utf8(not_json.clone()).expect("utf-8");
    for signed in [Vec::new(), serde_json::to_vec(&json!(text)).expect("serialize")] {
        let path = format!("/_matrix/federation/v1/send/not-json-{}", fake_server_txn());
        let (status, body) = fake.raw_request(&kith, Method::PUT, &path, not_json.clone(), signed).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (StatusCode::BAD_REQUEST, Some("M_NOT_JSON")),
            "a /send body that is not JSON: {body}"
        );
    }
    let (status, body) = fake.request(&kith, Method::GET, "/_matrix/federation/v1/version", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn fake_server_txn() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", common::fake_server::now_ms(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// An honest state change that forks the room (sent on top of an event older than the
/// room's newest) still changes the current state: the state resolution that merges the
/// two branches must see the incoming event, which is not stored yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_on_a_fork_reaches_the_current_state() {
    let Setup { kith, fake, token, room, .. } = setup().await;
    let room_id = room.room_id.clone();
    let mallory = room.user_id.clone();
    // Alice speaks after mallory's join: kith's newest event is hers.
    matrix::send_text(&kith, &token, &room_id, "anyone there?").await;
    // Mallory leaves without having seen it, so the leave forks from the join.
    let prev = [room.join_event_id.clone()];
    let leave = fake.pdu(
        &room,
        &mallory,
        "m.room.member",
        Some(&mallory),
        json!({ "membership": "leave" }),
        &prev,
        room.join_depth + 1,
    );
    let (leave_id, leave) = fake.sign_event(&room.rules, leave);
    let (status, body) = fake.send_pdus(&kith, &[leave]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!refused(&body["pdus"], &leave_id), "{body}");
    let members = matrix::memberships(&kith, &token, &room_id).await;
    assert_eq!(members.get(&mallory).map(String::as_str), Some("leave"), "{members:?}");
}
