//! The only code that speaks SQL. SQLite (embedded default, WAL) and PostgreSQL share one
//! schema and one set of queries through sqlx's `Any` driver: every query uses `$N`
//! placeholders and portable SQL (`ON CONFLICT`, `RETURNING`), so there is one storage API.

mod accounts;
mod admin;
mod appservices;
mod client_ips;
mod current_states;
mod directory;
mod federated_directory;
mod federation;
#[cfg(feature = "bench-fixtures")]
mod fixtures;
mod kept;
mod key_backup;
mod keys;
mod media;
mod migrations;
mod partial_state;
mod profiles;
mod push;
mod recent_events;
mod registration_tokens;
mod relations;
mod remote_profiles;
mod reports;
mod room_purge;
mod rooms;
mod server_health;
mod streams;
mod to_device;
mod user_data;

pub use accounts::{DeviceRow, NewUser, TokenOwner, UserRow};
pub use admin::{AdminRoomRow, AdminUserRow, UserOrder, UserQuery};
pub use appservices::{PendingTransaction, TransactionContents};
pub use client_ips::{ClientIpRow, ConnectionRow, SeenDeviceRow};
pub use directory::{JoinedMember, LocalAccount};
pub use federated_directory::{DirectoryUser, PeerState, VISIBILITY_TYPES};
pub use federation::{KeptEdu, OutboxRow};
#[cfg(feature = "bench-fixtures")]
pub use fixtures::FixtureUser;
pub use key_backup::{BackupKey, BackupKeyScope, BackupVersion, StoredBackupKey};
pub use keys::{ClaimedKey, DEVICE_LIST_STREAM, DeviceListChange};
pub use media::{MediaRow, StoredMedia};
pub use partial_state::PartialStateRoom;
pub use profiles::{Profile, ProfileChange, ProfileChangeKind};
pub use push::{NewNotification, Notification, PendingPush};
pub use registration_tokens::{RegistrationTokenRow, TokenChanges};
pub use relations::{RelationQuery, declared_relation};
pub use remote_profiles::{ProfileSource, QueuedFetch, RemoteProfile};
pub use reports::{EventReportQuery, EventReportRow, NewReport, UserReportQuery, UserReportRow};
pub use rooms::{
    BUMP_EVENT_TYPES, Membership, NewCurrentState, PersistEvent, STATE_DELTA_STREAM, StateBefore, StateDelta, StateMap,
    StoredEvent,
};
pub use server_health::Retry;
pub use streams::SyncHeads;
pub use to_device::{Delivery, InboxLimits, TO_DEVICE_STREAM, ToDeviceMessage};
pub use user_data::Receipt;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, MutexGuard, watch};

use crate::config::DatabaseTarget;
use crate::services::bounded::BoundedMap;

/// Consumer positions kept in memory, at most (there are a few dozen consumers).
const KEPT_CONSUMER_POSITIONS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer; serialising write transactions here avoids `SQLITE_BUSY`
    /// lock-upgrade failures that a busy timeout cannot resolve.
    sqlite_writer: Mutex<()>,
    current_states: current_states::CurrentStates,
    /// Background consumers' positions as last read or committed: every worker asks
    /// for its own each time it wakes, which is on every event.
    consumer_positions: std::sync::Mutex<BoundedMap<String, i64>>,
    /// What wakes each stream's followers in this process: one entry per stream name
    /// followed (a fixed set in the code), moved by the transactions that advance it.
    stream_watches: std::sync::Mutex<HashMap<String, watch::Sender<i64>>>,
    /// When each consumer's position was last written by `pass_consumer_position`.
    consumers_saved_at: std::sync::Mutex<BoundedMap<String, std::time::Instant>>,
    /// Reads every request or long poll repeats (see `kept`).
    kept: std::sync::Mutex<kept::Kept>,
    /// The newest positions of the event stream (see `recent_events`).
    recent_events: std::sync::Mutex<recent_events::RecentEvents>,
    /// Streams' heads as committed by this process, once read (see `sync_heads`).
    stream_heads: std::sync::Mutex<HashMap<String, i64>>,
}

