//! Simplified sliding sync (MSC4186) over HTTP, on both backends: lists ordered by
//! activity with their windows and filters, rooms sent once and then by difference,
//! `pos` tokens (unknown, repeated, after a restart), long polling, and the extensions.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::matrix::{self, V3, encode};
use common::synapse::Synapse;
use common::{Db, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const SLIDING: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
const WAIT: Duration = Duration::from_secs(20);

async fn sliding(server: &TestServer, token: &str, pos: Option<&str>, body: Value) -> (StatusCode, Value) {
    let path = match pos {
        Some(pos) => format!("{SLIDING}?pos={}", encode(pos)),
        None => SLIDING.to_owned(),
    };
    server.post(&path, Some(token), body).await
}

async fn sliding_ok(server: &TestServer, token: &str, pos: Option<&str>, body: Value) -> Value {
    let (status, response) = sliding(server, token, pos, body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response
}

fn pos(response: &Value) -> String {
    response["pos"].as_str().expect("pos").to_owned()
}

/// A list as Element X's room list asks for it.
fn room_list(ranges: Value, timeline_limit: u64, filters: Value) -> Value {
    json!({
        "conn_id": "room-list",
        "lists": { "all": {
            "ranges": ranges,
            "timeline_limit": timeline_limit,
            "required_state": [["m.room.name", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"],
                               ["m.room.create", ""], ["m.room.encryption", ""]],
            "filters": filters,
        } },
    })
}

fn timeline_bodies(room: &Value) -> Vec<String> {
    let events = room["timeline"].as_array().cloned().unwrap_or_default();
    events.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect()
}

fn state_keys(room: &Value, kind: &str) -> Vec<String> {
    let events = room["required_state"].as_array().cloned().unwrap_or_default();
    events.iter().filter(|e| e["type"] == kind).filter_map(|e| e["state_key"].as_str().map(str::to_owned)).collect()
}

async fn device_id(server: &TestServer, token: &str) -> String {
    let (_, whoami) = server.get(&format!("{V3}/account/whoami"), Some(token)).await;
    whoami["device_id"].as_str().expect("device_id").to_owned()
}

/// `/versions` advertises it; rooms come ordered by their newest message, windowed by
/// `ranges`, with their name, state and timeline; then only the room with news, with
/// only the news.
async fn lists_order_by_activity_and_send_only_changes(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, token) = server.register("alice", "pw").await;
    let (_, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(versions["unstable_features"]["org.matrix.simplified_msc3575"], true, "{versions}");
    let mut rooms = Vec::new();
    for name in ["first", "second", "third"] {
        let room = matrix::create_room(&server, &token, json!({ "name": name })).await;
        matrix::send_text(&server, &token, &room, &format!("hello {name}")).await;
        rooms.push(room);
    }
    // The oldest room speaks again: it goes to the top.
    matrix::send_text(&server, &token, &rooms[0], "back on top").await;
    let first = sliding_ok(&server, &token, None, room_list(json!([[0, 1]]), 1, json!({}))).await;
    assert_eq!(first["lists"]["all"]["count"], 3, "{first}");
    let sent: Vec<&String> = first["rooms"].as_object().unwrap().keys().collect();
    assert_eq!(sent.len(), 2, "the window holds two rooms: {first}");
    assert!(sent.contains(&&rooms[0]) && sent.contains(&&rooms[2]), "{first}");
    let top = &first["rooms"][&rooms[0]];
    assert_eq!(top["initial"], true);
    assert_eq!(top["name"], "first");
    assert_eq!(timeline_bodies(top), ["back on top"]);
    assert_eq!(top["limited"], true);
    assert!(top["prev_batch"].is_string());
    assert_eq!(top["joined_count"], 1);
    assert_eq!(state_keys(top, "m.room.member"), [alice.as_str()], "$ME and $LAZY: {top}");
    assert_eq!(state_keys(top, "m.room.name"), [""]);
    let bumps = (top["bump_stamp"].as_u64().unwrap(), first["rooms"][&rooms[2]]["bump_stamp"].as_u64().unwrap());
    assert!(bumps.0 > bumps.1, "{bumps:?}");

    matrix::send_text(&server, &token, &rooms[2], "news").await;
    let next = sliding_ok(&server, &token, Some(&pos(&first)), room_list(json!([[0, 1]]), 1, json!({}))).await;
    let sent: Vec<&String> = next["rooms"].as_object().unwrap().keys().collect();
    assert_eq!(sent, [&rooms[2]], "only the room with news: {next}");
    let room = &next["rooms"][&rooms[2]];
    assert_eq!(timeline_bodies(room), ["news"]);
    assert_eq!(room["num_live"], 1);
    assert!(room.get("initial").is_none() && room.get("name").is_none(), "{room}");
    assert!(state_keys(room, "m.room.name").is_empty(), "the name did not change: {room}");
}

/// An unknown `pos` is `M_UNKNOWN_POS`; a repeated one answers the same rooms again;
/// after a restart every `pos` is unknown and a new connection gets everything.
async fn positions_repeat_and_expire(db: Db) {
    let mut server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let room = matrix::create_room(&server, &token, json!({ "name": "r" })).await;
    let first = sliding_ok(&server, &token, None, room_list(json!([[0, 9]]), 5, json!({}))).await;
    let (status, body) = sliding(&server, &token, Some("nonsense"), room_list(json!([[0, 9]]), 5, json!({}))).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_UNKNOWN_POS")), "{body}");
    // Another connection of the same device does not know this connection's `pos`.
    let mut other = room_list(json!([[0, 9]]), 5, json!({}));
    other["conn_id"] = json!("encryption");
    let (status, _) = sliding(&server, &token, Some(&pos(&first)), other).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    matrix::send_text(&server, &token, &room, "once").await;
    let again = room_list(json!([[0, 9]]), 5, json!({}));
    let answer = sliding_ok(&server, &token, Some(&pos(&first)), again.clone()).await;
    let retried = sliding_ok(&server, &token, Some(&pos(&first)), again.clone()).await;
    assert_eq!(timeline_bodies(&answer["rooms"][&room]), ["once"]);
    assert_eq!(timeline_bodies(&retried["rooms"][&room]), ["once"], "a retry answers the same: {retried}");

    server.restart().await;
    let (status, body) = sliding(&server, &token, Some(&pos(&retried)), again.clone()).await;
    assert_eq!(body["errcode"], "M_UNKNOWN_POS", "{status} {body}");
    let fresh = sliding_ok(&server, &token, None, again).await;
    assert_eq!(fresh["rooms"][&room]["initial"], true);
    assert!(timeline_bodies(&fresh["rooms"][&room]).contains(&"once".to_owned()), "nothing lost: {fresh}");
}

/// Filters: DMs (`m.direct`), invites, encrypted rooms and room types.
async fn filters_select_rooms(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, token) = server.register("alice", "pw").await;
    let (bob, bob_token) = server.register("bob", "pw").await;
    let dm = matrix::create_room(&server, &bob_token, json!({ "invite": [alice], "is_direct": true })).await;
    let encrypted = matrix::create_room(
        &server,
        &token,
        json!({ "initial_state": [{ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } }] }),
    )
    .await;
    let space = matrix::create_room(&server, &token, json!({ "creation_content": { "type": "m.space" } })).await;
    let plain = matrix::create_room(&server, &token, json!({})).await;
    let rooms_with = |filters: Value| {
        let server = &server;
        let token = token.clone();
        async move {
            let answer = sliding_ok(server, &token, None, room_list(json!([[0, 9]]), 0, filters)).await;
            let mut rooms: Vec<String> =
                answer["rooms"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default();
            rooms.sort();
            rooms
        }
    };
    let sorted = |mut rooms: Vec<&String>| {
        rooms.sort();
        rooms.into_iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(rooms_with(json!({ "is_invite": true })).await, [dm.as_str()]);
    assert_eq!(rooms_with(json!({ "is_dm": true })).await, [dm.as_str()], "the invite says is_direct");
    assert_eq!(rooms_with(json!({ "is_encrypted": true })).await, [encrypted.as_str()]);
    assert_eq!(rooms_with(json!({ "room_types": ["m.space"] })).await, [space.as_str()]);
    assert_eq!(
        rooms_with(json!({ "not_room_types": ["m.space"], "is_invite": false })).await,
        sorted(vec![&encrypted, &plain])
    );
    spaces_filter_rooms(&server, &token, &bob_token, [&space, &encrypted, &plain]).await;
    let answer = sliding_ok(&server, &token, None, room_list(json!([[0, 9]]), 0, json!({ "is_invite": true }))).await;
    let invite = &answer["rooms"][&dm];
    assert_eq!(invite["is_dm"], true);
    let stripped = invite["invite_state"].as_array().expect("invite_state");
    assert!(stripped.iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == alice), "{invite}");
    // m.direct makes a joined room a DM.
    let path = format!("{V3}/user/{}/account_data/m.direct", encode(&alice));
    assert_eq!(server.put(&path, Some(&token), json!({ bob: [plain] })).await.0, StatusCode::OK);
    assert_eq!(rooms_with(json!({ "is_dm": true, "is_invite": false })).await, [plain.as_str()]);
    // A room's kind, once read, is kept: asked again, and after the plain room turns on
    // encryption, the lists follow.
    assert_eq!(rooms_with(json!({ "room_types": ["m.space"] })).await, [space.as_str()]);
    let path = format!("{V3}/rooms/{}/state/m.room.encryption/", encode(&plain));
    let content = json!({ "algorithm": "m.megolm.v1.aes-sha2" });
    assert_eq!(server.put(&path, Some(&token), content).await.0, StatusCode::OK);
    assert_eq!(rooms_with(json!({ "is_encrypted": true })).await, sorted(vec![&encrypted, &plain]));
    assert_eq!(rooms_with(json!({ "is_encrypted": false, "is_invite": false })).await, [space.as_str()]);
}

/// `spaces` holds the children (`m.space.child` with a `via`) of the spaces the user is
/// joined to; a space they are not in counts for nothing.
async fn spaces_filter_rooms(server: &TestServer, token: &str, bob_token: &str, [space, child, other]: [&String; 3]) {
    let set_child = |space: String, child: String, token: String, content: Value| async move {
        let path = format!("{V3}/rooms/{}/state/m.space.child/{}", encode(&space), encode(&child));
        assert_eq!(server.put(&path, Some(&token), content).await.0, StatusCode::OK);
    };
    set_child(space.clone(), child.clone(), token.to_owned(), json!({ "via": ["localhost"] })).await;
    // No `via`: not a child.
    set_child(space.clone(), other.clone(), token.to_owned(), json!({})).await;
    let bobs_space = matrix::create_room(server, bob_token, json!({ "creation_content": { "type": "m.space" } })).await;
    set_child(bobs_space.clone(), other.clone(), bob_token.to_owned(), json!({ "via": ["localhost"] })).await;
    let rooms_in = |spaces: Value| async move {
        let answer = sliding_ok(server, token, None, room_list(json!([[0, 9]]), 0, json!({ "spaces": spaces }))).await;
        let mut rooms: Vec<String> =
            answer["rooms"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default();
        rooms.sort();
        (rooms, answer["lists"]["all"]["count"].clone())
    };
    assert_eq!(rooms_in(json!([space])).await, (vec![child.clone()], json!(1)));
    assert_eq!(rooms_in(json!([space, bobs_space])).await, (vec![child.clone()], json!(1)));
    assert_eq!(rooms_in(json!([bobs_space])).await, (vec![], json!(0)), "alice is not in Bob's space");
    // Removing the child (an empty content) takes it out of the list.
    set_child(space.clone(), child.clone(), token.to_owned(), json!({})).await;
    assert_eq!(rooms_in(json!([space])).await, (vec![], json!(0)));
    set_child(space.clone(), child.clone(), token.to_owned(), json!({ "via": ["localhost"] })).await;
}

/// An invite is sent once with its stripped state; joining sends the room afresh, with
/// its timeline and state; a room the request asks more state of is sent again.
async fn invites_joins_and_growing_required_state(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, token) = server.register("alice", "pw").await;
    let (_, bob_token) = server.register("bob", "pw").await;
    let room = matrix::create_room(&server, &bob_token, json!({ "name": "club", "invite": [alice] })).await;
    let first = sliding_ok(&server, &token, None, room_list(json!([[0, 9]]), 5, json!({}))).await;
    assert!(first["rooms"][&room]["invite_state"].is_array(), "{first}");
    let quiet = sliding_ok(&server, &token, Some(&pos(&first)), room_list(json!([[0, 9]]), 5, json!({}))).await;
    assert!(quiet.get("rooms").is_none(), "the invite is not sent twice: {quiet}");
    let (status, _) = matrix::join(&server, &token, &room, "localhost").await;
    assert_eq!(status, StatusCode::OK);
    let joined = sliding_ok(&server, &token, Some(&pos(&quiet)), room_list(json!([[0, 9]]), 5, json!({}))).await;
    let entry = &joined["rooms"][&room];
    assert_eq!((entry["initial"].as_bool(), entry["name"].as_str()), (Some(true), Some("club")), "{entry}");
    assert!(entry.get("invite_state").is_none());
    assert!(entry["timeline"].as_array().is_some_and(|t| !t.is_empty()));
    assert_eq!(entry["joined_count"], 2);

    let path = format!("{V3}/rooms/{}/state/m.room.topic", encode(&room));
    assert_eq!(server.put(&path, Some(&bob_token), json!({ "topic": "t" })).await.0, StatusCode::OK);
    let mut grown = room_list(json!([[0, 9]]), 0, json!({}));
    let plain = sliding_ok(&server, &token, Some(&pos(&joined)), grown.clone()).await;
    assert!(state_keys(&plain["rooms"][&room], "m.room.topic").is_empty(), "not asked for: {plain}");
    grown["lists"]["all"]["required_state"].as_array_mut().unwrap().push(json!(["m.room.topic", ""]));
    let more = sliding_ok(&server, &token, Some(&pos(&plain)), grown).await;
    assert_eq!(state_keys(&more["rooms"][&room], "m.room.topic"), [""], "{more}");
    let subscribed = json!({ "conn_id": "timeline", "room_subscriptions": { room.clone(): {
        "timeline_limit": 1, "required_state": [["m.room.topic", ""]] } } });
    let answer = sliding_ok(&server, &token, None, subscribed).await;
    assert_eq!(state_keys(&answer["rooms"][&room], "m.room.topic"), [""], "a subscription: {answer}");
}

/// A long poll with nothing new waits, and a message wakes it.
async fn long_polls_wake_on_news(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let room = matrix::create_room(&server, &token, json!({})).await;
    let first = sliding_ok(&server, &token, None, room_list(json!([[0, 9]]), 1, json!({}))).await;
    let path = format!("{SLIDING}?pos={}&timeout=30000", encode(&pos(&first)));
    let body = room_list(json!([[0, 9]]), 1, json!({}));
    let waiting = server.post(&path, Some(&token), body);
    let speaking = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        matrix::send_text(&server, &token, &room, "wake up").await;
    };
    let ((status, answer), ()) = tokio::join!(waiting, speaking);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(timeline_bodies(&answer["rooms"][&room]), ["wake up"], "{answer}");
}

/// to_device (acknowledged messages go), e2ee (key counts, device-list changes),
/// account data, receipts and typing.
async fn extensions_carry_the_streams(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, token) = server.register("alice", "pw").await;
    let (bob, bob_token) = server.register("bob", "pw").await;
    let device = device_id(&server, &token).await;
    let room = matrix::create_room(&server, &token, json!({ "invite": [bob] })).await;
    assert_eq!(matrix::join(&server, &bob_token, &room, "localhost").await.0, StatusCode::OK);
    let otks = json!({ "one_time_keys": { "signed_curve25519:AAA": { "key": "k", "signatures": {} } } });
    assert_eq!(server.post(&format!("{V3}/keys/upload"), Some(&token), otks).await.0, StatusCode::OK);
    let messages = json!({ "messages": { alice.clone(): { device.clone(): { "secret": "s" } } } });
    assert_eq!(server.put(&format!("{V3}/sendToDevice/m.test/t1"), Some(&bob_token), messages).await.0, StatusCode::OK);
    let path = format!("{V3}/user/{}/account_data/m.test", encode(&alice));
    assert_eq!(server.put(&path, Some(&token), json!({ "global": 1 })).await.0, StatusCode::OK);
    let path = format!("{V3}/user/{}/rooms/{}/account_data/m.test", encode(&alice), encode(&room));
    assert_eq!(server.put(&path, Some(&token), json!({ "room": 1 })).await.0, StatusCode::OK);
    let message = matrix::send_text(&server, &bob_token, &room, "read me").await;
    let path = format!("{V3}/rooms/{}/receipt/m.read/{}", encode(&room), encode(&message));
    assert_eq!(server.post(&path, Some(&bob_token), json!({})).await.0, StatusCode::OK);
    let path = format!("{V3}/rooms/{}/typing/{}", encode(&room), encode(&bob));
    assert_eq!(
        server.put(&path, Some(&bob_token), json!({ "typing": true, "timeout": 30000 })).await.0,
        StatusCode::OK
    );

    let mut request = room_list(json!([[0, 9]]), 1, json!({}));
    request["extensions"] = json!({
        "to_device": { "enabled": true }, "e2ee": { "enabled": true }, "account_data": { "enabled": true },
        "receipts": { "enabled": true, "rooms": ["*"] }, "typing": { "enabled": true },
    });
    let first = sliding_ok(&server, &token, None, request.clone()).await;
    let ext = &first["extensions"];
    let to_device = ext["to_device"]["events"].as_array().expect("to-device events");
    assert_eq!(to_device.len(), 1, "{ext}");
    assert_eq!(to_device[0]["content"]["secret"], "s");
    assert_eq!(ext["e2ee"]["device_one_time_keys_count"]["signed_curve25519"], 1, "{ext}");
    assert!(ext["e2ee"]["device_unused_fallback_key_types"].is_array());
    let global = ext["account_data"]["global"].as_array().unwrap();
    assert!(global.iter().any(|e| e["type"] == "m.test" && e["content"]["global"] == 1), "{ext}");
    assert!(global.iter().any(|e| e["type"] == "m.push_rules"));
    assert_eq!(ext["account_data"]["rooms"][&room][0]["content"]["room"], 1, "{ext}");
    assert!(ext["receipts"]["rooms"][&room]["content"][&message]["m.read"][&bob]["ts"].is_number(), "{ext}");
    assert_eq!(ext["typing"]["rooms"][&room]["content"]["user_ids"], json!([bob]), "{ext}");

    // The next request acknowledges the to-device message: it goes.
    request["extensions"]["to_device"]["since"] = ext["to_device"]["next_batch"].clone();
    let next = sliding_ok(&server, &token, Some(&pos(&first)), request.clone()).await;
    assert!(next["extensions"]["to_device"]["events"].as_array().is_none_or(Vec::is_empty), "{next}");
    assert!(next["extensions"].get("account_data").is_none(), "sent once: {next}");
    assert!(next["extensions"].get("receipts").is_none(), "sent once: {next}");
    request["extensions"]["to_device"]["since"] = json!("0");
    let again = sliding_ok(&server, &token, None, request.clone()).await;
    assert!(again["extensions"]["to_device"]["events"].as_array().is_none_or(Vec::is_empty), "deleted: {again}");

    // Carol starts sharing a room with Alice: her devices are news to Alice.
    let (carol, carol_token) = server.register("carol", "pw").await;
    let path = format!("{V3}/rooms/{}/invite", encode(&room));
    assert_eq!(server.post(&path, Some(&token), json!({ "user_id": carol })).await.0, StatusCode::OK);
    assert_eq!(matrix::join(&server, &carol_token, &room, "localhost").await.0, StatusCode::OK);
    let changed = matrix::eventually("a device-list change", WAIT, || {
        let (server, token, request, since) = (&server, &token, request.clone(), pos(&again));
        async move {
            let answer = sliding_ok(server, token, Some(&since), request).await;
            let changed = answer["extensions"]["e2ee"]["device_lists"]["changed"].clone();
            changed.as_array().is_some_and(|c| !c.is_empty()).then_some(changed)
        }
    })
    .await;
    assert_eq!(changed, json!([carol]));
}

