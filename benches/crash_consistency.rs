//! Crash consistency at many kill points: kith is killed (SIGKILL) at random moments
//! while clients and a federating peer keep it busy, started again, and checked against
//! everything it answered (the work and the checks are `tests/crash/mod.rs`, which the
//! test suite runs at a few kill points per backend).
//!
//! `cargo bench --bench crash_consistency -- [KILL_POINTS]` (or `KITH_CRASH_KILL_POINTS`;
//! 25 by default) per backend; `KITH_CRASH_SEED` replays a run, `KITH_CRASH_BACKENDS`
//! (`sqlite`, `postgres` or both, comma-separated) picks the backends. Prints each kill
//! point (when, requests in flight, answered, resent, redeliveries, violations) and a
//! summary; exits with status 1 if any check failed.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/crash/mod.rs"]
mod crash;

use common::Db;

const DEFAULT_KILL_POINTS: usize = 25;

fn main() {
    let kill_points = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .or_else(|| std::env::var("KITH_CRASH_KILL_POINTS").ok().and_then(|n| n.parse().ok()))
        .unwrap_or(DEFAULT_KILL_POINTS);
    let seed = std::env::var("KITH_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    let backends = std::env::var("KITH_CRASH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut failed = false;
    for backend in backends.split(',') {
        let db = match backend.trim() {
            "sqlite" => Db::Sqlite,
            "postgres" => Db::Postgres,
            other => panic!("unknown backend {other}"),
        };
        println!("crash_consistency: {db:?}, {kill_points} kill points, seed {seed} (KITH_CRASH_SEED={seed} replays)");
        let points = runtime.block_on(crash::run(db, seed, kill_points, |point| println!("{db:?} {point}")));
        failed |= summarise(db, &points);
    }
    if failed {
        std::process::exit(1);
    }
}

/// Prints the totals of one backend's run; true if a check failed.
fn summarise(db: Db, points: &[crash::KillPoint]) -> bool {
    let total = |field: fn(&crash::KillPoint) -> usize| points.iter().map(field).sum::<usize>();
    let in_flight: Vec<usize> = points.iter().map(|p| p.in_flight).collect();
    let violations = total(|p| p.violations.len());
    println!(
        "crash_consistency: {db:?}: {} kill points; requests in flight at the kill: min {}, median {}, max {}; \
         {} answered, {} sent again after a restart; the peer got {} PDUs and {} to-device messages again \
         (same ids); {violations} violations in {} kill points",
        points.len(),
        in_flight.iter().min().unwrap_or(&0),
        median(&in_flight),
        in_flight.iter().max().unwrap_or(&0),
        total(|p| p.answered),
        total(|p| p.resent),
        total(|p| p.redelivered.pdus),
        total(|p| p.redelivered.to_device),
        points.iter().filter(|p| !p.violations.is_empty()).count(),
    );
    violations > 0
}

fn median(values: &[usize]) -> usize {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}
