//! The messaging hot path on kith and on Synapse (from the test virtualenv, SQLite) in
//! one run, one server at a time.
//!
//! - Messaging: `MEMBERS` users in one public room; `SENDERS` of them each send
//!   `MESSAGES` messages one after another while `RECEIVERS` others long-poll `/sync`
//!   with a lazy-loading filter. Every (message, receiver) pair is checked: a message a
//!   receiver never got, or got twice, is counted and printed. Figures: messages/s over
//!   the sending, send latency (client), delivery latency (from the send's start until
//!   a receiver's `/sync` holds it), the server's CPU time over the whole run (from
//!   `/proc/PID/stat`) per message, and its resident memory.
//! - Many rooms: one user in `ROOMS` rooms; the initial `/sync` and an incremental one
//!   with nothing new (`timeout=0`), timed by each server's own log. Each request's
//!   filter differs (an unused presence type), so that Synapse's response cache cannot
//!   answer it.
//!
//! `cargo bench --bench messaging`. Sizes: `KITH_BENCH_MESSAGING_MEMBERS` (20),
//! `_SENDERS` (4), `_RECEIVERS` (4), `_MESSAGES` (250 per sender), `_ROOMS` (200),
//! or `KITH_BENCH_MESSAGING_ROOM=large` for 200 members, 50 receivers and 100
//! messages per sender (each still overridable),
//! `_RUNS` (20 incremental and 3 initial syncs at most), `_ROUNDS` (1: each round runs
//! both servers, alternating which goes first); `KITH_BENCH_MESSAGING_BACKEND=postgres`
//! runs kith on PostgreSQL (Synapse stays on SQLite); `KITH_BENCH_MESSAGING_ONLY=kith`
//! leaves Synapse out.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::matrix::{V3, encode};
use common::synapse::Synapse;
use common::{Db, TestServer};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{env_number, ms, percentile, seconds};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a receiver long-polls.
const POLL_TIMEOUT_MS: u64 = 10_000;
/// How long receivers may still wait for messages once the last send was answered.
const DELIVERY_GRACE: Duration = Duration::from_secs(60);
/// How long a server may take to log a request it answered.
const LOG_WAIT: Duration = Duration::from_secs(5);
/// Users registered, rooms created and joins made at once.
const SETUP_CONCURRENCY: usize = 4;
const TIMELINE_LIMIT: usize = 50;

#[derive(Clone, Copy)]
struct Sizes {
    members: usize,
    senders: usize,
    receivers: usize,
    messages: usize,
    rooms: usize,
    runs: usize,
}

fn main() {
    support::run_beside_synapse("messaging", &common::synapse_venv(), run);
}

