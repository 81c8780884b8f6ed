//! Pushing events to application services: one loop per service with a URL follows the
//! event stream from the service's own persisted position. Events the service is
//! interested in become its next transaction in the same database transaction that
//! moves the position, and that transaction is sent (`PUT /_matrix/app/v1/transactions/
//! {txnId}`) until the service takes it, with the same id and a growing delay; only
//! then is the next one built. So order is kept, nothing is skipped, and a restart
//! sends the waiting transaction again under its id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, join_all};
use ruma::api::appservice::event::push_events;
use ruma::events::AnyTimelineEvent;
use ruma::serde::Raw;
use ruma::{OwnedTransactionId, UserId};
use serde_json::value::RawValue;

use super::outgoing::{self, AppServiceError};
use super::{AppService, AppServices};
use crate::services::metrics::Metrics;
use crate::services::rooms::Rooms;
use crate::services::rooms::format::client_event;
use crate::services::workers::{Shutdown, Worker};
use crate::store::{Store, StoredEvent};

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
            join_all(loops).await;
        })
    }
}

impl AppServicePusher {
    pub fn new(appservices: Arc<AppServices>, store: Arc<Store>, rooms: Arc<Rooms>, metrics: Arc<Metrics>) -> Self {
        Self { appservices, store, rooms, metrics }
    }

    fn consumer(service: &AppService) -> String {
        format!("appservice:{}", service.id())
    }

    async fn serve(self: Arc<Self>, service: Arc<AppService>, mut stop: Shutdown) {
        let consumer = Self::consumer(&service);
        // A service registered now is owed what happens from now on, not the history.
        let started = async { self.store.start_consumer_at(&consumer, self.store.max_event_ordering().await?).await };
        if let Err(err) = started.await {
            return tracing::error!(id = service.id(), %err, "cannot start pushing to the application service");
        }
        let mut wake = self.rooms.subscribe();
        let mut retry = FIRST_RETRY;
        while !stop.is_stopping() {
            let wait = match self.step(&service, &consumer).await {
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

    /// Sends the waiting transaction, or else queues the next one from the stream.
    async fn step(&self, service: &AppService, consumer: &str) -> anyhow::Result<Progress> {
        if let Some(pending) = self.store.next_appservice_transaction(service.id()).await? {
            self.send(service, pending.txn_id, &pending.events_json).await?;
            self.store.appservice_transaction_sent(service.id(), pending.txn_id).await?;
            self.metrics.appservice_success(service.id());
            return Ok(Progress::More);
        }
        let position = self.store.consumer_position(consumer).await?;
        let events = self.store.events_after(position, BATCH).await?;
        let Some(last) = events.last().map(|e| e.stream_ordering) else { return Ok(Progress::Idle) };
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        let mut wanted = Vec::new();
        for event in events.iter().filter(|e| !e.outlier && !e.rejected) {
            if self.is_interested(service, event, &mut members).await? {
                wanted.push(client_event(event));
            }
        }
        let events_json = (!wanted.is_empty()).then(|| serde_json::to_string(&wanted)).transpose()?;
        self.store.queue_appservice_transaction(service.id(), consumer, last, events_json.as_deref()).await?;
        Ok(Progress::More)
    }

    async fn send(&self, service: &AppService, txn_id: i64, events_json: &str) -> Result<(), AppServiceError> {
        let events: Vec<Box<RawValue>> = serde_json::from_str(events_json)
            .map_err(|err| AppServiceError::InvalidResponse(format!("stored transaction {txn_id}: {err}")))?;
        let events: Vec<Raw<AnyTimelineEvent>> = events.into_iter().map(Raw::from_json).collect();
        let txn_id: OwnedTransactionId = txn_id.to_string().into();
        let request = push_events::v1::Request::new(txn_id, events);
        outgoing::send(self.appservices.http(), service, request, SEND_TIMEOUT).await.map(|_| ())
    }

    /// Synapse's rules: the sender, a member event's subject, the room, an alias of the
    /// room, or a local member of the room is in the service's namespaces.
    async fn is_interested(
        &self,
        service: &AppService,
        event: &StoredEvent,
        members: &mut HashMap<String, Vec<String>>,
    ) -> anyhow::Result<bool> {
        let in_namespace = |user: &str| UserId::parse(user).is_ok_and(|user| service.is_interested_in_user(&user));
        let sender = event.json["sender"].as_str().unwrap_or_default();
        if in_namespace(sender) || service.is_interested_in_room(&event.room_id) {
            return Ok(true);
        }
        if event.json["type"] == "m.room.member" && event.json["state_key"].as_str().is_some_and(in_namespace) {
            return Ok(true);
        }
        if !service.registration.namespaces.aliases.is_empty() {
            let aliases = self.store.aliases_of_room(&event.room_id).await?;
            if aliases.iter().any(|alias| service.is_interested_in_alias(alias)) {
                return Ok(true);
            }
        }
        if !members.contains_key(&event.room_id) {
            let server = format!(":{}", service.sender.server_name());
            let joined = self.store.joined_user_ids(&event.room_id).await?;
            members.insert(event.room_id.clone(), joined.into_iter().filter(|u| u.ends_with(&server)).collect());
        }
        Ok(members[&event.room_id].iter().any(|user| in_namespace(user)))
    }
}
