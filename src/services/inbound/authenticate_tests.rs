//! Inbound `X-Matrix` authentication against hostile requests: every failure is a
//! Matrix error, never a panic. The requests claim to come from this server itself, so
//! its keys are known without a network.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use ruma::api::Metadata;
use ruma::api::federation::authentication::{XMatrix, XMatrixSigningInput};
use ruma::api::federation::discovery::get_server_version;
use ruma::api::federation::transactions::send_transaction_message;

use super::authenticate::verify_request;
use crate::config::{Config, DatabaseTarget};
use crate::services::federation::FederationClient;
use crate::services::remote_keys::RemoteKeys;
use crate::services::server_health::ServerHealth;
use crate::services::server_keys::ServerKeys;
use crate::store::Store;

const NAME: &str = "kith.test";

/// `/send/{txnId}`'s path, from ruma's metadata.
fn send_path(txn: u32) -> String {
    send_transaction_message::v1::Request::make_endpoint_url((), "", &[&txn], "").unwrap()
}

async fn federation() -> (RemoteKeys, Arc<ServerKeys>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.key");
    ServerKeys::generate_file(&path).unwrap();
    let keys = Arc::new(ServerKeys::load(NAME.try_into().unwrap(), &path).unwrap());
    let config = Config::parse(&format!("server_name: {NAME}\ntrusted_key_servers: []\n")).unwrap();
    let path = dir.path().join("kith.db").display().to_string();
    let store = Arc::new(Store::connect(&DatabaseTarget::Sqlite { path }).await.unwrap());
    let health = Arc::new(ServerHealth::new(store, &config.federation).await.unwrap());
    let client = Arc::new(FederationClient::new(&config, keys.clone(), health).unwrap());
    (RemoteKeys::new(&config, client, keys.clone()), keys, dir)
}

fn sign(keys: &ServerKeys, method: &Method, uri: &str, body: &[u8], destination: &str) -> String {
    let request = axum::http::Request::builder().method(method.clone()).uri(uri).body(body.to_vec()).unwrap();
    let input = XMatrixSigningInput::new(NAME.try_into().unwrap(), destination.try_into().unwrap(), keys.key_pair());
    XMatrix::sign_http_request(&request, input).unwrap().to_string()
}

fn headers(authorization: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(authorization) {
        headers.insert("authorization", value);
    }
    headers
}

async fn check(
    federation: &RemoteKeys,
    method: Method,
    uri: &str,
    authorization: &str,
    body: &[u8],
) -> Result<(), u16> {
    let uri: Uri = uri.parse().unwrap();
    let name = NAME.try_into().unwrap();
    verify_request(federation, name, &method, &uri, &headers(authorization), body).await.map(|_| ()).map_err(|e| {
        assert!(e.errcode.starts_with("M_"), "{e}");
        e.status.as_u16()
    })
}

#[tokio::test]
async fn a_signed_request_passes_and_tampering_fails() {
    let (federation, keys, _dir) = federation().await;
    let body = br#"{"pdus":[],"edus":[]}"#;
    let path = &send_path(1);
    let good = sign(&keys, &Method::PUT, path, body, NAME);
    assert_eq!(check(&federation, Method::PUT, path, &good, body).await, Ok(()));
    // The same header on another method, path or body.
    assert_eq!(check(&federation, Method::POST, path, &good, body).await, Err(401));
    assert_eq!(check(&federation, Method::PUT, &send_path(2), &good, body).await, Err(401));
    assert_eq!(check(&federation, Method::PUT, path, &good, br#"{"pdus":[1],"edus":[]}"#).await, Err(401));
    // Signed for another destination.
    let elsewhere = sign(&keys, &Method::PUT, path, body, "other.test");
    assert_eq!(check(&federation, Method::PUT, path, &elsewhere, body).await, Err(401));
}

#[tokio::test]
async fn hostile_authorization_headers_are_refused() {
    let (federation, keys, _dir) = federation().await;
    let path = get_server_version::v1::Request::PATH_BUILDER.path();
    let good = sign(&keys, &Method::GET, path, b"", NAME);
    let signature = good
        .split(',')
        .find_map(|part| part.trim().strip_prefix("sig="))
        .map(|sig| sig.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no signature in {good}"));
    let key = keys.key_id();
    let huge = "A".repeat(100_000);
    let cases = [
        String::new(),
        "Bearer abc".into(),
        "X-Matrix".into(),
        "X-Matrix ".into(),
        format!("X-Matrix origin=\"{NAME}\",key=\"{key}\""),
        format!("X-Matrix origin=\"{NAME}\",sig=\"{signature}\""),
        format!("X-Matrix key=\"{key}\",sig=\"{signature}\""),
        format!("X-Matrix origin=\"not a server!\",key=\"{key}\",sig=\"{signature}\""),
        format!("X-Matrix origin=\"{NAME}\",key=\"{key}\",sig=\"***not base64***\""),
        format!("X-Matrix origin=\"{NAME}\",key=\"ed25519:unknown\",sig=\"{signature}\""),
        format!("X-Matrix origin=\"{NAME}\",key=\"rsa:1\",sig=\"{signature}\""),
        format!("X-Matrix origin=\"{NAME}\",key=\"{key}\",sig=\"{huge}\""),
        format!("X-Matrix origin=\"{NAME}\",origin=\"{NAME}\",key=\"{key}\",sig=\"{signature}\",destination=5"),
        format!("X-Matrix origin=\"{NAME}\",key=\"{key}\",sig=\"{signature}\",destination=\"other.test\""),
        format!("X-Matrix origin={NAME},key={key},sig={signature},unknown=\"\u{0}\""),
        "X-Matrix \"\"\"\",,,==,".into(),
    ];
    for case in cases {
        let result = check(&federation, Method::GET, path, &case, b"").await;
        assert_eq!(result, Err(401), "{}", &case[..case.len().min(120)]);
    }
}

#[tokio::test]
async fn hostile_bodies_are_errors_not_panics() {
    let (federation, keys, _dir) = federation().await;
    let path = &send_path(9);
    // Whitespace and key order do not matter: the signature covers canonical JSON.
    let canonical = br#"{"a":1,"b":[true,null]}"#;
    let header = sign(&keys, &Method::PUT, path, canonical, NAME);
    let spaced = b"{ \"b\" : [ true , null ],\n \"a\" : 1 }";
    assert_eq!(check(&federation, Method::PUT, path, &header, spaced).await, Ok(()));
    for body in [
        &b"{\"a\":1,\"a\":2,\"b\":[true,null]}"[..],
        b"{\"a\":1.5,\"b\":[true,null]}",
        b"{\"a\":9007199254740993,\"b\":[true,null]}",
        b"{\"a\":1e400}",
        b"not json",
        b"[1,2,3]",
        b"\"string\"",
        b"{\"a\":\"\\ud800\"}",
        &[0xff, 0xfe, 0x00][..],
    ] {
        // Either refused or, for a duplicate key that parses to the signed value, let
        // through; never a panic.
        let result = check(&federation, Method::PUT, path, &header, body).await;
        assert!(result == Err(401) || result == Ok(()), "{:?}", String::from_utf8_lossy(body));
    }
}
