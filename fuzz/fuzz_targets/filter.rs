//! `/sync` filters, as a client gives them: inline in `?filter=` (JSON, or else a stored
//! filter's id), and as a `POST /filter` body about to be stored (the same checks). A
//! filter that passes is then applied as `/sync` and `/messages` apply their room event
//! filters, to a few events.

#![no_main]

use kith::api::extract::parse_json_object;
use kith::services::account_data::{SyncFilter, check_filter, parse_sync_filter};
use kith::services::rooms::filter::EventFilter;
use kith::store::StoredEvent;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fn event(kind: &str, sender: &str) -> StoredEvent {
    StoredEvent {
        event_id: "$e".into(),
        room_id: "!r:kith.test".into(),
        stream_ordering: 1,
        depth: 1,
        json: json!({ "type": kind, "sender": sender, "content": {} }),
        rejected: false,
        state_group_before: None,
        state_group_after: None,
        outlier: false,
    }
}

fn apply(filter: &EventFilter) {
    for (kind, sender) in [("m.room.message", "@a:kith.test"), ("m.room.member", "@b:origin.test"), ("", "")] {
        let _ = filter.matches(&event(kind, sender));
    }
}

fn check_timeline(filter: &Value) {
    if let Some(timeline) = filter.pointer("/room/timeline") {
        let timeline = serde_json::from_value::<EventFilter>(timeline.clone());
        // `check_filter` promised that the timeline filter is one kith can apply.
        apply(&timeline.expect("a checked filter's timeline parses"));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(SyncFilter::Inline(filter)) = parse_sync_filter(text) {
            check_timeline(&filter);
        }
        if let Ok(filter) = EventFilter::parse(Some(text)) {
            apply(&filter);
        }
    }
    if let Ok(body) = parse_json_object::<Map<String, Value>>(data) {
        let body = Value::Object(body);
        if check_filter(&body).is_ok() {
            check_timeline(&body);
        }
    }
});
