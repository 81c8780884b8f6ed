//! Client connections, as Synapse's `user_ips`: every authenticated request notes its
//! access token, address, user agent and time. Requests only touch memory (the latest
//! use per token and address); a worker writes them in batches every few seconds, and
//! once more on shutdown. Reads of a user's connections write that user's pending uses
//! first, so they are never behind.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use super::accounts::{AuthenticatedUser, hash_token};
use super::workers::{Shutdown, Wakeups, Worker, follow};
use crate::store::{ClientIpRow, ConnectionRow, SeenDeviceRow, Store, now_ms};

/// Pending uses are written this often (Synapse: every 5 s).
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// At most this many (token, address) pairs wait in memory; past that, new pairs are
/// dropped until the next write.
const MAX_PENDING: usize = 100_000;
/// A write starts early once this many pairs wait.
const EARLY_FLUSH_AT: usize = MAX_PENDING / 2;
/// Rows per write transaction, so one batch does not hold SQLite's writer for long.
const ROWS_PER_TRANSACTION: usize = 500;
/// User agents are cut to this many bytes: clients choose them.
const MAX_USER_AGENT_BYTES: usize = 512;
/// Connections kept per user (Synapse keeps them all); the oldest go first.
const MAX_CONNECTIONS_PER_USER: i64 = 1_000;
/// Users over that limit are pruned this often, this many per pass.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
const USERS_PER_PRUNE: i64 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    token_hash: String,
    ip: String,
}

#[derive(Debug, Clone)]
struct Seen {
    user_id: String,
    user_agent: String,
    last_seen: i64,
}

pub struct ClientIps {
    store: Arc<Store>,
    pending: Mutex<HashMap<Key, Seen>>,
    /// Held while a batch is written, so a read waits for a write already under way.
    writing: tokio::sync::Mutex<()>,
    wake: Arc<Notify>,
    /// Whether pairs were dropped since the last write (logged once per write).
    dropping: AtomicBool,
    last_prune: Mutex<Instant>,
}

impl ClientIps {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            pending: Mutex::new(HashMap::new()),
            writing: tokio::sync::Mutex::new(()),
            wake: Arc::new(Notify::new()),
            dropping: AtomicBool::new(false),
            last_prune: Mutex::new(Instant::now()),
        }
    }

    /// Notes an authenticated request; memory only.
    pub fn record(&self, owner: &AuthenticatedUser, token: &str, ip: IpAddr, user_agent: Option<&str>) {
        let key = Key { token_hash: hash_token(token), ip: ip.to_canonical().to_string() };
        let seen = Seen {
            user_id: owner.user_id.to_string(),
            user_agent: truncated(user_agent.unwrap_or("")),
            last_seen: now_ms(),
        };
        let Ok(mut pending) = self.pending.lock() else { return };
        let waiting = pending.len();
        if waiting >= MAX_PENDING && !pending.contains_key(&key) {
            if !self.dropping.swap(true, Ordering::Relaxed) {
                tracing::warn!(waiting, "too many client connections waiting to be written; dropping new ones");
            }
            return;
        }
        pending.insert(key, seen);
        if waiting + 1 >= EARLY_FLUSH_AT {
            self.wake.notify_one();
        }
    }

    /// Writes every pending use.
    pub async fn flush(&self) -> Result<(), sqlx::Error> {
        let _writing = self.writing.lock().await;
        let batch = self.take(|_| true);
        self.dropping.store(false, Ordering::Relaxed);
        self.write(batch).await
    }

    /// Writes one user's pending uses, so what is read next includes them.
    pub async fn flush_user(&self, user_id: &str) -> Result<(), sqlx::Error> {
        let _writing = self.writing.lock().await;
        let batch = self.take(|seen| seen.user_id == user_id);
        self.write(batch).await
    }

    /// A user's connections, at most `per_device` per device, newest first.
    pub async fn connections(&self, user_id: &str, per_device: i64) -> Result<Vec<ConnectionRow>, sqlx::Error> {
        self.flush_user(user_id).await?;
        self.store.client_connections(user_id, per_device).await
    }

    /// A user's devices with their newest connection.
    pub async fn devices(&self, user_id: &str) -> Result<Vec<SeenDeviceRow>, sqlx::Error> {
        self.flush_user(user_id).await?;
        self.store.devices_seen(user_id).await
    }

    fn take(&self, wanted: impl Fn(&Seen) -> bool) -> Vec<ClientIpRow> {
        let Ok(mut pending) = self.pending.lock() else { return Vec::new() };
        let taken = pending.extract_if(|_, seen| wanted(seen));
        taken
            .map(|(key, seen)| ClientIpRow {
                token_hash: key.token_hash,
                ip: key.ip,
                user_agent: seen.user_agent,
                last_seen: seen.last_seen,
            })
            .collect()
    }

    /// A failed write loses its batch: a last-seen time is not worth holding memory for.
    async fn write(&self, batch: Vec<ClientIpRow>) -> Result<(), sqlx::Error> {
        for chunk in batch.chunks(ROWS_PER_TRANSACTION) {
            self.store.record_client_ips(chunk).await?;
        }
        Ok(())
    }

    async fn flush_and_prune(&self) -> Result<(), sqlx::Error> {
        self.flush().await?;
        if self.prune_due() {
            let pruned = self.store.prune_client_ips(MAX_CONNECTIONS_PER_USER, USERS_PER_PRUNE).await?;
            if pruned > 0 {
                tracing::info!(users = pruned, "pruned old client connections");
            }
        }
        Ok(())
    }

    /// Whether [`PRUNE_INTERVAL`] has passed since the last prune; if so, one starts now.
    fn prune_due(&self) -> bool {
        let Ok(mut last) = self.last_prune.lock() else { return false };
        if last.elapsed() < PRUNE_INTERVAL {
            return false;
        }
        *last = Instant::now();
        true
    }
}

