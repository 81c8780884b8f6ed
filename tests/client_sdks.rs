//! Real client libraries against kith, each with two federating kith servers (loopback,
//! self-signed certificates): matrix-js-sdk (what Element is built on) in Node, from
//! `tests/js`, and matrix-nio in Python, from its own virtualenv (both installed by
//! `scripts/test`). The scripts log in, sync, chat, DM across servers, upload and
//! download media with thumbnails, set an avatar, manage devices, change the password
//! and log out; they print `OK` when every step passed. With matrix-js-sdk's Rust
//! crypto, two users of the two servers exchange encrypted messages (`tests/js/e2ee.mjs`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Db, TestServer};

/// Runs `program script <server A> jsuser <pw> <server B> friend <pw>` and asserts it
/// printed OK.
async fn run_client_script(db: Db, sdk: &str, program: PathBuf, script: PathBuf) {
    let server = TestServer::start_federating(db).await;
    let other = TestServer::start_federating(db).await;
    server.register("clientuser", "secret pw").await;
    other.register("friend", "other pw").await;
    let args = [script.display().to_string(), server.base.clone(), "clientuser".into(), "secret pw".into()];
    let args: Vec<String> = args.into_iter().chain([other.base.clone(), "friend".into(), "other pw".into()]).collect();
    let output = tokio::task::spawn_blocking(move || {
        // The servers' certificates are self-signed (loopback only).
        Command::new(program).args(&args).env("NODE_TLS_REJECT_UNAUTHORIZED", "0").output()
    })
    .await
    .unwrap()
    .expect("the client script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|line| line == "OK"),
        "{sdk} failed:\n{stdout}\n{stderr}\n--- kith ---\n{}\n--- other kith ---\n{}",
        server.log(),
        other.log()
    );
}

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

async fn matrix_js_sdk_gets_through_a_first_day(db: Db) {
    common::require_file(
        &repository("tests/js/node_modules/matrix-js-sdk"),
        "run `npm ci --prefix tests/js` (scripts/test does)",
    );
    run_client_script(db, "matrix-js-sdk", "node".into(), repository("tests/js/client.mjs")).await;
}

/// Alice (on one server) and Bob (on the other) with matrix-js-sdk's Rust crypto, what
/// Element uses: cross-signing, key backup, an encrypted DM both read, a second device
/// of Alice's that reads the history from the backup, and Alice's devices in Bob's view.
async fn matrix_js_sdk_encrypts_across_servers(db: Db) {
    common::require_file(
        &repository("tests/js/node_modules/matrix-js-sdk"),
        "run `npm ci --prefix tests/js` (scripts/test does)",
    );
    run_client_script(db, "matrix-js-sdk (encryption)", "node".into(), repository("tests/js/e2ee.mjs")).await;
}

async fn matrix_nio_gets_through_a_first_day(db: Db) {
    let python = common::nio_venv().join("bin/python");
    common::require_file(&python, "scripts/test installs matrix-nio into a virtualenv");
    run_client_script(db, "matrix-nio", python, repository("tests/python/nio_client.py")).await;
}

both_backends!(
    matrix_js_sdk_gets_through_a_first_day,
    matrix_js_sdk_encrypts_across_servers,
    matrix_nio_gets_through_a_first_day
);
