//! A hostile or clumsy federation peer (the fake server on loopback), on both backends:
//! retried requests get their first answer, invites into rooms kith is in are checked
//! before they are signed, every PDU of a transaction gets its own answer, and a peer
//! that streams without end cannot make kith buffer it.

mod common;

use std::time::Duration;

use common::fake_server::{FakeServer, JoinedRoom};
use common::matrix::{self, V3, encode, eventually};
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use ruma::RoomVersionId;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// Kith with alice's public room (anyone may invite) and mallory of the fake server in it.
async fn setup(db: Db) -> (TestServer, FakeServer, String, JoinedRoom) {
    let kith = TestServer::start_federating(db).await;
    let fake = FakeServer::start().await;
    let (_, token) = kith.register("alice", "pw").await;
    let levels = json!({ "invite": 0 });
    let room =
        matrix::create_room(&kith, &token, json!({ "preset": "public_chat", "power_level_content_override": levels }))
            .await;
    let joined = fake.join(&kith, &room, "mallory").await;
    (kith, fake, token, joined)
}

/// An invite of `invitee` into `room`, from `sender` of the fake server.
fn invite(fake: &FakeServer, room: &JoinedRoom, sender: &str, invitee: &str) -> (String, Value) {
    let content = json!({ "membership": "invite" });
    let prev = [room.join_event_id.clone()];
    let event = fake.pdu(room, sender, "m.room.member", Some(invitee), content, &prev, room.join_depth + 1);
    fake.sign_event(&room.rules, event)
}

async fn put_invite(
    kith: &TestServer,
    fake: &FakeServer,
    room_id: &str,
    event_id: &str,
    event: &Value,
) -> (StatusCode, Value) {
    let path = format!("/_matrix/federation/v2/invite/{}/{}", encode(room_id), encode(event_id));
    let body = json!({ "event": event, "room_version": "10", "invite_room_state": [] });
    fake.request(kith, Method::PUT, &path, Some(&body)).await
}

/// An invite to a room kith is not in, sent twice: the same countersigned answer, one
/// invite for the invitee.
async fn retried_invites_get_the_same_answer(db: Db) {
    let kith = TestServer::start_federating(db).await;
    let fake = FakeServer::start().await;
    let (bob, bob_token) = kith.register("bob", "pw").await;
    let room_id = format!("!elsewhere:{}", fake.name);
    let event = json!({
        "room_id": room_id, "sender": fake.user_id("carol"), "origin": fake.name,
        "origin_server_ts": common::fake_server::now_ms(), "type": "m.room.member", "state_key": bob,
        "content": { "membership": "invite" }, "prev_events": ["$prev"], "auth_events": ["$auth"], "depth": 3,
    });
    let (event_id, signed) = fake.sign_event(&RoomVersionId::V10.rules().unwrap(), event);
    let first = put_invite(&kith, &fake, &room_id, &event_id, &signed).await;
    let second = put_invite(&kith, &fake, &room_id, &event_id, &signed).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    assert_eq!(first, second, "a retry gets the first answer");
    let (_, sync) = kith.get(&format!("{V3}/sync"), Some(&bob_token)).await;
    assert!(sync["rooms"]["invite"][&room_id].is_object(), "{sync}");
}

/// A leave of a user who never joined: refused, and refused again on retry (not a 500).
async fn retried_send_leave_gets_the_same_answer(db: Db) {
    let (kith, fake, _, room) = setup(db).await;
    let stranger = fake.user_id("stranger");
    let content = json!({ "membership": "leave" });
    let prev = [room.join_event_id.clone()];
    let event = fake.pdu(&room, &stranger, "m.room.member", Some(&stranger), content, &prev, room.join_depth + 1);
    let (event_id, signed) = fake.sign_event(&room.rules, event);
    let path = format!("/_matrix/federation/v2/send_leave/{}/{}", encode(&room.room_id), encode(&event_id));
    for attempt in ["first", "retry"] {
        let (status, body) = fake.request(&kith, Method::PUT, &path, Some(&signed)).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
            "{attempt}: {body}"
        );
    }
}

