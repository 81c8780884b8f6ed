//! Step 3: checks on a PDU from another server before anything else looks at it: canonical
//! JSON, the room version's format and limits, the event id as its reference hash, the
//! signatures of the servers that must have signed it, and the content hash (an event
//! whose hash does not match is redacted, as the spec says).

use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures::{PublicKeyMap, Verified};
use serde_json::Value;

use std::collections::HashSet;

use ruma::api::federation::event::get_event;
use ruma::{OwnedServerName, ServerName};
use serde_json::value::RawValue as RawJsonValue;

use super::{Inbound, parse_id};
use crate::error::ApiResult;
use crate::services::federation::FederationError;
use crate::services::rooms::MAX_PDU_BYTES;
use crate::services::rooms::limits::{ShapeError, check_type_and_state_key};
use crate::services::rooms::pdu::{Pdu, PduFormatError};
use crate::services::rooms::remote::CheckedEvent;

/// A PDU names at most this many parents and auth events (the spec's limits).
const MAX_PREV_EVENTS: usize = 20;
const MAX_AUTH_EVENTS: usize = 10;

/// A PDU whose format is valid for its room version, not yet signature-checked.
pub struct ParsedPdu {
    pub event_id: String,
    pub object: CanonicalJsonObject,
    pub pdu: Pdu,
}

