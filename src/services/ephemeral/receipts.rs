//! Read receipts and read markers: set by local users (`m.read` goes to the room's
//! servers as an EDU), received from other servers for their users.

use std::collections::BTreeMap;

use ruma::api::federation::transactions::edu::{Edu, ReceiptContent, ReceiptData, ReceiptMap};
use ruma::events::fully_read::FullyReadEventContent;
use ruma::events::receipt::Receipt as EventReceipt;
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, ServerName, UserId};

use super::Ephemeral;
use crate::error::{ApiResult, MatrixError};
use crate::services::federation::edus::{EduRefused, EduResult};
use crate::store::Receipt;

/// Receipt types a client may set; only `m.read` goes to other servers.
const RECEIPT_TYPES: &[&str] = &["m.read", "m.read.private"];

/// The read markers a client sets at once (`/read_markers`).
#[derive(Debug, Default)]
pub struct ReadMarkers {
    pub fully_read: Option<String>,
    pub read: Option<String>,
    pub read_private: Option<String>,
}

impl Ephemeral {
    /// `POST /receipt/{type}/{eventId}`; `m.fully_read` is the read marker.
    pub async fn set_receipt(&self, room_id: &RoomId, user_id: &UserId, kind: &str, event_id: &str) -> ApiResult<()> {
        if kind == "m.fully_read" {
            return self.set_fully_read(room_id, user_id, event_id).await;
        }
        if !RECEIPT_TYPES.contains(&kind) {
            return Err(MatrixError::invalid_param(format!("Unknown receipt type {kind}")));
        }
        self.put_receipt(room_id, user_id, kind, event_id).await
    }

    /// `POST /read_markers`.
    pub async fn set_read_markers(&self, room_id: &RoomId, user_id: &UserId, markers: &ReadMarkers) -> ApiResult<()> {
        if let Some(event_id) = &markers.fully_read {
            self.set_fully_read(room_id, user_id, event_id).await?;
        }
        if let Some(event_id) = &markers.read {
            self.put_receipt(room_id, user_id, "m.read", event_id).await?;
        }
        if let Some(event_id) = &markers.read_private {
            self.put_receipt(room_id, user_id, "m.read.private", event_id).await?;
        }
        Ok(())
    }

    async fn put_receipt(&self, room_id: &RoomId, user_id: &UserId, kind: &str, event_id: &str) -> ApiResult<()> {
        self.require_joined(room_id, user_id).await?;
        self.require_event_of(room_id, event_id).await?;
        self.store.put_receipt(room_id.as_str(), user_id.as_str(), kind, event_id).await?;
        self.receipts_changed.send_modify(|serial| *serial += 1);
        if kind == "m.read" {
            let event_id = parse_event_id(event_id)?;
            let receipt = ReceiptData::new(EventReceipt::new(MilliSecondsSinceUnixEpoch::now()), vec![event_id]);
            let read = ReceiptMap::new(BTreeMap::from([(user_id.to_owned(), receipt)]));
            let edu = Edu::Receipt(ReceiptContent::new(BTreeMap::from([(room_id.to_owned(), read)])));
            self.sender.send_edu_to_room(room_id, format!("m.receipt {room_id} {user_id}"), edu.into()).await?;
        }
        Ok(())
    }

    async fn set_fully_read(&self, room_id: &RoomId, user_id: &UserId, event_id: &str) -> ApiResult<()> {
        self.require_joined(room_id, user_id).await?;
        self.require_event_of(room_id, event_id).await?;
        let content = FullyReadEventContent::new(parse_event_id(event_id)?);
        let content = serde_json::to_value(content).map_err(|e| MatrixError::internal("a fully read marker", e))?;
        self.account_data.put(user_id, Some(room_id), "m.fully_read", &content).await
    }

    /// A receipt or read marker must name an event of the room.
    async fn require_event_of(&self, room_id: &RoomId, event_id: &str) -> ApiResult<()> {
        let event_id: &EventId =
            event_id.try_into().map_err(|_| MatrixError::invalid_param(format!("Invalid event ID: {event_id}")))?;
        let event = self.store.get_event(event_id.as_str()).await?;
        if event.is_none_or(|e| e.room_id != room_id.as_str()) {
            return Err(MatrixError::not_found("Event not found"));
        }
        Ok(())
    }

    /// Receipts of a room stored after position `since`.
    pub async fn receipts_since(&self, room_id: &str, since: i64) -> ApiResult<Vec<Receipt>> {
        Ok(self.store.receipts_since(room_id, since).await?)
    }

    /// `m.receipt` from another server: read receipts of its users in rooms they are in,
    /// for events this server has.
    pub async fn receive_remote_receipts(&self, origin: &ServerName, content: ReceiptContent) -> EduResult {
        for (room_id, receipts) in &content.receipts {
            for (user_id, receipt) in &receipts.read {
                if self.require_remote_member(origin, room_id, user_id).await.is_err() {
                    continue;
                }
                let Some(event_id) = receipt.event_ids.first() else { continue };
                self.store_remote_receipt(room_id, user_id, event_id).await?;
            }
        }
        Ok(())
    }

    async fn store_remote_receipt(&self, room_id: &RoomId, user_id: &UserId, event_id: &EventId) -> ApiResult<()> {
        let known = self.store.get_event(event_id.as_str()).await?;
        if known.is_some_and(|e| e.room_id == room_id.as_str()) {
            self.store.put_receipt(room_id.as_str(), user_id.as_str(), "m.read", event_id.as_str()).await?;
            self.receipts_changed.send_modify(|serial| *serial += 1);
        }
        Ok(())
    }

    /// An EDU about a user counts only if the user belongs to the sending server and is
    /// joined to the room.
    pub(super) async fn require_remote_member(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> EduResult {
        EduRefused::unless_own_user(origin, user_id)?;
        let membership = self.store.membership(room_id.as_str(), user_id.as_str()).await?;
        if membership.is_some_and(|m| m.membership == "join") {
            return Ok(());
        }
        // While a room's state is partial its members are unknown; as Synapse does, the
        // servers in the room stand in for them, so nothing is lost during the resync.
        let partial = self.store.partial_state_room(room_id.as_str()).await?;
        if partial
            .is_some_and(|room| room.joined_via == origin.as_str() || room.servers.iter().any(|s| s == origin.as_str()))
        {
            return Ok(());
        }
        Err(EduRefused::NotJoined { user_id: user_id.to_owned(), room_id: room_id.to_owned() })
    }
}

fn parse_event_id(event_id: &str) -> ApiResult<OwnedEventId> {
    event_id.try_into().map_err(|_| MatrixError::invalid_param(format!("Invalid event ID: {event_id}")))
}
