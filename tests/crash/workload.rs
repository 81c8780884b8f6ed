//! What clients and the peer do while kith may be killed, and the ledger of what kith
//! answered. Every request is sequential per client, as a real client's are: a client
//! whose request got no answer stops and, once kith is back, sends the same request
//! again (same transaction id), as the spec expects a client to.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use reqwest::{Method, StatusCode};
use ruma::canonical_json::CanonicalJsonObject;
use ruma::signatures::Ed25519KeyPair;
use serde_json::{Value, json};

use super::world::{Account, Attempt, World};
use crate::common::fake_server::now_ms;
use crate::common::matrix::{V3, encode};

/// One-time keys per upload.
const KEYS_PER_UPLOAD: usize = 5;
/// Pauses between one user's profile changes, in turn: bursts that settle into one EDU,
/// and pauses longer than the coalescing window (500 ms), during which the EDU of the
/// last change goes out.
const PROFILE_PAUSES: [Duration; 3] =
    [Duration::from_millis(80), Duration::from_millis(150), Duration::from_millis(700)];
/// Pause between a peer's transactions.
const PEER_PAUSE: Duration = Duration::from_millis(40);
/// The longest a sync waits for news.
const SYNC_TIMEOUT_MS: u64 = 1_000;

/// What an answered request did, to be checked after every restart.
#[derive(Debug, Clone)]
pub enum Effect {
    Message {
        body: String,
    },
    Displayname {
        user_id: String,
        name: String,
    },
    DeviceKeys {
        device: Account,
        keys: Value,
    },
    OneTimeKeys {
        device: Account,
        count: usize,
    },
    /// A to-device message `n` for Bob's device and/or the peer's device.
    ToDevice {
        n: String,
        local: bool,
        remote: bool,
    },
}

/// A client request, kept to be sent again when it got no answer.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub token: String,
    pub body: Value,
    pub effect: Effect,
}

/// What kith answered 200 to, and what should follow from it.
#[derive(Debug, Default)]
pub struct Ledger {
    /// `(body, event id)` of local users' messages.
    pub messages: Vec<(String, String)>,
    /// Each local user's display name, as last set.
    pub displaynames: BTreeMap<String, String>,
    pub device_keys: Vec<(Account, Value)>,
    /// One-time keys uploaded per device (none are claimed).
    pub one_time_keys: BTreeMap<String, (Account, usize)>,
    /// To-device messages for Bob's device, from Alice and from the peer.
    pub to_bob: BTreeSet<String>,
    /// To-device messages from Alice to the peer's device.
    pub to_remote: BTreeSet<String>,
    /// Event ids of the peer's PDUs, in transactions kith answered.
    pub peer_pdus: Vec<String>,
    /// Requests answered 200 in this round (retries included).
    pub answered: usize,
}

/// Bob's device as a client syncing: its token and what each to-device message key was
/// seen how often.
#[derive(Debug, Default)]
pub struct Reader {
    pub since: Option<String>,
    pub seen: BTreeMap<String, usize>,
}

/// The peer's side of the room: its own chain of messages, and the transaction that got
/// no answer, sent again before any new one.
#[derive(Debug)]
pub struct PeerChain {
    pub last: String,
    pub depth: i64,
    pub sent: u64,
    pub pending: Option<PeerTransaction>,
}

#[derive(Debug, Clone)]
pub struct PeerTransaction {
    pub txn_id: String,
    pub body: Value,
    pub pdu_ids: Vec<String>,
    pub to_device: Vec<String>,
}

/// What one round's workers share.
pub struct Round<'a> {
    pub world: &'a World,
    pub number: usize,
    pub ledger: &'a Mutex<Ledger>,
    pub violations: &'a Mutex<Vec<String>>,
    /// Violations found at earlier kill points: nothing waits for what they lack again.
    pub reported: &'a HashSet<String>,
    pub stop: &'a AtomicBool,
}

