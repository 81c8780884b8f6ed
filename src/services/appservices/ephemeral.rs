//! Ephemeral data for services that ask for it (`receive_ephemeral`, MSC2409): the
//! public read receipts (from the receipts stream, so none is lost across a restart)
//! and typing notifications (in memory, as they are everywhere) of the rooms the
//! service is interested in, and with MSC2409's to-device part on, the to-device
//! messages of its users (from their inboxes' stream), carried by the transactions
//! with the events.

use std::collections::BTreeMap;

use ruma::api::appservice::event::push_events::v1::{AnyAppserviceToDeviceEvent, EphemeralData};
use ruma::events::presence::{PresenceEvent, PresenceEventContent};
use ruma::events::receipt::{Receipt, ReceiptEvent, ReceiptEventContent, ReceiptType, Receipts};
use ruma::events::typing::{TypingEvent, TypingEventContent};
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, UInt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::interest::Interest;
use crate::services::ephemeral::Ephemeral;
use crate::services::presence::Presence;
use crate::store::Store;

/// Receipts, and to-device messages, read at a time, as events are.
const BATCH: i64 = 100;

/// Where a service's loop is on the streams besides events.
pub(super) struct Positions {
    pub receipts: i64,
    pub typing: u64,
    pub presence: u64,
    /// `None`: to-device messages are not pushed.
    pub to_device: Option<i64>,
}

/// What the next transaction carries besides events.
#[derive(Default)]
pub(super) struct EphemeralBatch {
    /// Where the receipts read end, if any were read.
    pub receipts_position: Option<i64>,
    /// The typing serial this batch is as of, if typing changed.
    pub typing_serial: Option<u64>,
    /// The presence serial this batch is as of, if presence changed.
    pub presence_serial: Option<u64>,
    /// Where the to-device messages read end, if any were read.
    pub to_device_position: Option<i64>,
    pub data: Vec<Raw<EphemeralData>>,
    pub to_device: Vec<Raw<AnyAppserviceToDeviceEvent>>,
}

impl EphemeralBatch {
    /// Nothing read: the positions need not move.
    pub fn is_idle(&self) -> bool {
        self.receipts_position.is_none()
            && self.typing_serial.is_none()
            && self.presence_serial.is_none()
            && self.to_device_position.is_none()
    }
}

pub(super) async fn gather(
    store: &Store,
    (ephemeral, presence): (&Ephemeral, &Presence),
    interest: &mut Interest<'_>,
    from: &Positions,
) -> anyhow::Result<EphemeralBatch> {
    let mut batch = EphemeralBatch::default();
    let receipts = store.public_receipts_after(from.receipts, BATCH).await?;
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
    let (serial, typing) = ephemeral.typing_changed_since(from.typing);
    batch.typing_serial = (serial > from.typing).then_some(serial);
    for (room_id, users) in typing {
        if interest.in_room(&room_id).await? {
            let Ok(room_id) = OwnedRoomId::try_from(room_id) else { continue };
            let users = users.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect();
            let event = TypingEvent::new(room_id, TypingEventContent::new(users));
            batch.data.push(Raw::new(&EphemeralData::Typing(event))?);
        }
    }
    gather_presence(presence, interest, from.presence, &mut batch).await?;
    if let Some(after) = from.to_device {
        gather_to_device(store, interest, after, &mut batch).await?;
    }
    Ok(batch)
}

/// The presence of users sharing a room the service is interested in (Synapse: whose
/// presence one of its users sees), as it is now.
async fn gather_presence(
    presence: &Presence,
    interest: &mut Interest<'_>,
    since: u64,
    batch: &mut EphemeralBatch,
) -> anyhow::Result<()> {
    let (serial, changed) = presence.changed_since(since);
    batch.presence_serial = (serial > since).then_some(serial);
    for (user, seen) in changed {
        if !interest.shares_a_room(&user).await? {
            continue;
        }
        let Ok(sender) = OwnedUserId::try_from(user) else { continue };
        let mut content = PresenceEventContent::new(seen.presence);
        content.status_msg = seen.status_msg;
        content.currently_active = seen.currently_active;
        content.last_active_ago = seen.last_active_ago.and_then(|ago| UInt::try_from(ago.as_millis()).ok());
        batch.data.push(Raw::new(&EphemeralData::Presence(PresenceEvent { content, sender }))?);
    }
    Ok(())
}

/// A to-device message as stored, and as pushed (MSC2409): with its recipient.
#[derive(Deserialize)]
struct Stored {
    sender: String,
    #[serde(rename = "type")]
    kind: String,
    content: Box<RawValue>,
}

#[derive(Serialize)]
struct Pushed {
    sender: String,
    #[serde(rename = "type")]
    kind: String,
    content: Box<RawValue>,
    to_user_id: String,
    to_device_id: String,
}

/// The messages for devices of the service's users (Synapse: users it is interested in).
async fn gather_to_device(
    store: &Store,
    interest: &Interest<'_>,
    after: i64,
    batch: &mut EphemeralBatch,
) -> anyhow::Result<()> {
    let messages = store.to_device_after(after, BATCH).await?;
    batch.to_device_position = messages.last().map(|(position, ..)| *position);
    for (_, to_user_id, to_device_id, message) in messages {
        if !interest.in_user(&to_user_id) {
            continue;
        }
        // Stored by kith itself; one that does not parse is left out.
        let Ok(Stored { sender, kind, content }) = serde_json::from_str(&message) else { continue };
        let pushed = Pushed { sender, kind, content, to_user_id, to_device_id };
        batch.to_device.push(Raw::from_json(serde_json::value::to_raw_value(&pushed)?));
    }
    Ok(())
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
