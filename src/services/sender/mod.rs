//! The federation sender: gets PDUs and EDUs to the servers that should have them.
//!
//! - A fan-out follows the event stream from a persisted position and writes each local
//!   event into the outbox of every server in its room, in the same transaction as its
//!   new position, so a restart loses nothing and sends nothing twice.
//! - One worker per destination keeps one transaction in flight, at most 50 PDUs and 100
//!   EDUs each. EDUs with a key (typing per room and user, a receipt per room and user)
//!   replace older ones with the same key, so only the newest is sent.
//! - A destination that fails is retried when server health says it may be (see
//!   `services/server_health`); when it comes back, its worker is woken at once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use ruma::api::federation::transactions::send_transaction_message;
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, RoomId, ServerName, UserId};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::to_raw_value;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::federation::{FederationClient, FederationError};
use crate::error::{ApiResult, MatrixError};
use crate::services::rooms::Rooms;
use crate::services::server_health::{Contact, Recoveries, ServerHealth};
use crate::services::workers::{Shutdown, Wakeups, Worker, follow};
use crate::store::{KeptEdu, OutboxRow, Store, StoredEvent};

mod edu_queue;
mod outgoing;

use edu_queue::EduQueue;
pub use outgoing::OutgoingEdu;

/// Keys of EDUs kept in the database until sent.
const DURABLE_PREFIX: &str = "durable ";
const CONSUMER: &str = "federation_sender";
const FANOUT_BATCH: i64 = 100;
const MAX_PDUS_PER_TRANSACTION: i64 = 50;
const MAX_EDUS_PER_TRANSACTION: usize = 100;
/// The fan-out looks at the stream this often even without a wake-up.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

pub struct Sender {
    store: Arc<Store>,
    server_name: OwnedServerName,
    client: Arc<FederationClient>,
    rooms: Arc<Rooms>,
    health: Arc<ServerHealth>,
    destinations: StdMutex<HashMap<OwnedServerName, Arc<Destination>>>,
    txn_counter: AtomicU64,
    /// The destination workers, stopped with the sender.
    workers: StdMutex<JoinSet<()>>,
    stopping: watch::Sender<bool>,
}

/// What waits for one destination, and its backoff.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DestinationQueue {
    pub destination: String,
    pub pdus: i64,
    pub edus: i64,
    /// Set while the sender backs off from the destination.
    pub retry_interval: Option<Duration>,
}

/// One destination: its worker's wake-up, its EDU queue, and how many PDUs and EDUs one
/// transaction to it may hold.
#[derive(Default)]
struct Destination {
    wake: Notify,
    edus: StdMutex<EduQueue>,
    batch: TransactionSize,
}

/// Items per transaction to a destination: the spec's most at first, halved each time
/// the destination answers that a transaction is too large (413), doubled back after
/// each one it takes.
#[derive(Default)]
struct TransactionSize {
    /// How many halvings below the spec's most: 0 until a destination refuses one.
    halvings: std::sync::atomic::AtomicU32,
}

impl TransactionSize {
    fn pdus(&self) -> i64 {
        (MAX_PDUS_PER_TRANSACTION >> self.halvings()).max(1)
    }

    fn edus(&self) -> usize {
        (MAX_EDUS_PER_TRANSACTION >> self.halvings()).max(1)
    }

    fn halvings(&self) -> u32 {
        self.halvings.load(Ordering::Relaxed)
    }

    /// Refused as too large: false if the transaction held one item and cannot shrink.
    fn shrink(&self, items: usize) -> bool {
        if items <= 1 {
            return false;
        }
        let _ = self.halvings.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some((h + 1).min(7)));
        true
    }

    fn grow(&self) {
        let _ = self.halvings.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some(h.saturating_sub(1)));
    }
}

impl Worker for Sender {
    fn name(&self) -> &'static str {
        "federation sender"
    }

    fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let recoveries = self.health.subscribe();
            self.resume().await;
            if let Err(err) = self.start_position().await {
                return tracing::error!(%err, "the federation sender cannot start");
            }
            let wakeups = Wakeups::default().on_position(self.rooms.subscribe());
            tokio::select! {
                _ = follow("federation sender", wakeups, POLL_INTERVAL, stop, || self.fan_out_batch()) => {}
                _ = self.wake_recovered(recoveries) => {}
            }
            self.stopping.send_replace(true);
            let mut workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
            while workers.join_next().await.is_some() {}
        })
    }
}

