//! What a Synapse admin relies on: the `rc_*` rate limits in Synapse's shapes, enforced
//! with `M_LIMIT_EXCEEDED` and `retry_after_ms`, and a homeserver.yaml as Synapse's own
//! `--generate-config` writes it starting kith, which warns about what it ignores.

mod common;

use std::time::Duration;

use common::fake_server::FakeServer;
use common::matrix::{self, Homeserver, V3};
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
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

both_backends!(
    synapse_shaped_rate_limits_are_enforced,
    an_admin_resets_a_destinations_backoff,
    every_enforced_limit_answers_429,
    remote_joins_have_their_own_limit,
    federation_requests_are_limited_per_origin,
);

/// A Synapse-style `metrics` listener (`enable_metrics`) serves every family, a server
/// the sender cannot reach labelled with its queue and backoff; the client listener does
/// not; each request leaves an access-log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_on_a_metrics_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, metrics_port) = (common::free_port(), common::free_port());
    let config = format!(
        "server_name: metrics.test\nenable_metrics: true\n\
         listeners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    resources: [{{names: [client, federation]}}]\n\
         \x20 - port: {metrics_port}\n    type: metrics\n    bind_addresses: ['127.0.0.1']\n\
         database: {{name: sqlite3, args: {{database: {db}}}}}\nregistration_shared_secret: {secret}\ntrusted_key_servers: []\n\
         federated_user_directory: {{enabled: true, peers: ['127.0.0.1:1']}}\nip_range_whitelist: ['127.0.0.1']\n",
        db = dir.path().join("homeserver.db").display(),
        secret = common::SHARED_SECRET,
    );
    let config_path = dir.path().join("homeserver.yaml");
    std::fs::write(&config_path, config).expect("config");
    let server = TestServer::start_from_config_file(dir, config_path, port).await;
    let (_, token) = server.register("alice", "pw").await;
    matrix::create_room(&server, &token, json!({ "preset": "public_chat" })).await;
    let search = json!({ "search_term": "alice" });
    assert_eq!(server.post(&format!("{V3}/user_directory/search"), Some(&token), search).await.0, StatusCode::OK);

    let scrape = reqwest::get(format!("http://127.0.0.1:{metrics_port}/_synapse/metrics")).await.expect("scrape");
    assert_eq!(scrape.status(), StatusCode::OK);
    let text = scrape.text().await.expect("metrics text");
    for family in [
        "kith_http_requests_total",
        "kith_http_request_duration_seconds_bucket",
        "kith_user_directory_search_duration_seconds_count",
        "kith_user_directory_users",
        "kith_remote_profile_queue_length",
        "kith_remote_profile_fetches",
        "kith_federation_outbox_pdus",
        "kith_federation_destinations_backing_off",
        "kith_peer_directory_sync_lag_seconds",
        "kith_partial_state_rooms",
        "kith_database_connections",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    let created = text.lines().find(|l| l.starts_with("kith_http_requests_total") && l.contains("/createRoom"));
    assert!(created.is_some_and(|line| line.contains("status=\"200\"") && line.ends_with(" 1")), "{text}");
    assert!(text.contains("kith_user_directory_search_duration_seconds_count 1"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("kith_user_directory_users") && !l.ends_with(" 0")), "{text}");
    let never = "kith_peer_directory_sync_lag_seconds{peer=\"127.0.0.1:1\"} ";
    assert!(text.lines().any(|l| l.starts_with(never) && l.to_lowercase().ends_with("inf")), "never pulled: {text}");

    // A server that cannot be reached gets series of its own: what waits for it, and
    // its backoff.
    let messages = json!({ "messages": { "@nobody:127.0.0.1:1": { "DEVICE": { "hello": true } } } });
    assert_eq!(server.put(&format!("{V3}/sendToDevice/m.test/t1"), Some(&token), messages).await.0, StatusCode::OK);
    let url = format!("http://127.0.0.1:{metrics_port}/_synapse/metrics");
    let text = matrix::eventually("the unreachable destination's series", Duration::from_secs(30), || async {
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        text.contains("kith_federation_destination_backing_off{destination=\"127.0.0.1:1\"} 1").then_some(text)
    })
    .await;
    let edus = "kith_federation_destination_queue{destination=\"127.0.0.1:1\",kind=\"edu\"} ";
    assert!(text.lines().any(|l| l.starts_with(edus) && !l.ends_with(" 0")), "the to-device EDU waits: {text}");
    let interval = "kith_federation_destination_retry_interval_seconds{destination=\"127.0.0.1:1\"} ";
    assert!(text.lines().any(|l| l.starts_with(interval) && !l.ends_with(" 0.0")), "{text}");
    assert!(text.contains("kith_federation_destinations_backing_off 1"), "the total stays: {text}");

    let (status, _) = server.get("/_synapse/metrics", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not on the client listener");
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("kith::access")
            && l.contains("/_matrix/client/v3/createRoom")
            && l.contains("status=200")),
        "an access-log line per request:\n{log}"
    );
}

