//! The resident side of federation: another server joining a room that kith holds,
//! against the same with Synapse (from the test virtualenv) holding an identical room, in
//! one run.
//!
//! For each size, a scripted resident signs a room of that many members (one public v10
//! room, every member on the scripted server); kith and Synapse each join it with a full
//! state (the scripted `send_join` answers with every member whatever is asked), so both
//! hold the same room with its whole state, on SQLite. A second scripted server, the
//! joiner, then sends both the same signed requests, alternating between them: `make_join`,
//! `send_join` v2 with and without `omit_members` (a fresh user each time), `state_ids`
//! and `state` at the partial join, `event_auth` of it, `get_missing_events` and
//! `backfill` of a few events before it. Each is timed by the joiner (until the last byte
//! of the answer) and by the server's own log: kith's access log (`ms=`, until the
//! handler returns its answer) and Synapse's `Processed request:` (processing and sending
//! added). "Partial join, end to end" is what a joining kith does: from `make_join` to the
//! whole member list parsed (`send_join?omit_members=true`, then `state_ids` and `state`
//! at the join).
//!
//! Last, a fresh kith joins the room through each server (a partial-state join, then
//! its resync) and is timed from its user's `/join` until its `/joined_members` lists
//! every member.
//!
//! `cargo bench --bench resident`; `KITH_BENCH_RESIDENT_SIZES` (default
//! `1000,10000,100000`) and `KITH_BENCH_RESIDENT_RUNS` (default 5) change the rooms and
//! the repetitions; Synapse gets 20 minutes to join a room, past which the room is
//! measured on kith alone (`KITH_BENCH_RESIDENT_SYNAPSE_MAX` leaves it out of bigger
//! rooms from the start). With `KITH_BENCH_RESIDENT_PERF=<dir>`, kith is recorded with
//! `perf record` while the requests run. Needs the virtualenv `bash scripts/test`
//! installs.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::fake_resident::FakeRoom;
use common::fake_server::{Destination, FakeServer, now_ms};
use common::matrix::{V3, encode};
use common::synapse::Synapse;
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{cpu_ticks, ms, seconds};

const DEFAULT_SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const DEFAULT_RUNS: usize = 5;
/// The longest kith's join of the scripted room may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(3600);
/// Synapse gets this long to join (and settle after); a room it cannot take in in that
/// time is measured on kith alone.
const SYNAPSE_JOIN_TIMEOUT: Duration = Duration::from_secs(1200);
/// The longest one request of the joiner may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a server may stay busy after a join before measuring anyway (Synapse keeps
/// a fifth of a core busy for many minutes after taking in a 10,000-member room).
const SETTLE_AFTER_ROOM_JOIN: Duration = Duration::from_secs(120);
const SETTLE_AFTER_REQUEST: Duration = Duration::from_secs(10);
/// A server is idle when it used less than this share of one core over a second
/// (Synapse's background work after a big join stays under it).
const IDLE_CPU_SHARE: f64 = 0.3;
/// How long a server may take to log a request it answered.
const LOG_WAIT: Duration = Duration::from_secs(5);
/// Events asked of `get_missing_events` and `backfill`.
const FEW_EVENTS: usize = 10;

/// The rows of the table, in order.
const REQUESTS: [&str; 10] = [
    "make_join",
    "send_join",
    "send_join?omit_members=true",
    "state_ids",
    "state",
    "event_auth",
    "get_missing_events",
    "backfill",
    "partial join, end to end",
    "a kith joins, sees all members",
];
const END_TO_END: &str = REQUESTS[8];
const KITH_JOINS: &str = REQUESTS[9];

fn main() {
    support::run_beside_synapse("resident", &common::synapse_venv(), run);
}

async fn run() {
    let sizes = env_list("KITH_BENCH_RESIDENT_SIZES").unwrap_or_else(|| DEFAULT_SIZES.to_vec());
    let runs = env_list("KITH_BENCH_RESIDENT_RUNS").and_then(|runs| runs.first().copied()).unwrap_or(DEFAULT_RUNS);
    println!("resident: matrix-synapse {}, kith {}, {runs} runs per request", Synapse::version(), commit());
    let mut table = Vec::new();
    for size in sizes {
        let started = Instant::now();
        let figures = measure_room(size, runs).await;
        println!("resident: {size} members measured in {:.0} s", started.elapsed().as_secs_f64());
        print_table(&[(size, figures.clone())]);
        table.push((size, figures));
    }
    println!("\nresident: all sizes, server time (the joiner's time in parentheses), median / best of {runs}:\n");
    print_table(&table);
}

