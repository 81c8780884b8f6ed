//! Ephemeral events: typing notifications (in memory, expiring) and read receipts
//! (persisted on the receipts stream), from local clients and from other servers, and
//! their EDUs to the servers of the room.

mod receipts;

pub use receipts::ReadMarkers;
pub mod typing;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use ruma::api::federation::transactions::edu::{Edu, ReceiptContent, TypingContent};
use ruma::{RoomId, ServerName, UserId};
use tokio::sync::watch;

use super::account_data::AccountData;
use super::sender::Sender;
use super::workers::{Shutdown, Worker};
use crate::error::{ApiResult, MatrixError};
use crate::services::federation::edus::{EduHandlers, EduResult};
use crate::store::Store;
use typing::Typing;

/// Remote typing notifications last this long unless renewed (as in Synapse).
const REMOTE_TYPING_TIMEOUT: Duration = Duration::from_secs(30);
/// Typing notifications are swept this often, so `/sync` sees them end.
const TYPING_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

pub struct Ephemeral {
    store: Arc<Store>,
    sender: Arc<Sender>,
    account_data: Arc<AccountData>,
    typing: Typing,
    /// Bumped when a receipt is stored, to wake long-polling `/sync`s.
    receipts_changed: watch::Sender<u64>,
}

impl Ephemeral {
    pub fn new(store: Arc<Store>, sender: Arc<Sender>, account_data: Arc<AccountData>) -> Self {
        Self { store, sender, account_data, typing: Typing::default(), receipts_changed: watch::channel(0).0 }
    }

    /// Wakes on typing changes and new receipts.
    pub fn subscribe(&self) -> (watch::Receiver<u64>, watch::Receiver<u64>) {
        (self.typing.subscribe(), self.receipts_changed.subscribe())
    }

    pub fn typing_serial(&self) -> u64 {
        self.typing.serial()
    }

    /// Who is typing in a room, and whether that changed after serial `since`.
    pub fn typing_in(&self, room_id: &str, since: u64) -> (Vec<String>, bool) {
        self.typing.typing_in(room_id, since)
    }

    /// The rooms whose typing changed after serial `since`, who types there, and the
    /// serial this is as of.
    pub fn typing_changed_since(&self, since: u64) -> (u64, Vec<(String, Vec<String>)>) {
        self.typing.changed_since(since)
    }

    pub(super) async fn require_joined(&self, room_id: &RoomId, user_id: &UserId) -> ApiResult<()> {
        match self.store.membership(room_id.as_str(), user_id.as_str()).await? {
            Some(m) if m.membership == "join" => Ok(()),
            _ => Err(MatrixError::forbidden("You are not joined to this room")),
        }
    }
}

impl Ephemeral {
    /// A local user starts or stops typing.
    pub async fn set_typing(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        typing: bool,
        timeout: Duration,
    ) -> ApiResult<()> {
        self.require_joined(room_id, user_id).await?;
        self.typing.set(room_id.as_str(), user_id.as_str(), typing, timeout);
        let edu = Edu::Typing(TypingContent::new(room_id.to_owned(), user_id.to_owned(), typing));
        self.sender.send_edu_to_room(room_id, format!("m.typing {room_id} {user_id}"), edu.into()).await
    }

    /// Registers the handlers of `m.typing` and `m.receipt`.
    pub fn register_edus(self: &Arc<Self>, edus: &mut EduHandlers) {
        let ephemeral = self.clone();
        edus.register("m.typing", move |origin, typing: TypingContent| {
            let ephemeral = ephemeral.clone();
            async move { ephemeral.receive_remote_typing(&origin, typing).await }
        });
        let ephemeral = self.clone();
        edus.register("m.receipt", move |origin, receipts: ReceiptContent| {
            let ephemeral = ephemeral.clone();
            async move { ephemeral.receive_remote_receipts(&origin, receipts).await }
        });
    }

    /// `m.typing` from another server.
    pub async fn receive_remote_typing(&self, origin: &ServerName, typing: TypingContent) -> EduResult {
        self.require_remote_member(origin, &typing.room_id, &typing.user_id).await?;
        self.typing.set(typing.room_id.as_str(), typing.user_id.as_str(), typing.typing, REMOTE_TYPING_TIMEOUT);
        Ok(())
    }
}

/// Sweeps expired typing notifications.
impl Worker for Ephemeral {
    fn name(&self) -> &'static str {
        "typing expiry"
    }

    fn run(self: Arc<Self>, mut stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut tick = tokio::time::interval(TYPING_SWEEP_INTERVAL);
            while stop.unless_stopped(tick.tick()).await.is_some() {
                self.typing.expire();
            }
        })
    }
}