/// An invite into a room kith is in goes through the room's auth rules: from a member
/// it becomes the invitee's invite; from a stranger it is refused and never signed.
async fn invites_into_rooms_kith_is_in_are_checked(db: Db) {
    let (kith, fake, _, room) = setup(db).await;
    let (bob, bob_token) = kith.register("bob", "pw").await;
    let stranger = fake.user_id("stranger");
    let (forged_id, forged) = invite(&fake, &room, &stranger, &bob);
    let (status, body) = put_invite(&kith, &fake, &room.room_id, &forged_id, &forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.get("event").is_none(), "nothing signed: {body}");

    let (event_id, event) = invite(&fake, &room, &room.user_id, &bob);
    let (status, body) = put_invite(&kith, &fake, &room.room_id, &event_id, &event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["event"]["signatures"][common::fake_server::name_of(&kith)].is_object(), "{body}");
    eventually("bob's invite in /sync", WAIT, || async {
        let (_, sync) = kith.get(&format!("{V3}/sync"), Some(&bob_token)).await;
        sync["rooms"]["invite"][&room.room_id].is_object().then_some(())
    })
    .await;
    let path = format!("{V3}/rooms/{}/event/{}", encode(&room.room_id), encode(&event_id));
    let (_, token) = kith.login("alice", "pw").await;
    let (status, _) = kith.get(&path, token["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK, "the invite is in the room");
}

/// An invite naming auth events kith does not hold, which the peer then will not give:
/// kith's own refusal, not the peer's error relayed as kith's.
async fn unfetchable_auth_events_get_kiths_own_error(db: Db) {
    let (kith, fake, _, room) = setup(db).await;
    let (bob, _) = kith.register("bob", "pw").await;
    let content = json!({ "membership": "invite" });
    let prev = [room.join_event_id.clone()];
    let mut event = fake.pdu(&room, &room.user_id, "m.room.member", Some(&bob), content, &prev, room.join_depth + 1);
    event["auth_events"].as_array_mut().expect("auth events").push(json!("$unknown-auth-event"));
    let (event_id, signed) = fake.sign_event(&room.rules, event);
    let peer_error = json!({ "errcode": "M_NOT_FOUND", "error": "no" });
    fake.answer("/_matrix/federation/v1/event_auth/*", StatusCode::NOT_FOUND, peer_error, Duration::ZERO);
    let (status, body) = put_invite(&kith, &fake, &room.room_id, &event_id, &signed).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("auth events") && error.contains(&fake.name), "names what could not be checked: {body}");
    assert!(body.get("event").is_none(), "nothing signed: {body}");
}

/// A PDU whose signature does not check out is answered with an error under its event
/// id, and the good PDU of the same transaction is accepted.
async fn every_pdu_of_a_transaction_gets_an_answer(db: Db) {
    let (kith, fake, token, room) = setup(db).await;
    let prev = [room.join_event_id.clone()];
    let good = fake.message(&room, &room.user_id, "good", &prev, room.join_depth + 1);
    let (good_id, good) = fake.sign_event(&room.rules, good);
    let bad = fake.message(&room, &room.user_id, "bad", &prev, room.join_depth + 1);
    let (_, mut bad) = fake.sign_event(&room.rules, bad);
    bad["origin_server_ts"] = json!(1);
    let bad_id = common::fake_server::event_id_of(&bad, &room.rules);
    let (status, answer) = fake.send_pdus(&kith, &[bad, good]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["pdus"][&bad_id]["error"].is_string(), "the bad PDU has its own error: {answer}");
    assert_eq!(answer["pdus"][&good_id], json!({}), "{answer}");
    eventually("the good message", WAIT, || async {
        let bodies = matrix::message_bodies(&kith, &token, &room.room_id).await;
        bodies.contains(&"good".to_owned()).then_some(())
    })
    .await;
}

/// A transaction as large as the spec allows (50 PDUs near the 64 KiB event limit) is
/// taken whole.
async fn transactions_as_large_as_the_spec_allows_are_taken(db: Db) {
    let (kith, fake, token, room) = setup(db).await;
    let mut prev = room.join_event_id.clone();
    let mut pdus = Vec::new();
    let mut ids = Vec::new();
    for n in 0..50 {
        let body = format!("{n} {}", "x".repeat(60_000));
        let event = fake.message(&room, &room.user_id, &body, &[prev], room.join_depth + 1 + n);
        let (event_id, signed) = fake.sign_event(&room.rules, event);
        prev = event_id.clone();
        ids.push(event_id);
        pdus.push(signed);
    }
    let (status, answer) = fake.send_pdus(&kith, &pdus).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    for id in &ids {
        assert_eq!(answer["pdus"][id], json!({}), "{answer}");
    }
    let path = format!("{V3}/rooms/{}/event/{}", encode(&room.room_id), encode(&ids[49]));
    assert_eq!(kith.get(&path, Some(&token)).await.0, StatusCode::OK);
}

/// A peer that takes smaller transactions than kith sends answers 413: kith sends the
/// same events again, fewer at a time, and every one arrives.
async fn transactions_shrink_for_a_peer_that_takes_less(db: Db) {
    let (kith, fake, token, room) = setup(db).await;
    fake.limit_transactions(200 * 1024, Duration::from_secs(2));
    let mut sent = Vec::new();
    for n in 0..20 {
        let body = format!("{n} {}", "y".repeat(30_000));
        sent.push(matrix::send_text(&kith, &token, &room.room_id, &body).await);
    }
    eventually("every event at the peer", WAIT, || async {
        let received: Vec<String> =
            fake.received_pdus().iter().map(|pdu| common::fake_server::event_id_of(pdu, &room.rules)).collect();
        sent.iter().all(|id| received.contains(id)).then_some(())
    })
    .await;
    assert!(fake.refused_transactions() > 0, "some transactions were too large for the peer");
}

/// A peer whose answer never ends (and declares no length) gets a clear error, and kith
/// reads no further than its cap: resident memory stays flat.
async fn endless_answers_are_cut_off(db: Db) {
    let kith = TestServer::start_federating(db).await;
    let fake = FakeServer::start().await;
    let (_, token) = kith.register("alice", "pw").await;
    let path = format!("{V3}/profile/{}", encode(&fake.user_id("endless")));
    kith.get(&path, Some(&token)).await;
    let before = kith.resident_kib().expect("resident memory");
    for _ in 0..5 {
        let (status, body) = kith.get(&path, Some(&token)).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_GATEWAY, Some("M_UNKNOWN")), "{body}");
    }
    let after = kith.resident_kib().expect("resident memory");
    assert!(after < before + 64 * 1024, "resident memory grew from {before} KiB to {after} KiB");
}