/// A user agent cut to [`MAX_USER_AGENT_BYTES`] on a character boundary.
fn truncated(user_agent: &str) -> String {
    if user_agent.len() <= MAX_USER_AGENT_BYTES {
        return user_agent.to_owned();
    }
    let mut end = MAX_USER_AGENT_BYTES;
    while !user_agent.is_char_boundary(end) {
        end -= 1;
    }
    user_agent[..end].to_owned()
}

impl Worker for ClientIps {
    fn name(&self) -> &'static str {
        "client connections"
    }

    fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let wakeups = Wakeups::default().on_notify(self.wake.clone());
            follow("client connections", wakeups, FLUSH_INTERVAL, stop, || {
                let this = self.clone();
                async move {
                    this.flush_and_prune().await?;
                    Ok(false)
                }
            })
            .await;
            // Listeners have closed by now: this catches every request they answered.
            if let Err(err) = self.flush().await {
                tracing::warn!(%err, "could not write client connections at shutdown");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseTarget;

    fn user() -> AuthenticatedUser {
        let user_id = ruma::OwnedUserId::try_from("@alice:kith.test").unwrap();
        AuthenticatedUser {
            user_id,
            device_id: "DEVICE".into(),
            admin: false,
            is_guest: false,
            appservice_id: None,
            rate_limited: true,
        }
    }

    async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<Store> {
        let path = dir.path().join("kith.db").display().to_string();
        Arc::new(Store::connect(&DatabaseTarget::Sqlite { path }).await.unwrap())
    }

    #[tokio::test]
    async fn connections_are_listed_newest_first_and_pruned_per_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        let user_id = "@alice:kith.test";
        let new_user =
            crate::store::NewUser { user_id, password_hash: None, admin: false, user_type: None, displayname: None };
        assert!(store.create_user(new_user).await.unwrap());
        store.add_session(user_id, "DEVICE", None, &hash_token("token")).await.unwrap();
        let rows: Vec<ClientIpRow> = (1..=5)
            .map(|n| ClientIpRow {
                token_hash: hash_token("token"),
                ip: format!("192.0.2.{n}"),
                user_agent: "Test".into(),
                last_seen: n,
            })
            .collect();
        store.record_client_ips(&rows).await.unwrap();
        let older = ClientIpRow { last_seen: 0, user_agent: "Older".into(), ..rows[4].clone() };
        store.record_client_ips(&[older]).await.unwrap();

        let listed = store.client_connections(user_id, 2).await.unwrap();
        let listed: Vec<(&str, i64)> = listed.iter().map(|c| (c.ip.as_str(), c.last_seen)).collect();
        assert_eq!(listed, [("192.0.2.5", 5), ("192.0.2.4", 4)], "an older write does not replace a newer one");

        assert_eq!(store.prune_client_ips(3, 10).await.unwrap(), 1);
        let kept = store.client_connections(user_id, 10).await.unwrap();
        assert_eq!(kept.iter().map(|c| c.last_seen).collect::<Vec<_>>(), [5, 4, 3]);
        assert_eq!(store.prune_client_ips(3, 10).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn memory_is_bounded_and_a_flush_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        let client_ips = ClientIps::new(store);
        let ip = IpAddr::from([127, 0, 0, 1]);
        for n in 0..=MAX_PENDING {
            client_ips.record(&user(), &format!("token {n}"), ip, None);
        }
        assert_eq!(client_ips.pending.lock().unwrap().len(), MAX_PENDING);
        assert!(client_ips.dropping.load(Ordering::Relaxed), "the newest pair was dropped");
        client_ips.record(&user(), "token 0", ip, Some("Known/1.0"));
        let known = Key { token_hash: hash_token("token 0"), ip: "127.0.0.1".into() };
        assert_eq!(client_ips.pending.lock().unwrap()[&known].user_agent, "Known/1.0", "a known pair still updates");

        // Unknown tokens are written as nothing: no session to attach them to.
        client_ips.flush().await.unwrap();
        assert!(client_ips.pending.lock().unwrap().is_empty());
        assert!(!client_ips.dropping.load(Ordering::Relaxed));
        assert!(client_ips.connections("@alice:kith.test", 10).await.unwrap().is_empty());
    }

    #[test]
    fn user_agents_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("Element/1.0"), "Element/1.0");
        let long = "é".repeat(MAX_USER_AGENT_BYTES);
        let cut = truncated(&long);
        assert!(cut.len() <= MAX_USER_AGENT_BYTES && cut.len() >= MAX_USER_AGENT_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