/// An admin ends the backoff from a server kith could not reach; unknown servers are a
/// 404 and non-admins are refused.
async fn an_admin_resets_a_destinations_backoff(db: Db) {
    let server = TestServer::start_federating(db).await;
    let (_, admin) = server.register_as("admin", "pw", true).await;
    let (_, user) = server.register("user", "pw").await;
    let messages = json!({ "messages": { "@nobody:127.0.0.1:1": { "DEVICE": { "hello": true } } } });
    assert_eq!(server.put(&format!("{V3}/sendToDevice/m.test/t1"), Some(&user), messages).await.0, StatusCode::OK);
    let list = "/_synapse/admin/v1/federation/destinations";
    // Listed at once (it is owed the message), in backoff after the first failure.
    matrix::eventually("the destination in backoff", std::time::Duration::from_secs(30), || async {
        let (_, listed) = server.get(list, Some(&admin)).await;
        listed["destinations"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["destination"] == "127.0.0.1:1" && d["retry_interval"] != 0))
            .then_some(())
    })
    .await;
    let reset = |name: &str| format!("{list}/{}/reset_connection", matrix::encode(name));
    assert_eq!(server.post(&reset("127.0.0.1:1"), Some(&user), json!({})).await.0, StatusCode::FORBIDDEN);
    let (status, body) = server.post(&reset("127.0.0.1:1"), Some(&admin), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(server.log().contains("backoff reset by an admin"), "{}", server.log());
    let (status, body) = server.post(&reset("unknown.example"), Some(&admin), json!({})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{body}");
}

/// The other limits kith enforces, each reached with a burst of one or two.
async fn every_enforced_limit_answers_429(db: Db) {
    let limits = "
rc_profile: {per_second: 0.001, burst_count: 1}
rc_reports: {per_second: 0.001, burst_count: 1}
rc_media_create: {per_second: 0.001, burst_count: 1}
rc_registration_token_validity: {per_second: 0.001, burst_count: 2}
enable_registration: true
registration_requires_token: true
rc_joins_per_room: {per_second: 0.001, burst_count: 2}
rc_invites:
  per_room: {per_second: 0.001, burst_count: 1}
  per_user: {per_second: 0.001, burst_count: 1}
";
    let server = TestServer::start_with(db, limits).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let (_, bob) = server.register("bob", "pw").await;
    let (_, carol) = server.register("carol", "pw").await;
    let name = format!("{V3}/profile/{}/displayname", matrix::encode(&alice_id));
    assert_eq!(server.put(&name, Some(&alice), json!({ "displayname": "A" })).await.0, StatusCode::OK);
    assert_limited(server.put(&name, Some(&alice), json!({ "displayname": "B" })).await, "a second profile change");
    let create = "/_matrix/media/v1/create";
    assert_eq!(server.post(create, Some(&alice), json!({})).await.0, StatusCode::OK);
    assert_limited(server.post(create, Some(&alice), json!({})).await, "a second media id");
    let room = matrix::create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    let report = format!("{V3}/rooms/{}/report", matrix::encode(&room));
    assert_eq!(server.post(&report, Some(&alice), json!({ "reason": "x" })).await.0, StatusCode::OK);
    assert_limited(server.post(&report, Some(&alice), json!({ "reason": "y" })).await, "a second report");
    let validity = "/_matrix/client/v1/register/m.login.registration_token/validity?token=guess";
    for _ in 0..2 {
        assert_eq!(server.get(validity, None).await, (StatusCode::OK, json!({ "valid": false })));
    }
    assert_limited(server.get(validity, None).await, "a third token check from one address");

    // Joins into one room: alice's creation join does not count, bob's does.
    assert_eq!(matrix::join(&server, &bob, &room, server.name()).await.0, StatusCode::OK);
    assert_eq!(matrix::join(&server, &carol, &room, server.name()).await.0, StatusCode::OK);
    let (_, dave) = server.register("dave", "pw").await;
    assert_limited(matrix::join(&server, &dave, &room, server.name()).await, "a third join into the room");

    // Invites: one per room, one per invited user.
    let other = matrix::create_room(&server, &bob, json!({ "preset": "private_chat" })).await;
    let invite = |room: &str| format!("{V3}/rooms/{}/invite", matrix::encode(room));
    let erin = format!("@erin:{}", common::SERVER_NAME);
    server.register("erin", "pw").await;
    assert_eq!(server.post(&invite(&other), Some(&bob), json!({ "user_id": erin })).await.0, StatusCode::OK);
    let frank = format!("@frank:{}", common::SERVER_NAME);
    server.register("frank", "pw").await;
    assert_limited(
        server.post(&invite(&other), Some(&bob), json!({ "user_id": frank })).await,
        "a second invite into the room",
    );
    let third = matrix::create_room(&server, &carol, json!({ "preset": "private_chat" })).await;
    assert_limited(
        server.post(&invite(&third), Some(&carol), json!({ "user_id": erin })).await,
        "a second invite of erin",
    );
}

/// `rc_joins.remote` limits joins over federation, apart from local ones.
async fn remote_joins_have_their_own_limit(db: Db) {
    let a = TestServer::start_federating(db).await;
    let limits =
        "rc_joins:\n  local: {per_second: 1000, burst_count: 1000}\n  remote: {per_second: 0.001, burst_count: 1}\n";
    let b = TestServer::start_federating_with(db, limits).await;
    let (_, owner) = a.register("owner", "pw").await;
    let first = matrix::create_room(&a, &owner, json!({ "preset": "public_chat" })).await;
    let second = matrix::create_room(&a, &owner, json!({ "preset": "public_chat" })).await;
    let (_, bob) = b.register("bob", "pw").await;
    assert_eq!(matrix::join(&b, &bob, &first, a.name()).await.0, StatusCode::OK);
    assert_limited(matrix::join(&b, &bob, &second, a.name()).await, "a second join over federation");
    let local = matrix::create_room(&b, &bob, json!({ "preset": "public_chat" })).await;
    let (_, carol) = b.register("carol", "pw").await;
    assert_eq!(matrix::join(&b, &carol, &local, b.name()).await.0, StatusCode::OK, "local joins are not affected");
}

/// `rc_federation`: an origin's requests within `sleep_limit` are answered at once; the
/// next ones are delayed, and while more than `reject_limit` wait, further ones (a
/// transaction too) are refused. Other servers are not affected.
async fn federation_requests_are_limited_per_origin(db: Db) {
    let limits =
        "rc_federation: {window_size: 60000, sleep_limit: 2, sleep_delay: 3000, reject_limit: 1, concurrent: 1}";
    let kith = TestServer::start_federating_with(db, limits).await;
    let (alice, _) = kith.register("alice", "pw").await;
    let (peer, other) = (&FakeServer::start().await, &FakeServer::start().await);
    let query = |server| query_profile(server, &kith, &alice);
    for _ in 0..2 {
        let (status, body) = query(peer).await;
        assert_eq!(status, StatusCode::OK, "within the limit: {body}");
    }
    let refused = async {
        // Two delayed requests are waiting by then.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let refused = query(peer).await;
        let transaction = peer.send_edus(&kith, &[]).await;
        let (status, body) = query(other).await;
        assert_eq!(status, StatusCode::OK, "another server is not limited: {body}");
        (refused, transaction)
    };
    let (delayed, also_delayed, (refused, transaction)) = tokio::join!(query(peer), query(peer), refused);
    assert_limited(refused, "a request while two wait");
    assert_limited(transaction, "a transaction while two wait");
    for (status, body) in [delayed, also_delayed] {
        assert_eq!(status, StatusCode::OK, "delayed, then answered: {body}");
    }
}

async fn query_profile(server: &FakeServer, kith: &TestServer, user_id: &str) -> (StatusCode, Value) {
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", matrix::encode(user_id));
    server.request(kith, Method::GET, &path, None).await
}