/// A write transaction; on SQLite it also holds the single-writer lock.
pub struct WriteTxn<'a> {
    pub(crate) tx: Transaction<'static, Any>,
    _writer: Option<MutexGuard<'a, ()>>,
    store: &'a Store,
    /// Consumer positions this transaction saves, kept in memory once it commits.
    moved_consumers: Vec<(String, i64)>,
    /// Stream positions this transaction takes, announced once it commits.
    moved_streams: Vec<(String, i64)>,
    /// What this transaction changes among the reads kept in memory.
    pub(crate) forgets: kept::Forget,
    /// Events this transaction writes, kept in memory once it commits.
    written_events: Vec<recent_events::WrittenEvent>,
    /// Outliers whose rows this transaction replaces by their timeline copies.
    replaced_outliers: Vec<String>,
}

impl WriteTxn<'_> {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        // Dropped before its end (the caller's future cancelled while committing), it
        // cannot tell whether the commit happened: what memory keeps is dropped.
        let mut unsure = UnsureCommit(Some(self.store));
        let epoch = self.store.recent_events_epoch();
        self.tx.commit().await?;
        unsure.0 = None;
        let store = self.store;
        store.forget_kept(self.forgets);
        if self.forgets.events {
            store.forget_recent_events();
        }
        let events: Vec<i64> =
            self.moved_streams.iter().filter(|(stream, _)| stream == "events").map(|(_, position)| *position).collect();
        if !events.is_empty() {
            store.keep_recent_events(epoch, &events, self.written_events, &self.replaced_outliers);
        }
        store.keep_stream_heads(&self.moved_streams);
        for (consumer, position) in self.moved_consumers {
            store.remember_consumer_position(consumer, position, true);
        }
        for (stream, position) in self.moved_streams {
            store.announce_stream(&stream, position);
        }
        Ok(())
    }
}

/// See `WriteTxn::commit`.
struct UnsureCommit<'a>(Option<&'a Store>);

impl Drop for UnsureCommit<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.0.take() {
            store.forget_after_unsure_commit();
            store.forget_recent_events();
            store.stream_heads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        }
    }
}

impl Store {
    pub async fn connect(target: &DatabaseTarget) -> anyhow::Result<Self> {
        install_default_drivers();
        let (url, backend, max_connections) = match target {
            DatabaseTarget::Sqlite { path } => (format!("sqlite://{path}?mode=rwc"), Backend::Sqlite, 8),
            DatabaseTarget::Postgres { url, max_connections } => (url.clone(), Backend::Postgres, *max_connections),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            // Checking an idle SQLite connection costs a round trip to its thread on every
            // query, and a local file does not drop connections as a network does.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Pages are read through a mapping, not copied by a system call
                        // each time a write elsewhere emptied the connection's cache.
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA mmap_size = 268435456;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .with_context(|| format!("database: cannot connect ({})", redact_password(&url)))?;
        let store = Self {
            pool,
            backend,
            sqlite_writer: Mutex::new(()),
            current_states: Default::default(),
            consumer_positions: std::sync::Mutex::new(BoundedMap::new(KEPT_CONSUMER_POSITIONS)),
            stream_watches: std::sync::Mutex::new(HashMap::new()),
            consumers_saved_at: std::sync::Mutex::new(BoundedMap::new(KEPT_CONSUMER_POSITIONS)),
            kept: Default::default(),
            recent_events: Default::default(),
            stream_heads: Default::default(),
        };
        migrations::run(&store).await.context("database: schema migration failed")?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool's open connections and how many of them are idle.
    pub fn pool_connections(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    pub async fn begin_write(&self) -> Result<WriteTxn<'_>, sqlx::Error> {
        let writer = match self.backend {
            Backend::Sqlite => Some(self.sqlite_writer.lock().await),
            Backend::Postgres => None,
        };
        let tx = self.pool.begin().await?;
        Ok(WriteTxn {
            tx,
            _writer: writer,
            store: self,
            moved_consumers: Vec::new(),
            moved_streams: Vec::new(),
            forgets: Default::default(),
            written_events: Vec::new(),
            replaced_outliers: Vec::new(),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn redact_password(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
