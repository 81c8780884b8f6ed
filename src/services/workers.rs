//! One lifecycle for background work: every worker has a name and a `run` that returns
//! once told to stop. `server.rs` starts them all from one list and, on SIGTERM, signals
//! them and waits a bounded time. Workers are supervised: one that returns before it is
//! told to stop, or panics, is logged, reported (a metric) and started again after a
//! delay that grows while it keeps failing.
//!
//! Most workers follow a stream from a persisted position; [`follow`] is their loop:
//! work while there is work, then sleep until woken (or a poll interval passes, since
//! another process may write the stream too), and stop when asked.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, select_all};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// A long-running task of the server.
pub trait Worker: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Runs until `stop` fires; must then return promptly (work in progress may finish,
    /// but nothing new starts).
    fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()>;
}

/// Tells workers to stop. Cloned into each of them.
#[derive(Clone)]
pub struct Shutdown(Option<watch::Receiver<bool>>);

impl Shutdown {
    /// A signal that never fires (one-shot tools).
    pub fn never() -> Self {
        Self(None)
    }

    pub fn is_stopping(&self) -> bool {
        self.0.as_ref().is_some_and(|stop| *stop.borrow())
    }

    /// Resolves once stopping was asked.
    pub async fn wait(&mut self) {
        match &mut self.0 {
            // The sender is gone only when the workers' owner was dropped: stop too.
            Some(stop) => {
                let _ = stop.wait_for(|stop| *stop).await;
            }
            None => std::future::pending().await,
        }
    }

    /// Runs `work` unless stopping is asked first; `None` if it was.
    pub async fn unless_stopped<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            _ = self.wait() => None,
            value = work => Some(value),
        }
    }
}

/// A failed worker is started again after this, doubling while it keeps failing...
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// ...up to this.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);
/// A worker that ran this long before failing starts again after the first delay.
const HEALTHY_RUN: Duration = Duration::from_secs(300);

/// Told of every restart (the metrics count them).
pub type OnRestart = Arc<dyn Fn(&'static str) + Send + Sync>;

/// The running workers.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<&'static str>,
}

impl Workers {
    pub fn start(workers: Vec<Arc<dyn Worker>>, on_restart: OnRestart) -> Self {
        let stop = watch::channel(false).0;
        let mut tasks = JoinSet::new();
        for worker in workers {
            let name = worker.name();
            tracing::debug!(worker = name, "starting");
            tasks.spawn(supervise(worker, Shutdown(Some(stop.subscribe())), on_restart.clone()));
        }
        Self { stop, tasks }
    }

    /// Signals every worker and waits up to `grace` for them; the rest are aborted.
    /// Returns how many had to be aborted.
    pub async fn stop(mut self, grace: Duration) -> usize {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + grace;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(Ok(name))) => tracing::debug!(worker = name, "stopped"),
                Ok(Some(Err(err))) => tracing::warn!(%err, "a worker failed"),
                Ok(None) => break,
                Err(_) => {
                    let remaining = self.tasks.len();
                    tracing::warn!(remaining, "workers did not stop in time; aborting them");
                    self.tasks.abort_all();
                    return remaining;
                }
            }
        }
        0
    }
}

/// Runs `worker` until told to stop, starting it again whenever it returns early or
/// panics.
async fn supervise(worker: Arc<dyn Worker>, mut stop: Shutdown, on_restart: OnRestart) -> &'static str {
    let name = worker.name();
    let mut delay = RESTART_DELAY;
    loop {
        let started = Instant::now();
        let outcome = AssertUnwindSafe(worker.clone().run(stop.clone())).catch_unwind().await;
        if stop.is_stopping() {
            return name;
        }
        match outcome {
            Ok(()) => tracing::error!(worker = name, "worker stopped on its own; starting it again"),
            Err(panic) => {
                tracing::error!(worker = name, panic = panic_message(&panic), "worker panicked; starting it again")
            }
        }
        on_restart(name);
        if started.elapsed() >= HEALTHY_RUN {
            delay = RESTART_DELAY;
        }
        if stop.unless_stopped(tokio::time::sleep(delay)).await.is_none() {
            return name;
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("?")
}

/// What wakes a stream follower: new stream rows announced in-process.
#[derive(Default)]
pub struct Wakeups {
    positions: Vec<watch::Receiver<i64>>,
    notifies: Vec<Arc<Notify>>,
}

impl Wakeups {
    pub fn on_position(mut self, receiver: watch::Receiver<i64>) -> Self {
        self.positions.push(receiver);
        self
    }

    pub fn on_notify(mut self, notify: Arc<Notify>) -> Self {
        self.notifies.push(notify);
        self
    }

    async fn next(&mut self) {
        let mut waits: Vec<BoxFuture<'_, ()>> = Vec::new();
        for receiver in &mut self.positions {
            waits.push(Box::pin(async move {
                if receiver.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }));
        }
        for notify in &self.notifies {
            waits.push(Box::pin(notify.notified()));
        }
        if waits.is_empty() {
            return std::future::pending().await;
        }
        select_all(waits).await;
    }
}

/// Runs `step` until `stop`: at once again while it reports more work (`Ok(true)`),
/// otherwise after a wake-up or `poll`. Errors are logged and retried after `poll`.
pub async fn follow<F, Fut>(name: &'static str, mut wakeups: Wakeups, poll: Duration, mut stop: Shutdown, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    while !stop.is_stopping() {
        match step().await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(err) => tracing::warn!(worker = name, %err, "background work failed; retrying"),
        }
        tokio::select! {
            _ = stop.wait() => {}
            _ = wakeups.next() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(Arc<AtomicUsize>, Arc<Notify>);

    impl Worker for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                let wake = Wakeups::default().on_notify(self.1.clone());
                follow("counting", wake, Duration::from_secs(3600), stop, || {
                    self.0.fetch_add(1, Ordering::SeqCst);
                    async { Ok(false) }
                })
                .await;
            })
        }
    }

    fn no_restarts() -> OnRestart {
        Arc::new(|name| panic!("{name} restarted"))
    }

    #[tokio::test]
    async fn followers_wake_on_notify_and_stop_when_told() {
        let count = Arc::new(AtomicUsize::new(0));
        let notify = Arc::new(Notify::new());
        let workers = Workers::start(vec![Arc::new(Counting(count.clone(), notify.clone()))], no_restarts());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(count.load(Ordering::SeqCst), 1, "one pass at start");
        notify.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(count.load(Ordering::SeqCst), 2, "one more pass per wake-up");
        assert_eq!(workers.stop(Duration::from_secs(60)).await, 0, "a sleeping follower stops by itself");
    }
}

#[cfg(test)]
mod supervision_tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Panics on its first run, returns early on its second, then works until stopped.
    struct Flaky(AtomicUsize);

    impl Worker for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn run(self: Arc<Self>, mut stop: Shutdown) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                match self.0.fetch_add(1, Ordering::SeqCst) {
                    0 => panic!("injected"),
                    1 => {}
                    _ => stop.wait().await,
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_workers_are_restarted_and_counted() {
        let runs = Arc::new(Flaky(AtomicUsize::new(0)));
        let restarts: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let counted = restarts.clone();
        let workers = Workers::start(vec![runs.clone()], Arc::new(move |name| counted.lock().unwrap().push(name)));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(runs.0.load(Ordering::SeqCst), 3, "started again after a panic and after returning early");
        assert_eq!(*restarts.lock().unwrap(), ["flaky", "flaky"]);
        assert_eq!(workers.stop(Duration::from_secs(5)).await, 0);
        assert_eq!(runs.0.load(Ordering::SeqCst), 3, "not started again once told to stop");
    }
}
