//! A PDU as `/send`, `/event`, `/state` and `/get_missing_events` answers bring it: the
//! JSON parsed, its format and event id checked for the room version, then its
//! signatures verified against the fixed key of `origin.test`, as `check_pdu` does.
//! The first byte picks the room version (those kith joins), the rest is the JSON.

#![no_main]

use kith::services::inbound::check_pdu::{event_id_of, parse_pdu, verify_pdu};
use kith_fuzz::public_keys;
use libfuzzer_sys::fuzz_target;
use ruma::RoomVersionId;
use serde_json::Value;

const VERSIONS: [RoomVersionId; 3] = [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];

fuzz_target!(|data: &[u8]| {
    let Some((choice, json)) = data.split_first() else { return };
    let Some(rules) = VERSIONS[usize::from(*choice) % VERSIONS.len()].rules() else { return };
    let Ok(value) = serde_json::from_slice::<Value>(json) else { return };
    let event_id = event_id_of(&value, &rules);
    let Ok(parsed) = parse_pdu(&value, &rules) else { return };
    // A `/send` answer files a PDU's result under the id `event_id_of` gives it.
    assert_eq!(event_id.as_deref(), Some(parsed.event_id.as_str()));
    if ruma::signatures::required_server_signatures_to_verify_event(&parsed.object, &rules.signatures).is_err() {
        return;
    }
    let keys = public_keys(&[kith_fuzz::ORIGIN, kith_fuzz::LOCAL, kith_fuzz::NOTARY]);
    if let Ok(checked) = verify_pdu(parsed, &keys, &rules) {
        assert_eq!(Some(checked.event_id), event_id);
    }
});
