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
//! would (same transaction ids). At one kill point in three, kith is killed a second
//! time soon after it is back, while it resumes its work and those requests come again.
//! Then, for everything answered 200:
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
use std::path::PathBuf;
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
/// How often kith is killed again once back, and when.
const SECOND_KILL_CHANCE: f64 = 1.0 / 3.0;
const SECOND_KILL_AFTER_MS: std::ops::Range<u64> = 0..300;
/// A request that got no answer is sent again this often, at most.
const RESEND_ATTEMPTS: usize = 60;
const RESEND_PAUSE: Duration = Duration::from_millis(500);

/// What happened at one kill point.
#[derive(Debug, Clone)]
pub struct KillPoint {
    pub number: usize,
    pub killed_after: Duration,
    /// When kith was killed a second time after it was back, if it was.
    pub killed_again_after: Option<Duration>,
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
    /// A copy of kith's log, kept when something was found.
    pub log: Option<PathBuf>,
}

impl std::fmt::Display for KillPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let again = self
            .killed_again_after
            .map_or(String::new(), |after| format!(" (and again {} ms after the restart)", after.as_millis()));
        write!(
            f,
            "kill point {}: killed after {} ms{again} with {} requests in flight; {} answered, {} sent again; \
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
        if let Some(log) = &self.log {
            write!(f, "\n  kith's log: {}", log.display())?;
        }
        Ok(())
    }
}

/// Runs `kill_points` rounds of work, kill, restart and checks on one kith; `each` sees
/// every kill point as it is done.
pub async fn run(db: Db, seed: u64, kill_points: usize, mut each: impl FnMut(&KillPoint)) -> Vec<KillPoint> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut run = Run::start(db).await;
    let mut done = Vec::new();
    for number in 1..=kill_points {
        let point = run.kill_point(number, &mut rng).await;
        each(&point);
        done.push(point);
    }
    done
}

/// One kith under test and what was answered so far.
struct Run {
    db: Db,
    world: World,
    ledger: Mutex<Ledger>,
    reader: Mutex<Reader>,
    chain: Mutex<PeerChain>,
    /// Violations found at earlier kill points.
    reported: HashSet<String>,
    /// Redeliveries to the peer since the start.
    redelivered: Redelivered,
}

impl Run {
    async fn start(db: Db) -> Self {
        let world = World::start(db).await;
        let chain = PeerChain {
            last: world.joined.join_event_id.clone(),
            depth: world.joined.join_depth,
            sent: 0,
            pending: None,
        };
        Self {
            db,
            world,
            ledger: Mutex::default(),
            reader: Mutex::default(),
            chain: Mutex::new(chain),
            reported: HashSet::new(),
            redelivered: Redelivered::default(),
        }
    }

    fn round<'a>(&'a self, number: usize, violations: &'a Mutex<Vec<String>>, stop: &'a AtomicBool) -> Round<'a> {
        Round { world: &self.world, number, ledger: &self.ledger, violations, reported: &self.reported, stop }
    }

    /// Work, a kill (maybe two), the restart, what got no answer sent again, the checks.
    async fn kill_point(&mut self, number: usize, rng: &mut StdRng) -> KillPoint {
        let started = Instant::now();
        let killed_after = Duration::from_millis(rng.gen_range(KILL_AFTER_MS));
        let killed_again_after =
            rng.gen_bool(SECOND_KILL_CHANCE).then(|| Duration::from_millis(rng.gen_range(SECOND_KILL_AFTER_MS)));
        let violations = Mutex::new(Vec::new());
        self.ledger.lock().unwrap().answered = 0;
        let (mut pending, in_flight) = {
            let stop = AtomicBool::new(false);
            self.round(number, &violations, &stop).work_until_killed(&self.reader, &self.chain, killed_after).await
        };
        let resent = pending.len() + usize::from(self.chain.lock().unwrap().pending.is_some());
        self.restart().await;
        if let Some(after) = killed_again_after {
            let stop = AtomicBool::new(false);
            let round = self.round(number, &violations, &stop);
            let killer = kill_after(&self.world, after, &stop);
            (pending, _) = tokio::join!(resend(&round, pending, &self.chain), killer);
            self.restart().await;
        }
        let stop = AtomicBool::new(false);
        let round = self.round(number, &violations, &stop);
        resend(&round, pending, &self.chain).await;
        let redelivered = round.check_all(&self.reader).await;
        let point = KillPoint {
            number,
            killed_after,
            killed_again_after,
            in_flight,
            answered: self.ledger.lock().unwrap().answered,
            resent,
            redelivered: redelivered.since(self.redelivered),
            violations: violations
                .into_inner()
                .unwrap()
                .into_iter()
                .filter(|v| self.reported.insert(v.clone()))
                .collect(),
            took: started.elapsed(),
            log: None,
        };
        self.redelivered = redelivered;
        KillPoint { log: (!point.violations.is_empty()).then(|| self.keep_log(number)), ..point }
    }

    /// Copies kith's log (every life of it) out of its directory, which goes with it.
    fn keep_log(&self, number: usize) -> PathBuf {
        let name = format!("kith-crash-{}-{:?}-kill-point-{number}.log", std::process::id(), self.db);
        let path = std::env::temp_dir().join(name);
        std::fs::copy(self.world.kith.log_path(), &path).expect("copy kith's log");
        path
    }

    /// Reaps the killed kith and starts it again.
    async fn restart(&mut self) {
        self.world.kith.kill();
        self.world.kith.start_again().await;
    }
}

