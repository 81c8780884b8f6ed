//! Running the binary: config generation, config errors, TLS listeners, graceful
//! shutdown, and Synapse's own `register_new_matrix_user` against kith.

mod common;

use std::process::Command;

use std::time::Duration;

use common::fake_server::FakeServer;
use common::matrix::{self, eventually};
use common::{Db, SHARED_SECRET, TestServer};
use reqwest::StatusCode;
use serde_json::json;

/// The longest the tests wait for anything to show.
const WAIT: Duration = Duration::from_secs(30);

fn kith() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kith"))
}

#[test]
fn generate_config_writes_a_config_and_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("homeserver.yaml");
    let output =
        kith().args(["generate-config", "--server-name", "example.org", "--output"]).arg(&path).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("server_name: \"example.org\""));
    assert!(text.contains("registration_shared_secret:"));
    assert!(dir.path().join("example.org.signing.key").exists());
    let config = kith::config::Config::load(&path).unwrap();
    assert_eq!(config.server_name.as_str(), "example.org");

    let again =
        kith().args(["generate-config", "--server-name", "example.org", "--output"]).arg(&path).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let bad = kith()
        .args(["generate-config", "--server-name", "not a name", "--output"])
        .arg(dir.path().join("x.yaml"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--server-name"));
}

/// Each broken config stops start-up with a message naming the key.
#[test]
fn invalid_config_values_stop_startup_naming_the_key() {
    let cases = [
        ("server_name: example.org\nlisteners:\n  - port: notaport\n", "listeners[0].port"),
        ("server_name: example.org\nuser_directory:\n  enabled: maybe\n", "user_directory.enabled"),
        ("server_name: example.org\nrc_login:\n  address: {per_second: -1, burst_count: 3}\n", "rc_login.address"),
        ("server_name: example.org\ndatabase:\n  name: mysql\n", "database.name"),
        ("server_name: example.org\nlisteners:\n  - port: 8008\n    tls: true\n", "listeners[0].tls"),
        ("listeners: []\n", "server_name"),
    ];
    for (yaml, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("homeserver.yaml");
        std::fs::write(&path, yaml).unwrap();
        let output = kith().arg("--config").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{yaml} should not start");
        assert!(stderr.contains(key), "error for {yaml:?} should name {key}: {stderr}");
    }
}

#[tokio::test]
async fn unknown_synapse_keys_are_warned_about_and_ignored() {
    let extra = "max_spider_size: 10M\nexperimental_features:\n  msc3266_enabled: true\nuser_directory:\n  enabled: true\n  future_option: 1\n";
    let server = TestServer::start_with(Db::Sqlite, extra).await;
    let (status, _) = server.get("/health", None).await;
    assert_eq!(status, StatusCode::OK);
    let log = server.log();
    for key in ["max_spider_size", "experimental_features", "user_directory.future_option"] {
        assert!(log.contains("ignoring unknown config key") && log.contains(key), "no warning for {key}: {log}");
    }
}

#[tokio::test]
async fn tls_listener_serves_client_and_key_apis() {
    let server = TestServer::start_tls(Db::Sqlite).await;
    assert!(server.base.starts_with("https://"));
    let (status, _) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get("/_matrix/key/v2/server", None).await;
    assert_eq!((status, body["server_name"].as_str()), (StatusCode::OK, Some(common::SERVER_NAME)));
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut server = TestServer::start(Db::Sqlite).await;
    server.register("alice", "pw").await;
    let status = server.terminate();
    assert!(status.success(), "exit status {status}: {}", server.log());
    assert!(server.log().contains("shutting down"));
}

/// A server with nothing to do (no application service, no peers) keeps every worker
/// running: none returns early only to be restarted, and logged as failing, again and
/// again.
#[tokio::test]
async fn an_idle_server_restarts_no_worker() {
    let server = TestServer::start(Db::Sqlite).await;
    server.register("alice", "pw").await;
    // Restarts come after 1 s, then 2 s: a worker returning at once shows twice by now.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert!(!server.log().contains("stopped on its own"), "{}", server.log());
}

/// SIGTERM while every worker has work: profile propagation has member events to send
/// into many rooms, the directory has changes to index, and the federation sender owes
/// events to a server that went away (its worker waits out a backoff). The process exits
/// by itself (no worker had to be aborted), and after a restart the work it had not done
/// is done: nothing is lost.
#[tokio::test]
async fn sigterm_with_busy_workers_stops_them_and_loses_nothing() {
    const ROOMS: usize = 25;
    let mut server = TestServer::start_federating(Db::Sqlite).await;
    let (alice, token) = server.register("alice", "pw").await;
    let (_, eve_token) = server.register("eve", "pw").await;
    let mut rooms = Vec::new();
    for i in 0..ROOMS {
        let preset = if i == 0 { "public_chat" } else { "private_chat" };
        rooms.push(matrix::create_room(&server, &token, json!({ "preset": preset })).await);
    }
    let fake = FakeServer::start().await;
    fake.join(&server, &rooms[0], "mallory").await;
    drop(fake);
    for name in ["Alice One", "Alice Two", "Alice Final"] {
        let path = format!("/_matrix/client/v3/profile/{alice}/displayname");
        let (status, _) = server.put(&path, Some(&token), json!({ "displayname": name })).await;
        assert_eq!(status, StatusCode::OK);
    }
    eventually("the sender to back off from the server that went away", WAIT, || async {
        server.log().contains("backing off").then_some(())
    })
    .await;
    let status = server.terminate();
    assert!(status.success(), "exit status {status}: {}", server.log());
    assert!(!server.log().contains("did not stop in time"), "a worker had to be aborted:\n{}", server.log());

    server.start_again().await;
    for room in &rooms {
        let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{alice}");
        eventually(&format!("the final name in {room}"), WAIT, || async {
            let (_, member) = server.get(&path, Some(&token)).await;
            (member["displayname"] == "Alice Final").then_some(())
        })
        .await;
    }
    let search = json!({ "search_term": "final" });
    eventually("the directory to show the final name", WAIT, || async {
        let path = "/_matrix/client/v3/user_directory/search";
        let (_, body) = server.post(path, Some(&eve_token), search.clone()).await;
        (body["results"][0]["display_name"] == "Alice Final").then_some(())
    })
    .await;
}

/// Synapse's `register_new_matrix_user` (from the matrix-synapse package) works
/// unchanged against kith, with the secret given directly or read from the config.
#[tokio::test]
async fn synapse_register_new_matrix_user_script_works() {
    let venv = common::synapse_venv();
    let script = venv.join("bin/register_new_matrix_user");
    common::require_file(&script, "install matrix-synapse into it (scripts/test does) or set KITH_SYNAPSE_VENV");
    let server = TestServer::start(Db::Sqlite).await;

    let output = Command::new(&script)
        .args(["-u", "synapseadmin", "-p", "long password", "-a", "-k", SHARED_SECRET])
        .arg(&server.base)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let (status, body) = server.login("synapseadmin", "long password").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let output = Command::new(&script)
        .args(["-u", "plainuser", "-p", "pw2", "--no-admin", "-c"])
        .arg(&server.config_path)
        .arg(&server.base)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let (status, body) = server.login("plainuser", "pw2").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A wrong secret is refused, and says so.
    let output = Command::new(&script)
        .args(["-u", "intruder", "-p", "pw", "--no-admin", "-k", "wrong secret"])
        .arg(&server.base)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let (status, _) = server.login("intruder", "pw").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// Synapse's own signature library (signedjson, shipped with matrix-synapse) accepts
/// kith's signed server keys.
#[tokio::test]
async fn synapse_verifies_the_server_key() {
    let python = common::synapse_venv().join("bin/python");
    common::require_file(&python, "install matrix-synapse into it (scripts/test does) or set KITH_SYNAPSE_VENV");
    let server = TestServer::start(Db::Sqlite).await;
    let (status, body) = server.get("/_matrix/key/v2/server", None).await;
    assert_eq!(status, StatusCode::OK);
    let script = r#"
import json, sys
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64
body = json.loads(sys.stdin.read())
for key_id, key in body["verify_keys"].items():
    verify_key = decode_verify_key_bytes(key_id, decode_base64(key["key"]))
    verify_signed_json(body, body["server_name"], verify_key)
print("verified")
"#;
    let run = |body: String| {
        let mut child = Command::new(&python)
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let output = run(body.to_string());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "verified");
    let mut tampered = body.clone();
    tampered["server_name"] = serde_json::json!("kith.test");
    tampered["valid_until_ts"] = serde_json::json!(1);
    assert!(!run(tampered.to_string()).status.success(), "a tampered body must not verify");
}