async fn run() {
    let prefix = "KITH_BENCH_MESSAGING_";
    let number = |name: &str, default| env_number(&format!("{prefix}{name}"), default);
    // The large room: 200 members, 50 of them long-polling, fewer messages each.
    let large = std::env::var("KITH_BENCH_MESSAGING_ROOM").as_deref() == Ok("large");
    let (members, receivers, messages) = if large { (200, 50, 100) } else { (20, 4, 250) };
    let senders = number("SENDERS", 4).max(1);
    let receivers = number("RECEIVERS", receivers).max(1);
    let sizes = Sizes {
        members: number("MEMBERS", members).max(senders + receivers),
        senders,
        receivers,
        messages: number("MESSAGES", messages).max(1),
        rooms: number("ROOMS", 200),
        runs: number("RUNS", 20).max(1),
    };
    let rounds = number("ROUNDS", 1).max(1);
    let db = match std::env::var("KITH_BENCH_MESSAGING_BACKEND").as_deref() {
        Ok("postgres") => Db::Postgres,
        _ => Db::Sqlite,
    };
    let with_synapse = std::env::var("KITH_BENCH_MESSAGING_ONLY").as_deref() != Ok("kith");
    println!(
        "messaging: matrix-synapse {} (SQLite), kith on {db:?}; {} members, {} senders × {} messages, {} receivers; \
         one user in {} rooms; {rounds} round(s)",
        Synapse::version(),
        sizes.members,
        sizes.senders,
        sizes.messages,
        sizes.receivers,
        sizes.rooms
    );
    let mut results: Vec<(&'static str, Figures)> = Vec::new();
    for round in 0..rounds {
        let kith_first = round % 2 == 1 || !with_synapse;
        for kith_turn in [kith_first, !kith_first] {
            if kith_turn {
                let kith = TestServer::start(db).await;
                let target = Target::kith(&kith);
                results.push(("kith", measure(target, sizes, Register::Kith(&kith)).await));
            } else if with_synapse {
                let synapse = Synapse::start().await;
                let target = Target::synapse(&synapse);
                results.push(("Synapse", measure(target, sizes, Register::Synapse(&synapse)).await));
            }
            if !with_synapse {
                break;
            }
        }
    }
    print_table(&results, sizes);
}

enum Register<'a> {
    Kith(&'a TestServer),
    Synapse(&'a Synapse),
}

impl Register<'_> {
    async fn user(&self, name: &str) -> (String, String) {
        match self {
            Self::Kith(kith) => kith.register(name, "pw").await,
            Self::Synapse(synapse) => synapse.register_fast(name).await,
        }
    }
}

#[derive(Clone)]
struct Target {
    label: &'static str,
    base: String,
    pid: u32,
    log_path: PathBuf,
    is_kith: bool,
    http: reqwest::Client,
}

impl Target {
    fn kith(kith: &TestServer) -> Self {
        Self::new("kith", &kith.base, kith.pid().expect("kith runs"), kith.log_path(), true)
    }

    fn synapse(synapse: &Synapse) -> Self {
        Self::new("Synapse", &synapse.client_base, synapse.pid().expect("synapse runs"), synapse.log_path(), false)
    }

    fn new(label: &'static str, base: &str, pid: u32, log_path: PathBuf, is_kith: bool) -> Self {
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("client");
        Self { label, base: base.to_owned(), pid, log_path, is_kith, http }
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap_or_else(|err| panic!("{}: {path}: {err}", self.label));
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, method: Method, path: &str, token: &str, body: Option<&Value>) -> Value {
        let (status, answer) = self.call(method, path, token, body).await;
        assert_eq!(status, StatusCode::OK, "{}: {path}: {answer}", self.label);
        answer
    }

    /// How long the server says the `/sync` it answered last took, reading its log from
    /// `*read` on.
    async fn sync_time(&self, read: &mut usize) -> Option<Duration> {
        let deadline = Instant::now() + LOG_WAIT;
        let path = format!("{V3}/sync");
        loop {
            let log = std::fs::read(&self.log_path).unwrap_or_default();
            let fresh = String::from_utf8_lossy(log.get(*read..).unwrap_or_default()).into_owned();
            let found = fresh.lines().find_map(|line| {
                if self.is_kith {
                    support::kith_time(line, "GET", &path)
                } else {
                    support::synapse_time(line, "GET", &path)
                }
            });
            if found.is_some() || Instant::now() > deadline {
                *read = log.len();
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn log_len(&self) -> usize {
        std::fs::metadata(&self.log_path).map_or(0, |m| m.len() as usize)
    }
}

#[derive(Default)]
struct Figures {
    messages_per_second: f64,
    send: Vec<Duration>,
    delivery: Vec<Duration>,
    cpu_per_message: Duration,
    resident_kib: u64,
    peak_resident_kib: u64,
    missing: usize,
    duplicated: usize,
    limited: usize,
    initial_sync: Vec<Duration>,
    empty_sync: Vec<Duration>,
}

async fn measure(target: Target, sizes: Sizes, register: Register<'_>) -> Figures {
    let names: Vec<String> = (0..sizes.members).map(|i| format!("member{i}")).collect();
    let users: Vec<(String, String)> =
        futures_util::stream::iter(&names).map(|name| register.user(name)).buffered(SETUP_CONCURRENCY).collect().await;
    let mut figures = messaging(&target, &users, sizes).await;
    let (_, token) = register.user("roomy").await;
    many_rooms(&target, &token, sizes, &mut figures).await;
    figures
}

fn lazy_filter(variant: usize) -> String {
    let filter = json!({
        "room": { "state": { "lazy_load_members": true }, "timeline": { "limit": TIMELINE_LIMIT } },
        // Never sent: it only makes each filter differ.
        "presence": { "not_types": [format!("bench.{variant}")] },
    });
    encode(&filter.to_string())
}

/// The message workload; the room is created by the first sender and joined by all.
async fn messaging(target: &Target, users: &[(String, String)], sizes: Sizes) -> Figures {
    let creator = &users[0].1;
    let answer =
        target.ok(Method::POST, &format!("{V3}/createRoom"), creator, Some(&json!({ "preset": "public_chat" }))).await;
    let room = answer["room_id"].as_str().expect("room_id").to_owned();
    let join = format!("{V3}/join/{}", encode(&room));
    let empty = json!({});
    futures_util::stream::iter(&users[1..])
        .map(|(_, token)| target.ok(Method::POST, &join, token, Some(&empty)))
        .buffered(SETUP_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let total = sizes.senders * sizes.messages;
    let receivers = &users[sizes.senders..sizes.senders + sizes.receivers];
    let mut positions = Vec::new();
    for (_, token) in receivers {
        let answer =
            target.ok(Method::GET, &format!("{V3}/sync?timeout=0&filter={}", lazy_filter(0)), token, None).await;
        positions.push(answer["next_batch"].as_str().expect("next_batch").to_owned());
    }
    let cpu_before = support::cpu_ticks(target.pid);
    let started = Instant::now();
    let last_send = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let receiving: Vec<_> = receivers
        .iter()
        .zip(positions)
        .map(|((_, token), since)| {
            let (target, token, room) = (target.clone(), token.clone(), room.clone());
            let last_send = last_send.clone();
            tokio::spawn(async move { receive(&target, &token, &room, since, total, &last_send).await })
        })
        .collect();
    let sending: Vec<_> = users[..sizes.senders]
        .iter()
        .enumerate()
        .map(|(sender, (_, token))| {
            let (target, token, room) = (target.clone(), token.clone(), room.clone());
            tokio::spawn(async move { send(&target, &token, &room, sender, sizes.messages).await })
        })
        .collect();
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut figures = Figures::default();
    for task in sending {
        for (body, at, took) in task.await.expect("sender") {
            sent_at.insert(body, at);
            figures.send.push(took);
        }
    }
    let sending_time = started.elapsed();
    *last_send.lock().expect("lock") = Some(Instant::now());
    for task in receiving {
        let (received, limited) = task.await.expect("receiver");
        figures.limited += limited;
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (body, at) in &received {
            *seen.entry(body.as_str()).or_default() += 1;
            if let Some(sent) = sent_at.get(body) {
                figures.delivery.push(at.saturating_duration_since(*sent));
            }
        }
        figures.missing += sent_at.keys().filter(|body| !seen.contains_key(body.as_str())).count();
        figures.duplicated += seen.values().map(|n| n - 1).sum::<usize>();
    }
    let cpu = (support::cpu_ticks(target.pid) - cpu_before) as f64 / support::TICKS_PER_SECOND;
    figures.messages_per_second = total as f64 / seconds(sending_time);
    figures.cpu_per_message = Duration::from_secs_f64(cpu / total as f64);
    figures.resident_kib = support::resident_kib(target.pid);
    figures.peak_resident_kib = support::peak_resident_kib(target.pid);
    println!(
        "messaging: {}: {total} messages in {:.1} s, server CPU {cpu:.1} s, {} missing, {} duplicated, {} limited timelines",
        target.label,
        sending_time.as_secs_f64(),
        figures.missing,
        figures.duplicated,
        figures.limited
    );
    figures
}

/// One sender's messages, one after another: (body, when the send started, how long it took).
async fn send(
    target: &Target,
    token: &str,
    room: &str,
    sender: usize,
    count: usize,
) -> Vec<(String, Instant, Duration)> {
    let mut sent = Vec::with_capacity(count);
    for i in 0..count {
        let body = format!("bench {sender}.{i}");
        let path = format!("{V3}/rooms/{}/send/m.room.message/b{sender}-{i}", encode(room));
        let at = Instant::now();
        target.ok(Method::PUT, &path, token, Some(&json!({ "msgtype": "m.text", "body": body }))).await;
        sent.push((body, at, at.elapsed()));
    }
    sent
}

/// Long-polls until `total` messages arrived, or the grace after the last send passed:
/// every message body with when it was seen, and how many timelines were cut.
async fn receive(
    target: &Target,
    token: &str,
    room: &str,
    mut since: String,
    total: usize,
    last_send: &std::sync::Mutex<Option<Instant>>,
) -> (Vec<(String, Instant)>, usize) {
    let (mut received, mut limited) = (Vec::with_capacity(total), 0);
    let filter = lazy_filter(0);
    while received.len() < total {
        if last_send.lock().expect("lock").is_some_and(|at| at.elapsed() > DELIVERY_GRACE) {
            break;
        }
        let path = format!("{V3}/sync?timeout={POLL_TIMEOUT_MS}&since={}&filter={filter}", encode(&since));
        let answer = target.ok(Method::GET, &path, token, None).await;
        let now = Instant::now();
        let timeline = &answer["rooms"]["join"][room]["timeline"];
        limited += usize::from(timeline["limited"] == true);
        for event in timeline["events"].as_array().into_iter().flatten() {
            if let Some(body) = event["content"]["body"].as_str().filter(|b| b.starts_with("bench ")) {
                received.push((body.to_owned(), now));
            }
        }
        since = answer["next_batch"].as_str().expect("next_batch").to_owned();
    }
    (received, limited)
}

/// One user in `sizes.rooms` rooms: the initial `/sync` and an empty incremental one.
async fn many_rooms(target: &Target, token: &str, sizes: Sizes, figures: &mut Figures) {
    if sizes.rooms == 0 {
        return;
    }
    let body = |i: usize| json!({ "preset": "private_chat", "name": format!("Room {i}") });
    futures_util::stream::iter(0..sizes.rooms)
        .map(|i| async move { target.ok(Method::POST, &format!("{V3}/createRoom"), token, Some(&body(i))).await })
        .buffered(SETUP_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let mut read = target.log_len();
    let mut since = String::new();
    let initial_runs = sizes.runs.min(3);
    for run in 0..initial_runs {
        let answer = target.ok(Method::GET, &format!("{V3}/sync?filter={}", lazy_filter(run + 1)), token, None).await;
        let joined = answer["rooms"]["join"].as_object().map_or(0, |rooms| rooms.len());
        assert_eq!(joined, sizes.rooms, "{}: initial sync", target.label);
        since = answer["next_batch"].as_str().expect("next_batch").to_owned();
        figures.initial_sync.extend(target.sync_time(&mut read).await);
    }
    for run in 0..sizes.runs {
        let filter = lazy_filter(initial_runs + run + 1);
        let path = format!("{V3}/sync?timeout=0&since={}&filter={filter}", encode(&since));
        let answer = target.ok(Method::GET, &path, token, None).await;
        let joined = answer["rooms"]["join"].as_object().map_or(0, |rooms| rooms.len());
        assert_eq!(joined, 0, "{}: empty incremental sync: {answer}", target.label);
        figures.empty_sync.extend(target.sync_time(&mut read).await);
    }
}

fn print_table(results: &[(&'static str, Figures)], sizes: Sizes) {
    let pick = |label: &str| results.iter().filter(|(l, _)| *l == label).map(|(_, f)| f).collect::<Vec<_>>();
    let (kith, synapse) = (pick("kith"), pick("Synapse"));
    println!(
        "\nmessaging: {} members, {} senders × {} messages, {} receivers (lazy-loading long polls); \
         one user in {} rooms\n",
        sizes.members, sizes.senders, sizes.messages, sizes.receivers, sizes.rooms
    );
    println!("| figure | Synapse | kith | kith's advantage (×) |");
    println!("| --- | --- | --- | --- |");
    let row = |name: &str, value: &dyn Fn(&Figures) -> f64, show: &dyn Fn(f64) -> String, higher_better: bool| {
        let median = |runs: &[&Figures]| {
            let mut values: Vec<f64> = runs.iter().map(|f| value(f)).collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied()
        };
        let (s, k) = (median(&synapse), median(&kith));
        let ratio = match (s, k) {
            (Some(s), Some(k)) if higher_better => format!("{:.1}", k / s.max(1e-9)),
            (Some(s), Some(k)) => format!("{:.1}", s / k.max(1e-9)),
            _ => "—".to_owned(),
        };
        let text = |v: Option<f64>| v.map_or("—".to_owned(), show);
        println!("| {name} | {} | {} | {ratio} |", text(s), text(k));
    };
    let time = |v: f64| ms(Duration::from_secs_f64(v));
    let p = |values: &[Duration], percent| percentile(values, percent).as_secs_f64();
    row("messages/s", &|f| f.messages_per_second, &|v| format!("{v:.1}"), true);
    row("send p50", &|f| p(&f.send, 50), &time, false);
    row("send p99", &|f| p(&f.send, 99), &time, false);
    row("delivery p50", &|f| p(&f.delivery, 50), &time, false);
    row("delivery p99", &|f| p(&f.delivery, 99), &time, false);
    row("server CPU per message", &|f| f.cpu_per_message.as_secs_f64(), &time, false);
    row("resident memory (MiB)", &|f| f.resident_kib as f64 / 1024.0, &|v| format!("{v:.0}"), false);
    row("peak resident memory (MiB)", &|f| f.peak_resident_kib as f64 / 1024.0, &|v| format!("{v:.0}"), false);
    row("missing + duplicated pairs", &|f| (f.missing + f.duplicated) as f64, &|v| format!("{v:.0}"), false);
    row("initial /sync p50 (server)", &|f| p(&f.initial_sync, 50), &time, false);
    row("empty incremental /sync p50 (server)", &|f| p(&f.empty_sync, 50), &time, false);
    row("empty incremental /sync p99 (server)", &|f| p(&f.empty_sync, 99), &time, false);
    println!("\n(advantage: kith ÷ Synapse for messages/s, Synapse ÷ kith for the rest)");
}
