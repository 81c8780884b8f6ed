//! Black-box fuzzing over HTTP, bounded in count and time, on both backends: mutated
//! requests to every client route from one user (alice), and signed mutated requests to
//! the federation routes from a fake peer. Every answer must be below 500, every 4xx a
//! Matrix error (`errcode` + `error`), nothing may hang, and what another user (bob)
//! owns must be exactly as it was.
//!
//! The mutations are drawn from a seeded generator (`KITH_FUZZ_SEED` to replay a run);
//! a failure prints the seed and the request.

mod common;

use std::time::Duration;

use common::fake_server::FakeServer;
use common::matrix::{self, V3, encode};
use common::{Db, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Mutated client requests per backend.
const CLIENT_CASES: usize = 4_000;
/// Mutated federation requests per backend.
const FEDERATION_CASES: usize = 1_000;
/// No single request may take longer (a hang fails the test).
const REQUEST_LIMIT: Duration = Duration::from_secs(15);

/// Every client route: method and path, `{room}`, `{user}`, `{event}`, `{alias}`,
/// `{type}`, `{key}`, `{txn}`, `{filter}` standing for parameters.
const CLIENT_ROUTES: &[(&str, &str)] = &[
    ("GET", "/_matrix/client/versions"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/register"),
    ("GET", "/register/available?username={key}"),
    ("GET", "/account/whoami"),
    ("POST", "/account/deactivate"),
    ("GET", "/capabilities"),
    ("POST", "/createRoom"),
    ("GET", "/joined_rooms"),
    ("POST", "/join/{room}"),
    ("POST", "/rooms/{room}/join"),
    ("POST", "/rooms/{room}/invite"),
    ("POST", "/rooms/{room}/leave"),
    ("POST", "/rooms/{room}/kick"),
    ("POST", "/rooms/{room}/ban"),
    ("POST", "/rooms/{room}/unban"),
    ("POST", "/rooms/{room}/forget"),
    ("PUT", "/rooms/{room}/send/{type}/{txn}"),
    ("GET", "/rooms/{room}/state"),
    ("GET", "/rooms/{room}/state/{type}"),
    ("PUT", "/rooms/{room}/state/{type}"),
    ("GET", "/rooms/{room}/state/{type}/{key}"),
    ("PUT", "/rooms/{room}/state/{type}/{key}"),
    ("GET", "/rooms/{room}/members?at={key}&membership={key}"),
    ("GET", "/rooms/{room}/joined_members"),
    ("GET", "/rooms/{room}/messages?from={key}&dir={key}&limit={key}&filter={filter}"),
    ("GET", "/rooms/{room}/event/{event}"),
    ("PUT", "/rooms/{room}/redact/{event}/{txn}"),
    ("PUT", "/rooms/{room}/typing/{user}"),
    ("POST", "/rooms/{room}/receipt/{type}/{event}"),
    ("POST", "/rooms/{room}/read_markers"),
    ("GET", "/directory/room/{alias}"),
    ("PUT", "/directory/room/{alias}"),
    ("DELETE", "/directory/room/{alias}"),
    ("GET", "/publicRooms?limit={key}&since={key}&server={key}"),
    ("POST", "/publicRooms"),
    ("GET", "/sync?since={key}&timeout={key}&full_state={key}&filter={filter}"),
    ("POST", "/user_directory/search"),
    ("POST", "/user/{user}/filter"),
    ("GET", "/user/{user}/filter/{key}"),
    ("GET", "/user/{user}/account_data/{type}"),
    ("PUT", "/user/{user}/account_data/{type}"),
    ("GET", "/user/{user}/rooms/{room}/account_data/{type}"),
    ("PUT", "/user/{user}/rooms/{room}/account_data/{type}"),
    ("GET", "/profile/{user}"),
    ("GET", "/profile/{user}/{key}"),
    ("PUT", "/profile/{user}/{key}"),
    ("DELETE", "/profile/{user}/{key}"),
    ("GET", "/_synapse/admin/v1/register"),
    ("POST", "/_synapse/admin/v1/register"),
    ("POST", "/_synapse/admin/v1/background_updates/start_job"),
];

/// Federation routes a peer may call.
const FEDERATION_ROUTES: &[(&str, &str)] = &[
    ("PUT", "/_matrix/federation/v1/send/{txn}"),
    ("GET", "/_matrix/federation/v1/make_join/{room}/{user}?ver={key}"),
    ("PUT", "/_matrix/federation/v2/send_join/{room}/{event}"),
    ("PUT", "/_matrix/federation/v1/send_join/{room}/{event}"),
    ("GET", "/_matrix/federation/v1/make_leave/{room}/{user}"),
    ("PUT", "/_matrix/federation/v2/send_leave/{room}/{event}"),
    ("PUT", "/_matrix/federation/v2/invite/{room}/{event}"),
    ("GET", "/_matrix/federation/v1/event/{event}"),
    ("GET", "/_matrix/federation/v1/state/{room}?event_id={event}"),
    ("GET", "/_matrix/federation/v1/state_ids/{room}?event_id={event}"),
    ("GET", "/_matrix/federation/v1/event_auth/{room}/{event}"),
    ("POST", "/_matrix/federation/v1/get_missing_events/{room}"),
    ("GET", "/_matrix/federation/v1/backfill/{room}?v={event}&limit={key}"),
    ("GET", "/_matrix/federation/v1/query/profile?user_id={user}&field={key}"),
    ("GET", "/_matrix/federation/v1/query/directory?room_alias={alias}"),
    ("GET", "/_matrix/federation/v1/publicRooms?limit={key}"),
    ("POST", "/_matrix/federation/v1/publicRooms"),
    ("GET", "/_matrix/key/v2/query/{key}"),
    ("POST", "/_matrix/key/v2/query"),
];

/// Values that have broken parsers before, mixed with valid ones.
const HOSTILE_TEXT: &[&str] = &[
    "",
    " ",
    "%00",
    "%ZZ",
    "%",
    "%FF%FE",
    "..",
    "../..",
    "@",
    "!",
    "#",
    "$",
    ":",
    "@:",
    "!x",
    "#x:",
    "@a:b:c",
    "\u{0}",
    "\u{202e}",
    "é",
    "🙂",
    "null",
    "true",
    "-1",
    "0",
    "9999999999999999999999",
    "1e308",
    "NaN",
    "s-1_0_0_0",
    "s99999999999_0_0_0",
    "t-5",
    "t1",
    "{",
    "{}",
    "[]",
    "m.room.member",
    "m.fully_read",
    "m.push_rules",
    "m.read",
    "regenerate_directory",
    "displayname",
    "avatar_url",
];

struct Fixture {
    alice: String,
    alice_token: String,
    alice_room: String,
    alice_event: String,
    bob: String,
    bob_room: String,
}

/// What bob owns, read back as bob: his profile, his private room, his account data.
async fn bob_snapshot(server: &TestServer, bob: &str, token: &str, room: &str) -> Value {
    let (_, profile) = server.get(&format!("{V3}/profile/{}", encode(bob)), None).await;
    let (_, state) = server.get(&format!("{V3}/rooms/{}/state", encode(room)), Some(token)).await;
    let data = format!("{V3}/user/{}/account_data/org.example.secret", encode(bob));
    let (_, account_data) = server.get(&data, Some(token)).await;
    let (_, rooms) = server.get(&format!("{V3}/joined_rooms"), Some(token)).await;
    let messages = matrix::message_bodies(server, token, room).await;
    let mut state = state.as_array().cloned().unwrap_or_default();
    // `unsigned.age` grows with time; the rest must not change.
    state.iter_mut().filter_map(Value::as_object_mut).for_each(|event| drop(event.remove("unsigned")));
    json!({ "profile": profile, "state": state, "account_data": account_data, "rooms": rooms, "messages": messages })
}

fn seed() -> u64 {
    std::env::var("KITH_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::thread_rng().r#gen())
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// A value for a path or query placeholder: a real one, or something hostile.
fn parameter(rng: &mut StdRng, name: &str, fixture: &Fixture) -> String {
    let real = match name {
        "room" => Some(pick(rng, &[&fixture.alice_room, &fixture.bob_room]).to_string()),
        "user" => Some(pick(rng, &[&fixture.alice, &fixture.bob]).to_string()),
        "event" => Some(fixture.alice_event.clone()),
        "alias" => Some("#fuzz:kith.test".to_owned()),
        "type" => Some(pick(rng, &["m.room.message", "m.room.name", "m.room.member", "org.example"]).to_string()),
        "txn" => Some(format!("txn{}", rng.r#gen::<u32>())),
        "filter" => Some(r#"{"room":{"timeline":{"limit":3}}}"#.to_owned()),
        _ => None,
    };
    match (real, rng.gen_range(0..10)) {
        (Some(real), 0..=5) => encode(&real),
        (_, 6) => "x".repeat(rng.gen_range(200..5_000)),
        _ => {
            let text = pick(rng, HOSTILE_TEXT);
            // Some go through as raw escapes, the rest percent-encoded.
            if text.starts_with('%') || rng.gen_bool(0.3) { text.to_string() } else { encode(text) }
        }
    }
}

fn fill(rng: &mut StdRng, template: &str, fixture: &Fixture) -> String {
    let mut path = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        path.push_str(&rest[..start]);
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e);
        path.push_str(&parameter(rng, &rest[start + 1..end], fixture));
        rest = &rest[(end + 1).min(rest.len())..];
    }
    path.push_str(rest);
    path
}

/// A JSON value likely to upset a parser.
fn hostile_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..12) {
        0 => Value::Null,
        1 => json!(rng.gen_bool(0.5)),
        2 => json!(rng.r#gen::<i64>()),
        3 => json!(rng.r#gen::<f64>() * 1e300),
        4 => json!(*pick(rng, HOSTILE_TEXT)),
        5 => json!("y".repeat(rng.gen_range(0..70_000))),
        6 if depth < 4 => Value::Array((0..rng.gen_range(0..4)).map(|_| hostile_value(rng, depth + 1)).collect()),
        7 if depth < 4 => {
            let fields =
                (0..rng.gen_range(0..4)).map(|_| (pick(rng, HOSTILE_TEXT).to_string(), hostile_value(rng, depth + 1)));
            Value::Object(fields.collect())
        }
        _ => json!(*pick(rng, &["m.login.password", "m.login.dummy", "public_chat", "invite", "join", "$x:y"])),
    }
}

/// Bodies a route might take, with one field at a time turned hostile.
fn body(rng: &mut StdRng, fixture: &Fixture) -> Vec<u8> {
    let templates = [
        json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "nope" }),
        json!({ "preset": "private_chat", "name": "fuzz", "invite": [fixture.bob], "initial_state": [] }),
        json!({ "user_id": fixture.bob, "reason": "fuzz" }),
        json!({ "msgtype": "m.text", "body": "fuzz" }),
        json!({ "search_term": "bob", "limit": 5 }),
        json!({ "room": { "timeline": { "limit": 5 } } }),
        json!({ "room_id": fixture.bob_room }),
        json!({ "displayname": "Fuzzy" }),
        json!({ "typing": true, "timeout": 1000 }),
        json!({ "m.fully_read": fixture.alice_event, "m.read": fixture.alice_event }),
        json!({ "auth": { "type": "m.login.dummy" }, "username": "fuzz", "password": "pw" }),
        json!({ "limit": 2, "since": "o1", "filter": { "generic_search_term": "x" } }),
    ];
    match rng.gen_range(0..10) {
        0 => (0..rng.gen_range(0..64)).map(|_| rng.r#gen::<u8>()).collect(),
        1 => pick(rng, &[&b"{"[..], b"[]", b"null", b"\"x\"", b"{\"a\":}", b"", b"\xff\xfe"]).to_vec(),
        2 => hostile_value(rng, 0).to_string().into_bytes(),
        _ => {
            let mut value = pick(rng, &templates).clone();
            if let Some(fields) = value.as_object_mut()
                && !fields.is_empty()
                && rng.gen_bool(0.7)
            {
                let key = fields.keys().nth(rng.gen_range(0..fields.len())).cloned().unwrap_or_default();
                fields.insert(key, hostile_value(rng, 0));
            }
            value.to_string().into_bytes()
        }
    }
}

/// Checks one answer: below 500, and a Matrix error when it is a 4xx (or, for a 401, the
/// challenge that starts user-interactive auth).
fn check_answer(seed: u64, what: &str, status: StatusCode, text: &str) {
    assert!(status.as_u16() < 500, "seed {seed}: {what} answered {status}: {text}");
    if status.is_client_error() {
        let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let errcode = body["errcode"].as_str().unwrap_or_default();
        let matrix_error = errcode.starts_with("M_") && body["error"].is_string();
        let uia_challenge = status == StatusCode::UNAUTHORIZED && body["flows"].is_array();
        assert!(matrix_error || uia_challenge, "seed {seed}: {what} answered {status}: {text}");
    }
}

async fn setup(server: &TestServer) -> (Fixture, String) {
    let (alice, alice_token) = server.register("alice", "pw").await;
    let (bob, bob_token) = server.register("bob", "pw").await;
    let bob_room = matrix::create_room(server, &bob_token, json!({ "preset": "private_chat", "name": "Bob's" })).await;
    matrix::send_text(server, &bob_token, &bob_room, "bob's secret").await;
    let data = format!("{V3}/user/{}/account_data/org.example.secret", encode(&bob));
    assert_eq!(server.put(&data, Some(&bob_token), json!({ "secret": 1 })).await.0, StatusCode::OK);
    let alice_room = matrix::create_room(server, &alice_token, json!({ "preset": "public_chat" })).await;
    let alice_event = matrix::send_text(server, &alice_token, &alice_room, "hello").await;
    let fixture = Fixture { alice, alice_token, alice_room, alice_event, bob, bob_room };
    (fixture, bob_token)
}

async fn client_routes_survive_mutated_requests(db: Db) {
    // Mutated server names must not reach the network: no federation at all.
    let server = TestServer::start_with(db, "federation_domain_whitelist: []").await;
    let (fixture, bob_token) = setup(&server).await;
    let before = bob_snapshot(&server, &fixture.bob, &bob_token, &fixture.bob_room).await;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    // A fresh connection per request: the server may close one whose body it refused.
    let client = reqwest::Client::builder().timeout(REQUEST_LIMIT).pool_max_idle_per_host(0).build().unwrap();
    for case in 0..CLIENT_CASES {
        let (method, template) = pick(&mut rng, CLIENT_ROUTES);
        let path = fill(&mut rng, template, &fixture);
        let path = if path.starts_with("/_") { path } else { format!("{V3}{path}") };
        let mut request =
            client.request(Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", server.base));
        if rng.gen_range(0..10) > 0 {
            request = request.bearer_auth(&fixture.alice_token);
        }
        if *method != "GET" {
            request = request.body(body(&mut rng, &fixture));
        }
        let what = format!("case {case}: {method} {path}");
        let response =
            request.send().await.unwrap_or_else(|err| panic!("seed {seed}: {what}: {err}\n{}", server.log()));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        check_answer(seed, &what, status, &text);
    }
    let after = bob_snapshot(&server, &fixture.bob, &bob_token, &fixture.bob_room).await;
    assert_eq!(before, after, "seed {seed}: what bob owns changed");
    eprintln!("fuzz: {CLIENT_CASES} client cases, seed {seed}");
}

async fn federation_routes_survive_mutated_requests(db: Db) {
    // Federation with the fake peer only: mutated server names must not reach the network.
    let fake = FakeServer::start().await.without_connection_reuse();
    let server =
        TestServer::start_federating_with(db, &format!("federation_domain_whitelist: ['{}']", fake.name)).await;
    let (fixture, bob_token) = setup(&server).await;
    fake.join(&server, &fixture.alice_room, "mallory").await;
    let before = bob_snapshot(&server, &fixture.bob, &bob_token, &fixture.bob_room).await;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    for case in 0..FEDERATION_CASES {
        let (method, template) = pick(&mut rng, FEDERATION_ROUTES);
        let path = fill(&mut rng, template, &fixture);
        // A signed request needs a URI the signer can parse; the client cases cover the rest.
        if axum::http::Uri::try_from(path.as_str()).is_err() {
            continue;
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body: Option<Value> = match method {
            Method::GET => None,
            _ => match rng.gen_range(0..3) {
                0 => Some(json!({ "pdus": [hostile_value(&mut rng, 0)], "edus": [hostile_value(&mut rng, 0)] })),
                1 => Some(json!({ "event": hostile_value(&mut rng, 0), "room_version": "10" })),
                _ => Some(hostile_value(&mut rng, 0)).filter(Value::is_object).or(Some(json!({}))),
            },
        };
        let what = format!("case {case}: {method} {path}");
        let body = body.filter(|b| serde_json::from_value::<ruma::CanonicalJsonValue>(b.clone()).is_ok());
        let (status, answer) = tokio::time::timeout(REQUEST_LIMIT, fake.request(&server, method, &path, body.as_ref()))
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: {what} hung"));
        check_answer(seed, &what, status, &answer.to_string());
    }
    let after = bob_snapshot(&server, &fixture.bob, &bob_token, &fixture.bob_room).await;
    assert_eq!(before, after, "seed {seed}: what bob owns changed");
    eprintln!("fuzz: {FEDERATION_CASES} federation cases, seed {seed}");
}

both_backends!(client_routes_survive_mutated_requests, federation_routes_survive_mutated_requests);