impl Sender {
    pub fn new(
        store: Arc<Store>,
        server_name: OwnedServerName,
        client: Arc<FederationClient>,
        rooms: Arc<Rooms>,
        health: Arc<ServerHealth>,
    ) -> Self {
        Self {
            store,
            server_name,
            client,
            rooms,
            health,
            destinations: StdMutex::new(HashMap::new()),
            txn_counter: AtomicU64::new(0),
            workers: StdMutex::default(),
            stopping: watch::channel(false).0,
        }
    }

    /// At start-up: wakes the destinations owed PDUs or kept EDUs.
    async fn resume(self: &Arc<Self>) {
        match self.store.outbox_destinations().await {
            Ok(servers) => {
                for server in servers.iter().filter_map(|s| OwnedServerName::try_from(s.as_str()).ok()) {
                    self.wake(&server);
                }
            }
            Err(err) => tracing::warn!(%err, "cannot read the federation outbox"),
        }
    }

    /// A server that never ran the sender does not send its history: the fan-out starts
    /// at the head of the event stream.
    async fn start_position(&self) -> ApiResult<()> {
        Ok(self.store.start_consumer_at(CONSUMER, self.store.max_event_ordering().await?).await?)
    }

    /// A destination's state, its worker started if new.
    fn destination(self: &Arc<Self>, server: &ServerName) -> Arc<Destination> {
        let mut destinations = self.destinations.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(destination) = destinations.get(server) {
            return destination.clone();
        }
        let destination = Arc::new(Destination::default());
        destinations.insert(server.to_owned(), destination.clone());
        let worker = self.clone().destination_worker(server.to_owned(), destination.clone());
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).spawn(worker);
        destination
    }

    /// PDUs waiting for other servers, and how many servers are being backed off from.
    pub async fn queue_depth(&self) -> ApiResult<(i64, i64)> {
        let waiting = self.store.federation_outbox_len().await?;
        Ok((waiting, self.health.backing_off_count() as i64))
    }

    /// The destinations with something waiting or in backoff, the longest queues first
    /// and at most `limit` of them, so a metric labelled by destination stays small.
    pub async fn destination_queues(&self, limit: usize) -> ApiResult<Vec<DestinationQueue>> {
        let limit_rows = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut queues: HashMap<String, DestinationQueue> = HashMap::new();
        for (destination, pdus) in self.store.federation_outbox_lens(limit_rows).await? {
            queues.insert(destination.clone(), DestinationQueue { destination, pdus, ..DestinationQueue::default() });
        }
        let kept: HashMap<String, i64> = self.store.durable_edu_lens(limit_rows).await?.into_iter().collect();
        for (server, destination) in self.destinations.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let in_memory = destination.edus.lock().unwrap_or_else(|p| p.into_inner()).len() as i64;
            let edus = in_memory + kept.get(server.as_str()).copied().unwrap_or(0);
            if edus > 0 {
                queue_of(&mut queues, server).edus = edus;
            }
        }
        for (server, retry) in self.health.backing_off() {
            let interval = Duration::from_millis(retry.retry_interval_ms.max(0) as u64);
            queue_of(&mut queues, &server).retry_interval = Some(interval);
        }
        let mut queues: Vec<DestinationQueue> = queues.into_values().collect();
        queues.sort_by(|a, b| {
            (b.pdus + b.edus, b.retry_interval.is_some(), &a.destination).cmp(&(
                a.pdus + a.edus,
                a.retry_interval.is_some(),
                &b.destination,
            ))
        });
        queues.truncate(limit);
        Ok(queues)
    }

    /// Wakes a destination's worker, starting it if needed.
    pub fn wake(self: &Arc<Self>, server: &ServerName) {
        if server == self.server_name {
            return;
        }
        self.destination(server).wake.notify_one();
    }

    /// Wakes the worker of each destination that comes back, so what it is owed goes
    /// at once (a destination without a worker is owed nothing).
    async fn wake_recovered(&self, mut recoveries: Recoveries) {
        loop {
            let back = recoveries.next().await;
            let destinations = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
            let woken: Vec<&Arc<Destination>> = match &back {
                Some(server) => destinations.get(server).into_iter().collect(),
                // Missed some: wake every worker, each looks for itself.
                None => destinations.values().collect(),
            };
            for destination in woken {
                destination.wake.notify_one();
            }
        }
    }

    /// Queues an EDU for the servers of a room's joined users (except us). A later EDU
    /// with the same key replaces this one if it has not gone yet.
    pub async fn send_edu_to_room(self: &Arc<Self>, room_id: &RoomId, key: String, edu: OutgoingEdu) -> ApiResult<()> {
        let edu = edu.to_json()?;
        for server in self.room_servers(room_id.as_str()).await? {
            let destination = self.destination(&server);
            destination.edus.lock().unwrap_or_else(|p| p.into_inner()).push(key.clone(), edu.clone());
            destination.wake.notify_one();
        }
        Ok(())
    }

    /// Queues an EDU for each of `servers` (never us); a later EDU with the same key
    /// replaces it (merging profile fields) if it has not gone yet.
    fn send_edu_to(self: &Arc<Self>, servers: &[OwnedServerName], key: &str, edu: &Value) {
        for server in servers.iter().filter(|s| **s != self.server_name && self.client.allowed(s)) {
            let destination = self.destination(server);
            destination.edus.lock().unwrap_or_else(|p| p.into_inner()).push(key.to_owned(), edu.clone());
            destination.wake.notify_one();
        }
    }

    /// Like [`Self::send_edu_to`] for EDUs that must not be lost (to-device messages,
    /// device-list updates): kept in the database until the destination takes them, and
    /// queued again after a restart. `key` must be unique to the EDU.
    pub async fn send_durable_edu_to(
        self: &Arc<Self>,
        servers: &[OwnedServerName],
        key: &str,
        edu: &OutgoingEdu,
    ) -> ApiResult<()> {
        let key = format!("{DURABLE_PREFIX}{key}");
        let edu = &edu.to_json()?;
        for server in servers.iter().filter(|s| **s != self.server_name && self.client.allowed(s)) {
            if self.store.add_durable_edu(server.as_str(), &key, edu).await? {
                self.wake(server);
            } else {
                tracing::warn!(%server, "too many EDUs owed to this server; one more is only kept in memory");
                self.send_edu_to(std::slice::from_ref(server), &key, edu);
            }
        }
        Ok(())
    }

    /// The rows that keep `edu` for each of `servers` (never us) until they take it, for
    /// a caller that writes them in the transaction of what the EDU belongs to, then
    /// calls [`Self::kept`]. `key` must be unique to the EDU.
    pub fn durable_edu_rows(
        &self,
        servers: &[OwnedServerName],
        key: &str,
        edu: &OutgoingEdu,
    ) -> ApiResult<Vec<KeptEdu>> {
        let key = format!("{DURABLE_PREFIX}{key}");
        let edu = edu.to_json()?;
        Ok(servers
            .iter()
            .filter(|s| **s != self.server_name && self.client.allowed(s))
            .map(|server| KeptEdu { destination: server.to_string(), key: key.clone(), edu: edu.clone() })
            .collect())
    }

    /// Once rows of [`Self::durable_edu_rows`] are committed: their destinations are
    /// woken; those listed in `unkept` (whose row was not written) get the EDU in memory.
    pub fn kept(self: &Arc<Self>, rows: &[KeptEdu], unkept: &[String]) {
        for row in rows {
            let Ok(server) = OwnedServerName::try_from(row.destination.as_str()) else { continue };
            if unkept.contains(&row.destination) {
                tracing::warn!(%server, "too many EDUs owed to this server; one more is only kept in memory");
                self.send_edu_to(std::slice::from_ref(&server), &row.key, &row.edu);
            } else {
                self.wake(&server);
            }
        }
    }

    /// Whether the sender has dealt with `server` since start-up (sent it something, or
    /// heard from it), or it is in backoff (kith dealt with it before).
    pub fn knows(&self, server: &ServerName) -> bool {
        self.destinations.lock().unwrap_or_else(|p| p.into_inner()).contains_key(server)
            || self.health.retry(server).is_some()
    }

    /// Queues a PDU received by `send_join`/`send_leave` for the room's other servers:
    /// the server it came from could not send it to them itself.
    pub async fn relay(self: &Arc<Self>, event: &StoredEvent, origin: &ServerName) -> ApiResult<()> {
        let servers: Vec<OwnedServerName> =
            self.room_servers(&event.room_id).await?.into_iter().filter(|s| s != origin).collect();
        let rows: Vec<OutboxRow> = servers
            .iter()
            .map(|s| OutboxRow {
                destination: s.to_string(),
                stream_ordering: event.stream_ordering,
                event_id: event.event_id.clone(),
            })
            .collect();
        self.store.enqueue_outbox(&rows, None).await?;
        for server in &servers {
            self.wake(server);
        }
        Ok(())
    }

    /// Waits, for at most `limit`, until the room's events up to `ordering` are handed to
    /// the destinations' outboxes and taken by the destinations; returns how many of
    /// them are still owed (an event not handed out yet counts once).
    pub async fn deliver_room(&self, room_id: &RoomId, ordering: i64, limit: Duration) -> ApiResult<i64> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let handed_out = self.store.consumer_position(CONSUMER).await? >= ordering;
            let owed = self.store.owed_room_events(room_id.as_str()).await? + i64::from(!handed_out);
            if owed == 0 || tokio::time::Instant::now() >= deadline {
                return Ok(owed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The servers of a room's joined users, without us.
    async fn room_servers(&self, room_id: &str) -> ApiResult<Vec<OwnedServerName>> {
        // One indexed read per distinct server, not one row per member: a big room's
        // members are too many for the store to keep in memory, and every event sent or
        // relayed (a remote join through us) asks this.
        let mut servers: HashSet<OwnedServerName> = (self.store.joined_servers(room_id).await?.into_iter())
            .filter_map(|server| OwnedServerName::try_from(server).ok())
            .filter(|server| *server != self.server_name)
            .collect();
        // A room joined with a partial state does not know all its members yet.
        let partial_rooms = self.store.partial_state_rooms().await?;
        if let Some(partial) = partial_rooms.iter().find(|room| room.room_id == room_id) {
            servers.extend(partial.servers.iter().filter_map(|s| OwnedServerName::try_from(s.as_str()).ok()));
            servers.remove(&self.server_name);
        }
        let mut servers: Vec<OwnedServerName> = servers.into_iter().filter(|s| self.client.allowed(s)).collect();
        servers.sort();
        Ok(servers)
    }

    /// Writes outbox rows for the next batch of events, in the transaction that moves the
    /// fan-out's position; true if there was a batch.
    async fn fan_out_batch(self: &Arc<Self>) -> anyhow::Result<bool> {
        let position = self.store.consumer_position(CONSUMER).await?;
        let events = self.store.events_after(position, FANOUT_BATCH).await?;
        let Some(last) = events.last().map(|e| e.stream_ordering) else { return Ok(false) };
        let mut rows = Vec::new();
        let mut servers_of_room: HashMap<String, Vec<OwnedServerName>> = HashMap::new();
        for event in events.iter().filter(|e| self.is_ours_to_send(e)) {
            if !servers_of_room.contains_key(&event.room_id) {
                servers_of_room.insert(event.room_id.clone(), self.room_servers(&event.room_id).await?);
            }
            let mut servers = servers_of_room[&event.room_id].clone();
            if let Some(target) = self.departing_remote_member(event, &servers) {
                servers.push(target);
            }
            rows.extend(servers.into_iter().map(|server| OutboxRow {
                destination: server.to_string(),
                stream_ordering: event.stream_ordering,
                event_id: event.event_id.clone(),
            }));
        }
        if rows.is_empty() {
            // Nothing for other servers (a room of local users): no transaction to write.
            self.store.pass_consumer_position(CONSUMER, last).await?;
            return Ok(true);
        }
        self.store.enqueue_outbox(&rows, Some((CONSUMER, last))).await?;
        let woken: HashSet<&str> = rows.iter().map(|r| r.destination.as_str()).collect();
        for server in woken.into_iter().filter_map(|s| <&ServerName>::try_from(s).ok()) {
            self.wake(server);
        }
        Ok(true)
    }

    /// A user who leaves, is kicked or banned hears of it although no longer joined: the
    /// target's server, when it is not among `servers` already.
    fn departing_remote_member(&self, event: &StoredEvent, servers: &[OwnedServerName]) -> Option<OwnedServerName> {
        if event.json["type"] != "m.room.member" {
            return None;
        }
        let target = event.json["state_key"].as_str().and_then(|t| <&UserId>::try_from(t).ok())?;
        let server = target.server_name();
        let wanted = server != self.server_name && !servers.iter().any(|s| s == server) && self.client.allowed(server);
        wanted.then(|| server.to_owned())
    }

    /// Local timeline events go out; what others sent, outliers and rejected events do not.
    fn is_ours_to_send(&self, event: &StoredEvent) -> bool {
        if event.outlier || event.rejected {
            return false;
        }
        let sender = event.json["sender"].as_str().and_then(|s| <&UserId>::try_from(s).ok());
        sender.is_some_and(|s| s.server_name() == self.server_name)
    }

    async fn destination_worker(self: Arc<Self>, server: OwnedServerName, destination: Arc<Destination>) {
        let mut stopping = self.stopping.subscribe();
        while !*stopping.borrow() {
            let wait = self.health.down_until(&server).map_or(0, |until| until - crate::store::now_ms());
            if wait > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    _ = destination.wake.notified() => {}
                    _ = stopping.changed() => {}
                }
                continue;
            }
            match self.send_once(&server, &destination).await {
                Ok(true) => {}
                Ok(false) => tokio::select! {
                    _ = destination.wake.notified() => {}
                    _ = stopping.changed() => {}
                },
                Err(err) => tracing::warn!(%server, %err, "federation sender storage error"),
            }
        }
    }

    /// Sends one transaction if anything is owed and server health lets it; false when
    /// there was nothing to send.
    async fn send_once(&self, server: &ServerName, destination: &Destination) -> ApiResult<bool> {
        let pdus = self.store.outbox_batch(server.as_str(), destination.batch.pdus()).await?;
        let edus = destination.edus.lock().unwrap_or_else(|p| p.into_inner()).take(destination.batch.edus());
        // Kept EDUs are read from the database, oldest first, as PDUs are: however many
        // wait, none depends on memory or on a restart to go.
        let room = destination.batch.edus().saturating_sub(edus.len());
        let kept = match room {
            0 => Vec::new(),
            room => self.store.durable_edu_batch(server.as_str(), room as i64).await?,
        };
        if pdus.is_empty() && edus.is_empty() && kept.is_empty() {
            return Ok(false);
        }
        if self.health.contact(server) != Contact::Now {
            // Another caller's attempt is finding out whether the destination is back;
            // the worker waits for it.
            destination.edus.lock().unwrap_or_else(|p| p.into_inner()).restore(edus);
            return Ok(true);
        }
        let txn_id = format!("{}.{}", crate::store::now_ms(), self.txn_counter.fetch_add(1, Ordering::Relaxed));
        let pdus_json = pdus.iter().map(|(_, pdu)| crate::services::rooms::format::pdu_json(pdu));
        let edus_json = edus.iter().map(|(_, _, edu)| edu).chain(kept.iter().map(|(_, edu)| edu));
        let request = transaction(&self.server_name, &txn_id, pdus_json, edus_json)?;
        let orderings: Vec<i64> = pdus.iter().map(|(ordering, _)| *ordering).collect();
        let edu_count = edus.len() + kept.len();
        tracing::debug!(%server, pdus = pdus.len(), edus = edu_count, %txn_id, "sending transaction");
        match self.client.send_for_body(server, request).await {
            Ok(answer) => {
                log_pdu_errors(server, &answer);
                self.store.outbox_remove(server.as_str(), &orderings).await?;
                self.forget_durable(server, &kept).await?;
                destination.batch.grow();
            }
            Err(FederationError::Remote { status, .. })
                if status == StatusCode::PAYLOAD_TOO_LARGE && destination.batch.shrink(pdus.len() + edu_count) =>
            {
                // The same items go again, fewer at a time.
                destination.edus.lock().unwrap_or_else(|p| p.into_inner()).restore(edus);
                tracing::info!(%server, pdus = destination.batch.pdus(), "transaction too large for the destination; sending smaller ones");
            }
            Err(FederationError::Remote { status, body }) if refused_for_good(status) => {
                // The destination will never take this transaction; do not let it block the queue.
                tracing::warn!(%server, %status, %body, "destination refused a transaction; dropping it");
                self.store.outbox_remove(server.as_str(), &orderings).await?;
                self.forget_durable(server, &kept).await?;
            }
            Err(err) => {
                destination.edus.lock().unwrap_or_else(|p| p.into_inner()).restore(edus);
                tracing::info!(%server, %err, "transaction failed");
                self.health.failed(server).await;
            }
        }
        Ok(true)
    }

    /// The kept EDUs of a transaction the destination answered.
    async fn forget_durable(&self, server: &ServerName, kept: &[(String, Value)]) -> ApiResult<()> {
        if !kept.is_empty() {
            let keys: Vec<&str> = kept.iter().map(|(key, _)| key.as_str()).collect();
            self.store.remove_durable_edus(server.as_str(), &keys).await?;
        }
        Ok(())
    }
}

