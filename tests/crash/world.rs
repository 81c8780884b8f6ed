//! The world a crash run works in: a federating kith, a scripted peer joined to a room
//! with three local users, and the HTTP calls that may fail because kith died.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::fake_server::{FakeServer, JoinedRoom};
use crate::common::matrix::{self, V3, encode};
use crate::common::{Db, TestServer};

/// Short backoffs, so a transaction that failed while kith was dying is not held back
/// for long.
const CONFIG: &str = "federation:\n  destination_min_retry_interval: 200ms\n  destination_max_retry_interval: 1s\n";
/// The peer's user's public name, as its server answers profile queries.
pub const REMOTE_NAME: &str = "Remote Rita";
/// The one request that may take long is a sync's long poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A logged-in device of a local user.
#[derive(Debug, Clone)]
pub struct Account {
    pub localpart: String,
    pub user_id: String,
    pub device_id: String,
    pub token: String,
}

/// What became of a request sent while kith may be killed.
pub enum Attempt {
    Answered(StatusCode, Value),
    /// No answer: kith died while handling it, or was not listening.
    Failed,
}

pub struct World {
    pub kith: TestServer,
    pub peer: FakeServer,
    http: reqwest::Client,
    pub admin: Account,
    /// Alice, Bob and Carol, joined to the room.
    pub users: Vec<Account>,
    pub room: String,
    /// The peer's user, joined to the room, and the device kith sends its messages to.
    pub joined: JoinedRoom,
    pub remote_device: String,
    /// Requests (other than long polls) sent and not answered yet.
    pub in_flight: AtomicUsize,
}

impl World {
    pub async fn start(db: Db) -> Self {
        let kith = TestServer::start_federating_with(db, CONFIG).await;
        let peer = FakeServer::start().await;
        peer.set_profile(&peer.user_id("remote"), json!({ "displayname": REMOTE_NAME }));
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .danger_accept_invalid_certs(true)
            .build()
            .expect("client");
        let account = |localpart: &str, (user_id, token): (String, String)| Account {
            localpart: localpart.to_owned(),
            user_id,
            device_id: String::new(),
            token,
        };
        let admin = account("admin", kith.register_as("admin", "pw", true).await);
        let mut users = Vec::new();
        for localpart in ["alice", "bob", "carol"] {
            let mut user = account(localpart, kith.register(localpart, "pw").await);
            let (status, whoami) = kith.get(&format!("{V3}/account/whoami"), Some(&user.token)).await;
            assert_eq!(status, StatusCode::OK, "{whoami}");
            user.device_id = whoami["device_id"].as_str().expect("device_id").to_owned();
            users.push(user);
        }
        let body = json!({ "preset": "public_chat", "name": "crash" });
        let (status, created) = kith.post(&format!("{V3}/createRoom"), Some(&users[0].token), body).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let room = created["room_id"].as_str().expect("room_id").to_owned();
        for user in &users[1..] {
            let path = format!("{V3}/rooms/{}/join", encode(&room));
            let (status, joined) = kith.post(&path, Some(&user.token), json!({})).await;
            assert_eq!(status, StatusCode::OK, "{joined}");
        }
        let joined = peer.join(&kith, &room, "remote").await;
        let in_flight = AtomicUsize::default();
        let world = Self { kith, peer, http, admin, users, room, joined, remote_device: "RDEV".to_owned(), in_flight };
        world.wait_for_remote_profile().await;
        world
    }

    /// The directory learns the peer's user's name in the background; until it has, a
    /// search may change between two looks without any crash.
    async fn wait_for_remote_profile(&self) {
        let body = json!({ "search_term": "rita" });
        let path = format!("{V3}/user_directory/search");
        let shown = matrix::try_eventually(Duration::from_secs(30), || async {
            let (_, found) = self.call(Method::POST, &path, &self.users[0].token, Some(&body)).await;
            (found["results"][0]["user_id"] == self.joined.user_id).then_some(())
        })
        .await;
        assert!(shown.is_some(), "the directory never showed the peer's user by name\n{}", self.kith.log());
    }

    /// A client request that may find kith dead.
    pub async fn attempt(&self, method: Method, path: &str, token: &str, body: Option<&Value>) -> Attempt {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let answer = self.send(method, path, token, body).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        answer
    }

    /// Like [`Self::attempt`], not counted in flight (a long poll is nearly always).
    pub async fn send(&self, method: Method, path: &str, token: &str, body: Option<&Value>) -> Attempt {
        let mut request = self.http.request(method, format!("{}{path}", self.kith.base));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(_) => return Attempt::Failed,
        };
        let status = response.status();
        match response.text().await {
            Ok(text) => Attempt::Answered(status, serde_json::from_str(&text).unwrap_or(Value::String(text))),
            // The answer was cut off: the client cannot know what happened.
            Err(_) => Attempt::Failed,
        }
    }

    /// A request that must be answered (kith is up and nothing is being killed).
    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<&Value>) -> (StatusCode, Value) {
        match self.send(method.clone(), path, token, body).await {
            Attempt::Answered(status, body) => (status, body),
            Attempt::Failed => panic!("{method} {path}: no answer from kith\n{}", self.kith.log()),
        }
    }

    /// A new device of `localpart`'s user, logged in with a password.
    pub async fn log_in(&self, localpart: &str) -> Attempt {
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": localpart },
            "password": "pw",
        });
        self.attempt(Method::POST, &format!("{V3}/login"), "", Some(&body)).await
    }
}
