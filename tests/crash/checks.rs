//! What must hold after each restart, checked against the ledger of answered requests.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::workload::{Reader, Round};
use super::world;
use crate::common::fake_server::event_id_of;
use crate::common::matrix::{V3, encode};

/// How long what kith does in the background (propagation, outboxes, the directory) may
/// take to show.
const SETTLE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);
/// Words searched in the user directory.
const TERMS: [&str; 8] = ["alice", "bob", "carol", "admin", "remote", "rita", "r", "p1"];

/// What reached the peer more than once, in ways the protocol deduplicates.
#[derive(Debug, Default, Clone, Copy)]
pub struct Redelivered {
    /// PDUs received again (same event id).
    pub pdus: usize,
    /// To-device messages received again under the same message id.
    pub to_device: usize,
}

impl Redelivered {
    /// What came again after `earlier`.
    pub fn since(self, earlier: Self) -> Self {
        Self { pdus: self.pdus - earlier.pdus, to_device: self.to_device - earlier.to_device }
    }
}

/// Local messages are in the room once each with the id they were answered with, and
/// the peer's answered PDUs are in the room.
pub async fn timeline(round: &Round<'_>) {
    let events = room_events(round).await;
    let ids: HashSet<&str> = events.iter().filter_map(|e| e["event_id"].as_str()).collect();
    let mut bodies: HashMap<&str, usize> = HashMap::new();
    for event in events.iter().filter(|e| e["type"] == "m.room.message") {
        *bodies.entry(event["content"]["body"].as_str().unwrap_or_default()).or_default() += 1;
    }
    let ledger = round.ledger.lock().unwrap();
    let answered: HashSet<&str> = ledger.messages.iter().map(|(body, _)| body.as_str()).collect();
    for (body, event_id) in &ledger.messages {
        if !ids.contains(event_id.as_str()) {
            round.violation(format!("message {body:?} answered as {event_id} is not in the room"));
        }
        match bodies.get(body.as_str()).copied().unwrap_or(0) {
            1 => {}
            n => round.violation(format!("message {body:?} is in the room {n} times")),
        }
    }
    for body in bodies.keys().filter(|b| !b.starts_with("remote ") && !answered.contains(*b)) {
        round.violation(format!("message {body:?} is in the room though no request for it was answered"));
    }
    for event_id in ledger.peer_pdus.iter().filter(|id| !ids.contains(id.as_str())) {
        round.violation(format!("the peer's PDU {event_id} (its transaction answered) is not in the room"));
    }
}

