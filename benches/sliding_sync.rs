//! Simplified sliding sync (MSC4186) for a user in many rooms, on kith and on Synapse
//! (from the test virtualenv) side by side in one run, both on SQLite.
//!
//! One user creates the same rooms on both servers through the client API (named rooms,
//! and every tenth one unnamed with a second user invited, so that it is named after its
//! heroes). Then, alternating between the servers:
//!
//! - the first answer of a room list (`ranges [[0, 19]]`, `timeline_limit: 1`, the name
//!   and avatar as `required_state`), each time on a fresh `conn_id`;
//! - the incremental answer on such a connection after one new message in one room
//!   (the message sent first, so the long poll answers at once).
//!
//! Each is timed by the client (until the last byte) and by the server's own log: kith's
//! access log (`ms=`) and Synapse's `Processed request:` (processing and sending). Last,
//! kith's resident memory is read before and after opening more connections (up to the
//! bound it keeps per user), for the memory one connection holds.
//!
//! `cargo bench --bench sliding_sync`; `KITH_BENCH_SLIDING_SYNC_ROOMS` (default 1000) and
//! `KITH_BENCH_SLIDING_SYNC_RUNS` (default 50) change the rooms and the repetitions. Needs
//! the virtualenv `bash scripts/test` installs.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::matrix::{V3, encode};
use common::synapse::Synapse;
use common::{Db, TestServer};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{env_number, ms, percentile, resident_kib, seconds};

const DEFAULT_ROOMS: usize = 1_000;
const DEFAULT_RUNS: usize = 50;
/// Rooms created at once on each server.
const CREATE_CONCURRENCY: usize = 4;
/// Connections kith keeps per user (`MAX_CONNECTIONS_PER_USER`): the memory figure
/// opens connections up to it, so that none is forgotten while measuring.
const CONNECTIONS_PER_USER: usize = 50;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a server may take to log a request it answered.
const LOG_WAIT: Duration = Duration::from_secs(5);
/// Room creation and invites as fast as the client goes, on both servers.
const KITH_LIMITS: &str = "rc_room_creation: {per_second: 1000, burst_count: 1000}\n\
    rc_invites: {per_room: {per_second: 1000, burst_count: 1000}, per_user: {per_second: 1000, burst_count: 1000}, \
    per_issuer: {per_second: 1000, burst_count: 1000}}\n";
const SLIDING_SYNC: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

fn main() {
    support::run_beside_synapse("sliding_sync", &common::synapse_venv(), run);
}

async fn run() {
    let rooms = env_number("KITH_BENCH_SLIDING_SYNC_ROOMS", DEFAULT_ROOMS);
    let runs = env_number("KITH_BENCH_SLIDING_SYNC_RUNS", DEFAULT_RUNS).max(1);
    println!("sliding_sync: matrix-synapse {}, {rooms} rooms, {runs} runs", Synapse::version());
    let kith = TestServer::start_with(Db::Sqlite, KITH_LIMITS).await;
    let synapse = Synapse::start().await;
    let (_, kith_token) = kith.register("bench", "pw").await;
    let (_, kith_friend) = kith.register("friend", "pw").await;
    let (_, synapse_token) = synapse.register_fast("bench").await;
    let (_, synapse_friend) = synapse.register_fast("friend").await;
    let mut targets = [
        Target::new("Synapse", &synapse.client_base, synapse_token, synapse_friend, synapse.log_path(), false),
        Target::new("kith", &kith.base, kith_token, kith_friend, kith.log_path(), true),
    ];
    for target in &mut targets {
        let started = Instant::now();
        target.create_rooms(rooms).await;
        println!("sliding_sync: {} created {rooms} rooms in {:.1} s", target.label, started.elapsed().as_secs_f64());
        target.first_answer("warm-up").await;
    }
    let mut figures: Vec<[Timings; 2]> = vec![Default::default(), Default::default()];
    for round in 0..runs {
        // Alternating which server goes first, so both meet the same noise.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for index in order {
            let target = &mut targets[index];
            let (sample, pos) = target.first_answer(&format!("first-{round}")).await;
            figures[0][index].add(sample);
            figures[1][index].add(target.incremental(&format!("first-{round}"), &pos, round).await);
        }
    }
    print_table(&targets, &figures, rooms, runs);
    // The warm-up and every run opened one connection each.
    let more = CONNECTIONS_PER_USER.saturating_sub(runs + 1);
    if more > 0 {
        connection_memory(&mut targets[1], kith.pid().expect("kith runs"), rooms, more).await;
    }
}