/// Why a PDU from another server is refused before the auth rules look at it.
#[derive(Debug, thiserror::Error)]
pub enum PduCheckError {
    #[error("a PDU must be a JSON object")]
    NotAnObject,
    #[error("not canonical JSON: {0}")]
    NotCanonical(serde_json::Error),
    #[error("the PDU is larger than 65536 bytes")]
    TooLarge,
    #[error("missing or invalid `{0}`")]
    Field(&'static str),
    #[error("cannot compute the event id: {0}")]
    EventId(ruma::signatures::JsonError),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Format(#[from] PduFormatError),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("more than {MAX_PREV_EVENTS} prev_events")]
    TooManyPrevEvents,
    #[error("more than {MAX_AUTH_EVENTS} auth_events")]
    TooManyAuthEvents,
    #[error("{0}")]
    RequiredSignatures(ruma::signatures::VerificationError),
    #[error("bad signature: {0}")]
    Signature(ruma::signatures::VerificationError),
    #[error("cannot redact: {0}")]
    Redaction(ruma::canonical_json::CanonicalJsonFieldError),
    #[error("cannot get the keys of {server}: {error}")]
    Keys { server: OwnedServerName, error: FederationError },
}

/// The event id a PDU would have, when it is canonical JSON at all: what a per-PDU
/// error in a `/send` answer is filed under.
pub fn event_id_of(value: &Value, rules: &RoomVersionRules) -> Option<String> {
    let mut object: CanonicalJsonObject = serde_json::from_value(value.clone()).ok()?;
    object.remove("unsigned");
    ruma::signatures::reference_hash(&object, rules).ok().map(|reference| format!("${reference}"))
}

/// Parses a PDU as received: canonical JSON (no floats, integers within ±2^53), the
/// fields the auth rules need with their types, the size limit, and the event id.
pub fn parse_pdu(value: &Value, rules: &RoomVersionRules) -> Result<ParsedPdu, PduCheckError> {
    if !value.is_object() {
        return Err(PduCheckError::NotAnObject);
    }
    let mut object: CanonicalJsonObject = serde_json::from_value(value.clone()).map_err(PduCheckError::NotCanonical)?;
    // What a sender puts in `unsigned` is not covered by its signature; keep none of it.
    object.remove("unsigned");
    if CanonicalJsonValue::Object(object.clone()).to_string().len() > MAX_PDU_BYTES {
        return Err(PduCheckError::TooLarge);
    }
    for (field, is_valid) in [
        ("hashes", object.get("hashes").is_some_and(|v| matches!(v, CanonicalJsonValue::Object(_)))),
        ("signatures", object.get("signatures").is_some_and(|v| matches!(v, CanonicalJsonValue::Object(_)))),
        (
            "depth",
            object.get("depth").is_some_and(|v| matches!(v, CanonicalJsonValue::Integer(i) if i64::from(*i) >= 0)),
        ),
        ("type", object.get("type").is_some_and(|v| matches!(v, CanonicalJsonValue::String(_)))),
    ] {
        if !is_valid {
            return Err(PduCheckError::Field(field));
        }
    }
    let reference = ruma::signatures::reference_hash(&object, rules).map_err(PduCheckError::EventId)?;
    let event_id = format!("${reference}");
    let json = serde_json::to_value(&object)?;
    let pdu = Pdu::from_json(&event_id, &json, false)?;
    check_type_and_state_key(&pdu.kind.to_string(), pdu.state_key.as_deref())?;
    if pdu.prev_events.len() > MAX_PREV_EVENTS {
        return Err(PduCheckError::TooManyPrevEvents);
    }
    if pdu.auth_events.len() > MAX_AUTH_EVENTS {
        return Err(PduCheckError::TooManyAuthEvents);
    }
    Ok(ParsedPdu { event_id, object, pdu })
}

/// Verifies a parsed PDU's signatures with the given keys; a hash mismatch redacts it.
pub fn verify_pdu(
    parsed: ParsedPdu,
    keys: &PublicKeyMap,
    rules: &RoomVersionRules,
) -> Result<CheckedEvent, PduCheckError> {
    let verified = ruma::signatures::verify_event(keys, &parsed.object, rules).map_err(PduCheckError::Signature)?;
    let object = match verified {
        Verified::All => parsed.object,
        Verified::Signatures => {
            tracing::warn!(event_id = %parsed.event_id, "content hash mismatch: redacting the event");
            ruma::canonical_json::redact(parsed.object, &rules.redaction, None).map_err(PduCheckError::Redaction)?
        }
    };
    let json = serde_json::to_value(&object)?;
    let pdu = Pdu::from_json(&parsed.event_id, &json, false)?;
    Ok(CheckedEvent { event_id: parsed.event_id, json, pdu })
}

/// A fetched state or auth chain is read no further than this many events (as many as
/// a `/state_ids` answer may name; the answer's size is bounded too).
const MAX_FETCHED_EVENTS: usize = 500_000;

impl Inbound {
    /// Parses a PDU and checks its signatures with keys fetched from the servers that
    /// must have signed it.
    pub async fn check_pdu(&self, value: &Value, rules: &RoomVersionRules) -> Result<CheckedEvent, PduCheckError> {
        let parsed = parse_pdu(value, rules)?;
        let servers = ruma::signatures::required_server_signatures_to_verify_event(&parsed.object, &rules.signatures)
            .map_err(PduCheckError::RequiredSignatures)?;
        let ts = match parsed.object.get("origin_server_ts") {
            Some(CanonicalJsonValue::Integer(ts)) => u64::try_from(i64::from(*ts)).unwrap_or(0),
            _ => 0,
        };
        let mut keys = PublicKeyMap::new();
        for server in servers {
            // The keys the server says it signed with, as they were when the event was made.
            let key_ids = signing_key_ids(&parsed.object, server.as_str());
            let key_ids: Vec<&str> = key_ids.iter().map(String::as_str).collect();
            let set = self
                .keys
                .signing_keys(&server, &key_ids)
                .await
                .map_err(|error| PduCheckError::Keys { server: server.clone(), error })?;
            keys.insert(server.to_string(), set.valid_at(ts));
        }
        verify_pdu(parsed, &keys, rules)
    }

    /// Checks a list of PDUs another server returned; drops (and logs) bad ones, those of
    /// another room, and everything past the size bound.
    pub async fn check_fetched(
        &self,
        rules: &RoomVersionRules,
        room_id: &str,
        list: &[Box<RawJsonValue>],
    ) -> Vec<CheckedEvent> {
        let mut checked = Vec::new();
        let mut seen = HashSet::new();
        for raw in list.iter().take(MAX_FETCHED_EVENTS) {
            let checked_pdu = match serde_json::from_str::<Value>(raw.get()) {
                Ok(value) => self.check_pdu(&value, rules).await,
                Err(err) => Err(PduCheckError::Json(err)),
            };
            match checked_pdu {
                Ok(event) if event.pdu.room_id.as_str() == room_id => {
                    if seen.insert(event.event_id.clone()) {
                        checked.push(event);
                    }
                }
                Ok(event) => tracing::info!(event_id = %event.event_id, "dropping a fetched event of another room"),
                Err(err) => tracing::info!(%err, "dropping a fetched event"),
            }
        }
        checked
    }

    /// One event by id from `origin`, checked to be the event asked for.
    pub async fn fetch_event(
        &self,
        origin: &ServerName,
        rules: &RoomVersionRules,
        room_id: &str,
        event_id: &str,
    ) -> ApiResult<Option<CheckedEvent>> {
        let request = get_event::v1::Request::new(parse_id(event_id)?);
        let answer = self.client.send(origin, request).await.map_err(|e| e.to_peer_error(origin, "an event"))?;
        let found = self.check_fetched(rules, room_id, std::slice::from_ref(&answer.pdu)).await;
        Ok(found.into_iter().find(|e| e.event_id == event_id))
    }
}

/// The key ids of `server`'s signatures on an event.
fn signing_key_ids(object: &CanonicalJsonObject, server: &str) -> Vec<String> {
    match object.get("signatures") {
        Some(CanonicalJsonValue::Object(all)) => match all.get(server) {
            Some(CanonicalJsonValue::Object(by_key)) => by_key.keys().cloned().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::RoomVersionId;
    use ruma::events::room::message::RoomMessageEventContent;
    use ruma::signatures::Ed25519KeyPair;

    use crate::services::rooms::pdu::fixture::{PduFixture, json_text};

    fn rules() -> RoomVersionRules {
        RoomVersionId::V10.rules().unwrap()
    }

    fn key_pair() -> Ed25519KeyPair {
        let document = Ed25519KeyPair::generate();
        Ed25519KeyPair::from_der(&document, "k1".into()).unwrap()
    }

    fn keys_of(server: &str, pair: &Ed25519KeyPair) -> PublicKeyMap {
        let mut set = ruma::signatures::PublicKeySet::new();
        set.insert("ed25519:k1".into(), ruma::serde::Base64::new(pair.public_key().to_vec()));
        let mut map = PublicKeyMap::new();
        map.insert(server.into(), set);
        map
    }

    fn signed_message(pair: &Ed25519KeyPair, body: &str) -> Value {
        let fields = PduFixture {
            room_id: "!room:remote.test",
            sender: "@m:remote.test",
            content: serde_json::to_value(RoomMessageEventContent::text_plain(body)).unwrap(),
            origin_server_ts: 5,
            depth: Some(3),
            prev_events: vec!["$prev"],
            auth_events: vec!["$create"],
            ..PduFixture::message()
        };
        let mut object: CanonicalJsonObject = serde_json::from_value(fields.to_value()).unwrap();
        ruma::signatures::hash_and_sign_event("remote.test", pair, &mut object, &rules().redaction).unwrap();
        serde_json::to_value(object).unwrap()
    }

    #[test]
    fn a_signed_event_verifies_and_a_tampered_one_is_redacted() {
        let pair = key_pair();
        let event = signed_message(&pair, "hello");
        let checked = verify_pdu(parse_pdu(&event, &rules()).unwrap(), &keys_of("remote.test", &pair), &rules());
        assert_eq!(checked.unwrap().json["content"]["body"], "hello");

        let mut tampered = event.clone();
        tampered["content"]["body"] = "forged".into();
        let checked =
            verify_pdu(parse_pdu(&tampered, &rules()).unwrap(), &keys_of("remote.test", &pair), &rules()).unwrap();
        assert_eq!(checked.json["content"], json_text("{}"), "a hash mismatch must redact");
    }

    #[test]
    fn wrong_keys_and_wrong_signers_fail() {
        let pair = key_pair();
        let event = signed_message(&pair, "hello");
        let other = key_pair();
        assert!(verify_pdu(parse_pdu(&event, &rules()).unwrap(), &keys_of("remote.test", &other), &rules()).is_err());
        assert!(verify_pdu(parse_pdu(&event, &rules()).unwrap(), &keys_of("elsewhere.test", &pair), &rules()).is_err());
        let mut unsigned = event.clone();
        unsigned["signatures"] = json_text("{}");
        assert!(verify_pdu(parse_pdu(&unsigned, &rules()).unwrap(), &keys_of("remote.test", &pair), &rules()).is_err());
        // Changing a signed field other than the content changes the event id, so the
        // signature no longer matches.
        let mut moved = event.clone();
        moved["depth"] = 4.into();
        assert!(verify_pdu(parse_pdu(&moved, &rules()).unwrap(), &keys_of("remote.test", &pair), &rules()).is_err());
    }

    #[test]
    fn hostile_pdus_are_errors_not_panics() {
        let pair = key_pair();
        let good = signed_message(&pair, "hi");
        assert!(parse_pdu(&good, &rules()).is_ok());
        let mut huge = good.clone();
        huge["content"]["body"] = "x".repeat(70_000).into();
        let mut cases: Vec<Value> = vec![Value::Null, json_text("[]"), "event".into(), 5.into(), json_text("{}"), huge];
        for (field, value) in [
            ("depth", Value::from(-1)),
            ("depth", Value::from(1.5)),
            ("depth", Value::from(9_007_199_254_740_993_u64)),
            ("depth", Value::from("3")),
            ("origin_server_ts", Value::from(1e300)),
            ("origin_server_ts", Value::from(u64::MAX)),
            ("sender", Value::from(vec!["@m:remote.test"])),
            ("sender", Value::from("not a user")),
            ("room_id", Value::from(7)),
            ("type", Value::Null),
            ("hashes", Value::from("sha256")),
            ("signatures", json_text("[]")),
            ("prev_events", json_text(r#"{"$a": {}}"#)),
            ("prev_events", Value::from((0..21).map(|i| format!("$e{i}")).collect::<Vec<_>>())),
            ("auth_events", Value::from((0..11).map(|i| format!("$e{i}")).collect::<Vec<_>>())),
            ("auth_events", json_text("[null]")),
            ("state_key", Value::from(false)),
            ("content", json_text(r#"{ "n": 1.25 }"#)),
        ] {
            let mut bad = good.clone();
            bad[field] = value;
            cases.push(bad);
        }
        for field in ["room_id", "sender", "type", "content", "prev_events", "auth_events", "depth", "hashes"] {
            let mut bad = good.clone();
            bad.as_object_mut().unwrap().remove(field);
            cases.push(bad);
        }
        for case in cases {
            assert!(
                parse_pdu(&case, &rules()).is_err(),
                "accepted {}",
                &case.to_string()[..case.to_string().len().min(200)]
            );
        }
    }

    #[test]
    fn duplicate_keys_and_non_canonical_text_do_not_panic() {
        let pair = key_pair();
        let good = signed_message(&pair, "hi");
        let text = good.to_string();
        // Duplicate keys: the JSON parser keeps the last one, so the event either parses
        // to what its signature covers or fails verification; it never panics.
        let duplicated = text.replacen("\"depth\":3", "\"depth\":3,\"depth\":4", 1);
        let value: Value = serde_json::from_str(&duplicated).unwrap();
        let parsed = parse_pdu(&value, &rules()).unwrap();
        assert!(verify_pdu(parsed, &keys_of("remote.test", &pair), &rules()).is_err());
        // Whitespace and key order do not matter to canonical JSON.
        let spaced = serde_json::to_string_pretty(&good).unwrap();
        let value: Value = serde_json::from_str(&spaced).unwrap();
        let parsed = parse_pdu(&value, &rules()).unwrap();
        assert!(verify_pdu(parsed, &keys_of("remote.test", &pair), &rules()).is_ok());
    }
}
