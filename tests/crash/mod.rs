//! Crash consistency: kith is killed (SIGKILL) at random moments while clients and a
//! federating peer keep it busy, started again, and checked against everything it
//! answered before the kill.
//!
//! While kith runs, three local users send messages into a room and change their display
//! names, a new device logs in and uploads its keys and one-time keys, Alice sends
//! to-device messages to Bob's device and to a device on the peer, Bob's device syncs,
//! and a scripted peer (signed requests, `127.0.0.1:<port>`) sends transactions of PDUs
//! and to-device EDUs. After a random delay (from a seeded generator) kith is killed and
//! started again; every request that got no answer is sent again as a client or server
//! would (same transaction ids). Then, for everything answered 200:
//!
//! - messages are in the room once, with the event ids they were answered with; the
//!   peer's PDUs are in the room;
//! - display names, device keys and one-time key counts are as answered;
//! - Bob's device receives each to-device message exactly once, acknowledging them with
//!   `/sync` tokens as a client does;
//! - the peer receives what kith owed it: the local events, Alice's to-device messages
//!   (a message id may come twice, the protocol deduplicates it, but never one message
//!   under two ids), each user's newest display name as a profile EDU, and the new
//!   devices' keys as device-list updates;
//! - the user directory shows the answered names, and answers as a rebuild does.
//!
//! `tests/crash_consistency.rs` runs a few kill points per backend;
//! `benches/crash_consistency.rs` runs many.

pub mod checks;
pub mod workload;
pub mod world;

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, join_all};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::Db;
use checks::Redelivered;
use workload::{Ledger, PeerChain, Reader, Request, Round};
use world::World;

/// When, after the work starts, kith may be killed.
const KILL_AFTER_MS: std::ops::Range<u64> = 150..1_500;
/// A request that got no answer is sent again this often, at most.
const RESEND_ATTEMPTS: usize = 60;
const RESEND_PAUSE: Duration = Duration::from_millis(500);

/// What happened at one kill point.
#[derive(Debug, Clone)]
pub struct KillPoint {
    pub number: usize,
    pub killed_after: Duration,
    /// Requests (long polls aside) sent and not answered when kith was killed.
    pub in_flight: usize,
    /// Requests answered 200 in this round, resent ones included.
    pub answered: usize,
    /// Requests that got no answer and were sent again after the restart.
    pub resent: usize,
    pub redelivered: Redelivered,
    /// What the checks found wrong, and had not found at an earlier kill point (they
    /// check everything answered since the start).
    pub violations: Vec<String>,
    /// The whole round: work, kill, restart and checks.
    pub took: Duration,
}

impl std::fmt::Display for KillPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kill point {}: killed after {} ms with {} requests in flight; {} answered, {} sent again; \
             the peer got {} PDUs and {} to-device messages again (same ids); {} violations ({:.1} s)",
            self.number,
            self.killed_after.as_millis(),
            self.in_flight,
            self.answered,
            self.resent,
            self.redelivered.pdus,
            self.redelivered.to_device,
            self.violations.len(),
            self.took.as_secs_f64(),
        )?;
        for violation in &self.violations {
            write!(f, "\n  VIOLATION {violation}")?;
        }
        Ok(())
    }
}

