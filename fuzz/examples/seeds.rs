//! Writes the seed corpora in `fuzz/seeds/`: real requests, events, tokens and configs of
//! the kinds each target reads, those that carry signatures signed with the fixed key of
//! `kith_fuzz` (and checked to verify, so the fuzzer starts past the signature checks).
//! Run from `fuzz/` with `cargo run --example seeds` after changing them.

use std::path::Path;

use axum::http::{HeaderMap, HeaderValue, Request, header};
use kith::services::inbound::authenticate::{parse_authorization, verify_signature};
use kith::services::inbound::check_pdu::{parse_pdu, verify_pdu};
use kith::services::remote_keys::{verify_key_response, verify_notary_response};
use kith_fuzz::{LOCAL, NOTARY, ORIGIN, key_pair};
use ruma::api::federation::authentication::{XMatrix, XMatrixSigningInput};
use ruma::canonical_json::CanonicalJsonObject;
use ruma::{OwnedServerName, RoomVersionId, ServerName};
use serde_json::{Value, json};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn object(value: Value) -> CanonicalJsonObject {
    serde_json::from_value(value).unwrap()
}

/// An event of `origin.test` in `!room:origin.test`, hashed and signed for `version`.
fn signed_event(version: &RoomVersionId, fields: Value) -> Value {
    let mut event = object(json!({
        "room_id": "!room:origin.test", "sender": "@alice:origin.test", "origin_server_ts": 1_700_000_000_000_u64,
        "depth": 7, "prev_events": ["$Kw3mUVbeT1Dj6zuNRNCJvMZGNyKBWRKNyJ2h4VlJ5Ww"],
        "auth_events": ["$NrdHnAcRBsgu2MyZx6yqLB4-_cM26vBzmCH-RqKgbbs", "$o6N0pk2fYkJrUSUJi6sQd5rUOEnqlOuAh-SPSDbKkRQ"],
    }));
    for (key, value) in object(fields) {
        event.insert(key, value);
    }
    let rules = version.rules().unwrap();
    ruma::signatures::hash_and_sign_event(ORIGIN, key_pair(), &mut event, &rules.redaction).unwrap();
    serde_json::to_value(event).unwrap()
}

fn pdu_seeds() -> Vec<Value> {
    let mut events = Vec::new();
    for version in [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12] {
        events.push(signed_event(
            &version,
            json!({ "type": "m.room.message", "content": { "msgtype": "m.text", "body": "hello from origin" } }),
        ));
        events.push(signed_event(
            &version,
            json!({ "type": "m.room.member", "state_key": "@alice:origin.test",
                    "content": { "membership": "join", "displayname": "Alice" } }),
        ));
    }
    events
}

fn pdus() {
    let versions = [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];
    for (i, event) in pdu_seeds().iter().enumerate() {
        let rules = versions[i / 2].rules().unwrap();
        let parsed = parse_pdu(event, &rules).unwrap();
        let keys = kith_fuzz::public_keys(&[ORIGIN]);
        assert_eq!(verify_pdu(parsed, &keys, &rules).unwrap().json, *event, "a seed that verifies whole");
        // The first byte picks versions 10, 11, 12 in turn, as the events were made.
        let mut bytes = vec![(i / 2) as u8];
        bytes.extend(serde_json::to_vec(event).unwrap());
        write("pdu", &format!("signed-{i}"), &bytes);
    }
    let mut tampered = pdu_seeds()[0].clone();
    tampered["content"]["body"] = json!("changed on the way");
    write("pdu", "tampered", &[&[0u8][..], &serde_json::to_vec(&tampered).unwrap()].concat());
}

