//! Client-API helpers that work against any homeserver under test (kith or Synapse).

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::TestServer;
use super::synapse::Synapse;

pub const V3: &str = "/_matrix/client/v3";

pub trait Homeserver {
    fn name(&self) -> &str;
    fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> impl Future<Output = (StatusCode, Value)> + Send;
    fn logs(&self) -> String;
}

impl Homeserver for TestServer {
    fn name(&self) -> &str {
        self.base.trim_start_matches("https://").trim_start_matches("http://")
    }
    fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> impl Future<Output = (StatusCode, Value)> + Send {
        self.request(method, path, token, body)
    }
    fn logs(&self) -> String {
        self.log()
    }
}

impl Homeserver for Synapse {
    fn name(&self) -> &str {
        &self.server_name
    }
    fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> impl Future<Output = (StatusCode, Value)> + Send {
        self.request(method, path, token, body)
    }
    fn logs(&self) -> String {
        self.log()
    }
}

/// Calls and asserts a 200 answer.
pub async fn ok(server: &impl Homeserver, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
    let (status, response) = server.call(method.clone(), path, Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "{method} {path} on {}: {response}", server.name());
    response
}

pub async fn create_room(server: &impl Homeserver, token: &str, body: Value) -> String {
    let response = ok(server, Method::POST, &format!("{V3}/createRoom"), token, Some(body)).await;
    response["room_id"].as_str().expect("room_id").to_owned()
}

pub async fn join(server: &impl Homeserver, token: &str, room: &str, via: &str) -> (StatusCode, Value) {
    let path = format!("{V3}/join/{}?server_name={}", encode(room), encode(via));
    server.call(Method::POST, &path, Some(token), Some(json!({}))).await
}

pub async fn send_text(server: &impl Homeserver, token: &str, room: &str, text: &str) -> String {
    let txn = format!("t{}", rand_suffix());
    let path = format!("{V3}/rooms/{}/send/m.room.message/{txn}", encode(room));
    let response = ok(server, Method::PUT, &path, token, Some(json!({ "msgtype": "m.text", "body": text }))).await;
    response["event_id"].as_str().expect("event_id").to_owned()
}

pub async fn membership_action(
    server: &impl Homeserver,
    token: &str,
    room: &str,
    action: &str,
    body: Value,
) -> (StatusCode, Value) {
    let path = format!("{V3}/rooms/{}/{action}", encode(room));
    server.call(Method::POST, &path, Some(token), Some(body)).await
}

/// The bodies of the newest messages of a room, oldest first.
pub async fn message_bodies(server: &impl Homeserver, token: &str, room: &str) -> Vec<String> {
    let path = format!("{V3}/rooms/{}/messages?dir=b&limit=100", encode(room));
    let (status, response) = server.call(Method::GET, &path, Some(token), None).await;
    if status != StatusCode::OK {
        return Vec::new();
    }
    let mut bodies: Vec<String> = response["chunk"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    bodies.reverse();
    bodies
}

/// `(type, state_key) -> event_id` of a room's current state as a server shows it.
pub async fn state_ids(
    server: &impl Homeserver,
    token: &str,
    room: &str,
) -> std::collections::BTreeMap<(String, String), String> {
    let response = ok(server, Method::GET, &format!("{V3}/rooms/{}/state", encode(room)), token, None).await;
    response
        .as_array()
        .expect("state list")
        .iter()
        .map(|e| {
            (
                (
                    e["type"].as_str().unwrap_or_default().to_owned(),
                    e["state_key"].as_str().unwrap_or_default().to_owned(),
                ),
                e["event_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The membership of every user in a room's current state.
pub async fn memberships(
    server: &impl Homeserver,
    token: &str,
    room: &str,
) -> std::collections::BTreeMap<String, String> {
    let response = ok(server, Method::GET, &format!("{V3}/rooms/{}/state", encode(room)), token, None).await;
    response
        .as_array()
        .expect("state list")
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| {
            (
                e["state_key"].as_str().unwrap_or_default().to_owned(),
                e["content"]["membership"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Polls `check` until it returns Some, failing with `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match try_eventually(limit, check).await {
        Some(value) => value,
        None => panic!("timed out waiting for {what}"),
    }
}

/// Polls `check` until it returns Some, or None after `limit`.
pub async fn try_eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn encode(text: &str) -> String {
    kith::config::percent_encode(text)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed)
}
