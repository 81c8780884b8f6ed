//! `get_missing_events` and `backfill` as the spec has them, on both backends: a walk
//! back from the given events, breadth first along `prev_events`, that takes the first
//! `limit` events the asking server may see (in the room, at `min_depth` or deeper, not
//! past `earliest_events`) and walks on only from what it took. Each answer is compared
//! with the same walk done here one event at a time over `GET /event` (which answers
//! 403 for what the server may not see), over a DAG with forks, merges and a history
//! the second server may not see part of.

mod common;

use std::collections::{HashSet, VecDeque};

use common::fake_server::{FakeServer, JoinedRoom};
use common::matrix::{self, V3};
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One event as `fake` may read it: its JSON, or the status kith refused it with.
async fn event_as(fake: &FakeServer, kith: &TestServer, id: &str) -> Result<Value, StatusCode> {
    let path = format!("/_matrix/federation/v1/event/{}", matrix::encode(id));
    let (status, body) = fake.request(kith, Method::GET, &path, None).await;
    if status == StatusCode::OK { Ok(body["pdus"][0].clone()) } else { Err(status) }
}

/// What a walk may take, besides what `fake` may see.
struct Bounds<'a> {
    earliest: &'a HashSet<String>,
    limit: usize,
    min_depth: i64,
}

/// The walk, one event at a time: `(event id, depth)` of what it takes, in the order taken.
async fn walk(
    fake: &FakeServer,
    kith: &TestServer,
    room_id: &str,
    mut queue: VecDeque<String>,
    mut seen: HashSet<String>,
    bounds: &Bounds<'_>,
) -> Vec<(String, i64)> {
    let mut taken = Vec::new();
    while let Some(id) = queue.pop_front() {
        if taken.len() >= bounds.limit {
            break;
        }
        if bounds.earliest.contains(&id) || !seen.insert(id.clone()) {
            continue;
        }
        let Ok(event) = event_as(fake, kith, &id).await else { continue };
        let depth = event["depth"].as_i64().unwrap_or_default();
        if event["room_id"] != room_id || depth < bounds.min_depth {
            continue;
        }
        queue.extend(prev_ids(&event));
        taken.push((id, depth));
    }
    taken
}

fn prev_ids(event: &Value) -> Vec<String> {
    event["prev_events"].as_array().into_iter().flatten().filter_map(|id| id.as_str().map(str::to_owned)).collect()
}

fn id_of(event: &Value, joined: &JoinedRoom) -> String {
    common::fake_server::event_id_of(event, &joined.rules)
}

