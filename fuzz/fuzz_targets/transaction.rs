//! A `/send` transaction body from `origin.test` after its signature checked out: the
//! JSON read as the extractor reads it, split into PDUs and EDUs within the spec's
//! limits, each PDU's room and event id found as the answer needs them, and each EDU
//! parsed and taken through the checks its handler makes before any database lookup.

#![no_main]

use kith::endpoints::federation::send_transaction_message::Transaction;
use kith::endpoints::profile_edu::{EDU_TYPES as PROFILE_EDU_TYPES, ProfileUpdate};
use kith::services::inbound::check_pdu::event_id_of;
use kith::services::inbound::transaction::split_transaction;
use kith::services::profiles::check_remote_profile;
use kith::services::to_device::parse_remote;
use kith_fuzz::ORIGIN;
use libfuzzer_sys::fuzz_target;
use ruma::api::federation::transactions::edu::{ReceiptContent, TypingContent};
use ruma::{RoomVersionId, ServerName, UserId};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err() {
        return;
    }
    let Ok(body @ Value::Object(_)) = serde_json::from_slice::<Value>(data) else { return };
    let Ok(origin) = <&ServerName>::try_from(ORIGIN) else { return };
    let Ok(body) = serde_json::from_value::<Transaction>(body) else { return };
    let Ok((pdus, edus)) = split_transaction(origin, &body) else { return };
    let rules = RoomVersionId::V11.rules().expect("version 11 has rules");
    for pdu in pdus {
        if pdu.get("room_id").and_then(Value::as_str).is_some() {
            let _ = event_id_of(pdu, &rules);
            let _ = pdu["state_key"].as_str().and_then(|k| <&UserId>::try_from(k).ok());
        }
    }
    for edu in edus {
        check_edu(origin, edu);
    }
});

/// An EDU's content parsed into the type its handler registers for it, and the checks
/// that handler makes before any lookup.
fn check_edu(origin: &ServerName, edu: &Value) {
    let (Some(edu_type), content) = (edu["edu_type"].as_str(), &edu["content"]) else { return };
    match edu_type {
        "m.direct_to_device" => {
            if let Ok(messages) = parse_remote(origin, content) {
                assert_eq!(messages.sender.server_name(), origin);
            }
        }
        "m.receipt" => {
            let Ok(receipts) = serde_json::from_value::<ReceiptContent>(content.clone()) else { return };
            for receipts in receipts.receipts.values() {
                for (user_id, receipt) in &receipts.read {
                    let _ = (user_id.server_name() == origin, receipt.event_ids.first());
                }
            }
        }
        "m.typing" => {
            let Ok(typing) = serde_json::from_value::<TypingContent>(content.clone()) else { return };
            let _ = typing.user_id.server_name() == origin;
        }
        kind if PROFILE_EDU_TYPES.contains(&kind) => {
            let Ok(update) = serde_json::from_value::<ProfileUpdate>(content.clone()) else { return };
            let fields = update.fields.into_iter().filter(|(_, value)| !value.is_null()).collect();
            let _ = check_remote_profile(&fields);
        }
        _ => {}
    }
}
