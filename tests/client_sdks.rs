//! Real client libraries against kith: matrix-js-sdk (what Element is built on), in
//! Node, from `tests/js` (installed by `scripts/test`).

mod common;

use std::path::Path;
use std::process::Command;

use common::{Db, TestServer};

async fn matrix_js_sdk_reaches_prepared_and_chats(db: Db) {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/node_modules/matrix-js-sdk");
    common::require_file(&modules, "run `npm ci --prefix tests/js` (scripts/test does)");
    let server = TestServer::start(db).await;
    server.register("jsuser", "secret pw").await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/client.mjs");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(script).arg(&server.base).arg("jsuser").arg("secret pw").output().map(|o| (o, server))
    })
    .await
    .unwrap()
    .expect("node runs");
    let (output, server) = output;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("OK"),
        "matrix-js-sdk failed:\n{stdout}\n{stderr}\n--- kith ---\n{}",
        server.log()
    );
}

both_backends!(matrix_js_sdk_reaches_prepared_and_chats);