/// A slow room does not hold up the origin: a transaction whose PDU needs a slow
/// `/get_missing_events` is still being handled when a later transaction of the same
/// origin, for another room, has been answered.
async fn a_slow_room_does_not_stall_the_origin(db: Db) {
    let (kith, fake, token, slow_room) = setup(db).await;
    let other = matrix::create_room(&kith, &token, json!({ "preset": "public_chat" })).await;
    let fast_room = fake.join(&kith, &other, "mallory").await;
    fake.slow_missing_events(Duration::from_secs(8));
    // A message whose prev event kith has never seen: kith asks for the gap.
    let gap = fake.message(
        &slow_room,
        &slow_room.user_id,
        "after a gap",
        &["$unknown:x".to_owned()],
        slow_room.join_depth + 5,
    );
    let (_, gap) = fake.sign_event(&slow_room.rules, gap);
    let prev = [fast_room.join_event_id.clone()];
    let quick = fake.message(&fast_room, &fast_room.user_id, "quick", &prev, fast_room.join_depth + 1);
    let (quick_id, quick) = fake.sign_event(&fast_room.rules, quick);
    let fake = std::sync::Arc::new(fake);
    let kith = std::sync::Arc::new(kith);
    let slow = {
        let (fake, kith) = (fake.clone(), kith.clone());
        tokio::spawn(async move { fake.send_pdus(&kith, &[gap]).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, answer) = fake.send_pdus(&kith, &[quick]).await;
    assert_eq!((status, &answer["pdus"][&quick_id]), (StatusCode::OK, &json!({})), "{answer}");
    assert!(!slow.is_finished(), "the slow transaction was still being handled");
    let (status, _) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

both_backends!(
    a_slow_room_does_not_stall_the_origin,
    retried_invites_get_the_same_answer,
    retried_send_leave_gets_the_same_answer,
    invites_into_rooms_kith_is_in_are_checked,
    unfetchable_auth_events_get_kiths_own_error,
    every_pdu_of_a_transaction_gets_an_answer,
    transactions_as_large_as_the_spec_allows_are_taken,
    transactions_shrink_for_a_peer_that_takes_less,
    endless_answers_are_cut_off,
);
