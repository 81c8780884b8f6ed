//! One lifecycle for background work: every worker has a name and a `run` that returns
//! once told to stop. `server.rs` starts them all from one list and, on SIGTERM, signals
//! them and waits a bounded time.
//!
//! Most workers follow a stream from a persisted position; [`follow`] is their loop:
//! work while there is work, then sleep until woken (or a poll interval passes, since
//! another process may write the stream too), and stop when asked.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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

/// The running workers.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<&'static str>,
}

impl Workers {
    pub fn start(workers: Vec<Arc<dyn Worker>>) -> Self {
        let stop = watch::channel(false).0;
        let mut tasks = JoinSet::new();
        for worker in workers {
            let name = worker.name();
            let signal = Shutdown(Some(stop.subscribe()));
            tracing::debug!(worker = name, "starting");
            tasks.spawn(async move {
                worker.run(signal).await;
                name
            });
        }
        Self { stop, tasks }
    }

    /// A signal for work started later that must stop with the workers.
    pub fn shutdown_signal(&self) -> Shutdown {
        Shutdown(Some(self.stop.subscribe()))
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

    #[tokio::test]
    async fn followers_wake_on_notify_and_stop_when_told() {
        let count = Arc::new(AtomicUsize::new(0));
        let notify = Arc::new(Notify::new());
        let workers = Workers::start(vec![Arc::new(Counting(count.clone(), notify.clone()))]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(count.load(Ordering::SeqCst), 1, "one pass at start");
        notify.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(count.load(Ordering::SeqCst), 2, "one more pass per wake-up");
        assert_eq!(workers.stop(Duration::from_secs(60)).await, 0, "a sleeping follower stops by itself");
    }
}