/// Resident memory of kith before and after opening more connections of the user.
async fn connection_memory(kith: &mut Target, pid: u32, rooms: usize, connections: usize) {
    let before = resident_kib(pid);
    for i in 0..connections {
        kith.first_answer(&format!("memory-{i}")).await;
    }
    let after = resident_kib(pid);
    let per = after.saturating_sub(before) as f64 / connections as f64;
    println!(
        "sliding_sync: kith resident {before} KiB, then {after} KiB after {connections} more connections \
         ({per:.0} KiB each, a user in {rooms} rooms, 20 rooms sent each)"
    );
}

struct Target {
    label: &'static str,
    base: String,
    token: String,
    friend_token: String,
    log_path: PathBuf,
    is_kith: bool,
    http: reqwest::Client,
    /// How much of the log was read already.
    log_read: usize,
    /// The room messages go to (the newest one created).
    active_room: String,
}

/// One request's time, seen by the client and (when it logged it) by the server.
struct Sample {
    client: Duration,
    server: Option<Duration>,
}

#[derive(Default)]
struct Timings {
    client: Vec<Duration>,
    server: Vec<Duration>,
}

impl Timings {
    fn add(&mut self, sample: Sample) {
        self.client.push(sample.client);
        self.server.extend(sample.server);
    }
}

impl Target {
    fn new(label: &'static str, base: &str, token: String, friend: String, log_path: PathBuf, is_kith: bool) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .danger_accept_invalid_certs(true)
            .build()
            .expect("client");
        Self {
            label,
            base: base.to_owned(),
            token,
            friend_token: friend,
            log_path,
            is_kith,
            http,
            log_read: 0,
            active_room: String::new(),
        }
    }

