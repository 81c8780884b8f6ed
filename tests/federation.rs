//! Federation between two kith servers on loopback (TLS, X-Matrix signed requests).
//! Interop with Synapse comes with the rest of federation.

mod common;

use common::{Db, TestServer};
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