fn queue_of<'a>(queues: &'a mut HashMap<String, DestinationQueue>, server: &ServerName) -> &'a mut DestinationQueue {
    let destination = server.to_string();
    queues.entry(destination.clone()).or_insert_with(|| DestinationQueue { destination, ..Default::default() })
}

/// Answers to a transaction that retrying cannot change: a bad request, a refusal, no such
/// endpoint, or a single item too large. (401 is left to the backoff: the destination
/// may not have fetched our keys yet.)
fn refused_for_good(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::PAYLOAD_TOO_LARGE
    )
}

/// A transaction of ruma's type; PDUs and EDUs go as they are stored.
fn transaction<'a>(
    origin: &ServerName,
    txn_id: &str,
    pdus: impl Iterator<Item = Value>,
    edus: impl Iterator<Item = &'a Value>,
) -> ApiResult<send_transaction_message::v1::Request> {
    let internal = |err: serde_json::Error| MatrixError::internal("serializing a transaction", err);
    let mut request =
        send_transaction_message::v1::Request::new(txn_id.into(), origin.to_owned(), MilliSecondsSinceUnixEpoch::now());
    request.pdus = pdus.map(|pdu| to_raw_value(&pdu)).collect::<Result<_, _>>().map_err(internal)?;
    request.edus = edus.map(|edu| to_raw_value(edu).map(Raw::from_json)).collect::<Result<_, _>>().map_err(internal)?;
    Ok(request)
}