/// The room's events, oldest first, as Alice reads them with `/messages`.
async fn room_events(round: &Round<'_>) -> Vec<Value> {
    let world = round.world;
    let mut events = Vec::new();
    let mut from = String::new();
    loop {
        let path = format!("{V3}/rooms/{}/messages?dir=f&limit=1000{from}", encode(&world.room));
        let (status, page) = world.call(Method::GET, &path, &world.users[0].token, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
        let Some(end) = page["end"].as_str().filter(|_| !chunk.is_empty()) else {
            events.extend(chunk);
            return events;
        };
        from = format!("&from={}", encode(end));
        events.extend(chunk);
    }
}

/// Each user's profile has the name last answered, and so does their member event.
pub async fn profiles(round: &Round<'_>) {
    let world = round.world;
    let names = round.ledger.lock().unwrap().displaynames.clone();
    for (user_id, name) in &names {
        let path = format!("{V3}/profile/{}/displayname", encode(user_id));
        let (_, profile) = world.call(Method::GET, &path, &world.admin.token, None).await;
        if profile["displayname"] != *name {
            round.violation(format!("{user_id}'s display name is {}, answered as {name:?}", profile["displayname"]));
        }
        let path = format!("{V3}/rooms/{}/state/m.room.member/{}", encode(&world.room), encode(user_id));
        let shown = settle(|| async {
            let (_, member) = world.call(Method::GET, &path, &world.users[0].token, None).await;
            (member["displayname"] == *name).then_some(()).ok_or(member["displayname"].clone())
        })
        .await;
        if let Err(shown) = shown {
            round.violation(format!("{user_id}'s member event shows {shown}, not {name:?}"));
        }
    }
}

/// Answered logins still work; uploaded device keys are served; one-time keys are all
/// there, once.
pub async fn keys(round: &Round<'_>) {
    let world = round.world;
    let (device_keys, one_time_keys) = {
        let ledger = round.ledger.lock().unwrap();
        (ledger.device_keys.clone(), ledger.one_time_keys.clone())
    };
    let users: serde_json::Map<String, Value> = world.users.iter().map(|u| (u.user_id.clone(), json!([]))).collect();
    let body = json!({ "device_keys": users });
    let (_, answer) = world.call(Method::POST, &format!("{V3}/keys/query"), &world.users[0].token, Some(&body)).await;
    for (device, keys) in &device_keys {
        let served = &answer["device_keys"][&device.user_id][&device.device_id]["keys"];
        if *served != keys["keys"] {
            round.violation(format!("{}'s device {} serves keys {served}", device.user_id, device.device_id));
        }
    }
    for (device, count) in one_time_keys.values() {
        let path = format!("{V3}/keys/upload");
        let (status, answer) = world.call(Method::POST, &path, &device.token, Some(&json!({}))).await;
        let held = answer["one_time_key_counts"]["signed_curve25519"].as_u64().unwrap_or(0) as usize;
        if status != StatusCode::OK || held != *count {
            round.violation(format!(
                "device {} holds {held} one-time keys of {count} uploaded ({status})",
                device.device_id
            ));
        }
    }
}

/// Bob's device receives every to-device message answered for it (Alice's and the
/// peer's) exactly once, syncing as a client does.
pub async fn to_device(round: &Round<'_>, reader: &Mutex<Reader>) {
    let expected = round.ledger.lock().unwrap().to_bob.clone();
    let deadline = Instant::now() + SETTLE;
    let missing = |n: &String| format!("to-device message {n} for Bob (answered) never reached his device");
    while Instant::now() < deadline {
        let seen = reader.lock().unwrap().seen.clone();
        let complete = expected.iter().all(|n| seen.contains_key(n) || round.reported.contains(&missing(n)));
        if complete {
            break;
        }
        if !round.sync_once(reader, 500).await {
            round.violation("Bob's sync got no answer".to_owned());
            return;
        }
    }
    // Two more syncs acknowledge what came and would bring anything handed out twice.
    for _ in 0..2 {
        round.sync_once(reader, 0).await;
    }
    let seen = reader.lock().unwrap().seen.clone();
    for n in expected.iter().filter(|n| !seen.contains_key(*n)) {
        round.violation(missing(n));
    }
    for (n, times) in &seen {
        if *times > 1 {
            round.violation(format!("to-device message {n} reached Bob's device {times} times"));
        }
        if !expected.contains(n) {
            round.violation(format!("to-device message {n} reached Bob's device though never answered"));
        }
    }
}

/// What kith owes the peer reaches it: the room's local events, to-device messages,
/// each user's newest display name as a profile EDU, each new device's keys as a
/// device-list update. Returns what came twice in ways the protocol deduplicates.
pub async fn outbox(round: &Round<'_>) -> Redelivered {
    let world = round.world;
    let mut owed_pdus: BTreeSet<String> = member_event_ids(round).await.into_iter().collect();
    owed_pdus.extend(round.ledger.lock().unwrap().messages.iter().map(|(_, id)| id.clone()));
    let missing = settle(|| async {
        let missing = missing_at_peer(round, &owed_pdus);
        if missing.iter().all(|m| round.reported.contains(m)) { Ok(()) } else { Err(missing) }
    })
    .await;
    for text in missing.err().unwrap_or_default() {
        round.violation(text);
    }
    let pdus: Vec<String> =
        world.peer.received_pdus().iter().map(|pdu| event_id_of(pdu, &world.joined.rules)).collect();
    let distinct: HashSet<&String> = pdus.iter().collect();
    let mut redelivered = Redelivered { pdus: pdus.len() - distinct.len(), to_device: 0 };
    for (n, ids) in remote_to_device(round) {
        let distinct: BTreeSet<&String> = ids.iter().collect();
        if distinct.len() > 1 {
            round.violation(format!("to-device message {n} reached the peer under message ids {distinct:?}"));
        }
        redelivered.to_device += ids.len() - distinct.len();
    }
    redelivered
}

/// What the peer still lacks, in words.
fn missing_at_peer(round: &Round<'_>, owed_pdus: &BTreeSet<String>) -> Vec<String> {
    let world = round.world;
    let ledger = round.ledger.lock().unwrap();
    let received: HashSet<String> =
        world.peer.received_pdus().iter().map(|pdu| event_id_of(pdu, &world.joined.rules)).collect();
    let mut missing: Vec<String> = owed_pdus
        .iter()
        .filter(|id| !received.contains(*id))
        .map(|id| format!("local event {id} never reached the peer"))
        .collect();
    let to_device = remote_to_device(round);
    missing.extend(
        ledger
            .to_remote
            .iter()
            .filter(|n| !to_device.contains_key(*n))
            .map(|n| format!("to-device message {n} for the peer (answered) never reached it")),
    );
    let edus = world.peer.received_edus();
    for (user_id, name) in &ledger.displaynames {
        let last = edus
            .iter()
            .filter(|e| matches!(e["edu_type"].as_str(), Some("uk.tcpip.msc4259.profile" | "m.profile")))
            .rfind(|e| e["content"]["user_id"] == *user_id && e["content"]["fields"].get("displayname").is_some())
            .map(|e| e["content"]["fields"]["displayname"].clone());
        if last.as_ref() != Some(&json!(name)) {
            missing.push(format!("the peer's last profile EDU for {user_id} says {last:?}, not {name:?}"));
        }
    }
    for (device, keys) in &ledger.device_keys {
        let announced = edus.iter().any(|e| {
            e["edu_type"] == "m.device_list_update"
                && e["content"]["device_id"] == device.device_id
                && e["content"]["keys"]["keys"] == keys["keys"]
        });
        if !announced {
            missing.push(format!("the peer never heard of device {}'s keys", device.device_id));
        }
    }
    missing
}

/// Alice's to-device messages the peer received: `n` → the message id of each arrival.
fn remote_to_device(round: &Round<'_>) -> BTreeMap<String, Vec<String>> {
    let world = round.world;
    let mut arrivals: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for edu in world.peer.received_edus().iter().filter(|e| e["edu_type"] == "m.direct_to_device") {
        let content = &edu["content"];
        let message = &content["messages"][&world.joined.user_id][&world.remote_device];
        if let Some(n) = message["n"].as_str() {
            let id = content["message_id"].as_str().unwrap_or_default().to_owned();
            arrivals.entry(n.to_owned()).or_default().push(id);
        }
    }
    arrivals
}

/// The ids of the local users' current member events.
async fn member_event_ids(round: &Round<'_>) -> Vec<String> {
    let world = round.world;
    let path = format!("{V3}/rooms/{}/state", encode(&world.room));
    let (_, state) = world.call(Method::GET, &path, &world.users[0].token, None).await;
    let local: HashSet<&str> = world.users.iter().map(|u| u.user_id.as_str()).collect();
    state
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.member" && local.contains(e["state_key"].as_str().unwrap_or_default()))
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect()
}

/// The user directory shows each user's answered name, and answers as a rebuild from
/// the database does.
pub async fn directory(round: &Round<'_>) {
    let world = round.world;
    let mut names: Vec<(String, String, String)> = {
        let answered = &round.ledger.lock().unwrap().displaynames;
        let named = world.users.iter().filter_map(|u| Some((u, answered.get(&u.user_id)?)));
        named.map(|(user, name)| (user.localpart.clone(), user.user_id.clone(), name.clone())).collect()
    };
    // The peer's user's name comes from its server, fetched in the background.
    names.push(("rita".to_owned(), world.joined.user_id.clone(), world::REMOTE_NAME.to_owned()));
    for (term, user_id, name) in &names {
        let shown = settle(|| async {
            let found = search(round, term).await;
            let shown = found.iter().find(|(id, _)| id == user_id).map(|(_, name)| name.clone());
            (shown.as_deref() == Some(name.as_str())).then_some(()).ok_or(shown)
        })
        .await;
        if let Err(shown) = shown {
            round.violation(format!("the directory shows {user_id} as {shown:?}, not {name:?}"));
        }
    }
    let mut before = Vec::new();
    for term in TERMS {
        before.push(search(round, term).await);
    }
    rebuild_directory(round).await;
    for (term, before) in TERMS.iter().zip(before) {
        let after = search(round, term).await;
        if after != before {
            round.violation(format!("searching {term:?}: {before:?} before a rebuild, {after:?} after"));
        }
    }
}

/// Asks for a rebuild and waits until it is done.
async fn rebuild_directory(round: &Round<'_>) {
    let world = round.world;
    let builds = || world.kith.log().matches("user directory built").count();
    let done = builds();
    let body = json!({ "job_name": "regenerate_directory" });
    let path = "/_synapse/admin/v1/background_updates/start_job";
    let (status, answer) = world.call(Method::POST, path, &world.admin.token, Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    if settle(|| async { (builds() > done).then_some(()).ok_or(()) }).await.is_err() {
        round.violation("the directory rebuild did not finish".to_owned());
    }
}

/// `(user id, display name)` of a search's results, sorted.
async fn search(round: &Round<'_>, term: &str) -> Vec<(String, String)> {
    let world = round.world;
    let body = json!({ "search_term": term, "limit": 50 });
    let path = format!("{V3}/user_directory/search");
    let (status, answer) = world.call(Method::POST, &path, &world.users[0].token, Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut found: Vec<(String, String)> = answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let id = r["user_id"].as_str().unwrap_or_default().to_owned();
            (id, r["display_name"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    found.sort();
    found
}

/// Polls `check` until it holds or [`SETTLE`] passes; the last failure otherwise.
async fn settle<E, F, Fut>(mut check: F) -> Result<(), E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}