/// matrix-rust-sdk, what Element X is built on, through its `SyncService` and
/// `RoomListService` against two kith servers: login, Alice's DM in her room list,
/// Bob's invite in his, Bob joins, encrypted messages both ways, Bob's room list
/// naming the DM after Alice, and Alice's server restarting (her client starts over
/// on `M_UNKNOWN_POS` and gets the messages both ways). `tests/element_x`, built by
/// scripts/test.
async fn element_x_gets_through_a_first_day(db: Db) {
    let mut alice_server = TestServer::start_federating(db).await;
    let bob_server = TestServer::start_federating(db).await;
    alice_server.register("alice", "alice pw").await;
    bob_server.register("bob", "bob pw").await;
    let bob_base = bob_server.base.clone();
    run_element_x(&mut alice_server, &bob_base, true, || bob_server.log()).await;
}

/// The same with Bob on Synapse: Alice's kith and Bob's Synapse, each serving sliding
/// sync to its user's client (no restart: Synapse backs off from a server that was down
/// for minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn element_x_between_kith_and_synapse() {
    let synapse = Synapse::start().await;
    let mut alice_server = TestServer::start_federating(Db::Sqlite).await;
    alice_server.register("alice", "alice pw").await;
    synapse.register("bob", "bob pw").await;
    run_element_x(&mut alice_server, &synapse.client_base, false, || synapse.log()).await;
}

