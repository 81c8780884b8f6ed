//! Ephemeral data for services that ask for it (`receive_ephemeral`, MSC2409): the
//! public read receipts (from the receipts stream, so none is lost across a restart)
//! and typing notifications (in memory, as they are everywhere) of the rooms the
//! service is interested in, carried by the transactions with the events.

use std::collections::BTreeMap;

use ruma::api::appservice::event::push_events::v1::EphemeralData;
use ruma::events::receipt::{Receipt, ReceiptEvent, ReceiptEventContent, ReceiptType, Receipts};
use ruma::events::typing::{TypingEvent, TypingEventContent};
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, UInt};

use super::interest::Interest;
use crate::services::ephemeral::Ephemeral;
use crate::store::Store;

/// Receipts read at a time, as events are.
const RECEIPT_BATCH: i64 = 100;

/// What the next transaction carries besides events.
#[derive(Default)]
pub(super) struct EphemeralBatch {
    /// Where the receipts read end, if any were read.
    pub receipts_position: Option<i64>,
    /// The typing serial this batch is as of, if typing changed.
    pub typing_serial: Option<u64>,
    pub data: Vec<Raw<EphemeralData>>,
}

impl EphemeralBatch {
    /// Nothing read: the positions need not move.
    pub fn is_idle(&self) -> bool {
        self.receipts_position.is_none() && self.typing_serial.is_none()
    }
}

pub(super) async fn gather(
    store: &Store,
    ephemeral: &Ephemeral,
    interest: &mut Interest<'_>,
    receipts_after: i64,
    typing_since: u64,
) -> anyhow::Result<EphemeralBatch> {
    let mut batch = EphemeralBatch::default();
    let receipts = store.public_receipts_after(receipts_after, RECEIPT_BATCH).await?;
    batch.receipts_position = receipts.last().map(|(position, _, _)| *position);
    let mut by_room: BTreeMap<String, ReceiptEventContent> = BTreeMap::new();
    for (_, room_id, receipt) in receipts {
        if interest.in_room(&room_id).await? {
            add_receipt(by_room.entry(room_id).or_insert_with(|| ReceiptEventContent(BTreeMap::new())), receipt);
        }
    }
    for (room_id, content) in by_room {
        let Ok(room_id) = OwnedRoomId::try_from(room_id) else { continue };
        batch.data.push(Raw::new(&EphemeralData::Receipt(ReceiptEvent::new(room_id, content)))?);
    }
    let (serial, typing) = ephemeral.typing_changed_since(typing_since);
    batch.typing_serial = (serial > typing_since).then_some(serial);
    for (room_id, users) in typing {
        if interest.in_room(&room_id).await? {
            let Ok(room_id) = OwnedRoomId::try_from(room_id) else { continue };
            let users = users.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect();
            let event = TypingEvent::new(room_id, TypingEventContent::new(users));
            batch.data.push(Raw::new(&EphemeralData::Typing(event))?);
        }
    }
    Ok(batch)
}

/// Rows of the store were checked on the way in; one that does not parse is left out.
fn add_receipt(content: &mut ReceiptEventContent, receipt: crate::store::Receipt) {
    let (Ok(event_id), Ok(user_id)) =
        (OwnedEventId::try_from(receipt.event_id), OwnedUserId::try_from(receipt.user_id))
    else {
        return;
    };
    let ts = UInt::try_from(receipt.ts)
        .map(MilliSecondsSinceUnixEpoch)
        .unwrap_or_else(|_| MilliSecondsSinceUnixEpoch::now());
    let receipts: &mut Receipts = content.0.entry(event_id).or_default();
    receipts.entry(ReceiptType::Read).or_default().insert(user_id, Receipt::new(ts));
}
