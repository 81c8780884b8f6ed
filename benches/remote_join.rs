//! Joining a big remote room, partial state (MSC3706/MSC3902) against full state, in the
//! same run: for each room, fresh kith servers join it with `faster_joins` on and off.
//! Figures: the time `POST /join` takes, the time until the background resync has
//! completed (partial joins), the federation response bytes kith read for the join and
//! in all, and the peak resident memory of the kith process.
//!
//! Rooms: a public room on a real Synapse (from the test virtualenv, on loopback) with
//! 1,000 members (`KITH_BENCH_SYNAPSE_MEMBERS` to change it, 0 to leave it out; Synapse
//! fills a room at about 6 joins a second), and rooms of 5,000 and 20,000 members held by a scripted
//! resident (signed events, canned answers), which can be filled in seconds.
//!
//! `cargo bench --bench remote_join` (needs the virtualenv `bash scripts/test` installs).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::fake_resident::FakeRoom;
use common::fake_server::FakeServer;
use common::matrix::{self, Homeserver, V3};
use common::synapse::Synapse;
use common::{Db, TestServer};
use reqwest::StatusCode;
use serde_json::json;

const RUNS: usize = 3;
const SCRIPTED_ROOMS: [usize; 2] = [5_000, 20_000];
const RESYNC_LIMIT: Duration = Duration::from_secs(600);
/// Debug lines of the federation client give each response's size.
const LOG_LEVEL: &str = "log_level: 'info,kith::services::federation::client=debug'\n";

fn main() {
    if !common::synapse_venv().join("bin/python").exists() {
        println!("remote_join: skipped, no matrix-synapse virtualenv (run `bash scripts/test` once)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let members: usize = std::env::var("KITH_BENCH_SYNAPSE_MEMBERS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000);
    if members >= 2 {
        synapse_rooms(members).await;
    }
    scripted_rooms().await;
}

async fn synapse_rooms(members: usize) {
    let synapse = Synapse::start().await;
    println!("remote_join: matrix-synapse {}", Synapse::version());
    let started = Instant::now();
    let room = synapse_room(&synapse, members).await;
    println!("remote_join: {members} members joined on Synapse in {:.0} s", started.elapsed().as_secs_f64());
    compare(&format!("Synapse room, {members} members"), members, &room, &synapse.server_name, &|_| {}).await;
}

async fn scripted_rooms() {
    for size in SCRIPTED_ROOMS {
        let fake = FakeServer::start().await;
        let started = Instant::now();
        let mut room = FakeRoom::create(&fake, "owner");
        for i in 1..size {
            let member = fake.user_id(&format!("member{i}"));
            room.add_state(&fake, &member, "m.room.member", &member, json!({ "membership": "join" }));
        }
        room.serve_state_ids(&fake);
        room.serve_whole_state(&fake);
        println!("remote_join: scripted room of {size} members signed in {:.1} s", started.elapsed().as_secs_f64());
        let serve = |joiner: &str, partial: bool| {
            if partial { room.serve_partial_join(&fake, joiner) } else { room.serve_full_join(&fake, joiner) }
        };
        let label = format!("scripted resident, {size} members");
        compare(&label, size, &room.room_id, &fake.name, &|(joiner, partial)| serve(joiner, partial)).await;
    }
}

async fn synapse_room(synapse: &Synapse, members: usize) -> String {
    let (_, owner) = synapse.register_fast("owner").await;
    let room = matrix::create_room(synapse, &owner, json!({ "preset": "public_chat" })).await;
    for i in 1..members {
        let (_, token) = synapse.register_fast(&format!("member{i}")).await;
        join_ok(synapse, &token, &room, &synapse.server_name).await;
    }
    room
}

/// What one join measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    join: Duration,
    /// From the `/join` request to the end of the resync (partial joins).
    complete: Duration,
    join_bytes: u64,
    total_bytes: u64,
    peak_kib: u64,
}

type Serve<'a> = &'a dyn Fn((&str, bool));

/// `RUNS` partial and `RUNS` full joins of `room`, alternating, each by a fresh server.
async fn compare(label: &str, members: usize, room: &str, via: &str, serve: Serve<'_>) {
    let (mut partial, mut full) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        partial.push(join_once(room, via, members, true, serve).await);
        full.push(join_once(room, via, members, false, serve).await);
    }
    let (p, f) = (medians(&partial), medians(&full));
    println!("remote_join: {label}, median of {RUNS}:");
    println!("  partial: {}", describe(&p));
    println!("  full:    {}", describe(&f));
    println!(
        "  /join {:.1}x faster partial; {:.1}x fewer bytes before /join returns",
        f.join.as_secs_f64() / p.join.as_secs_f64(),
        f.join_bytes as f64 / p.join_bytes.max(1) as f64
    );
}

async fn join_once(room: &str, via: &str, members: usize, partial: bool, serve: Serve<'_>) -> Figures {
    let extra = format!("{LOG_LEVEL}experimental_features:\n  faster_joins: {partial}\n");
    let kith = TestServer::start_federating_with(Db::Sqlite, &extra).await;
    let (user, token) = kith.register("joiner", "pw").await;
    serve((&user, partial));
    let started = Instant::now();
    join_ok(&kith, &token, room, via).await;
    let join = started.elapsed();
    let join_bytes = response_bytes(&kith.log());
    if partial {
        let deadline = Instant::now() + RESYNC_LIMIT;
        while !kith.log().contains("partial-state resync complete") {
            assert!(Instant::now() < deadline, "no resync within {RESYNC_LIMIT:?}: {}", kith.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let complete = started.elapsed();
    let path = format!("{V3}/rooms/{}/joined_members", matrix::encode(room));
    let (_, joined) = kith.get(&path, Some(&token)).await;
    let count = joined["joined"].as_object().map_or(0, |m| m.len());
    assert_eq!(count, members + 1, "every member known after the join");
    Figures {
        join,
        complete,
        join_bytes,
        total_bytes: response_bytes(&kith.log()),
        peak_kib: kith.peak_resident_kib().unwrap_or_default(),
    }
}

/// The bytes of every federation response the server logged.
fn response_bytes(log: &str) -> u64 {
    log.lines()
        .filter(|line| line.contains("federation response read"))
        .filter_map(|line| line.split("bytes=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

async fn join_ok(server: &impl Homeserver, token: &str, room: &str, via: &str) {
    let (status, body) = matrix::join(server, token, room, via).await;
    assert_eq!(status, StatusCode::OK, "join on {}: {body}", server.name());
}

fn medians(runs: &[Figures]) -> Figures {
    fn median<T: Ord + Copy>(mut values: Vec<T>) -> T {
        values.sort();
        values[values.len() / 2]
    }
    Figures {
        join: median(runs.iter().map(|r| r.join).collect()),
        complete: median(runs.iter().map(|r| r.complete).collect()),
        join_bytes: median(runs.iter().map(|r| r.join_bytes).collect()),
        total_bytes: median(runs.iter().map(|r| r.total_bytes).collect()),
        peak_kib: median(runs.iter().map(|r| r.peak_kib).collect()),
    }
}

fn describe(f: &Figures) -> String {
    format!(
        "/join {:.0} ms, complete {:.0} ms, {:.2} MB read for the join, {:.2} MB in all, peak RSS {:.0} MiB",
        f.join.as_secs_f64() * 1e3,
        f.complete.as_secs_f64() * 1e3,
        f.join_bytes as f64 / 1e6,
        f.total_bytes as f64 / 1e6,
        f.peak_kib as f64 / 1024.0
    )
}
