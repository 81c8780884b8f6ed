//! Kith killed (SIGKILL) at random moments under load, on both backends: after each
//! restart nothing it answered is lost and nothing is done twice (see `crash/mod.rs` for
//! the work and the checks). The kill points come from a seeded generator: the seed is
//! printed, and `KITH_CRASH_SEED=<seed>` replays them.

mod common;
mod crash;

use common::Db;

/// Kill points per backend (the benchmark runs many more).
const KILL_POINTS: usize = 5;

both_backends!(killed_at_random_moments_kith_keeps_what_it_answered);

async fn killed_at_random_moments_kith_keeps_what_it_answered(db: Db) {
    let seed = std::env::var("KITH_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    println!("crash consistency on {db:?}: seed {seed} (KITH_CRASH_SEED={seed} replays the kill points)");
    let points = crash::run(db, seed, KILL_POINTS, |point| println!("{db:?} {point}")).await;
    let violations: Vec<String> =
        points.iter().flat_map(|p| p.violations.iter().map(|v| format!("kill point {}: {v}", p.number))).collect();
    assert!(violations.is_empty(), "seed {seed} on {db:?}: {} violations:\n{violations:#?}", violations.len());
}