impl Round<'_> {
    /// Runs every client and the peer until kith is killed, `after` the start; returns
    /// the requests that got no answer and how many were in flight at the kill.
    async fn work_until_killed(
        &self,
        reader: &Mutex<Reader>,
        chain: &Mutex<PeerChain>,
        after: Duration,
    ) -> (Vec<Request>, usize) {
        let world = self.world;
        let mut clients: Vec<BoxFuture<'_, Option<Request>>> = Vec::new();
        for user in &world.users {
            clients.push(Box::pin(self.send_messages(user)));
            clients.push(Box::pin(self.rename(user)));
        }
        clients.push(Box::pin(self.upload_keys(&world.users[self.number % world.users.len()].localpart)));
        clients.push(Box::pin(self.send_to_devices()));
        let killer = kill_after(world, after, self.stop);
        let (pending, (), (), in_flight) =
            tokio::join!(join_all(clients), self.read_to_device(reader), self.peer_sends(chain), killer);
        (pending.into_iter().flatten().collect(), in_flight)
    }

    /// Every check, in turn; returns the redeliveries to the peer since the start.
    async fn check_all(&self, reader: &Mutex<Reader>) -> Redelivered {
        checks::timeline(self).await;
        checks::profiles(self).await;
        checks::keys(self).await;
        checks::to_device(self, reader).await;
        let redelivered = checks::outbox(self).await;
        checks::directory(self).await;
        redelivered
    }
}

/// Kills kith (SIGKILL) `after` from now and tells the workers to stop; returns how many
/// requests were in flight.
async fn kill_after(world: &World, after: Duration, stop: &AtomicBool) -> usize {
    tokio::time::sleep(after).await;
    let in_flight = world.in_flight.load(Ordering::SeqCst);
    let pid = world.kith.pid().expect("kith runs");
    let killed = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    assert!(killed.is_ok_and(|status| status.success()), "kill -KILL {pid}");
    stop.store(true, Ordering::SeqCst);
    in_flight
}

/// Sends again what got no answer, the clients' requests and the peer's transaction,
/// until answered; returns what is left when the round stops first (kith was killed
/// again).
async fn resend(round: &Round<'_>, pending: Vec<Request>, chain: &Mutex<PeerChain>) -> Vec<Request> {
    let mut pending = pending.into_iter();
    while let Some(request) = pending.next() {
        let what = format!("{} {}", request.method, request.path);
        if !resend_one(round, &what, || round.run(request.clone())).await {
            return std::iter::once(request).chain(pending).collect();
        }
    }
    let transaction = chain.lock().unwrap().pending.clone();
    if let Some(transaction) = transaction {
        let what = format!("the peer's transaction {}", transaction.txn_id);
        let send = || async { round.send_peer_transaction(chain, transaction.clone()).await.then_some(()).ok_or(()) };
        resend_one(round, &what, send).await;
    }
    Vec::new()
}

/// Sends one request until answered; false if the round stopped first. A request still
/// unanswered after [`RESEND_ATTEMPTS`] is a violation.
async fn resend_one<E, F, Fut>(round: &Round<'_>, what: &str, mut send: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    for _ in 0..RESEND_ATTEMPTS {
        if send().await.is_ok() {
            return true;
        }
        if round.stop.load(Ordering::SeqCst) {
            return false;
        }
        tokio::time::sleep(RESEND_PAUSE).await;
    }
    round.violation(format!("{what} got no answer after the restart"));
    true
}