impl Round<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn violation(&self, text: String) {
        self.violations.lock().unwrap().push(text);
    }

    /// Sends a request once; `Err` gives it back when it got no answer.
    pub async fn run(&self, request: Request) -> Result<(), Request> {
        let answer =
            self.world.attempt(request.method.clone(), &request.path, &request.token, Some(&request.body)).await;
        match answer {
            Attempt::Answered(StatusCode::OK, body) => {
                self.record(&request.effect, &body);
                Ok(())
            }
            Attempt::Answered(status, body) => {
                self.violation(format!("{} {} answered {status}: {body}", request.method, request.path));
                Ok(())
            }
            Attempt::Failed => Err(request),
        }
    }

    fn record(&self, effect: &Effect, body: &Value) {
        let mut ledger = self.ledger.lock().unwrap();
        ledger.answered += 1;
        match effect.clone() {
            Effect::Message { body: text } => {
                let event_id = body["event_id"].as_str().unwrap_or_default().to_owned();
                ledger.messages.push((text, event_id));
            }
            Effect::Displayname { user_id, name } => {
                ledger.displaynames.insert(user_id, name);
            }
            Effect::DeviceKeys { device, keys } => ledger.device_keys.push((device, keys)),
            Effect::OneTimeKeys { device, count } => {
                ledger.one_time_keys.entry(device.device_id.clone()).or_insert((device, 0)).1 += count;
            }
            Effect::ToDevice { n, local, remote } => {
                if local {
                    ledger.to_bob.insert(n.clone());
                }
                if remote {
                    ledger.to_remote.insert(n);
                }
            }
        }
    }

    /// Sends requests made by `next` (given a counter) until one gets no answer or the
    /// round stops, pausing after each for the next of `pauses` in turn; returns the one
    /// that got no answer.
    async fn keep_sending(&self, pauses: &[Duration], mut next: impl FnMut(usize) -> Request) -> Option<Request> {
        let mut i = 0;
        while !self.stopped() {
            if let Err(pending) = self.run(next(i)).await {
                return Some(pending);
            }
            tokio::time::sleep(pauses[i % pauses.len()]).await;
            i += 1;
        }
        None
    }

    /// A user's messages into the room.
    pub async fn send_messages(&self, user: &Account) -> Option<Request> {
        let room = encode(&self.world.room);
        self.keep_sending(&[Duration::ZERO], |i| {
            let text = format!("{} r{} m{i}", user.localpart, self.number);
            Request {
                method: Method::PUT,
                path: format!("{V3}/rooms/{room}/send/m.room.message/r{}m{i}", self.number),
                token: user.token.clone(),
                body: json!({ "msgtype": "m.text", "body": text }),
                effect: Effect::Message { body: text },
            }
        })
        .await
    }

    /// A user's display name, changed again and again.
    pub async fn rename(&self, user: &Account) -> Option<Request> {
        self.keep_sending(&PROFILE_PAUSES, |i| {
            let name = format!("{} R{} P{i}", capitalised(&user.localpart), self.number);
            Request {
                method: Method::PUT,
                path: format!("{V3}/profile/{}/displayname", encode(&user.user_id)),
                token: user.token.clone(),
                body: json!({ "displayname": name }),
                effect: Effect::Displayname { user_id: user.user_id.clone(), name },
            }
        })
        .await
    }

    /// A new device of `localpart`: logged in, its keys uploaded, then one-time keys.
    pub async fn upload_keys(&self, localpart: &str) -> Option<Request> {
        let device = match self.world.log_in(localpart).await {
            Attempt::Answered(StatusCode::OK, login) => Account {
                localpart: localpart.to_owned(),
                user_id: login["user_id"].as_str().unwrap_or_default().to_owned(),
                device_id: login["device_id"].as_str().unwrap_or_default().to_owned(),
                token: login["access_token"].as_str().unwrap_or_default().to_owned(),
            },
            Attempt::Answered(status, body) => {
                self.violation(format!("login answered {status}: {body}"));
                return None;
            }
            // A client that got no answer logs in again later: nothing to check.
            Attempt::Failed => return None,
        };
        self.ledger.lock().unwrap().answered += 1;
        let keys = signed_device_keys(&device);
        let upload = Request {
            method: Method::POST,
            path: format!("{V3}/keys/upload"),
            token: device.token.clone(),
            body: json!({ "device_keys": keys }),
            effect: Effect::DeviceKeys { device: device.clone(), keys: keys.clone() },
        };
        if let Err(pending) = self.run(upload).await {
            return Some(pending);
        }
        let round = self.number;
        self.keep_sending(&[Duration::ZERO], |i| {
            let keys: serde_json::Map<String, Value> = (0..KEYS_PER_UPLOAD)
                .map(|j| (format!("signed_curve25519:r{round}k{i}x{j}"), json!({ "key": format!("otk{round}{i}{j}") })))
                .collect();
            Request {
                method: Method::POST,
                path: format!("{V3}/keys/upload"),
                token: device.token.clone(),
                body: json!({ "one_time_keys": keys }),
                effect: Effect::OneTimeKeys { device: device.clone(), count: KEYS_PER_UPLOAD },
            }
        })
        .await
    }

    /// Alice's to-device messages: to Bob's device, to the peer's, or to both at once.
    pub async fn send_to_devices(&self) -> Option<Request> {
        let world = self.world;
        let (alice, bob) = (&world.users[0], &world.users[1]);
        let remote_user = world.joined.user_id.clone();
        self.keep_sending(&[Duration::ZERO], |i| {
            let n = format!("r{}d{i}", self.number);
            let (local, remote) = [(true, true), (true, false), (false, true)][i % 3];
            let mut messages = serde_json::Map::new();
            if local {
                messages.insert(bob.user_id.clone(), json!({ bob.device_id.clone(): { "n": n } }));
            }
            if remote {
                messages.insert(remote_user.clone(), json!({ world.remote_device.clone(): { "n": n } }));
            }
            Request {
                method: Method::PUT,
                path: format!("{V3}/sendToDevice/m.crash.test/{n}"),
                token: alice.token.clone(),
                body: json!({ "messages": messages }),
                effect: Effect::ToDevice { n, local, remote },
            }
        })
        .await
    }

    /// Bob's device syncs as a client does: each answer's `next_batch` is the next
    /// `since`, which acknowledges the to-device messages it carried.
    pub async fn read_to_device(&self, reader: &Mutex<Reader>) {
        while !self.stopped() {
            if !self.sync_once(reader, SYNC_TIMEOUT_MS).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One sync of Bob's device; false when it got no answer.
    pub async fn sync_once(&self, reader: &Mutex<Reader>, timeout_ms: u64) -> bool {
        let bob = &self.world.users[1];
        let since = reader.lock().unwrap().since.clone();
        let filter = encode(r#"{"room":{"timeline":{"limit":0}}}"#);
        let mut path = format!("{V3}/sync?timeout={timeout_ms}&filter={filter}");
        if let Some(since) = since {
            path.push_str(&format!("&since={}", encode(&since)));
        }
        match self.world.send(Method::GET, &path, &bob.token, None).await {
            Attempt::Answered(StatusCode::OK, body) => {
                let mut reader = reader.lock().unwrap();
                for event in body["to_device"]["events"].as_array().into_iter().flatten() {
                    let n = event["content"]["n"].as_str().unwrap_or("(no n)").to_owned();
                    *reader.seen.entry(n).or_default() += 1;
                }
                reader.since = body["next_batch"].as_str().map(str::to_owned);
                true
            }
            Attempt::Answered(status, body) => {
                self.violation(format!("Bob's sync answered {status}: {body}"));
                false
            }
            Attempt::Failed => false,
        }
    }

    /// The peer's transactions: messages of its user on its own chain, and every other
    /// transaction a to-device message for Bob's device.
    pub async fn peer_sends(&self, chain: &Mutex<PeerChain>) {
        while !self.stopped() {
            let transaction = self.next_peer_transaction(&mut chain.lock().unwrap());
            if !self.send_peer_transaction(chain, transaction).await {
                return;
            }
            tokio::time::sleep(PEER_PAUSE).await;
        }
    }

    fn next_peer_transaction(&self, chain: &mut PeerChain) -> PeerTransaction {
        let world = self.world;
        let (peer, room) = (&world.peer, &world.joined);
        let i = chain.sent;
        chain.sent += 1;
        let mut pdus = Vec::new();
        let mut pdu_ids = Vec::new();
        for j in 0..(1 + i % 2) {
            chain.depth += 1;
            let text = format!("remote r{} f{i}x{j}", self.number);
            let event = peer.message(room, &room.user_id, &text, std::slice::from_ref(&chain.last), chain.depth);
            let (event_id, signed) = peer.sign_event(&room.rules, event);
            chain.last = event_id.clone();
            pdu_ids.push(event_id);
            pdus.push(signed);
        }
        let mut edus = Vec::new();
        let mut to_device = Vec::new();
        if i.is_multiple_of(2) {
            let n = format!("r{}f{i}", self.number);
            let bob = &world.users[1];
            edus.push(json!({ "edu_type": "m.direct_to_device", "content": {
                "sender": room.user_id, "type": "m.crash.test", "message_id": format!("peer-{n}"),
                "messages": { bob.user_id.clone(): { bob.device_id.clone(): { "n": n } } },
            }}));
            to_device.push(n);
        }
        let body = json!({ "origin": peer.name, "origin_server_ts": now_ms(), "pdus": pdus, "edus": edus });
        PeerTransaction { txn_id: format!("crash-r{}-{i}", self.number), body, pdu_ids, to_device }
    }

    /// Sends a peer transaction once; false (and kept as pending) when it got no answer.
    pub async fn send_peer_transaction(&self, chain: &Mutex<PeerChain>, transaction: PeerTransaction) -> bool {
        let world = self.world;
        let path = format!("/_matrix/federation/v1/send/{}", transaction.txn_id);
        world.in_flight.fetch_add(1, Ordering::SeqCst);
        let answer = world.peer.try_request(&world.kith, Method::PUT, &path, &transaction.body).await;
        world.in_flight.fetch_sub(1, Ordering::SeqCst);
        let answer = match answer {
            Ok((StatusCode::OK, answer)) if answer["pdus"].is_object() => answer,
            Ok((status, answer)) if status != StatusCode::OK => {
                self.violation(format!("the peer's transaction {path} answered {status}: {answer}"));
                chain.lock().unwrap().pending = None;
                return true;
            }
            _ => {
                chain.lock().unwrap().pending = Some(transaction);
                return false;
            }
        };
        for event_id in &transaction.pdu_ids {
            if answer["pdus"][event_id] != json!({}) {
                self.violation(format!("the peer's PDU {event_id} was refused: {}", answer["pdus"][event_id]));
            }
        }
        let mut ledger = self.ledger.lock().unwrap();
        ledger.answered += 1;
        ledger.peer_pdus.extend(transaction.pdu_ids);
        ledger.to_bob.extend(transaction.to_device);
        chain.lock().unwrap().pending = None;
        true
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// A device's keys, signed with a fresh ed25519 key named after the device.
fn signed_device_keys(device: &Account) -> Value {
    let document = Ed25519KeyPair::generate();
    let pair = Ed25519KeyPair::from_der(&document, device.device_id.clone()).expect("key pair");
    let keys = json!({
        "user_id": device.user_id, "device_id": device.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", device.device_id): "curve",
            format!("ed25519:{}", device.device_id): STANDARD_NO_PAD.encode(pair.public_key()),
        },
    });
    let mut canonical: CanonicalJsonObject = serde_json::from_value(keys).expect("canonical JSON");
    ruma::signatures::sign_json(&device.user_id, &pair, &mut canonical).expect("sign");
    serde_json::to_value(canonical).expect("JSON")
}