/// `KITH_BENCH_...=1000,10000`, underscores allowed.
fn env_list(name: &str) -> Option<Vec<usize>> {
    let text = std::env::var(name).ok()?;
    let list: Vec<usize> = text.split(',').filter_map(|n| n.trim().replace('_', "").parse().ok()).collect();
    (!list.is_empty()).then_some(list)
}

fn commit() -> String {
    let output = std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output();
    output.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
}

/// Timings by request, then by server ("Synapse", "kith").
type Figures = BTreeMap<&'static str, BTreeMap<&'static str, Timings>>;

#[derive(Debug, Clone, Default)]
struct Timings {
    /// Until the joiner has the whole answer.
    client: Vec<Duration>,
    /// As the server logged it.
    server: Vec<Duration>,
}

/// One request's time, seen by the joiner and (when it logged it) by the server.
#[derive(Debug, Clone, Copy)]
struct Sample {
    client: Duration,
    server: Option<Duration>,
}

async fn measure_room(size: usize, runs: usize) -> Figures {
    let resident = FakeServer::start().await;
    let started = Instant::now();
    let mut room = FakeRoom::create(&resident, "owner");
    for i in 1..size {
        let member = resident.user_id(&format!("member{i}"));
        room.add_state(&resident, &member, "m.room.member", &member, json!({ "membership": "join" }));
    }
    room.serve_state_ids(&resident);
    room.serve_whole_state(&resident);
    println!("resident: room of {size} members signed in {:.1} s", started.elapsed().as_secs_f64());

    let kith = TestServer::start_federating_with(Db::Sqlite, "experimental_features:\n  faster_joins: false\n").await;
    let mut synapse = Synapse::start().await;
    let kith_base = kith.base.clone();
    let mut targets = Vec::new();
    let synapse_max = env_list("KITH_BENCH_RESIDENT_SYNAPSE_MAX").and_then(|max| max.first().copied());
    for (target, client_base) in [(Target::synapse(&synapse), &synapse.client_base), (Target::kith(&kith), &kith_base)]
    {
        if matches!(target.kind, Kind::Synapse) && synapse_max.is_some_and(|max| size > max) {
            println!("resident: Synapse left out at {size} members (KITH_BENCH_RESIDENT_SYNAPSE_MAX)");
            continue;
        }
        let (user, token) = match target.kind {
            Kind::Kith => kith.register("resident", "pw").await,
            Kind::Synapse => synapse.register_fast("resident").await,
        };
        room.serve_full_join(&resident, &user);
        let joined = Instant::now();
        let limit = match target.kind {
            Kind::Kith => JOIN_TIMEOUT,
            Kind::Synapse => SYNAPSE_JOIN_TIMEOUT,
        };
        let Some(members) = join_room(client_base, &token, &room.room_id, &resident.name, limit).await else {
            println!(
                "resident: {} did not join the room within {} s: measured on kith alone",
                target.label,
                limit.as_secs()
            );
            continue;
        };
        assert_eq!(members, size + 1, "{}: every member after the join", target.label);
        let took = joined.elapsed().as_secs_f64();
        println!("resident: {} joined the room (full state, {members} members) in {took:.1} s", target.label);
        let settled = Instant::now();
        settle(&[target.pid], SETTLE_AFTER_ROOM_JOIN.min(limit.saturating_sub(joined.elapsed()))).await;
        println!("resident: {} idle {:.1} s after the join", target.label, settled.elapsed().as_secs_f64());
        targets.push(target);
    }

    if !targets.iter().any(|target| matches!(target.kind, Kind::Synapse)) {
        synapse.stop();
    }
    let joiner = FakeServer::start().await.with_timeout(REQUEST_TIMEOUT);
    let create = room.state[&("m.room.create".to_owned(), String::new())].clone();
    let mut figures = Figures::new();
    for target in &mut targets {
        let warm_up = joiner.user_id(&format!("warmup-{}", target.kind.localpart()));
        let path = make_join_path(&room.room_id, &warm_up);
        let (status, answer) = joiner.request_to(&target.to, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{}: make_join: {answer}", target.label);
    }
    let pids: Vec<u32> = targets.iter().map(|t| t.pid).collect();
    let profile = Profile::start(kith.pid().expect("kith runs"), size);
    for round in 0..runs {
        // Alternating which server goes first, so both meet the same noise.
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let target = &mut targets[index];
            let run = Run { joiner: &joiner, room_id: &room.room_id, create: &create, size, round, pids: &pids };
            for (request, sample) in run.measure(target).await {
                let timings = figures.entry(request).or_default().entry(target.label).or_default();
                timings.client.push(sample.client);
                timings.server.extend(sample.server);
            }
        }
    }
    drop(profile);
    for target in &targets {
        let took = kith_joins(target, &room.room_id, size).await;
        let timings = figures.entry(KITH_JOINS).or_default().entry(target.label).or_default();
        timings.client.push(took);
    }
    for target in &targets {
        let (state, chain) = target.state_ids;
        println!(
            "resident: {} answered the last state_ids with {state} state ids and {chain} auth chain ids",
            target.label
        );
    }
    figures
}