fn transactions() {
    let edus = json!([
        { "edu_type": "m.typing", "content": { "room_id": "!room:origin.test", "user_id": "@alice:origin.test", "typing": true } },
        { "edu_type": "m.receipt", "content": { "!room:origin.test": { "m.read": { "@alice:origin.test": {
            "event_ids": ["$Kw3mUVbeT1Dj6zuNRNCJvMZGNyKBWRKNyJ2h4VlJ5Ww"], "data": { "ts": 1_700_000_000_000_u64 } } } } } },
        { "edu_type": "m.presence", "content": { "push": [{ "user_id": "@alice:origin.test", "presence": "online", "last_active_ago": 5000 }] } },
        { "edu_type": "m.device_list_update", "content": { "user_id": "@alice:origin.test", "device_id": "PHONE",
            "stream_id": 6, "prev_id": [5], "deleted": false, "keys": { "user_id": "@alice:origin.test", "device_id": "PHONE",
            "algorithms": ["m.olm.v1.curve25519-aes-sha2"], "keys": { "ed25519:PHONE": "key" }, "signatures": {} } } },
        { "edu_type": "m.signing_key_update", "content": { "user_id": "@alice:origin.test" } },
        { "edu_type": "m.direct_to_device", "content": { "sender": "@alice:origin.test", "type": "m.room_key_request",
            "message_id": "hiezohf6Hoo7kaev", "messages": { "@bob:kith.test": { "*": { "action": "request_cancellation",
            "request_id": "1", "requesting_device_id": "PHONE" } } } } },
        { "edu_type": "uk.tcpip.msc4259.profile", "content": { "user_id": "@alice:origin.test",
            "fields": { "displayname": "Alice Liddell", "avatar_url": null } } },
        { "edu_type": "m.profile", "content": { "user_id": "@alice:origin.test", "fields": { "m.tz": "Europe/London" } } },
        { "edu_type": "org.example.custom", "content": {} },
    ]);
    let body =
        json!({ "origin": ORIGIN, "origin_server_ts": 1_700_000_000_000_u64, "pdus": pdu_seeds()[..2], "edus": edus });
    write("transaction", "full", &serde_json::to_vec(&body).unwrap());
    for (i, edu) in edus.as_array().unwrap().iter().enumerate() {
        let body = json!({ "origin": ORIGIN, "origin_server_ts": 1_700_000_000_000_u64, "pdus": [], "edus": [edu] });
        write("transaction", &format!("edu-{i}"), &serde_json::to_vec(&body).unwrap());
    }
}

fn signed_request(method: &str, uri: &str, body: &[u8], destination: Option<&str>) -> Vec<u8> {
    let request = Request::builder().method(method).uri(uri).body(body.to_vec()).unwrap();
    let input = XMatrixSigningInput::new(
        OwnedServerName::try_from(ORIGIN).unwrap(),
        OwnedServerName::try_from(LOCAL).unwrap(),
        key_pair(),
    );
    let mut header = XMatrix::sign_http_request(&request, input).unwrap().to_string();
    if destination.is_none() {
        // Servers before the destination parameter leave it out.
        header =
            header.replace(&format!("destination=\"{LOCAL}\","), "").replace(&format!(",destination=\"{LOCAL}\""), "");
    }
    let headers: HeaderMap = [(header::AUTHORIZATION, HeaderValue::from_str(&header).unwrap())].into_iter().collect();
    let local = <&ServerName>::try_from(LOCAL).unwrap();
    let xmatrix = parse_authorization(&headers, local).unwrap();
    let keys = kith_fuzz::public_keys(&[ORIGIN]);
    verify_signature(&xmatrix, &keys, local, &method.parse().unwrap(), &uri.parse().unwrap(), body).unwrap();
    [format!("{method}\n{uri}\n{header}\n\n").as_bytes(), body].concat()
}

