//! Federation between kith servers on loopback (TLS, X-Matrix signed requests): profile
//! and key queries, notaries, refused forgeries, and a room shared by two servers whose
//! DAG is served only to servers in it.

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

/// Signs a federation request to `server` as `origin` and returns status and body.
async fn signed_request(
    server: &TestServer,
    origin: &str,
    keys: &ServerKeys,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let bytes = body.as_ref().map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default();
    let request = axum::http::Request::builder().method(method.as_str()).uri(path).body(bytes.clone()).unwrap();
    let input = ruma::api::federation::authentication::XMatrixSigningInput::new(
        origin.try_into().unwrap(),
        server.base.trim_start_matches("https://").try_into().unwrap(),
        keys.key_pair(),
    );
    let header = ruma::api::federation::authentication::XMatrix::sign_http_request(&request, input).unwrap();
    let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let mut call = client.request(method, format!("{}{path}", server.base)).header("Authorization", header.to_string());
    if body.is_some() {
        call = call.header("Content-Type", "application/json").body(bytes);
    }
    let response = call.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

/// A server's own signing key, as `--generate-missing` wrote it.
fn own_keys(server: &TestServer) -> (String, ServerKeys) {
    let name = server.base.trim_start_matches("https://").to_owned();
    let path = server.dir.path().join(format!("{name}.signing.key"));
    let keys = ServerKeys::load(name.as_str().try_into().unwrap(), &path).unwrap();
    (name, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_kith_servers_share_a_room_and_serve_its_dag_only_to_members() {
    use common::matrix::{self, encode, eventually};
    let a = TestServer::start_federating(Db::Sqlite).await;
    let b = TestServer::start_federating(Db::Sqlite).await;
    let c = TestServer::start_federating_with(Db::Sqlite, "allow_public_rooms_over_federation: false").await;
    let (_, alice) = a.register("alice", "pw").await;
    let (_, bob) = b.register("bob", "pw").await;
    let room = matrix::create_room(
        &a,
        &alice,
        json!({ "preset": "public_chat", "room_alias_name": "hall", "visibility": "public" }),
    )
    .await;
    // A's public rooms are listed to B; C keeps its list to itself.
    let listed = |server: &TestServer| {
        format!("/_matrix/client/v3/publicRooms?server={}", encode(server.base.trim_start_matches("https://")))
    };
    let (status, rooms) = b.get(&listed(&a), Some(&bob)).await;
    assert_eq!(status, StatusCode::OK, "{rooms}");
    assert_eq!(rooms["chunk"][0]["room_id"], room.as_str());
    assert_eq!(rooms["chunk"][0]["canonical_alias"], format!("#hall:{}", a.base.trim_start_matches("https://")));
    // A search term is passed on to A, which filters its list.
    for (term, expected) in [("hal", 1), ("nothing like it", 0)] {
        let search = json!({ "filter": { "generic_search_term": term } });
        let (status, found) = b.post(&listed(&a), Some(&bob), search).await;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_eq!(found["chunk"].as_array().map(Vec::len), Some(expected), "{term}: {found}");
    }
    let (status, refused) = b.get(&listed(&c), Some(&bob)).await;
    assert_eq!((status, refused["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{refused}");
    let first = matrix::send_text(&a, &alice, &room, "first").await;
    let (status, body) = matrix::join(&b, &bob, &format!("#hall:{}", a.base.trim_start_matches("https://")), "").await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", b.log());
    matrix::send_text(&b, &bob, &room, "from b").await;
    eventually("b's message on a", std::time::Duration::from_secs(30), || async {
        matrix::message_bodies(&a, &alice, &room).await.iter().any(|m| m == "from b").then_some(())
    })
    .await;
    let last = matrix::send_text(&a, &alice, &room, "last").await;
    eventually("a's message on b", std::time::Duration::from_secs(30), || async {
        matrix::message_bodies(&b, &bob, &room).await.iter().any(|m| m == "last").then_some(())
    })
    .await;
    assert_eq!(matrix::state_ids(&a, &alice, &room).await, matrix::state_ids(&b, &bob, &room).await);

    // B, in the room, may read A's DAG.
    let (b_name, b_keys) = own_keys(&b);
    let r = encode(&room);
    let (status, event) = signed_request(
        &a,
        &b_name,
        &b_keys,
        reqwest::Method::GET,
        &format!("/_matrix/federation/v1/event/{}", encode(&last)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["pdus"][0]["content"]["body"], "last");
    let (status, ids) = signed_request(
        &a,
        &b_name,
        &b_keys,
        reqwest::Method::GET,
        &format!("/_matrix/federation/v1/state_ids/{r}?event_id={}", encode(&last)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ids}");
    let (_, state) = signed_request(
        &a,
        &b_name,
        &b_keys,
        reqwest::Method::GET,
        &format!("/_matrix/federation/v1/state/{r}?event_id={}", encode(&last)),
        None,
    )
    .await;
    assert_eq!(state["pdus"].as_array().map(Vec::len), ids["pdu_ids"].as_array().map(Vec::len));
    assert!(!ids["auth_chain_ids"].as_array().unwrap().is_empty());
    let (status, auth) = signed_request(
        &a,
        &b_name,
        &b_keys,
        reqwest::Method::GET,
        &format!("/_matrix/federation/v1/event_auth/{r}/{}", encode(&last)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(auth["auth_chain"].to_string().contains("m.room.create"), "{auth}");
    let (status, backfill) = signed_request(
        &a,
        &b_name,
        &b_keys,
        reqwest::Method::GET,
        &format!("/_matrix/federation/v1/backfill/{r}?v={}&limit=50", encode(&last)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = backfill["pdus"].to_string();
    assert!(text.contains("\"first\"") && text.contains("m.room.create"), "backfill reaches the start: {text}");
    let missing = json!({ "earliest_events": [first], "latest_events": [last], "limit": 10 });
    let (status, gap) = signed_request(
        &a,
        &b_name,
        &b_keys,
        reqwest::Method::POST,
        &format!("/_matrix/federation/v1/get_missing_events/{r}"),
        Some(missing.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let gap_text = gap["events"].to_string();
    assert!(gap_text.contains("from b") && !gap_text.contains("\"first\""), "between first and last: {gap_text}");

    // C never joined: A refuses it the room's events and state.
    let (c_name, c_keys) = own_keys(&c);
    for (method, path, body) in [
        (reqwest::Method::GET, format!("/_matrix/federation/v1/event/{}", encode(&last)), None),
        (reqwest::Method::GET, format!("/_matrix/federation/v1/state_ids/{r}?event_id={}", encode(&last)), None),
        (reqwest::Method::GET, format!("/_matrix/federation/v1/backfill/{r}?v={}&limit=5", encode(&last)), None),
        (reqwest::Method::POST, format!("/_matrix/federation/v1/get_missing_events/{r}"), Some(missing.clone())),
    ] {
        let (status, body) = signed_request(&a, &c_name, &c_keys, method, &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["errcode"], "M_FORBIDDEN");
    }
    // Nor may C make a join for B's user, or B join a room A is not in.
    let bob_id = format!("@bob:{b_name}");
    let (status, _) = signed_request(
        &a,
        &c_name,
        &c_keys,
        reqwest::Method::GET,
        &format!("/_matrix/federation/v1/make_join/{r}/{}?ver=10", encode(&bob_id)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = signed_request(
        &a,
        &b_name,
        &b_keys,
        reqwest::Method::GET,
        &format!("/_matrix/federation/v1/make_join/{}/{}?ver=10", encode("!nowhere:example.org"), encode(&bob_id)),
        None,
    )
    .await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")));
    let (status, body) = signed_request(
        &a,
        &b_name,
        &b_keys,
        reqwest::Method::GET,
        &format!("/_matrix/federation/v1/make_join/{r}/{}?ver=1", encode(&bob_id)),
        None,
    )
    .await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INCOMPATIBLE_ROOM_VERSION")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_missed_events_fetches_them_and_the_state_across_a_gap() {
    use common::matrix::{self, V3, encode, eventually};
    let a = TestServer::start_federating(Db::Sqlite).await;
    let mut b = TestServer::start_federating(Db::Sqlite).await;
    let c = TestServer::start_federating(Db::Sqlite).await;
    let (_, alice) = a.register("alice", "pw").await;
    let (_, bob) = b.register("bob", "pw").await;
    // World-readable, so the test can fetch A's newest event as C, a server whose
    // requests have nothing to do with A's backoff from B.
    let visibility = json!({ "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "world_readable" } });
    let room = matrix::create_room(&a, &alice, json!({ "preset": "public_chat", "initial_state": [visibility] })).await;
    let (status, body) = matrix::join(&b, &bob, &room, a.base.trim_start_matches("https://")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Once A has B's message, B owes A nothing: after its restart it will not contact A
    // (which would end A's backoff from B).
    matrix::send_text(&b, &bob, &room, "b is here").await;
    eventually("b's message on a", std::time::Duration::from_secs(30), || async {
        matrix::message_bodies(&a, &alice, &room).await.iter().any(|m| m == "b is here").then_some(())
    })
    .await;
    // Bob's profile reaches A on its own (a profile EDU, some time after the join); once
    // it has, B has nothing more to send A, so A hears nothing from B after its restart.
    eventually("bob's profile EDU on a", std::time::Duration::from_secs(30), || async {
        a.log().lines().any(|line| line.contains("profile EDU received") && line.contains("@bob:")).then_some(())
    })
    .await;

    // B is down while A's room moves on by 30 messages and a topic; A's sender backs
    // off B (by default for 10 minutes), so B hears of none of it by itself.
    b.terminate();
    let topic_path = format!("{V3}/rooms/{}/state/m.room.topic/", encode(&room));
    let mut last = String::new();
    for i in 0..30 {
        if i == 2 {
            matrix::ok(&a, reqwest::Method::PUT, &topic_path, &alice, Some(json!({ "topic": "set in the gap" }))).await;
        }
        last = matrix::send_text(&a, &alice, &room, &format!("gap {i}")).await;
    }
    let (a_name, a_keys) = own_keys(&a);
    let (c_name, c_keys) = own_keys(&c);
    let path = format!("/_matrix/federation/v1/event/{}", encode(&last));
    let (status, event) = signed_request(&a, &c_name, &c_keys, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    b.start_again().await;

    // Only the newest event reaches B: it fetches the 20 before it with
    // /get_missing_events and, for what lies beyond, the state A reports there.
    let transaction = json!({ "origin": a_name, "origin_server_ts": 1, "pdus": [event["pdus"][0]] });
    let path = "/_matrix/federation/v1/send/gap-1";
    let (status, answer) = signed_request(&b, &a_name, &a_keys, reqwest::Method::PUT, path, Some(transaction)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["pdus"][&last], json!({}), "{answer}\n{}", b.log());

    let bodies = matrix::message_bodies(&b, &bob, &room).await;
    for i in 10..30 {
        assert!(bodies.contains(&format!("gap {i}")), "gap {i} missing on B: {bodies:?}");
    }
    let topic = matrix::ok(&b, reqwest::Method::GET, &topic_path, &bob, None).await;
    assert_eq!(topic["topic"], "set in the gap", "the state across the gap reached B");
    assert!(b.log().contains("asking for the state at them"), "B filled the gap with state:\n{}", b.log());
    eventually("the same state on both servers", std::time::Duration::from_secs(30), || async {
        (matrix::state_ids(&a, &alice, &room).await == matrix::state_ids(&b, &bob, &room).await).then_some(())
    })
    .await;
}
