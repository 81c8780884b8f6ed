//! A `/send` transaction body from `origin.test` after its signature checked out: the
//! JSON read as the extractor reads it, split into PDUs and EDUs within the spec's
//! limits, each PDU's room and event id found as the answer needs them, and each EDU
//! parsed and taken through the checks its handler makes before any database lookup.

#![no_main]

use kith::services::federation::inbound::check_pdu::event_id_of;
use kith::services::federation::inbound::edus::InboundEdu;
use kith::services::federation::inbound::transaction::split_transaction;
use kith::services::profiles::check_remote_profile;
use kith::services::to_device::parse_remote;
use kith_fuzz::ORIGIN;
use libfuzzer_sys::fuzz_target;
use ruma::api::federation::transactions::edu::Edu;
use ruma::{RoomVersionId, ServerName, UserId};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err() {
        return;
    }
    let Ok(body @ Value::Object(_)) = serde_json::from_slice::<Value>(data) else { return };
    let Ok(origin) = <&ServerName>::try_from(ORIGIN) else { return };
    let Ok((pdus, edus)) = split_transaction(origin, &body) else { return };
    let rules = RoomVersionId::V11.rules().expect("version 11 has rules");
    for pdu in &pdus {
        if pdu.get("room_id").and_then(Value::as_str).is_some() {
            let _ = event_id_of(pdu, &rules);
            let _ = pdu["state_key"].as_str().and_then(|k| <&UserId>::try_from(k).ok());
        }
    }
    for edu in &edus {
        let Ok(parsed) = InboundEdu::parse(edu) else { continue };
        match parsed {
            InboundEdu::Known(Edu::DirectToDevice(_)) => {
                if let Ok(messages) = parse_remote(origin, &edu["content"]) {
                    assert_eq!(messages.sender.server_name(), origin);
                }
            }
            InboundEdu::Known(Edu::Receipt(receipts)) => {
                for receipts in receipts.receipts.values() {
                    for (user_id, receipt) in &receipts.read {
                        let _ = (user_id.server_name() == origin, receipt.event_ids.first());
                    }
                }
            }
            InboundEdu::Known(Edu::Typing(typing)) => {
                let _ = typing.user_id.server_name() == origin;
            }
            InboundEdu::Profile(update) => {
                let fields = update.fields.into_iter().filter(|(_, value)| !value.is_null()).collect();
                let _ = check_remote_profile(&fields);
            }
            InboundEdu::Known(_) | InboundEdu::Unknown(_) => {}
        }
    }
});
