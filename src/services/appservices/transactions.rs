//! Pushing events to application services: one loop per service with a URL follows the
//! event stream from the service's own persisted position. Events the service is
//! interested in become its next transaction in the same database transaction that
//! moves the position, and that transaction is sent (`PUT /_matrix/app/v1/transactions/
//! {txnId}`) until the service takes it, with the same id and a growing delay; only
//! then is the next one built. So order is kept, nothing is skipped, and a restart
//! sends the waiting transaction again under its id.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use futures_util::future::{BoxFuture, join_all};
use ruma::OwnedTransactionId;
use ruma::api::appservice::event::push_events;
use ruma::serde::Raw;
use serde_json::value::RawValue;

use super::ephemeral::{self, EphemeralBatch, Positions};
use super::interest::Interest;
use super::outgoing::{self, AppServiceError};
use super::{AppService, AppServices};
use crate::services::ephemeral::Ephemeral;
use crate::services::metrics::Metrics;
use crate::services::presence::Presence;
use crate::services::rooms::Rooms;
use crate::services::rooms::format::client_event;
use crate::services::workers::{Shutdown, Worker};
use crate::store::{PendingTransaction, Store, TO_DEVICE_STREAM, TransactionContents};

/// Events read from the stream at a time; a transaction holds at most this many.
const BATCH: i64 = 100;
/// Another process may write the stream: looked at this often without a wake-up.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// A transaction the service does not answer within this is sent again.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The first retry of a refused transaction waits this (Synapse: 2 s)...
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// ...doubling up to this (Synapse: 512 s).
const MAX_RETRY: Duration = Duration::from_secs(512);

pub struct AppServicePusher {
    appservices: Arc<AppServices>,
    store: Arc<Store>,
    rooms: Arc<Rooms>,
    ephemeral: Arc<Ephemeral>,
    presence: Arc<Presence>,
    /// Moves when a to-device message is stored.
    to_device_delivered: watch::Receiver<i64>,
    metrics: Arc<Metrics>,
}

enum Progress {
    /// Something was sent or queued: look again at once.
    More,
    /// Caught up with the stream.
    Idle,
}

impl Worker for AppServicePusher {
    fn name(&self) -> &'static str {
        "appservice transactions"
    }

    fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let services = self.appservices.all().iter().filter(|s| s.registration.url.is_some()).cloned();
            let loops: Vec<_> = services.map(|service| self.clone().serve(service, stop.clone())).collect();
            if loops.is_empty() {
                // Nothing to push to: returning now would read as a failure, and restart.
                let mut stop = stop;
                return stop.wait().await;
            }
            join_all(loops).await;
        })
    }
}

impl AppServicePusher {
    pub fn new(
        appservices: Arc<AppServices>,
        store: Arc<Store>,
        rooms: Arc<Rooms>,
        (ephemeral, presence): (Arc<Ephemeral>, Arc<Presence>),
        to_device_delivered: watch::Receiver<i64>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { appservices, store, rooms, ephemeral, presence, to_device_delivered, metrics }
    }

    async fn serve(self: Arc<Self>, service: Arc<AppService>, mut stop: Shutdown) {
        let mut cursor = Cursor::new(&service, self.ephemeral.typing_serial(), self.presence.serial());
        if let Err(err) = self.start(&cursor).await {
            return tracing::error!(id = service.id(), %err, "cannot start pushing to the application service");
        }
        let mut wake = self.rooms.subscribe();
        let (mut typing, mut receipts) = self.ephemeral.subscribe();
        let mut to_device = self.to_device_delivered.clone();
        let mut presence = self.presence.subscribe();
        let ephemeral = service.receive_ephemeral;
        let mut retry = FIRST_RETRY;
        while !stop.is_stopping() {
            let wait = match self.step(&service, &mut cursor).await {
                Ok(Progress::More) => {
                    retry = FIRST_RETRY;
                    continue;
                }
                Ok(Progress::Idle) => {
                    retry = FIRST_RETRY;
                    tokio::select! {
                        _ = stop.wait() => {}
                        // Gone only while the server stops: the poll interval does.
                        Ok(()) = wake.changed() => {}
                        Ok(()) = typing.changed(), if ephemeral => {}
                        Ok(()) = receipts.changed(), if ephemeral => {}
                        Ok(()) = presence.changed(), if ephemeral => {}
                        Ok(()) = to_device.changed(), if ephemeral && self.appservices.push_to_device => {}
                        _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    }
                    continue;
                }
                Err(err) => {
                    tracing::warn!(id = service.id(), %err, retry_in = ?retry, "application service transaction failed");
                    self.metrics.appservice_failure(service.id());
                    retry
                }
            };
            retry = (retry * 2).min(MAX_RETRY);
            stop.unless_stopped(tokio::time::sleep(wait)).await;
        }
    }

    /// A service registered now is owed what happens from now on, not the history.
    async fn start(&self, cursor: &Cursor) -> anyhow::Result<()> {
        self.store.start_consumer_at(&cursor.events, self.store.max_event_ordering().await?).await?;
        self.store.start_consumer_at(&cursor.receipts, self.store.stream_head("receipts").await?).await?;
        self.store.start_consumer_at(&cursor.to_device, self.store.stream_head(TO_DEVICE_STREAM).await?).await?;
        Ok(())
    }

