//! Application services against the real server, with a bridge written with
//! mautrix-python's `AppService` (`tests/python/mautrix_bridge.py`, from its own
//! virtualenv, installed by `scripts/test`): registration files, the `as_token` and
//! masquerading, registration in and reservation of namespaces, pings, queries,
//! third-party lookups, transactions pushed in order, retried under the same id,
//! across a restart, and typing and receipts pushed to a bridge that asks for them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::matrix::{self, Homeserver, eventually};
use common::synapse::Synapse;
use common::{Db, SERVER_NAME, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const AS_ID: &str = "slackbridge";
const AS_TOKEN: &str = "as-token-of-the-slack-bridge";
const HS_TOKEN: &str = "hs-token-of-the-slack-bridge";
const SENDER: &str = "slackbot";
/// The longest one bridge command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

fn registration_yaml(as_port: u16) -> String {
    format!(
        "id: {AS_ID}\nurl: http://127.0.0.1:{as_port}\nas_token: {AS_TOKEN}\nhs_token: {HS_TOKEN}\n\
         sender_localpart: {SENDER}\nrate_limited: false\nprotocols: [slack]\nreceive_ephemeral: true\n\
         namespaces:\n  users:\n    - exclusive: true\n      regex: '@slack_.*:kith\\.test'\n\
         \x20 aliases:\n    - exclusive: true\n      regex: '#slack_.*:kith\\.test'\n  rooms: []\n"
    )
}

/// Kith with the bridge's registration file (in the directory returned, kept for
/// restarts), and the bridge running.
async fn start(db: Db) -> (TestServer, Bridge, tempfile::TempDir) {
    start_with(db, "").await
}

/// [`start`] with `extra_yaml` added to kith's config (later keys win).
async fn start_with(db: Db, extra_yaml: &str) -> (TestServer, Bridge, tempfile::TempDir) {
    let as_port = common::free_port();
    let files = tempfile::tempdir().unwrap();
    let registration = files.path().join("slack-registration.yaml");
    std::fs::write(&registration, registration_yaml(as_port)).unwrap();
    let server = TestServer::start_with(
        db,
        &format!(
            "app_service_config_files: ['{}']\nenable_registration: true\n\
             enable_registration_without_verification: true\n\
             experimental_features: {{msc2409_to_device_messages_enabled: true}}\n{extra_yaml}",
            registration.display()
        ),
    )
    .await;
    let bridge = Bridge::start(&server.base, SERVER_NAME, as_port).await;
    (server, bridge, files)
}

/// Kith named after its address, federating, with the bridge (whose namespaces match
/// any server, so that the registration need not name kith's).
async fn start_federating(db: Db) -> (TestServer, Bridge, tempfile::TempDir) {
    let as_port = common::free_port();
    let files = tempfile::tempdir().unwrap();
    let registration = files.path().join("slack-registration.yaml");
    std::fs::write(&registration, registration_yaml(as_port).replace(":kith\\.test", "")).unwrap();
    let config = format!("app_service_config_files: ['{}']\n", registration.display());
    let server = TestServer::start_federating_with(db, &config).await;
    let bridge = Bridge::start(&server.base, server.name(), as_port).await;
    (server, bridge, files)
}

struct Bridge {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Bridge {
    async fn start(homeserver: &str, domain: &str, port: u16) -> Self {
        let python = common::mautrix_venv().join("bin/python");
        common::require_file(&python, "scripts/test installs mautrix into a virtualenv");
        let mut child = tokio::process::Command::new(python)
            .arg(repository("tests/python/mautrix_bridge.py"))
            .args([homeserver, domain, &port.to_string(), AS_TOKEN, HS_TOKEN, SENDER, AS_ID])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the bridge starts");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut bridge = Self { child, stdin, lines };
        assert_eq!(bridge.read().await["ready"], true);
        bridge
    }

    async fn read(&mut self) -> Value {
        let line = tokio::time::timeout(COMMAND_TIMEOUT, self.lines.next_line())
            .await
            .expect("the bridge answers in time")
            .unwrap()
            .expect("the bridge is running");
        serde_json::from_str(&line).unwrap()
    }

    async fn ask(&mut self, command: Value) -> Value {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await.unwrap();
        self.read().await
    }

    async fn stop(mut self) {
        self.ask(json!({"cmd": "stop"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A room made by the bridge's bot with `user` invited and joined, and the bridged
/// user `slack_alice` in it.
async fn bridged_room(server: &TestServer, bridge: &mut Bridge, user: &str, token: &str) -> String {
    let registered = bridge.ask(json!({"cmd": "register", "localpart": "slack_alice"})).await;
    assert_eq!(registered["user_id"], "@slack_alice:kith.test", "{registered}");
    let room = bridge.ask(json!({"cmd": "create_room", "invite": [user]})).await;
    let room_id = room["room_id"].as_str().expect("a room").to_owned();
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room_id}/join"), Some(token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    room_id
}

async fn send_text(server: &TestServer, token: &str, room_id: &str, text: &str) {
    let txn = format!("t{}", rand_suffix());
    let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}");
    let (status, body) = server.put(&path, Some(token), json!({"msgtype": "m.text", "body": text})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// The bridge's bot is its sender (whoami with the `as_token`), it registers a bridged
/// user in its namespace and no other, its namespaces are refused to everyone else
/// (`M_EXCLUSIVE`), a bridged user writes through the `as_token` (`user_id=`), a
/// message of a local user is pushed to the bridge, and a ping goes both ways.
async fn a_bridge_registers_its_users_writes_as_them_and_is_pushed_messages(db: Db) {
    let (server, mut bridge, _files) = start(db).await;
    let whoami = bridge.ask(json!({"cmd": "whoami"})).await;
    assert_eq!(whoami["user_id"], "@slackbot:kith.test", "{whoami}");
    let (user, token) = server.register("alice", "alice pw").await;

    let outside = bridge.ask(json!({"cmd": "register", "localpart": "carol"})).await;
    assert_eq!(outside["errcode"], "M_EXCLUSIVE", "{outside}");
    let path = format!("/_matrix/client/v3/account/whoami?user_id={user}");
    let (status, body) = server.get(&path, Some(AS_TOKEN)).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
    let (status, body) = server.get("/_matrix/client/v3/register/available?username=slack_bob", None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_EXCLUSIVE")), "{body}");
    let ordinary = json!({"username": "slack_bob", "password": "pw", "auth": {"type": "m.login.dummy"}});
    let (status, body) = server.post("/_matrix/client/v3/register", None, ordinary).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_EXCLUSIVE")), "{body}");

    let room_id = bridged_room(&server, &mut bridge, &user, &token).await;
    let alias = json!({"room_id": room_id});
    let (status, body) =
        server.put("/_matrix/client/v3/directory/room/%23slack_general:kith.test", Some(&token), alias).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_EXCLUSIVE")), "{body}");

    let sent = bridge
        .ask(json!({"cmd": "puppet_send", "localpart": "slack_alice", "room_id": room_id, "text": "hi from slack"}))
        .await;
    assert_eq!(sent["sender"], "@slack_alice:kith.test", "{sent}");
    let (status, messages) =
        server.get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=5"), Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    let bridged = messages["chunk"].as_array().unwrap().iter().find(|e| e["content"]["body"] == "hi from slack");
    assert_eq!(bridged.expect("the bridged message")["sender"], "@slack_alice:kith.test");

    let (_, admin) = server.register_as("root", "root pw", true).await;
    let (_, puppet) = server.get("/_synapse/admin/v2/users/@slack_alice:kith.test", Some(&admin)).await;
    assert_eq!(puppet["appservice_id"], AS_ID, "{puppet}");
    let (_, local) = server.get(&format!("/_synapse/admin/v2/users/{user}"), Some(&admin)).await;
    assert_eq!(local["appservice_id"], Value::Null, "{local}");

    send_text(&server, &token, &room_id, "hello bridge").await;
    let pushed = bridge.ask(json!({"cmd": "wait_message", "body": "hello bridge", "timeout": 30})).await;
    assert_eq!(pushed["handled"], 1, "{pushed}");

    let ping = bridge.ask(json!({"cmd": "ping", "txn_id": "ping-1"})).await;
    assert!(ping["duration_ms"].as_u64().is_some(), "{ping}");
    let (status, body) = server.post("/_matrix/client/v1/appservice/otherbridge/ping", Some(AS_TOKEN), json!({})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
    let (status, body) =
        server.post(&format!("/_matrix/client/v1/appservice/{AS_ID}/ping"), Some(&token), json!({})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
    bridge.stop().await;
}

/// A bridge that answers a transaction with a 500 gets the same transaction again,
/// under the same id, and processes its message once.
async fn a_refused_transaction_is_sent_again_under_its_id(db: Db) {
    let (server, mut bridge, _files) = start(db).await;
    let (user, token) = server.register("alice", "alice pw").await;
    let room_id = bridged_room(&server, &mut bridge, &user, &token).await;
    send_text(&server, &token, &room_id, "settle").await;
    bridge.ask(json!({"cmd": "wait_message", "body": "settle", "timeout": 30})).await;

    bridge.ask(json!({"cmd": "refuse", "count": 1})).await;
    send_text(&server, &token, &room_id, "retry me").await;
    let pushed = bridge.ask(json!({"cmd": "wait_message", "body": "retry me", "timeout": 60})).await;
    assert_eq!(pushed["handled"], 1, "{pushed}");
    let carrying = pushed["transactions"].as_array().unwrap();
    let statuses: Vec<u64> = carrying.iter().map(|t| t["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [500, 200], "{pushed}");
    assert_eq!(carrying[0]["txn_id"], carrying[1]["txn_id"], "{pushed}");
    bridge.stop().await;
}

/// A transaction still refused when kith stops is sent again under the same id once it
/// is back; what was sent meanwhile follows in a later transaction.
async fn a_waiting_transaction_survives_a_restart(db: Db) {
    let (mut server, mut bridge, _files) = start(db).await;
    let (user, token) = server.register("alice", "alice pw").await;
    let room_id = bridged_room(&server, &mut bridge, &user, &token).await;
    send_text(&server, &token, &room_id, "settle").await;
    bridge.ask(json!({"cmd": "wait_message", "body": "settle", "timeout": 30})).await;

    bridge.ask(json!({"cmd": "refuse", "count": 1000})).await;
    send_text(&server, &token, &room_id, "across the restart").await;
    let refused = bridge.ask(json!({"cmd": "wait_message", "body": "across the restart", "timeout": 3})).await;
    assert_eq!(refused["handled"], 0, "{refused}");
    assert!(!refused["transactions"].as_array().unwrap().is_empty(), "sent and refused before the restart: {refused}");
    server.terminate();
    bridge.ask(json!({"cmd": "refuse", "count": 0})).await;
    server.start_again().await;
    send_text(&server, &token, &room_id, "after the restart").await;

    let pushed = bridge.ask(json!({"cmd": "wait_message", "body": "across the restart", "timeout": 60})).await;
    assert_eq!(pushed["handled"], 1, "{pushed}");
    let carrying = pushed["transactions"].as_array().unwrap();
    let first_id = &carrying[0]["txn_id"];
    assert!(carrying.iter().all(|t| &t["txn_id"] == first_id), "one transaction id throughout: {pushed}");
    assert_eq!(carrying.last().unwrap()["status"], 200, "{pushed}");
    let after = bridge.ask(json!({"cmd": "wait_message", "body": "after the restart", "timeout": 30})).await;
    assert_eq!(after["handled"], 1, "{after}");
    let after_id: u64 = after["transactions"][0]["txn_id"].as_str().unwrap().parse().unwrap();
    let first_id: u64 = first_id.as_str().unwrap().parse().unwrap();
    assert!(after_id > first_id, "order kept: {first_id} then {after_id}");
    bridge.stop().await;
}

/// Unknown users and aliases in the bridge's namespaces are asked about first: an invite
/// or a profile lookup of a ghost the bridge creates on demand, and a lookup or a join
/// of a channel alias it creates then, go on; others are still unknown, and names
/// outside its namespaces are not asked about.
async fn a_bridge_is_asked_for_users_and_aliases_it_can_create(db: Db) {
    let (server, mut bridge, _files) = start(db).await;
    let (_, token) = server.register("alice", "alice pw").await;
    let (status, body) = server.get("/_matrix/client/v3/profile/@slack_ghost_bob:kith.test", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = server.get("/_matrix/client/v3/profile/@slack_nobody:kith.test", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get("/_matrix/client/v3/profile/@carol:kith.test", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = server.post("/_matrix/client/v3/createRoom", Some(&token), json!({})).await;
    let room_id = body["room_id"].as_str().unwrap_or_else(|| panic!("{status} {body}"));
    let invite = json!({"user_id": "@slack_ghost_carol:kith.test"});
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room_id}/invite"), Some(&token), invite).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = server.get("/_matrix/client/v3/directory/room/%23slack_channel_general:kith.test", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        server.post("/_matrix/client/v3/join/%23slack_channel_random:kith.test", Some(&token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = server.get("/_matrix/client/v3/directory/room/%23slack_nothing:kith.test", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get("/_matrix/client/v3/directory/room/%23elsewhere:kith.test", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let asked = bridge.ask(json!({"cmd": "queries"})).await;
    let expected = json!([
        ["user", "@slack_ghost_bob:kith.test"],
        ["user", "@slack_nobody:kith.test"],
        ["user", "@slack_ghost_carol:kith.test"],
        ["alias", "#slack_channel_general:kith.test"],
        ["alias", "#slack_channel_random:kith.test"],
        ["alias", "#slack_nothing:kith.test"],
    ]);
    assert_eq!(asked["queries"], expected);
    bridge.stop().await;
}

/// The bridge's network is listed among the third-party protocols, with its instance
/// named after the bridge, and users and locations are looked up through it.
async fn third_party_lookups_reach_the_bridge(db: Db) {
    let (server, bridge, _files) = start(db).await;
    let (_, token) = server.register("alice", "alice pw").await;
    let (status, body) = server.get("/_matrix/client/v3/thirdparty/protocols", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let instance = &body["slack"]["instances"][0];
    assert_eq!(
        (instance["network_id"].as_str(), instance["instance_id"].as_str()),
        (Some("example"), Some("slackbridge|example")),
        "{body}"
    );
    let (status, body) = server.get("/_matrix/client/v3/thirdparty/protocol/slack", Some(&token)).await;
    assert_eq!((status, body["user_fields"].clone()), (StatusCode::OK, json!(["name"])), "{body}");
    let (status, body) = server.get("/_matrix/client/v3/thirdparty/protocol/irc", Some(&token)).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{body}");
    let (status, body) = server.get("/_matrix/client/v3/thirdparty/user/slack?name=bob", Some(&token)).await;
    assert_eq!((status, body[0]["userid"].as_str()), (StatusCode::OK, Some("@slack_bob:kith.test")), "{body}");
    let (status, body) = server.get("/_matrix/client/v3/thirdparty/location/slack?channel=random", Some(&token)).await;
    let alias = body[0]["alias"].as_str();
    assert_eq!((status, alias), (StatusCode::OK, Some("#slack_channel_random:kith.test")), "{body}");
    let (status, body) = server.get("/_matrix/client/v3/thirdparty/location/irc?channel=random", Some(&token)).await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
    bridge.stop().await;
}

/// The bridge asked for ephemeral data: a local user's typing, presence and read
/// receipt in a room it shares with them are pushed to it, a private receipt is not; with MSC2409's
/// to-device part on, a to-device message for a device of one of its users is too, and
/// the bridge acts as that device with `device_id=`.
async fn ephemeral_data_reaches_the_bridge(db: Db) {
    let (server, mut bridge, _files) = start(db).await;
    let (user, token) = server.register("alice", "alice pw").await;
    let room_id = bridged_room(&server, &mut bridge, &user, &token).await;
    let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/read-me");
    let (status, sent) = server.put(&path, Some(&token), json!({"msgtype": "m.text", "body": "read me"})).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let event_id = sent["event_id"].as_str().unwrap();

    let typing = json!({"typing": true, "timeout": 30000});
    let (status, body) =
        server.put(&format!("/_matrix/client/v3/rooms/{room_id}/typing/{user}"), Some(&token), typing).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = bridge.ask(json!({"cmd": "wait_ephemeral", "type": "m.typing", "room_id": room_id, "has": user})).await;
    assert_eq!(seen["events"][0]["content"]["user_ids"], json!([user]), "{seen}");

    let presence = json!({"presence": "online", "status_msg": "bridging"});
    let (status, body) =
        server.put(&format!("/_matrix/client/v3/presence/{user}/status"), Some(&token), presence).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen =
        bridge.ask(json!({"cmd": "wait_ephemeral", "type": "m.presence", "room_id": null, "has": "bridging"})).await;
    let content = &seen["events"][0]["content"];
    assert_eq!((&content["presence"], &content["status_msg"]), (&json!("online"), &json!("bridging")), "{seen}");

    let private = format!("/_matrix/client/v3/rooms/{room_id}/receipt/m.read.private/{event_id}");
    let (status, body) = server.post(&private, Some(&token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let public = format!("/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{event_id}");
    let (status, body) = server.post(&public, Some(&token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = bridge.ask(json!({"cmd": "wait_ephemeral", "type": "m.receipt", "room_id": room_id, "has": user})).await;
    let receipts = seen["events"].as_array().unwrap();
    assert_eq!(receipts.len(), 1, "the private receipt stays private: {seen}");
    assert!(receipts[0]["content"][event_id]["m.read"][&user]["ts"].is_u64(), "{seen}");

    let device =
        bridge.ask(json!({"cmd": "register_device", "localpart": "slack_dev", "device_id": "BRIDGEDEV"})).await;
    assert_eq!(device["device_id"], "BRIDGEDEV", "{device}");
    let as_device = "/_matrix/client/v3/account/whoami?user_id=@slack_dev:kith.test&device_id=";
    let (status, body) = server.get(&format!("{as_device}BRIDGEDEV"), Some(AS_TOKEN)).await;
    assert_eq!((status, body["device_id"].as_str()), (StatusCode::OK, Some("BRIDGEDEV")), "{body}");
    let (status, body) = server.get(&format!("{as_device}NOSUCHDEVICE"), Some(AS_TOKEN)).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_UNKNOWN_DEVICE")), "{body}");
    let messages = json!({"messages": {"@slack_dev:kith.test": {"BRIDGEDEV": {"secret": "for the bridge"}}}});
    let (status, body) =
        server.put("/_matrix/client/v3/sendToDevice/org.example.test/td1", Some(&token), messages).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = bridge.ask(json!({"cmd": "wait_to_device"})).await;
    let expected = json!([{
        "type": "org.example.test", "sender": user, "content": {"secret": "for the bridge"},
        "to_user_id": "@slack_dev:kith.test", "to_device_id": "BRIDGEDEV",
    }]);
    assert_eq!(seen["messages"], expected, "{seen}");
    bridge.stop().await;
}

/// Users of the bridge's exclusive namespace and its bot are left out of the user
/// directory, even for a room-mate, as in Synapse; an ordinary user in a public room is
/// found (which also shows the directory has caught up with the bridged room).
async fn bridged_users_stay_out_of_the_directory(db: Db) {
    let (server, mut bridge, _files) = start(db).await;
    let (user, token) = server.register("alice", "alice pw").await;
    bridged_room(&server, &mut bridge, &user, &token).await;
    let (_, carol) = server.register("carol", "carol pw").await;
    let (status, body) =
        server.post("/_matrix/client/v3/createRoom", Some(&carol), json!({"preset": "public_chat"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let search = |term: &'static str| {
        server.post("/_matrix/client/v3/user_directory/search", Some(&token), json!({"search_term": term}))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while search("carol").await.1["results"].as_array().is_none_or(Vec::is_empty) {
        assert!(std::time::Instant::now() < deadline, "carol is never found");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for term in ["slack", "slackbot"] {
        let (status, found) = search(term).await;
        assert_eq!((status, &found["results"]), (StatusCode::OK, &json!([])), "{term}: {found}");
    }
    bridge.stop().await;
}

/// A message the bridge writes as one of its users reaches a user of another server
/// in the bridge's room, and that user's answer is pushed to the bridge.
async fn bridge_to_another_server(kith: &TestServer, bridge: &mut Bridge, peer: &impl Homeserver, peer_token: &str) {
    let (status, who) =
        peer.call(reqwest::Method::GET, "/_matrix/client/v3/account/whoami", Some(peer_token), None).await;
    assert_eq!(status, StatusCode::OK, "{who}");
    let registered = bridge.ask(json!({"cmd": "register", "localpart": "slack_alice"})).await;
    assert!(registered["user_id"].is_string(), "{registered}");
    let room = bridge.ask(json!({"cmd": "create_room", "invite": [who["user_id"]]})).await;
    let room_id = room["room_id"].as_str().expect("a room").to_owned();
    let joined = eventually("the peer's user joins the bridged room", Duration::from_secs(60), || async {
        let (status, _) = matrix::join(peer, peer_token, &room_id, kith.name()).await;
        status.is_success().then_some(())
    });
    joined.await;
    let text = "hello from slack";
    let sent =
        bridge.ask(json!({"cmd": "puppet_send", "localpart": "slack_alice", "room_id": room_id, "text": text})).await;
    assert!(sent["event_id"].is_string(), "{sent}");
    eventually("the bridged message on the other server", Duration::from_secs(60), || async {
        matrix::message_bodies(peer, peer_token, &room_id).await.iter().any(|b| b == text).then_some(())
    })
    .await;
    matrix::send_text(peer, peer_token, &room_id, "hello from afar").await;
    let pushed = bridge.ask(json!({"cmd": "wait_message", "body": "hello from afar", "timeout": 60})).await;
    assert_eq!(pushed["handled"], 1, "{pushed}");
}

async fn a_bridge_reaches_another_kith(db: Db) {
    let (kith, mut bridge, _files) = start_federating(db).await;
    let peer = TestServer::start_federating(Db::Sqlite).await;
    let (_, token) = peer.register("bob", "bob pw").await;
    bridge_to_another_server(&kith, &mut bridge, &peer, &token).await;
    bridge.stop().await;
}

async fn a_bridge_reaches_synapse(db: Db) {
    let (kith, mut bridge, _files) = start_federating(db).await;
    let synapse = Synapse::start().await;
    let (_, token) = synapse.register("bob", "bob pw").await;
    bridge_to_another_server(&kith, &mut bridge, &synapse, &token).await;
    bridge.stop().await;
}

/// With `rate_limited: false`, the bridge's users write past the message limit that
/// stops an ordinary user.
async fn a_bridge_is_not_rate_limited(db: Db) {
    let (server, mut bridge, _files) = start_with(db, "\nrc_message: {per_second: 0.1, burst_count: 2}\n").await;
    let (user, token) = server.register("alice", "alice pw").await;
    let room_id = bridged_room(&server, &mut bridge, &user, &token).await;
    let joined =
        bridge.ask(json!({"cmd": "puppet_send", "localpart": "slack_alice", "room_id": room_id, "text": "in"})).await;
    assert!(joined["event_id"].is_string(), "{joined}");
    for i in 0..5 {
        let path =
            format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/b{i}?user_id=@slack_alice:kith.test");
        let (status, body) = server.put(&path, Some(AS_TOKEN), json!({"msgtype": "m.text", "body": "bridged"})).await;
        assert_eq!(status, StatusCode::OK, "bridged message {i}: {body}");
    }
    let mut statuses = Vec::new();
    for i in 0..5 {
        let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/a{i}");
        statuses.push(server.put(&path, Some(&token), json!({"msgtype": "m.text", "body": "local"})).await.0);
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "the ordinary user is limited: {statuses:?}");
    bridge.stop().await;
}

both_backends!(
    a_bridge_is_not_rate_limited,
    a_bridge_registers_its_users_writes_as_them_and_is_pushed_messages,
    third_party_lookups_reach_the_bridge,
    ephemeral_data_reaches_the_bridge,
    bridged_users_stay_out_of_the_directory,
    a_bridge_reaches_another_kith,
    a_bridge_reaches_synapse,
    a_bridge_is_asked_for_users_and_aliases_it_can_create,
    a_refused_transaction_is_sent_again_under_its_id,
    a_waiting_transaction_survives_a_restart
);

/// `/metrics` counts each service's transactions taken and refused, when it last took
/// one, and how many wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_counted_in_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port, as_port) = (common::free_port(), common::free_port(), common::free_port());
    let registration = dir.path().join("slack-registration.yaml");
    std::fs::write(&registration, registration_yaml(as_port)).unwrap();
    let config = format!(
        "server_name: {SERVER_NAME}\nenable_metrics: true\n\
         listeners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    resources: [{{names: [client]}}]\n\
         \x20 - port: {metrics_port}\n    type: metrics\n    bind_addresses: ['127.0.0.1']\n\
         database: {{name: sqlite3, args: {{database: {db}}}}}\nregistration_shared_secret: {secret}\n\
         trusted_key_servers: []\napp_service_config_files: ['{registration}']\n",
        db = dir.path().join("homeserver.db").display(),
        secret = common::SHARED_SECRET,
        registration = registration.display(),
    );
    let config_path = dir.path().join("homeserver.yaml");
    std::fs::write(&config_path, config).unwrap();
    let server = TestServer::start_from_config_file(dir, config_path, port).await;
    let mut bridge = Bridge::start(&server.base, SERVER_NAME, as_port).await;
    let (user, token) = server.register("alice", "alice pw").await;
    let room_id = bridged_room(&server, &mut bridge, &user, &token).await;
    bridge.ask(json!({"cmd": "refuse", "count": 1})).await;
    send_text(&server, &token, &room_id, "counted").await;
    let pushed = bridge.ask(json!({"cmd": "wait_message", "body": "counted", "timeout": 60})).await;
    assert_eq!(pushed["handled"], 1, "{pushed}");

    let url = format!("http://127.0.0.1:{metrics_port}/_synapse/metrics");
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let value = |family: &str| -> f64 {
        let prefix = format!("kith_{family}{{appservice=\"{AS_ID}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{prefix}: {text}"));
        line[prefix.len()..].parse().unwrap()
    };
    assert!(value("appservice_transactions_sent_total") >= 1.0, "{text}");
    assert!(value("appservice_transaction_failures_total") >= 1.0, "{text}");
    assert!(value("appservice_last_success_timestamp_seconds") > 1.7e9, "{text}");
    assert_eq!(value("appservice_transactions_waiting"), 0.0, "{text}");
    bridge.stop().await;
}

/// A broken registration file stops start-up naming the file and the key; two files
/// with the same `as_token` refuse to start.
#[test]
fn invalid_registration_files_stop_startup() {
    let dir = tempfile::tempdir().unwrap();
    let good = registration_yaml(9);
    let cases = [
        (good.replace("'@slack_.*:kith\\.test'", "'@slack_(:kith'"), "namespaces.users[0].regex"),
        (good.replace("url: http://127.0.0.1:9\n", ""), "url"),
        (good.replace("rate_limited: false", "rate_limited: sometimes"), "rate_limited"),
    ];
    for (i, (yaml, key)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        let stderr = start_failing(dir.path(), &[&file]);
        assert!(stderr.contains(&file.display().to_string()) && stderr.contains(key), "{key}: {stderr}");
    }
    let first = dir.path().join("first.yaml");
    let second = dir.path().join("second.yaml");
    std::fs::write(&first, &good).unwrap();
    std::fs::write(&second, good.replace("id: slackbridge", "id: other")).unwrap();
    let stderr = start_failing(dir.path(), &[&first, &second]);
    assert!(stderr.contains("as_token is used by both"), "{stderr}");
}

/// Runs kith on a config listing `files`; it must exit at once. Returns its stderr.
fn start_failing(dir: &Path, files: &[&Path]) -> String {
    let list: Vec<String> = files.iter().map(|f| format!("'{}'", f.display())).collect();
    let config = dir.join("homeserver.yaml");
    std::fs::write(
        &config,
        format!(
            "server_name: kith.test\nlisteners:\n  - port: {}\n    bind_addresses: ['127.0.0.1']\n\
             database:\n  name: sqlite3\n  args:\n    database: {}\napp_service_config_files: [{}]\n",
            common::free_port(),
            dir.join("homeserver.db").display(),
            list.join(", ")
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--config")
        .arg(&config)
        .arg("--generate-missing")
        .output()
        .unwrap();
    assert!(!output.status.success(), "kith should refuse to start");
    String::from_utf8_lossy(&output.stderr).into_owned()
}