/// Runs `kill_points` rounds of work, kill, restart and checks on one kith; `each` sees
/// every kill point as it is done.
pub async fn run(db: Db, seed: u64, kill_points: usize, mut each: impl FnMut(&KillPoint)) -> Vec<KillPoint> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut world = World::start(db).await;
    let ledger = Mutex::new(Ledger::default());
    let reader = Mutex::new(Reader::default());
    let chain = Mutex::new(PeerChain {
        last: world.joined.join_event_id.clone(),
        depth: world.joined.join_depth,
        sent: 0,
        pending: None,
    });
    let mut done = Vec::new();
    let mut reported = HashSet::new();
    let mut redelivered_before = Redelivered::default();
    for number in 1..=kill_points {
        let started = Instant::now();
        let killed_after = Duration::from_millis(rng.gen_range(KILL_AFTER_MS));
        let violations = Mutex::new(Vec::new());
        ledger.lock().unwrap().answered = 0;
        let stop = AtomicBool::new(false);
        let (pending, in_flight) = {
            let round = Round { world: &world, number, ledger: &ledger, violations: &violations, stop: &stop };
            work_until_killed(&round, &reader, &chain, killed_after).await
        };
        world.kith.kill();
        world.kith.start_again().await;
        let round = Round { world: &world, number, ledger: &ledger, violations: &violations, stop: &stop };
        let resent = pending.len() + usize::from(chain.lock().unwrap().pending.is_some());
        resend(&round, pending, &chain).await;
        checks::timeline(&round).await;
        checks::profiles(&round).await;
        checks::keys(&round).await;
        checks::to_device(&round, &reader).await;
        let redelivered_since_start = checks::outbox(&round).await;
        let redelivered = redelivered_since_start.since(redelivered_before);
        redelivered_before = redelivered_since_start;
        checks::directory(&round).await;
        let point = KillPoint {
            number,
            killed_after,
            in_flight,
            answered: ledger.lock().unwrap().answered,
            resent,
            redelivered,
            violations: violations.into_inner().unwrap().into_iter().filter(|v| reported.insert(v.clone())).collect(),
            took: started.elapsed(),
        };
        each(&point);
        done.push(point);
    }
    done
}

/// Runs every client and the peer until kith is killed, `after` the start; returns the
/// requests that got no answer and how many were in flight at the kill.
async fn work_until_killed(
    round: &Round<'_>,
    reader: &Mutex<Reader>,
    chain: &Mutex<PeerChain>,
    after: Duration,
) -> (Vec<Request>, usize) {
    let world = round.world;
    let mut clients: Vec<BoxFuture<'_, Option<Request>>> = Vec::new();
    for user in &world.users {
        clients.push(Box::pin(round.send_messages(user)));
        clients.push(Box::pin(round.rename(user)));
    }
    clients.push(Box::pin(round.upload_keys(&world.users[round.number % world.users.len()].localpart)));
    clients.push(Box::pin(round.send_to_devices()));
    let killer = async {
        tokio::time::sleep(after).await;
        let in_flight = world.in_flight.load(Ordering::SeqCst);
        let pid = world.kith.pid().expect("kith runs");
        let killed = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        assert!(killed.is_ok_and(|status| status.success()), "kill -KILL {pid}");
        round.stop.store(true, Ordering::SeqCst);
        in_flight
    };
    let (pending, (), (), in_flight) =
        tokio::join!(join_all(clients), round.read_to_device(reader), round.peer_sends(chain), killer);
    (pending.into_iter().flatten().collect(), in_flight)
}

/// Sends again, once kith is back, what got no answer: the clients' requests and the
/// peer's transaction.
async fn resend(round: &Round<'_>, pending: Vec<Request>, chain: &Mutex<PeerChain>) {
    for request in pending {
        let what = format!("{} {}", request.method, request.path);
        let mut answered = false;
        for _ in 0..RESEND_ATTEMPTS {
            if round.run(request.clone()).await.is_ok() {
                answered = true;
                break;
            }
            tokio::time::sleep(RESEND_PAUSE).await;
        }
        if !answered {
            round.violation(format!("{what} got no answer after the restart"));
        }
    }
    let transaction = chain.lock().unwrap().pending.clone();
    if let Some(transaction) = transaction {
        for _ in 0..RESEND_ATTEMPTS {
            if round.send_peer_transaction(chain, transaction.clone()).await {
                return;
            }
            tokio::time::sleep(RESEND_PAUSE).await;
        }
        round.violation(format!("the peer's transaction {} got no answer after the restart", transaction.txn_id));
    }
}
