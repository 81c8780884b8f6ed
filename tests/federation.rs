//! Federation between two kith servers on loopback (TLS, X-Matrix signed requests).
//! Interop with Synapse comes with the rest of federation.

mod common;

use common::{Db, TestServer};
use kith::services::server_keys::ServerKeys;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_queries_cross_servers_signed() {
    let a = TestServer::start_federating(Db::Sqlite).await;
    let b = TestServer::start_federating(Db::Sqlite).await;
    let (_, alice_t) = a.register("alice", "pw").await;
    let (bob, bob_t) = b.register("bob", "pw").await;
    b.put(&format!("/_matrix/client/v3/profile/{bob}/displayname"), Some(&bob_t), json!({ "displayname": "Bob on B" }))
        .await;

    let (status, profile) = a.get(&format!("/_matrix/client/v3/profile/{bob}"), Some(&alice_t)).await;
    assert_eq!(status, StatusCode::OK, "{profile}\n{}", a.log());
    assert_eq!(profile["displayname"], "Bob on B");
    let (status, field) = a.get(&format!("/_matrix/client/v3/profile/{bob}/displayname"), None).await;
    assert_eq!((status, field), (StatusCode::OK, json!({ "displayname": "Bob on B" })));

    // An unknown remote user is not found; an unreachable server is a gateway error.
    let (status, body) =
        a.get(&format!("/_matrix/client/v3/profile/@nobody:{}", b.base.trim_start_matches("https://")), None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{body}");
    let (status, body) = a.get("/_matrix/client/v3/profile/@x:127.0.0.1:1", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    // Loopback is blacklisted unless whitelisted.
    let (status, _) = a.get("/_matrix/client/v3/profile/@x:127.0.0.2:8448", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // B served A's notary key query for itself.
    let b_name = b.base.trim_start_matches("https://").to_owned();
    let (status, keys) = a.get(&format!("/_matrix/key/v2/query/{b_name}"), None).await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    assert_eq!(keys["server_keys"][0]["server_name"], b_name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_forged_and_misdirected_requests_are_refused() {
    let b = TestServer::start_federating(Db::Sqlite).await;
    let (bob, _) = b.register("bob", "pw").await;
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", bob.replace(':', "%3A").replace('@', "%40"));
    let (status, body) = b.get(&path, None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_UNAUTHORIZED")));

    // Signed by a key the claimed origin does not have.
    let a = TestServer::start_federating(Db::Sqlite).await;
    let a_name = a.base.trim_start_matches("https://").to_owned();
    let b_name = b.base.trim_start_matches("https://").to_owned();
    let forged = kith::services::server_keys::ServerKeys::load(a_name.as_str().try_into().unwrap(), &{
        let path = b.dir.path().join("forged.key");
        kith::services::server_keys::ServerKeys::generate_file(&path).unwrap();
        path
    })
    .unwrap();
    for (destination, description) in [(b_name.as_str(), "forged signature"), ("other.example", "wrong destination")] {
        let request = axum::http::Request::builder().method("GET").uri(&path).body(Vec::<u8>::new()).unwrap();
        let input = ruma::api::federation::authentication::XMatrixSigningInput::new(
            a_name.as_str().try_into().unwrap(),
            destination.try_into().unwrap(),
            forged.key_pair(),
        );
        let header = ruma::api::federation::authentication::XMatrix::sign_http_request(&request, input).unwrap();
        let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        let response =
            client.get(format!("{}{path}", b.base)).header("Authorization", header.to_string()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{description}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["errcode"], "M_UNAUTHORIZED", "{description}");
    }
}

/// The `127.0.0.1:port` server name of a federating test server.
fn server_name_of(server: &TestServer) -> String {
    server.base.trim_start_matches("https://").to_owned()
}

/// The verify keys a `/_matrix/key/v2/server` response lists.
fn verify_keys_of(response: &serde_json::Value) -> ruma::signatures::PublicKeySet {
    response["verify_keys"]
        .as_object()
        .expect("verify_keys")
        .iter()
        .map(|(id, key)| (id.clone(), ruma::serde::Base64::parse(key["key"].as_str().unwrap()).unwrap()))
        .collect()
}

/// A profile query from `origin` to `server`, X-Matrix signed with `keys`.
async fn signed_profile_query(server: &TestServer, origin: &str, keys: &ServerKeys, user_id: &str) -> StatusCode {
    let path =
        format!("/_matrix/federation/v1/query/profile?user_id={}", user_id.replace(':', "%3A").replace('@', "%40"));
    let request = axum::http::Request::builder().method("GET").uri(&path).body(Vec::<u8>::new()).unwrap();
    let input = ruma::api::federation::authentication::XMatrixSigningInput::new(
        origin.try_into().unwrap(),
        server_name_of(server).as_str().try_into().unwrap(),
        keys.key_pair(),
    );
    let header = ruma::api::federation::authentication::XMatrix::sign_http_request(&request, input).unwrap();
    let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    client
        .get(format!("{}{path}", server.base))
        .header("Authorization", header.to_string())
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_an_unreachable_server_come_through_a_trusted_notary() {
    let b = TestServer::start_federating(Db::Sqlite).await;
    let mut c = TestServer::start_federating(Db::Sqlite).await;
    let (b_name, c_name) = (server_name_of(&b), server_name_of(&c));
    let (_, b_own) = b.get("/_matrix/key/v2/server", None).await;
    let (_, c_own) = c.get("/_matrix/key/v2/server", None).await;
    let c_keys =
        ServerKeys::load(c_name.as_str().try_into().unwrap(), &c.dir.path().join(format!("{c_name}.signing.key")))
            .unwrap();

    // B, as a notary, fetches C's keys (and keeps them); then C goes away.
    let (status, body) = b.post("/_matrix/key/v2/query", None, json!({ "server_keys": { &c_name: {} } })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["server_keys"][0]["server_name"], c_name.as_str(), "{body}\n{}", b.log());
    c.kill();

    // A trusts B (with B's key configured). A request signed by C reaches A: C cannot be
    // reached for its keys, so they come through B, signed by C and by B.
    let (b_key_id, b_key) = b_own["verify_keys"].as_object().unwrap().iter().next().unwrap();
    let trust_b = |key: &str| {
        format!("trusted_key_servers:\n  - server_name: '{b_name}'\n    verify_keys:\n      '{b_key_id}': '{key}'\n")
    };
    let a = TestServer::start_federating_with(Db::Sqlite, &trust_b(b_key["key"].as_str().unwrap())).await;
    let a_name = server_name_of(&a);
    let (alice, _) = a.register("alice", "pw").await;
    assert_eq!(signed_profile_query(&a, &c_name, &c_keys, &alice).await, StatusCode::OK, "{}", a.log());

    // A passes them on as a notary, counter-signed, with its own keys beside them.
    let (_, a_own) = a.get("/_matrix/key/v2/server", None).await;
    let (status, body) = a
        .post(
            "/_matrix/key/v2/query",
            None,
            json!({ "server_keys": { &c_name: { "ed25519:whatever": { "minimum_valid_until_ts": 0 } }, &a_name: {} } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let responses = body["server_keys"].as_array().unwrap();
    assert_eq!(responses.len(), 2, "{body}\n{}", a.log());
    let mut key_map = ruma::signatures::PublicKeyMap::new();
    key_map.insert(c_name.clone(), verify_keys_of(&c_own));
    key_map.insert(b_name.clone(), verify_keys_of(&b_own));
    key_map.insert(a_name.clone(), verify_keys_of(&a_own));
    let c_response = responses.iter().find(|r| r["server_name"] == c_name.as_str()).expect("C's keys");
    let signers: Vec<&String> = c_response["signatures"].as_object().unwrap().keys().collect();
    assert_eq!(signers.len(), 3, "signed by C, B and A: {c_response}");
    let object: ruma::CanonicalJsonObject = serde_json::from_value(c_response.clone()).unwrap();
    ruma::signatures::verify_json(&key_map, &object).expect("every signature checks out");
    assert_eq!(c_response["verify_keys"], c_own["verify_keys"]);
    let a_response = responses.iter().find(|r| r["server_name"] == a_name.as_str()).expect("A's own keys");
    let object: ruma::CanonicalJsonObject = serde_json::from_value(a_response.clone()).unwrap();
    ruma::signatures::verify_json(&key_map, &object).expect("A's own response is signed by A");
    let (status, body) = a.get(&format!("/_matrix/key/v2/query/{c_name}"), None).await;
    assert_eq!((status, body["server_keys"][0]["server_name"].as_str()), (StatusCode::OK, Some(c_name.as_str())));

    // Bad input is a Matrix error.
    let (status, body) = a.post("/_matrix/key/v2/query", None, json!({ "server_keys": 5 })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")), "{body}");
    let (status, body) = a.post("/_matrix/key/v2/query", None, json!({ "server_keys": { "bad name!": {} } })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{body}");
    let (status, body) = a.raw(reqwest::Method::POST, "/_matrix/key/v2/query", None, b"{not json".to_vec()).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_NOT_JSON")), "{body}");
    let (status, body) = a.get("/_matrix/key/v2/query/bad%20name", None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{body}");

    // A server trusting B under the wrong key refuses B's answer, and so C's request.
    let wrong = base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, [9u8; 32]);
    let d = TestServer::start_federating_with(Db::Sqlite, &trust_b(&wrong)).await;
    let (dave, _) = d.register("dave", "pw").await;
    assert_eq!(signed_profile_query(&d, &c_name, &c_keys, &dave).await, StatusCode::UNAUTHORIZED);
    // As a notary, a server only asks servers themselves: D has nothing to pass on.
    let (status, body) = d.post("/_matrix/key/v2/query", None, json!({ "server_keys": { &c_name: {} } })).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "server_keys": [] })));
}