    /// Sends the waiting transaction, or else queues the next one from the streams.
    async fn step(&self, service: &AppService, cursor: &mut Cursor) -> anyhow::Result<Progress> {
        if let Some(pending) = self.store.next_appservice_transaction(service.id()).await? {
            self.send(service, &pending).await?;
            self.store.appservice_transaction_sent(service.id(), pending.txn_id).await?;
            self.metrics.appservice_success(service.id());
            return Ok(Progress::More);
        }
        self.queue_next(service, cursor).await
    }

    /// Reads the streams from the service's positions, and queues what interests it as
    /// its next transaction while moving the positions past what was read.
    async fn queue_next(&self, service: &AppService, cursor: &mut Cursor) -> anyhow::Result<Progress> {
        let mut interest = Interest::new(&self.store, service);
        let events = self.store.events_after(self.store.consumer_position(&cursor.events).await?, BATCH).await?;
        let mut wanted = Vec::new();
        for event in events.iter().filter(|e| !e.outlier && !e.rejected) {
            if interest.in_event(event).await? {
                wanted.push(client_event(event));
            }
        }
        let ephemeral = match service.receive_ephemeral {
            true => {
                let sources = (self.ephemeral.as_ref(), self.presence.as_ref());
                ephemeral::gather(&self.store, sources, &mut interest, &self.positions(cursor).await?).await?
            }
            false => EphemeralBatch::default(),
        };
        let last_event = events.last().map(|e| (cursor.events.as_str(), e.stream_ordering));
        if last_event.is_none() && ephemeral.is_idle() {
            return Ok(Progress::Idle);
        }
        let receipts = ephemeral.receipts_position.map(|p| (cursor.receipts.as_str(), p));
        let to_device = ephemeral.to_device_position.map(|p| (cursor.to_device.as_str(), p));
        let positions: Vec<(&str, i64)> = last_event.into_iter().chain(receipts).chain(to_device).collect();
        let events_json = json_unless_empty(&wanted)?;
        let ephemeral_json = json_unless_empty(&ephemeral.data)?;
        let to_device_json = json_unless_empty(&ephemeral.to_device)?;
        let contents = TransactionContents {
            events_json: events_json.as_deref(),
            ephemeral_json: ephemeral_json.as_deref(),
            to_device_json: to_device_json.as_deref(),
        };
        self.store.queue_appservice_transaction(service.id(), &positions, contents).await?;
        cursor.typing = ephemeral.typing_serial.unwrap_or(cursor.typing);
        cursor.presence = ephemeral.presence_serial.unwrap_or(cursor.presence);
        Ok(Progress::More)
    }

    async fn positions(&self, cursor: &Cursor) -> anyhow::Result<Positions> {
        let to_device = match self.appservices.push_to_device {
            true => Some(self.store.consumer_position(&cursor.to_device).await?),
            false => None,
        };
        let receipts = self.store.consumer_position(&cursor.receipts).await?;
        Ok(Positions { receipts, typing: cursor.typing, presence: cursor.presence, to_device })
    }

    async fn send(&self, service: &AppService, pending: &PendingTransaction) -> Result<(), AppServiceError> {
        let txn_id = pending.txn_id;
        let stored =
            |err: serde_json::Error| AppServiceError::InvalidResponse(format!("stored transaction {txn_id}: {err}"));
        let parse = |json: Option<&str>| -> Result<Vec<Box<RawValue>>, AppServiceError> {
            json.map_or(Ok(Vec::new()), |json| serde_json::from_str(json).map_err(stored))
        };
        let events = parse(Some(&pending.events_json))?.into_iter().map(Raw::from_json).collect();
        let txn_id: OwnedTransactionId = txn_id.to_string().into();
        let mut request = push_events::v1::Request::new(txn_id, events);
        request.ephemeral = parse(pending.ephemeral_json.as_deref())?.into_iter().map(Raw::from_json).collect();
        request.to_device = parse(pending.to_device_json.as_deref())?.into_iter().map(Raw::from_json).collect();
        outgoing::send(self.appservices.http(), service, request, SEND_TIMEOUT).await.map(|_| ())
    }
}

fn json_unless_empty<T: serde::Serialize>(items: &[T]) -> serde_json::Result<Option<String>> {
    (!items.is_empty()).then(|| serde_json::to_string(items)).transpose()
}

/// Where one service's loop is: its consumers on the event, receipt and to-device
/// streams, and the typing serial it has pushed up to (in memory, as typing is).
struct Cursor {
    events: String,
    receipts: String,
    to_device: String,
    typing: u64,
    presence: u64,
}

impl Cursor {
    fn new(service: &AppService, typing: u64, presence: u64) -> Self {
        Self {
            events: format!("appservice:{}", service.id()),
            receipts: format!("appservice-receipts:{}", service.id()),
            to_device: format!("appservice-to-device:{}", service.id()),
            typing,
            presence,
        }
    }
}
