//! What a Synapse admin relies on: the `rc_*` rate limits in Synapse's shapes, enforced
//! with `M_LIMIT_EXCEEDED` and `retry_after_ms`, and a homeserver.yaml as Synapse's own
//! `--generate-config` writes it starting kith, which warns about what it ignores.

mod common;

use common::matrix::{self, Homeserver, V3};
use common::{Db, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TIGHT_LIMITS: &str = "
rc_message: {per_second: 0.001, burst_count: 3}
rc_joins:
  local: {per_second: 0.001, burst_count: 2}
rc_room_creation: {per_second: 0.001, burst_count: 3}
rc_invites:
  per_issuer: {per_second: 0.001, burst_count: 2}
";

fn assert_limited((status, body): (StatusCode, Value), what: &str) {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{what}: {body}");
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED", "{what}: {body}");
    assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{what}: {body}");
}

async fn synapse_shaped_rate_limits_are_enforced(db: Db) {
    let server = TestServer::start_with(db, TIGHT_LIMITS).await;
    let (_, alice) = server.register("alice", "pw").await;
    let (_, bob) = server.register("bob", "pw").await;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        rooms.push(matrix::create_room(&server, &alice, json!({ "preset": "public_chat" })).await);
    }
    assert_limited(server.post(&format!("{V3}/createRoom"), Some(&alice), json!({})).await, "a fourth room");

    // Messages and state events share rc_message, per user.
    let send = |i: usize| format!("{V3}/rooms/{}/send/m.room.message/t{i}", matrix::encode(&rooms[0]));
    for i in 0..2 {
        assert_eq!(
            server.put(&send(i), Some(&alice), json!({ "msgtype": "m.text", "body": "hi" })).await.0,
            StatusCode::OK
        );
    }
    let topic = format!("{V3}/rooms/{}/state/m.room.topic", matrix::encode(&rooms[0]));
    assert_eq!(server.put(&topic, Some(&alice), json!({ "topic": "t" })).await.0, StatusCode::OK);
    assert_limited(
        server.put(&send(9), Some(&alice), json!({ "msgtype": "m.text", "body": "hi" })).await,
        "a fourth event",
    );
    let bobs = format!("{V3}/rooms/{}/send/m.room.message/b", matrix::encode(&rooms[0]));
    assert_eq!(matrix::join(&server, &bob, &rooms[0], server.name()).await.0, StatusCode::OK);
    assert_eq!(server.put(&bobs, Some(&bob), json!({ "msgtype": "m.text", "body": "me too" })).await.0, StatusCode::OK);

    // Joins: bob has used one of two.
    assert_eq!(matrix::join(&server, &bob, &rooms[1], server.name()).await.0, StatusCode::OK);
    assert_limited(matrix::join(&server, &bob, &rooms[2], server.name()).await, "a third join");

    // Invites, per inviter.
    let invite = |room: &str| format!("{V3}/rooms/{}/invite", matrix::encode(room));
    for (i, room) in rooms.iter().take(2).enumerate() {
        let (_, token) = server.register(&format!("guest{i}"), "pw").await;
        drop(token);
        let user = format!("@guest{i}:{}", common::SERVER_NAME);
        assert_eq!(server.post(&invite(room), Some(&alice), json!({ "user_id": user })).await.0, StatusCode::OK);
    }
    let user = format!("@bob:{}", common::SERVER_NAME);
    assert_limited(server.post(&invite(&rooms[2]), Some(&alice), json!({ "user_id": user })).await, "a third invite");
}

/// Synapse's `--generate-config` output, with its listener moved to a free port on
/// 127.0.0.1: kith starts, serves, and names the keys it ignores, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_synapse_generates_starts_kith() {
    let python = common::synapse_venv().join("bin/python");
    common::require_file(&python, "scripts/test installs matrix-synapse into a virtualenv");
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("homeserver.yaml");
    let status = std::process::Command::new(&python)
        .args(["-m", "synapse.app.homeserver", "--server-name", "generated.test", "--report-stats=no"])
        .arg("--config-path")
        .arg(&config_path)
        .arg("--generate-config")
        .current_dir(dir.path())
        .output()
        .expect("synapse --generate-config");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let generated = std::fs::read_to_string(&config_path).expect("generated config");
    assert!(generated.contains("port: 8008"), "{generated}");
    let port = common::free_port();
    let config = generated
        .replace("port: 8008", &format!("port: {port}"))
        .replace("bind_addresses: ['::1', '127.0.0.1']", "bind_addresses: ['127.0.0.1']");
    std::fs::write(&config_path, config).expect("write config");

    let server = TestServer::start_from_config_file(dir, config_path, port).await;
    let (status, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK, "{versions}");
    // The generated shared secret registers users, as register_new_matrix_user would.
    let secret = generated
        .lines()
        .find_map(|line| line.strip_prefix("registration_shared_secret:"))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .expect("a generated shared secret");
    let (_, nonce) = server.get("/_synapse/admin/v1/register", None).await;
    let nonce = nonce["nonce"].as_str().expect("nonce").to_owned();
    let mac = common::shared_secret_mac(&secret, &nonce, "admin", "pw", true);
    let body = json!({ "nonce": nonce, "username": "admin", "password": "pw", "admin": true, "mac": mac });
    let (status, registered) = server.post("/_synapse/admin/v1/register", None, body).await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    let token = registered["access_token"].as_str().expect("token").to_owned();
    let room = matrix::create_room(&server, &token, json!({ "name": "first" })).await;
    assert!(room.ends_with(":generated.test"), "{room}");
    let log = server.log();
    for key in ["macaroon_secret_key", "form_secret"] {
        if generated.contains(&format!("{key}:")) {
            let warnings =
                log.lines().filter(|line| line.contains("ignoring unknown config key") && line.contains(key)).count();
            assert_eq!(warnings, 1, "one warning for {key}:\n{log}");
        }
    }
}

both_backends!(synapse_shaped_rate_limits_are_enforced);