/// Joins `room` through `via` on the client API and returns how many members the
/// server then lists; None when the join took longer than `limit`.
async fn join_room(client_base: &str, token: &str, room: &str, via: &str, limit: Duration) -> Option<usize> {
    let client = reqwest::Client::builder().timeout(limit).danger_accept_invalid_certs(true).build().expect("client");
    let url = format!("{client_base}{V3}/join/{}?server_name={}", encode(room), encode(via));
    let response = match client.post(url).bearer_auth(token).json(&json!({})).send().await {
        Err(err) if err.is_timeout() => return None,
        response => response.expect("join"),
    };
    let status = response.status();
    assert_eq!(status, StatusCode::OK, "join: {}", response.text().await.unwrap_or_default());
    joined_members(client_base, token, room).await
}

/// How many members `/joined_members` lists (kith waits up to 25 s for a resync first).
async fn joined_members(client_base: &str, token: &str, room: &str) -> Option<usize> {
    let client =
        reqwest::Client::builder().timeout(REQUEST_TIMEOUT).danger_accept_invalid_certs(true).build().expect("client");
    let url = format!("{client_base}{V3}/rooms/{}/joined_members", encode(room));
    let response = client.get(url).bearer_auth(token).send().await.expect("joined_members");
    let joined: Value = response.json().await.expect("joined_members answer");
    Some(joined["joined"].as_object().map_or(0, |members| members.len()))
}

/// A fresh kith joins the room through `target` (a partial-state join, then its
/// resync): how long from its user's `/join` until its `/joined_members` lists everyone.
async fn kith_joins(target: &Target, room_id: &str, size: usize) -> Duration {
    let joiner = TestServer::start_federating(Db::Sqlite).await;
    let (_, token) = joiner.register("joiner", "pw").await;
    let started = Instant::now();
    let mut members = join_room(&joiner.base, &token, room_id, &target.to.name, REQUEST_TIMEOUT).await;
    while members.is_none_or(|members| members <= size) {
        assert!(started.elapsed() < REQUEST_TIMEOUT, "{}: the joining kith never saw every member", target.label);
        tokio::time::sleep(Duration::from_millis(20)).await;
        members = joined_members(&joiner.base, &token, room_id).await;
    }
    let took = started.elapsed();
    println!("resident: a kith joining through {} saw all members after {}", target.label, ms(took));
    took
}

/// `perf record` of kith while the requests run, when `KITH_BENCH_RESIDENT_PERF` names a
/// directory (`resident-<size>.perf.data` there); stopped when dropped.
struct Profile(Option<std::process::Child>);

impl Profile {
    fn start(pid: u32, size: usize) -> Self {
        let Ok(dir) = std::env::var("KITH_BENCH_RESIDENT_PERF") else { return Self(None) };
        let output = PathBuf::from(dir).join(format!("resident-{size}.perf.data"));
        let child = std::process::Command::new("perf")
            .args(["record", "--call-graph", "dwarf,16384", "-F", "99", "-p", &pid.to_string(), "-o"])
            .arg(&output)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(child) => Self(Some(child)),
            Err(err) => {
                println!("resident: no profile ({err})");
                Self(None)
            }
        }
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Kith,
    Synapse,
}

impl Kind {
    fn localpart(self) -> &'static str {
        match self {
            Kind::Kith => "kith",
            Kind::Synapse => "synapse",
        }
    }
}

/// A server under test, as the joiner reaches it and as its log tells.
struct Target {
    kind: Kind,
    label: &'static str,
    to: Destination,
    pid: u32,
    log_path: PathBuf,
    /// How much of the log was read already.
    log_read: usize,
    /// The state ids and auth chain ids of the last `state_ids` answer.
    state_ids: (usize, usize),
}

impl Target {
    fn kith(kith: &TestServer) -> Self {
        let pid = kith.pid().expect("kith runs");
        Self::new(Kind::Kith, "kith", Destination::kith(kith), pid, kith.log_path())
    }