/// Not ruma's response: ruma's refuses an answer without `pdus` or with a key that is
/// not an event id, which Synapse takes as a success; the answer is only logged.
#[derive(Deserialize)]
struct TransactionAnswer {
    #[serde(default)]
    pdus: BTreeMap<String, PduAnswer>,
}

#[derive(Deserialize)]
struct PduAnswer {
    error: Option<Value>,
}

fn log_pdu_errors(server: &ServerName, answer: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<TransactionAnswer>(answer) else {
        tracing::debug!(%server, "a transaction's answer is not the usual object; ignored");
        return;
    };
    for (event_id, result) in answer.pdus {
        if let Some(error) = result.error {
            tracing::info!(%server, %event_id, %error, "destination did not accept a PDU");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::edu_queue::MAX_QUEUED_EDUS;
    use super::*;

    #[test]
    fn transactions_shrink_when_too_large_and_grow_back() {
        let size = TransactionSize::default();
        assert_eq!((size.pdus(), size.edus()), (50, 100));
        assert!(size.shrink(150));
        assert!(size.shrink(75));
        assert_eq!((size.pdus(), size.edus()), (12, 25));
        size.grow();
        assert_eq!((size.pdus(), size.edus()), (25, 50));
        for _ in 0..20 {
            size.shrink(2);
        }
        assert_eq!((size.pdus(), size.edus()), (1, 1), "never below one item");
        assert!(!size.shrink(1), "a single item too large cannot shrink: it is dropped");
    }

    #[test]
    fn keyed_edus_coalesce_and_keep_their_order() {
        let mut queue = EduQueue::default();
        queue.push("typing:!r:@a".into(), Value::from(1));
        queue.push("typing:!r:@b".into(), Value::from(2));
        queue.push("typing:!r:@a".into(), Value::from(3));
        let taken = queue.take(10);
        let values: Vec<&Value> = taken.iter().map(|(_, _, edu)| edu).collect();
        assert_eq!(values, vec![&Value::from(2), &Value::from(3)], "only the newest per key, oldest first");
        queue.push("typing:!r:@a".into(), Value::from(4));
        queue.restore(taken);
        let values: Vec<Value> = queue.take(10).into_iter().map(|(_, _, edu)| edu).collect();
        assert_eq!(values, vec![Value::from(2), Value::from(4)], "a failed send does not bring back what was replaced");
    }

    #[test]
    fn edu_queues_are_bounded() {
        let mut queue = EduQueue::default();
        for i in 0..(MAX_QUEUED_EDUS + 10) {
            queue.push(format!("k{i}"), Value::from(i));
        }
        let taken = queue.take(usize::MAX);
        assert_eq!(taken.len(), MAX_QUEUED_EDUS);
        assert_eq!(taken[0].2, Value::from(10), "the oldest went first");
    }
}