    async fn call(&self, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
        let response = self.http.post(format!("{}{path}", self.base)).bearer_auth(token).json(body).send().await;
        let response = response.unwrap_or_else(|err| panic!("{}: {path}: {err}", self.label));
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn put(&self, path: &str, body: &Value) {
        let response = self.http.put(format!("{}{path}", self.base)).bearer_auth(&self.token).json(body).send().await;
        let status = response.unwrap_or_else(|err| panic!("{}: {path}: {err}", self.label)).status();
        assert_eq!(status, StatusCode::OK, "{}: {path}", self.label);
    }

    /// Named rooms, and every tenth one unnamed with the second user invited.
    async fn create_rooms(&mut self, count: usize) {
        let friend = format!("@friend:{}", self.server_name().await);
        let this = &*self;
        let created: Vec<String> = futures_util::stream::iter(0..count)
            .map(move |i| {
                let body = if i % 10 == 9 {
                    json!({ "preset": "private_chat", "invite": [friend] })
                } else {
                    json!({ "preset": "private_chat", "name": format!("Room {i}") })
                };
                async move {
                    let (status, answer) = this.call(&format!("{V3}/createRoom"), &this.token, &body).await;
                    assert_eq!(status, StatusCode::OK, "{}: createRoom: {answer}", this.label);
                    answer["room_id"].as_str().expect("room_id").to_owned()
                }
            })
            .buffered(CREATE_CONCURRENCY)
            .collect()
            .await;
        // The invited friend joins some of them, so that heroes have a joined member.
        for room in created.iter().skip(9).step_by(20) {
            let (status, answer) =
                self.call(&format!("{V3}/join/{}", encode(room)), &self.friend_token, &json!({})).await;
            assert_eq!(status, StatusCode::OK, "{}: join: {answer}", self.label);
        }
        self.active_room = created.last().cloned().unwrap_or_default();
    }

    async fn server_name(&self) -> String {
        let response = self.http.get(format!("{}{V3}/account/whoami", self.base)).bearer_auth(&self.token).send().await;
        let whoami: Value = response.expect("whoami").json().await.expect("whoami answer");
        let user = whoami["user_id"].as_str().expect("user_id");
        user.split_once(':').expect("server name").1.to_owned()
    }

    /// A new connection's first answer; its time and `pos`.
    async fn first_answer(&mut self, conn_id: &str) -> (Sample, String) {
        let body = json!({
            "conn_id": conn_id,
            "lists": { "room-list": {
                "ranges": [[0, 19]],
                "timeline_limit": 1,
                "required_state": [["m.room.name", ""], ["m.room.avatar", ""]],
            } },
        });
        let (sample, answer) = self.timed_sync("", &body).await;
        let rooms = answer["rooms"].as_object().map_or(0, |rooms| rooms.len());
        assert_eq!(rooms, 20, "{}: first answer: {}", self.label, truncated(&answer));
        (sample, answer["pos"].as_str().expect("pos").to_owned())
    }

    /// The answer after `pos` once one message was sent to the active room.
    async fn incremental(&mut self, conn_id: &str, pos: &str, round: usize) -> Sample {
        let path = format!("{V3}/rooms/{}/send/m.room.message/bench{round}", encode(&self.active_room));
        self.put(&path, &json!({ "msgtype": "m.text", "body": format!("message {round}") })).await;
        let body = json!({
            "conn_id": conn_id,
            "lists": { "room-list": {
                "ranges": [[0, 19]],
                "timeline_limit": 1,
                "required_state": [["m.room.name", ""], ["m.room.avatar", ""]],
            } },
        });
        let query = format!("?pos={}&timeout=10000", encode(pos));
        let (sample, answer) = self.timed_sync(&query, &body).await;
        let timeline = &answer["rooms"][&self.active_room]["timeline"];
        let last = timeline.as_array().and_then(|events| events.last()).cloned().unwrap_or_default();
        assert_eq!(last["content"]["body"], format!("message {round}"), "{}: {}", self.label, truncated(&answer));
        sample
    }

    async fn timed_sync(&mut self, query: &str, body: &Value) -> (Sample, Value) {
        let started = Instant::now();
        let (status, answer) = self.call(&format!("{SLIDING_SYNC}{query}"), &self.token.clone(), body).await;
        let client = started.elapsed();
        assert_eq!(status, StatusCode::OK, "{}: {}", self.label, truncated(&answer));
        (Sample { client, server: self.server_time().await }, answer)
    }

    /// How long the server says it took to answer the last sliding sync request.
    async fn server_time(&mut self) -> Option<Duration> {
        let deadline = Instant::now() + LOG_WAIT;
        loop {
            let log = std::fs::read(&self.log_path).unwrap_or_default();
            let fresh = String::from_utf8_lossy(log.get(self.log_read..).unwrap_or_default()).into_owned();
            let found = fresh.lines().find_map(|line| if self.is_kith { kith_time(line) } else { synapse_time(line) });
            if found.is_some() || Instant::now() > deadline {
                self.log_read = log.len();
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn truncated(answer: &Value) -> String {
    answer.to_string().chars().take(500).collect()
}

fn kith_time(line: &str) -> Option<Duration> {
    support::kith_time(line, "POST", SLIDING_SYNC)
}

fn synapse_time(line: &str) -> Option<Duration> {
    support::synapse_time(line, "POST", SLIDING_SYNC)
}

fn print_table(targets: &[Target; 2], figures: &[[Timings; 2]], rooms: usize, runs: usize) {
    println!(
        "\nsliding_sync: a user in {rooms} rooms, {runs} runs, server time p50 / p99 (client time in parentheses)\n"
    );
    println!("| answer | {} | {} | Synapse ÷ kith (p50) |", targets[0].label, targets[1].label);
    println!("| --- | --- | --- | --- |");
    for (name, timings) in ["first room list [0, 19]", "incremental, one new message"].iter().zip(figures) {
        let ratio = seconds(preferred(&timings[0])) / seconds(preferred(&timings[1]));
        println!("| {name} | {} | {} | {ratio:.1} |", describe(&timings[0]), describe(&timings[1]));
    }
}

/// The median server time when the server logged every run, else the client's.
fn preferred(timings: &Timings) -> Duration {
    let values = if timings.server.len() == timings.client.len() { &timings.server } else { &timings.client };
    percentile(values, 50)
}

fn describe(timings: &Timings) -> String {
    let client = format!("{} / {}", ms(percentile(&timings.client, 50)), ms(percentile(&timings.client, 99)));
    if timings.server.len() == timings.client.len() {
        format!("{} / {} ({client})", ms(percentile(&timings.server, 50)), ms(percentile(&timings.server, 99)))
    } else {
        client
    }
}