fn xmatrix() {
    write(
        "xmatrix",
        "get",
        &signed_request("GET", "/_matrix/federation/v1/query/profile?user_id=%40bob%3Akith.test", b"", Some(LOCAL)),
    );
    let body = serde_json::to_vec(&json!({ "origin": ORIGIN, "pdus": [], "edus": [] })).unwrap();
    write("xmatrix", "put", &signed_request("PUT", "/_matrix/federation/v1/send/1700000000000", &body, Some(LOCAL)));
    // ruma signs no body canonical JSON cannot hold; kith verifies such bodies leniently.
    let signed = signed_request("POST", "/_matrix/federation/v1/user/keys/query", b"{}", Some(LOCAL));
    write("xmatrix", "float-body", &[&signed[..signed.len() - 2], br#"{"a":1.5}"#].concat());
    write("xmatrix", "no-destination", &signed_request("GET", "/_matrix/federation/v1/version", b"", None));
}

fn key_responses() {
    let mut keys = object(json!({
        "server_name": ORIGIN,
        "valid_until_ts": 4_102_444_800_000_u64,
        "verify_keys": { "ed25519:fuzz": { "key": ruma::serde::Base64::<ruma::serde::base64::Standard>::new(key_pair().public_key().to_vec()).encode() } },
        "old_verify_keys": { "ed25519:old": { "key": "l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ", "expired_ts": 1_600_000_000_000_u64 } },
    }));
    ruma::signatures::sign_json(ORIGIN, key_pair(), &mut keys).unwrap();
    let origin = <&ServerName>::try_from(ORIGIN).unwrap();
    verify_key_response(origin, &serde_json::to_value(&keys).unwrap()).unwrap();
    write("server_keys", "self-signed", &serde_json::to_vec(&keys).unwrap());
    ruma::signatures::sign_json(NOTARY, key_pair(), &mut keys).unwrap();
    let notary = <&ServerName>::try_from(NOTARY).unwrap();
    verify_notary_response(origin, notary, &kith_fuzz::public_key_set(), &serde_json::to_value(&keys).unwrap())
        .unwrap();
    write("server_keys", "notary", &serde_json::to_vec(&keys).unwrap());
}

fn texts(target: &str, seeds: &[&str]) {
    for (i, seed) in seeds.iter().enumerate() {
        write(target, &format!("{i}"), seed.as_bytes());
    }
}

fn main() {
    pdus();
    transactions();
    xmatrix();
    key_responses();
    texts("sync_token", &["s5_2_7_3_4_1", "s0_0_0_0_0_0", "s12", "t42", "s9007199254740991_1_2_3_4_5"]);
    texts("page_tokens", &["f17:@alice:origin.test", "s42", "f0:", "joined_members", "name"]);
    texts(
        "filter",
        &[
            r#"{"room":{"timeline":{"limit":10,"types":["m.room.message","m.room.*"],"not_senders":["@spam:origin.test"]},"state":{"lazy_load_members":true}}}"#,
            r#"{"event_fields":["type","content","sender"],"event_format":"client","presence":{"not_types":["*"]},"account_data":{"limit":5},"room":{"rooms":["!room:origin.test"],"include_leave":true,"ephemeral":{"types":["m.receipt"]},"timeline":{"limit":20,"unread_thread_notifications":true}}}"#,
            "12",
            r#"{"types":["m.room.message"],"not_types":["m.room.member"],"senders":["@alice:origin.test"]}"#,
        ],
    );
    texts(
        "config",
        &[
            include_str!("../../homeserver.example.yaml"),
            "server_name: \"kith.test\"\nreport_stats: false\n",
            "server_name: kith.test\ndatabase:\n  name: sqlite3\n  args:\n    database: /var/lib/kith/homeserver.db\nlisteners:\n  - port: 8008\n    type: http\n    resources:\n      - names: [client, federation]\nrc_message: {per_second: 0.5, burst_count: 20}\nrc_federation: {window_size: 1s, sleep_limit: 10, concurrent: 3}\nmax_upload_size: 50M\nfederation:\n  destination_max_retry_interval: 1d\n",
        ],
    );
    texts(
        "media",
        &[
            "image/png\nattachment; filename*=utf-8''%C3%A9t%C3%A9%20photo.png",
            "text/plain; charset=utf-8\ninline; filename=\"notes.txt\"",
            "application/pdf\nattachment; filename=\"report.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        ],
    );
    texts(
        "discovery",
        &[
            "origin.test\nmax-age=3600\n{\"m.server\": \"matrix.origin.test:443\"}\nip 93.184.216.34",
            "origin.test\nno-cache\nnot json\nsrv 10 5 8448 fed.origin.test\nsrv 10 0 8449 other.origin.test\nsrv 20 1 443 .\nip 2606:2800:220:1::1",
            "origin.test:8448\n\n{}\nip 10.0.0.1\nip 93.184.216.34",
            "[2606:2800:220:1::1]:8448\n\n\n",
            "127.0.0.1\nmax-age=\"60\"\n{\"m.server\": \"[::1]\"}\n",
        ],
    );
    texts(
        "search_term",
        &["alice", "Ålice Liddell @alice:origin.test", "user-1.name_x", "山田 太郎", "ﬀ Straße ΣΊΣΥΦΟΣ"],
    );
    texts("path_query", &["%21room%3Aorigin.test", "a+b%20c", "%C3%A9t%C3%A9", "%ZZ", "%00"]);
}