/// Runs the matrix-rust-sdk program with Alice on `alice_server` and Bob on `bob_base`,
/// stopping and starting Alice's server when it asks (if `restart`), and asserts it
/// printed OK.
async fn run_element_x(alice_server: &mut TestServer, bob_base: &str, restart: bool, bob_log: impl Fn() -> String) {
    let program = common::element_x_program();
    common::require_file(&program, "scripts/test builds tests/element_x (cargo build in that folder)");
    let args = [&alice_server.base, "alice", "alice pw", bob_base, "bob", "bob pw"].map(str::to_owned);
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the matrix-rust-sdk program runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut printed = Vec::new();
    let run = async {
        while let Ok(Some(line)) = stdout.next_line().await {
            let answer: &[u8] = match line.as_str() {
                "STOP alice" if restart => {
                    alice_server.terminate();
                    b"done\n"
                }
                "START alice" if restart => {
                    alice_server.start_again().await;
                    b"done\n"
                }
                "STOP alice" | "START alice" => b"skip\n",
                _ => b"",
            };
            stdin.write_all(answer).await.unwrap();
            printed.push(line);
        }
        child.wait().await
    };
    let status = tokio::time::timeout(Duration::from_secs(660), run).await;
    let stdout = printed.join("\n");
    let stderr = stderr.await.unwrap_or_default();
    assert!(
        matches!(status, Ok(Ok(status)) if status.success()) && printed.iter().any(|line| line == "OK"),
        "matrix-rust-sdk failed ({status:?}):\n{stdout}\n{stderr}\n--- Alice's kith ---\n{}\n--- Bob's server ---\n{}",
        alice_server.log(),
        bob_log()
    );
    println!("{stdout}");
}

both_backends!(
    element_x_gets_through_a_first_day,
    lists_order_by_activity_and_send_only_changes,
    positions_repeat_and_expire,
    filters_select_rooms,
    invites_joins_and_growing_required_state,
    long_polls_wake_on_news,
    extensions_carry_the_streams
);