    fn synapse(synapse: &Synapse) -> Self {
        let pid = synapse.pid().expect("synapse runs");
        Self::new(Kind::Synapse, "Synapse", Destination::synapse(synapse), pid, synapse.log_path())
    }

    fn new(kind: Kind, label: &'static str, to: Destination, pid: u32, log_path: PathBuf) -> Self {
        Self { kind, label, to, pid, log_path, log_read: 0, state_ids: (0, 0) }
    }

    /// How long the server says it took to answer `method path` (the path without its
    /// query), from its log lines written since the last call.
    async fn server_time(&mut self, method: &Method, path: &str) -> Option<Duration> {
        let path = path.split('?').next().unwrap_or(path);
        let deadline = Instant::now() + LOG_WAIT;
        loop {
            let log = std::fs::read(&self.log_path).unwrap_or_default();
            let fresh = String::from_utf8_lossy(log.get(self.log_read..).unwrap_or_default()).into_owned();
            let found = fresh.lines().find_map(|line| match self.kind {
                Kind::Kith => support::kith_time(line, method.as_str(), path),
                Kind::Synapse => support::synapse_time(line, method.as_str(), path),
            });
            if found.is_some() || Instant::now() > deadline {
                self.log_read = log.len();
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One round of requests by the joiner against one server.
struct Run<'a> {
    joiner: &'a FakeServer,
    room_id: &'a str,
    create: &'a str,
    size: usize,
    round: usize,
    pids: &'a [u32],
}

impl Run<'_> {
    async fn measure(&self, target: &mut Target) -> Vec<(&'static str, Sample)> {
        let mut samples = Vec::new();
        let localpart = format!("{}-full{}", target.kind.localpart(), self.round);
        let (make_join, send_join, _) = self.join(target, &localpart, false).await;
        samples.extend([("make_join", make_join), ("send_join", send_join)]);
        settle(self.pids, SETTLE_AFTER_REQUEST).await;

        let localpart = format!("{}-partial{}", target.kind.localpart(), self.round);
        let started = Instant::now();
        let (make_join, send_join, join) = self.join(target, &localpart, true).await;
        let at_join = format!("?event_id={}", encode(&join));
        let (state_ids, ids) = self.timed(target, Method::GET, &self.room_path("state_ids", &at_join), None).await;
        let ids: Value = serde_json::from_slice(&ids).expect("state_ids answer");
        let count = |key: &str| ids[key].as_array().map_or(0, Vec::len);
        target.state_ids = (count("pdu_ids"), count("auth_chain_ids"));
        let (state, answer) = self.timed(target, Method::GET, &self.room_path("state", &at_join), None).await;
        let members = member_count(&serde_json::from_slice(&answer).expect("state answer"));
        let end_to_end = Sample { client: started.elapsed(), server: None };
        assert!(members >= self.size, "{}: {members} members in /state", target.label);
        samples.extend([
            ("make_join", make_join),
            ("send_join?omit_members=true", send_join),
            ("state_ids", state_ids),
            ("state", state),
            (END_TO_END, end_to_end),
        ]);
        settle(self.pids, SETTLE_AFTER_REQUEST).await;

        let path = format!("/_matrix/federation/v1/event_auth/{}/{}", encode(self.room_id), encode(&join));
        samples.push(("event_auth", self.timed(target, Method::GET, &path, None).await.0));
        let body = json!({ "earliest_events": [self.create], "latest_events": [join], "limit": FEW_EVENTS });
        let path = self.room_path("get_missing_events", "");
        samples.push(("get_missing_events", self.timed(target, Method::POST, &path, Some(&body)).await.0));
        let path = self.room_path("backfill", &format!("?v={}&limit={FEW_EVENTS}", encode(&join)));
        samples.push(("backfill", self.timed(target, Method::GET, &path, None).await.0));
        settle(self.pids, SETTLE_AFTER_REQUEST).await;
        samples
    }

    /// `make_join` and `send_join` v2 of a fresh user of the joiner; returns both times
    /// and the join's event id.
    async fn join(&self, target: &mut Target, localpart: &str, omit_members: bool) -> (Sample, Sample, String) {
        let user = self.joiner.user_id(localpart);
        let (make_join, template) = self.timed(target, Method::GET, &make_join_path(self.room_id, &user), None).await;
        let template: Value = serde_json::from_slice(&template).expect("make_join answer");
        let rules = ruma::RoomVersionId::V10.rules().expect("room version 10");
        let mut event = template["event"].clone();
        event["origin"] = json!(self.joiner.name);
        event["origin_server_ts"] = json!(now_ms());
        let (event_id, signed) = self.joiner.sign_event(&rules, event);
        let query = if omit_members { "?omit_members=true" } else { "" };
        let path = format!("/_matrix/federation/v2/send_join/{}/{}{query}", encode(self.room_id), encode(&event_id));
        let (send_join, answer) = self.timed(target, Method::PUT, &path, Some(&signed)).await;
        let answer: Value = serde_json::from_slice(&answer).expect("send_join answer");
        let state = answer["state"].as_array().map_or(0, Vec::len);
        let members = member_count(&answer["state"]);
        let expected = if omit_members { 0 } else { self.size };
        assert!(state > 0 && (members >= expected), "{}: send_join{query}: {members} members", target.label);
        (make_join, send_join, event_id)
    }

    /// A signed request of the joiner, which must succeed; its times and answer.
    async fn timed(
        &self,
        target: &mut Target,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (Sample, bytes::Bytes) {
        let started = Instant::now();
        let (status, answer) = self.joiner.request_bytes_to(&target.to, method.clone(), path, body).await;
        let client = started.elapsed();
        let text = || String::from_utf8_lossy(&answer[..answer.len().min(500)]).into_owned();
        assert_eq!(status, StatusCode::OK, "{}: {method} {path}: {}", target.label, text());
        let server = target.server_time(&method, path).await;
        (Sample { client, server }, answer)
    }

    fn room_path(&self, endpoint: &str, query: &str) -> String {
        format!("/_matrix/federation/v1/{endpoint}/{}{query}", encode(self.room_id))
    }
}

fn make_join_path(room_id: &str, user_id: &str) -> String {
    format!("/_matrix/federation/v1/make_join/{}/{}?ver=10", encode(room_id), encode(user_id))
}

/// The joined members among state events (a `/state` answer's `pdus`, or a list).
fn member_count(state: &Value) -> usize {
    let events = state.get("pdus").unwrap_or(state).as_array().map_or(&[][..], Vec::as_slice);
    events.iter().filter(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "join").count()
}

/// Waits until none of `pids` uses more than [`IDLE_CPU_SHARE`] of a core over a second
/// (background work after a join: federation sending, indexing), or `limit` passed.
async fn settle(pids: &[u32], limit: Duration) {
    let deadline = Instant::now() + limit;
    let ticks_per_second = 100.0;
    loop {
        let before: Vec<u64> = pids.iter().map(|pid| cpu_ticks(*pid)).collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = pids
            .iter()
            .zip(before)
            .any(|(pid, before)| (cpu_ticks(*pid).saturating_sub(before)) as f64 / ticks_per_second > IDLE_CPU_SHARE);
        if !busy || Instant::now() > deadline {
            return;
        }
    }
}

/// One row per request and size: both servers' times, their ratio, and how kith's time
/// grew from the first size.
fn print_table(table: &[(usize, Figures)]) {
    println!("| request | members | Synapse | kith | Synapse ÷ kith | kith ÷ kith at {} |", table[0].0);
    println!("| --- | --- | --- | --- | --- | --- |");
    for request in REQUESTS {
        let first = table[0].1.get(request).and_then(|by_server| by_server.get("kith")).map(preferred);
        for (size, figures) in table {
            let Some(by_server) = figures.get(request) else { continue };
            let Some(kith) = by_server.get("kith") else { continue };
            let (synapse, ratio) = match by_server.get("Synapse") {
                Some(synapse) => {
                    (describe(synapse), format!("{:.1}", seconds(preferred(synapse)) / seconds(preferred(kith))))
                }
                None => ("—".to_owned(), "—".to_owned()),
            };
            let growth =
                first.map_or("—".to_owned(), |first| format!("{:.1}", seconds(preferred(kith)) / seconds(first)));
            println!("| {request} | {size} | {synapse} | {} | {ratio} | {growth} |", describe(kith));
        }
    }
}

/// The median server time when the server logged every run, else the joiner's.
fn preferred(timings: &Timings) -> Duration {
    if timings.server.len() == timings.client.len() { median(&timings.server) } else { median(&timings.client) }
}

fn describe(timings: &Timings) -> String {
    let client = format!("{} / {}", ms(median(&timings.client)), ms(best(&timings.client)));
    if timings.server.len() == timings.client.len() {
        format!("{} / {} ({client})", ms(median(&timings.server)), ms(best(&timings.server)))
    } else {
        client
    }
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn best(values: &[Duration]) -> Duration {
    values.iter().min().copied().unwrap_or_default()
}
