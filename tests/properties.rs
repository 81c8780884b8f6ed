//! Property tests for the parsers and validators behind every JSON entry point: on any
//! input they answer (never panic), with the Matrix error the API promises, and they
//! agree with a simple statement of their rule.

use kith::api::extract::parse_json_object;
use kith::config::percent_encode;
use kith::services::account_data::check_filter;
use kith::services::federation::edus::EduHandlers;
use kith::services::inbound::check_pdu::parse_pdu;
use kith::services::rooms::limits::check_type_and_state_key;
use kith::services::sync::SyncToken;
use kith::validation::{check_json_text, decodes_to_text};
use proptest::prelude::*;
use ruma::RoomVersionId;
use serde_json::{Map, Value};

/// The EDU registry with handlers that only parse, into ruma's types as the real ones do.
fn edu_parsers() -> EduHandlers {
    use ruma::api::federation::transactions::edu::{DeviceListUpdateContent, ReceiptContent, TypingContent};
    let mut handlers = EduHandlers::default();
    handlers.register("m.typing", |_, _: TypingContent| async { Ok(()) });
    handlers.register("m.receipt", |_, _: ReceiptContent| async { Ok(()) });
    handlers.register("m.device_list_update", |_, _: DeviceListUpdateContent| async { Ok(()) });
    handlers.register("m.direct_to_device", |_, _: Value| async { Ok(()) });
    handlers
}

/// Any JSON value, NUL and odd characters included, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![Just("m.room.member"), Just("\u{0}"), Just("@a:b"), Just("$e"), Just("!r:b")]
            .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON objects shaped like events: the usual fields with arbitrary values.
fn event_like() -> impl Strategy<Value = Value> {
    let fields = [
        "type",
        "state_key",
        "sender",
        "room_id",
        "content",
        "prev_events",
        "auth_events",
        "depth",
        "hashes",
        "signatures",
        "origin_server_ts",
        "redacts",
        "unsigned",
    ];
    prop::collection::vec((prop::sample::select(fields.to_vec()), json_value()), 0..12)
        .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn percent_encoded_text_decodes_unless_it_holds_nul(text in ".{0,40}") {
        prop_assert_eq!(decodes_to_text(&percent_encode(&text), false), !text.contains('\0'));
    }

    #[test]
    fn uri_parts_never_panic(raw in "[%0-9A-Za-z+ ]{0,20}") {
        let _ = decodes_to_text(&raw, true);
    }

    #[test]
    fn json_text_is_refused_exactly_when_it_holds_nul(value in json_value()) {
        // serde_json writes U+0000 as `\u0000`, and nothing else as that escape.
        let holds_nul = value.to_string().contains("\\u0000");
        prop_assert_eq!(check_json_text(&value).is_err(), holds_nul);
    }

    #[test]
    fn bodies_parse_or_get_a_matrix_error(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(err) = parse_json_object::<Value>(&bytes) {
            prop_assert!(["M_NOT_JSON", "M_BAD_JSON", "M_MISSING_PARAM"].contains(&err.errcode), "{}", err.errcode);
        }
    }

    #[test]
    fn json_bodies_parse_or_get_a_matrix_error(value in json_value()) {
        match parse_json_object::<Value>(value.to_string().as_bytes()) {
            Ok(parsed) => prop_assert!(parsed.is_object()),
            Err(err) => prop_assert!(["M_BAD_JSON", "M_NOT_JSON"].contains(&err.errcode), "{}", err.errcode),
        }
    }

    #[test]
    fn sync_tokens_round_trip_and_garbage_is_refused(events in 0i64..1 << 50, data in 0i64..1 << 50,
                                                       receipts in 0i64..1 << 50, typing in 0u64..1 << 50,
                                                       to_device in 0i64..1 << 50, device_lists in 0i64..1 << 50,
                                                       garbage in ".{0,24}") {
        let token = SyncToken { events, account_data: data, receipts, typing, to_device, device_lists };
        prop_assert_eq!(SyncToken::parse(&token.format()).ok(), Some(token));
        if let Err(err) = SyncToken::parse(&garbage) {
            prop_assert_eq!(err.errcode, "M_INVALID_PARAM");
        }
    }

    #[test]
    fn event_types_and_state_keys_follow_the_size_rule(kind in ".{0,300}", key in prop::option::of(".{0,300}")) {
        let fits = |text: &str| text.len() <= 255 && !text.contains('\0');
        let expected = !kind.is_empty() && fits(&kind) && key.as_deref().is_none_or(fits);
        prop_assert_eq!(check_type_and_state_key(&kind, key.as_deref()).is_ok(), expected);
    }

    #[test]
    fn filters_are_checked_without_panicking(value in json_value()) {
        if let Err(err) = check_filter(&value) {
            prop_assert!(["M_BAD_JSON", "M_TOO_LARGE"].contains(&err.errcode), "{}", err.errcode);
        }
    }

    #[test]
    fn edus_parse_or_are_refused(value in json_value(), kind in prop::sample::select(vec![
        "m.typing", "m.receipt", "m.presence", "m.device_list_update", "m.direct_to_device", "org.example"])) {
        let handlers = edu_parsers();
        let origin = ruma::server_name!("x");
        let _ = handlers.handle(origin, &value);
        let edu = serde_json::json!({ "edu_type": kind, "content": value });
        let _ = handlers.handle(origin, &edu);
    }

    #[test]
    fn pdus_parse_or_are_refused(value in event_like()) {
        for version in [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12] {
            let rules = version.rules().expect("rules");
            if let Ok(parsed) = parse_pdu(&value, &rules) {
                prop_assert!(parsed.event_id.starts_with('$'));
            }
        }
    }
}