/// `get_missing_events` of `fake` against the walk done here.
async fn missing_events_match(
    fake: &FakeServer,
    joined: &JoinedRoom,
    kith: &TestServer,
    latest: &[String],
    bounds: &Bounds<'_>,
) {
    let room = &joined.room_id;
    let mut queue = VecDeque::new();
    for id in latest {
        queue.extend(prev_ids(&event_as(fake, kith, id).await.expect("latest visible")));
    }
    let expected = walk(fake, kith, room, queue, latest.iter().cloned().collect(), bounds).await;
    let body = json!({
        "earliest_events": bounds.earliest.iter().collect::<Vec<_>>(),
        "latest_events": latest,
        "limit": bounds.limit,
        "min_depth": bounds.min_depth,
    });
    let path = format!("/_matrix/federation/v1/get_missing_events/{}", matrix::encode(room));
    let (status, answer) = fake.request(kith, Method::POST, &path, Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let events = answer["events"].as_array().expect("events");
    let got: Vec<(String, i64)> =
        events.iter().map(|e| (id_of(e, joined), e["depth"].as_i64().unwrap_or_default())).collect();
    let as_set = |list: &[(String, i64)]| list.iter().cloned().collect::<HashSet<_>>();
    assert_eq!(as_set(&got), as_set(&expected), "get_missing_events {body}");
    assert!(got.windows(2).all(|pair| pair[0].1 <= pair[1].1), "oldest first: {got:?}");
}

/// `backfill` of `fake` against the walk done here, in the same order.
async fn backfill_matches(fake: &FakeServer, joined: &JoinedRoom, kith: &TestServer, from: &[String], limit: usize) {
    let room = &joined.room_id;
    let none = HashSet::new();
    let bounds = Bounds { earliest: &none, limit, min_depth: i64::MIN };
    let expected = walk(fake, kith, room, from.iter().cloned().collect(), HashSet::new(), &bounds).await;
    let query: String = from.iter().map(|id| format!("v={}&", matrix::encode(id))).collect();
    let path = format!("/_matrix/federation/v1/backfill/{}?{query}limit={limit}", matrix::encode(room));
    let (status, answer) = fake.request(kith, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let got: Vec<String> = answer["pdus"].as_array().expect("pdus").iter().map(|e| id_of(e, joined)).collect();
    let expected: Vec<String> = expected.into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, expected, "backfill from {from:?}, limit {limit}");
}

/// Messages of the fake server's user, as `(event id, depth)`, each after `prev`.
async fn fake_message(
    fake: &FakeServer,
    kith: &TestServer,
    joined: &JoinedRoom,
    body: &str,
    prev: &[&(String, i64)],
) -> (String, i64) {
    let depth = prev.iter().map(|(_, depth)| *depth).max().unwrap_or_default() + 1;
    let prev_ids: Vec<String> = prev.iter().map(|(id, _)| id.clone()).collect();
    let event = fake.message(joined, &joined.user_id, body, &prev_ids, depth);
    let (id, signed) = fake.sign_event(&joined.rules, event);
    let (status, answer) = fake.send_pdus(kith, &[signed]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["pdus"][&id], json!({}), "{answer}\n{}", kith.log());
    (id, depth)
}

async fn local_message(kith: &TestServer, fake: &FakeServer, token: &str, room: &str, body: &str) -> (String, i64) {
    let id = matrix::send_text(kith, token, room, body).await;
    let depth = event_as(fake, kith, &id).await.expect("own message")["depth"].as_i64().unwrap_or_default();
    (id, depth)
}

async fn walks_follow_the_dag(db: Db) {
    let kith = TestServer::start_federating(db).await;
    let (_, owner) = kith.register("owner", "pw").await;
    let room = matrix::create_room(&kith, &owner, json!({ "preset": "public_chat" })).await;
    let fake = FakeServer::start().await;
    let zoe = fake.join(&kith, &room, "zoe").await;
    let join = (zoe.join_event_id.clone(), zoe.join_depth);

    // Two branches from zoe's join, merged by the owner's next message; then a message
    // of zoe's naming both a recent event and an old one.
    let o1 = local_message(&kith, &fake, &owner, &room, "o1").await;
    let z1 = fake_message(&fake, &kith, &zoe, "z1", &[&join]).await;
    let z2 = fake_message(&fake, &kith, &zoe, "z2", &[&z1]).await;
    let z3 = fake_message(&fake, &kith, &zoe, "z3", &[&z2]).await;
    let o2 = local_message(&kith, &fake, &owner, &room, "o2").await;
    let o2_prevs = prev_ids(&event_as(&fake, &kith, &o2.0).await.expect("o2"));
    assert_eq!(o2_prevs.iter().collect::<HashSet<_>>(), HashSet::from([&o1.0, &z3.0]), "o2 merges both branches");
    let z4 = fake_message(&fake, &kith, &zoe, "z4", &[&o2, &z1]).await;
    let o3 = local_message(&kith, &fake, &owner, &room, "o3").await;

    // From here only members see the room's history: a server joining later sees none of
    // what came before its join (but what came before the change, shared then).
    let path = format!("{V3}/rooms/{}/state/m.room.history_visibility/", matrix::encode(&room));
    let (status, body) = kith.put(&path, Some(&owner), json!({ "history_visibility": "joined" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hidden = local_message(&kith, &fake, &owner, &room, "hidden").await;
    let late = FakeServer::start().await;
    let yves = late.join(&kith, &room, "yves").await;
    // The servers in the room, each once, sorted (read one server at a time).
    let servers = yves.send_join_response["servers_in_room"].as_array().expect("servers_in_room").clone();
    let mut expected = [common::fake_server::name_of(&kith), fake.name.clone(), late.name.clone()];
    expected.sort();
    assert_eq!(servers, expected.iter().map(|name| json!(name)).collect::<Vec<_>>());
    let o4 = local_message(&kith, &fake, &owner, &room, "o4").await;
    let o5 = local_message(&kith, &fake, &owner, &room, "o5").await;
    assert_eq!(event_as(&late, &kith, &hidden.0).await.err(), Some(StatusCode::FORBIDDEN));
    assert!(event_as(&late, &kith, &o3.0).await.is_ok(), "shared before the change, and the server is in now");

    let none = HashSet::new();
    let at_z1 = HashSet::from([z1.0.clone()]);
    let at_o1_z2 = HashSet::from([o1.0.clone(), z2.0.clone()]);
    let tips = [vec![o5.0.clone()], vec![o4.0.clone(), z4.0.clone()], vec![o3.0.clone()]];
    for (fake, joined) in [(&fake, &zoe), (&late, &yves)] {
        for latest in &tips {
            for earliest in [&none, &at_z1, &at_o1_z2] {
                for limit in [1, 2, 3, 5, 8, 100] {
                    for min_depth in [0, z2.1] {
                        let bounds = Bounds { earliest, limit, min_depth };
                        missing_events_match(fake, joined, &kith, latest, &bounds).await;
                    }
                }
            }
            for limit in [1, 2, 3, 5, 8, 100] {
                backfill_matches(fake, joined, &kith, latest, limit).await;
            }
        }
    }
    // The late server never gets what it may not see, and the walk stops there.
    let path =
        format!("/_matrix/federation/v1/backfill/{}?v={}&limit=100", matrix::encode(&room), matrix::encode(&o5.0));
    let (_, answer) = late.request(&kith, Method::GET, &path, None).await;
    let ids: Vec<String> = answer["pdus"].as_array().expect("pdus").iter().map(|e| id_of(e, &yves)).collect();
    assert!(ids.contains(&o4.0) && !ids.contains(&hidden.0) && !ids.contains(&o3.0), "{ids:?}");
    // Where a walk starts must be seen (403) and held in the room (404).
    let path =
        format!("/_matrix/federation/v1/backfill/{}?v={}&limit=5", matrix::encode(&room), matrix::encode(&hidden.0));
    assert_eq!(late.request(&kith, Method::GET, &path, None).await.0, StatusCode::FORBIDDEN);
    let body = json!({ "earliest_events": [], "latest_events": [hidden.0], "limit": 5 });
    let path = format!("/_matrix/federation/v1/get_missing_events/{}", matrix::encode(&room));
    assert_eq!(late.request(&kith, Method::POST, &path, Some(&body)).await.0, StatusCode::FORBIDDEN);
    let body = json!({ "earliest_events": [], "latest_events": ["$nothing"], "limit": 5 });
    assert_eq!(fake.request(&kith, Method::POST, &path, Some(&body)).await.0, StatusCode::NOT_FOUND);
}

both_backends!(walks_follow_the_dag);
