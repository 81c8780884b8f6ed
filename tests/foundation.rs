//! The foundation over HTTP, against SQLite and PostgreSQL: discovery, keys,
//! registration, login, sessions, deactivation, profiles and bad input.

mod common;

use common::{Db, SERVER_NAME, TestServer, shared_secret_mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

both_backends!(
    discovery_and_health,
    server_key_is_signed_and_verifiable,
    shared_secret_registration,
    open_registration_with_dummy_auth,
    registration_disabled_by_default,
    login_and_sessions,
    bad_tokens,
    deactivation_behind_password_auth,
    deactivation_leaves_rooms,
    profiles_and_custom_fields,
    profile_changes_are_streamed,
    bad_input_gets_matrix_errors,
    failed_logins_are_rate_limited,
    wrong_passwords_do_not_use_up_an_accounts_logins,
    data_survives_restart,
);

async fn discovery_and_health(db: Db) {
    let server = TestServer::start(db).await;
    let (status, body) = server.get("/health", None).await;
    assert_eq!((status, body), (StatusCode::OK, Value::String("OK".into())));
    let (status, body) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["versions"].as_array().unwrap().contains(&json!("v1.16")), "{body}");
    let (status, body) = server.get("/_matrix/federation/v1/version", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["server"]["name"], "Kith");

    let (_, token) = server.register("alice", "pw").await;
    let (status, body) = server.get("/_matrix/client/v3/capabilities", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let caps = &body["capabilities"];
    assert_eq!(caps["m.room_versions"]["default"], "10");
    assert_eq!(caps["m.room_versions"]["available"]["11"], "stable");
    assert_eq!(caps["m.profile_fields"]["enabled"], true);
    let (status, body) = server.get("/_matrix/client/v3/capabilities", None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_MISSING_TOKEN")));
}

async fn server_key_is_signed_and_verifiable(db: Db) {
    let server = TestServer::start(db).await;
    let (status, body) = server.get("/_matrix/key/v2/server", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["server_name"], SERVER_NAME);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(body["valid_until_ts"].as_u64().unwrap() > now_ms);
    let (key_id, key) = body["verify_keys"].as_object().unwrap().iter().next().unwrap();
    assert!(key_id.starts_with("ed25519:a_"), "{key_id}");
    let mut key_set = ruma::signatures::PublicKeySet::new();
    key_set.insert(key_id.clone(), ruma::serde::Base64::parse(key["key"].as_str().unwrap()).unwrap());
    let mut keys = ruma::signatures::PublicKeyMap::new();
    keys.insert(SERVER_NAME.into(), key_set);
    let object: ruma::CanonicalJsonObject = serde_json::from_value(body.clone()).unwrap();
    ruma::signatures::verify_json(&keys, &object).expect("self-signature verifies");

    // Tampering breaks the signature.
    let mut tampered = body;
    tampered["valid_until_ts"] = json!(1);
    let object: ruma::CanonicalJsonObject = serde_json::from_value(tampered).unwrap();
    assert!(ruma::signatures::verify_json(&keys, &object).is_err());
}

async fn shared_secret_registration(db: Db) {
    let server = TestServer::start(db).await;
    let (user_id, token) = server.register_as("admin1", "secret pw", true).await;
    assert_eq!(user_id, format!("@admin1:{SERVER_NAME}"));
    let (status, body) = server.get("/_matrix/client/v3/account/whoami", Some(&token)).await;
    assert_eq!((status, body["user_id"].as_str()), (StatusCode::OK, Some(user_id.as_str())));

    // A wrong MAC is refused and burns the nonce.
    let (_, body) = server.get("/_synapse/admin/v1/register", None).await;
    let nonce = body["nonce"].as_str().unwrap().to_owned();
    let wrong = shared_secret_mac("not the secret", &nonce, "bob", "pw", false);
    let request = json!({ "nonce": nonce, "username": "bob", "password": "pw", "mac": wrong });
    let (status, body) = server.post("/_synapse/admin/v1/register", None, request).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
    let right = shared_secret_mac(common::SHARED_SECRET, &nonce, "bob", "pw", false);
    let request = json!({ "nonce": nonce, "username": "bob", "password": "pw", "mac": right });
    let (status, body) = server.post("/_synapse/admin/v1/register", None, request.clone()).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unrecognised nonce")), "{body}");

    // The admin flag is part of the MAC: flipping it after signing fails.
    let (_, body) = server.get("/_synapse/admin/v1/register", None).await;
    let nonce = body["nonce"].as_str().unwrap().to_owned();
    let mac = shared_secret_mac(common::SHARED_SECRET, &nonce, "carol", "pw", false);
    let request = json!({ "nonce": nonce, "username": "carol", "password": "pw", "admin": true, "mac": mac });
    let (status, _) = server.post("/_synapse/admin/v1/register", None, request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Taken and invalid user names.
    for (username, errcode) in [("admin1", "M_USER_IN_USE"), ("Bad Name", "M_INVALID_USERNAME")] {
        let (_, body) = server.get("/_synapse/admin/v1/register", None).await;
        let nonce = body["nonce"].as_str().unwrap().to_owned();
        let mac = shared_secret_mac(common::SHARED_SECRET, &nonce, username, "pw", false);
        let request = json!({ "nonce": nonce, "username": username, "password": "pw", "mac": mac });
        let (status, body) = server.post("/_synapse/admin/v1/register", None, request).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some(errcode)), "{username}: {body}");
    }

    // Missing fields are named.
    let (status, body) = server.post("/_synapse/admin/v1/register", None, json!({ "nonce": "x" })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM")), "{body}");
}

async fn open_registration_with_dummy_auth(db: Db) {
    let server =
        TestServer::start_with(db, "enable_registration: true\nenable_registration_without_verification: true").await;
    let path = "/_matrix/client/v3/register";
    let (status, body) = server.post(path, None, json!({ "username": "dora", "password": "pw" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["flows"], json!([{ "stages": ["m.login.dummy"] }]));
    assert!(body.get("errcode").is_none(), "a first challenge is not an error: {body}");
    let session = body["session"].as_str().unwrap().to_owned();

    let auth = json!({ "type": "m.login.dummy", "session": session });
    let request = json!({ "username": "dora", "password": "pw", "auth": auth, "initial_device_display_name": "phone" });
    let (status, body) = server.post(path, None, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], format!("@dora:{SERVER_NAME}"));
    let token = body["access_token"].as_str().unwrap();
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.login("dora", "pw").await;
    assert_eq!(status, StatusCode::OK);

    let dummy = json!({ "type": "m.login.dummy" });
    let (status, body) = server.post(path, None, json!({ "username": "dora", "password": "pw", "auth": dummy })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_USER_IN_USE")));
    let (status, body) = server.get("/_matrix/client/v3/register/available?username=dora", None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_USER_IN_USE")));
    let (status, body) = server.get("/_matrix/client/v3/register/available?username=eve", None).await;
    assert_eq!((status, body["available"].as_bool()), (StatusCode::OK, Some(true)));
    for bad in ["_hidden", "UPPER case", "émile"] {
        let (status, body) = server.post(path, None, json!({ "username": bad, "password": "pw", "auth": dummy })).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_USERNAME")), "{bad}");
    }
    let unknown_session = json!({ "type": "m.login.dummy", "session": "nope" });
    let (status, _) =
        server.post(path, None, json!({ "username": "fay", "password": "pw", "auth": unknown_session })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // inhibit_login: an account, no session.
    let request = json!({ "username": "gus", "password": "pw", "auth": dummy, "inhibit_login": true });
    let (status, body) = server.post(path, None, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("access_token").is_none());
    // No username: one is generated.
    let (status, body) = server.post(path, None, json!({ "password": "pw", "auth": dummy })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["user_id"].as_str().unwrap().ends_with(&format!(":{SERVER_NAME}")));
    // Guests are refused.
    let (status, body) = server.post(&format!("{path}?kind=guest"), None, json!({})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_GUEST_ACCESS_FORBIDDEN")));
}

async fn registration_disabled_by_default(db: Db) {
    let server = TestServer::start(db).await;
    let request = json!({ "username": "x", "password": "pw", "auth": { "type": "m.login.dummy" } });
    let (status, body) = server.post("/_matrix/client/v3/register", None, request).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")));
}

async fn login_and_sessions(db: Db) {
    let server = TestServer::start(db).await;
    let (user_id, first_token) = server.register("alice", "correct horse").await;
    let (status, body) = server.get("/_matrix/client/v3/login", None).await;
    assert_eq!((status, &body["flows"]), (StatusCode::OK, &json!([{ "type": "m.login.password" }])));

    let (status, body) = server.login("alice", "correct horse").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], user_id);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let device_id = body["device_id"].as_str().unwrap().to_owned();
    let (_, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(&token)).await;
    // `is_guest` is left out when false, as the spec allows.
    assert_eq!(whoami, json!({ "user_id": user_id, "device_id": device_id }));

    // Full user id, legacy `user` field, the r0 prefix and a chosen device id.
    let (status, _) = server.login(&user_id, "correct horse").await;
    assert_eq!(status, StatusCode::OK);
    let legacy =
        json!({ "type": "m.login.password", "user": "alice", "password": "correct horse", "device_id": "MYDEVICE" });
    let (status, body) = server.post("/_matrix/client/r0/login", None, legacy).await;
    assert_eq!((status, body["device_id"].as_str()), (StatusCode::OK, Some("MYDEVICE")), "{body}");

    for (user, password) in
        [("alice", "wrong"), ("nobody", "correct horse"), ("@alice:elsewhere.test", "correct horse")]
    {
        let (status, body) = server.login(user, password).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{user}");
    }
    let token_login = json!({ "type": "m.login.token", "token": "x" });
    let (status, body) = server.post("/_matrix/client/v3/login", None, token_login).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_UNKNOWN")));

    // Logout ends one session; logout/all ends the rest.
    let (status, _) = server.post("/_matrix/client/v3/logout", Some(&token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get("/_matrix/client/v3/account/whoami", Some(&token)).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN")));
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", Some(&first_token)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post("/_matrix/client/v3/logout/all", Some(&first_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", Some(&first_token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn bad_tokens(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let whoami = "/_matrix/client/v3/account/whoami";
    let (status, body) = server.get(whoami, None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_MISSING_TOKEN")));
    let (status, body) = server.get(whoami, Some("kith_forged")).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN")));
    assert_eq!(body["soft_logout"], false);
    // The query-string form is accepted too.
    let (status, _) = server.get(&format!("{whoami}?access_token={token}"), None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn deactivation_behind_password_auth(db: Db) {
    let server = TestServer::start(db).await;
    let (user_id, token) = server.register("alice", "pw").await;
    let (_, other_token) = server.login("alice", "pw").await;
    let other_token = other_token["access_token"].as_str().unwrap().to_owned();
    let path = "/_matrix/client/v3/account/deactivate";

    let (status, body) = server.post(path, Some(&token), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["flows"], json!([{ "stages": ["m.login.password"] }]));
    let session = body["session"].as_str().unwrap().to_owned();

    let identifier = json!({ "type": "m.id.user", "user": "alice" });
    let wrong = json!({ "auth": { "type": "m.login.password", "session": session, "identifier": identifier, "password": "nope" } });
    let (status, body) = server.post(path, Some(&token), wrong).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_FORBIDDEN")), "{body}");

    let right = json!({ "auth": { "type": "m.login.password", "session": session, "identifier": identifier, "password": "pw" } });
    let (status, body) = server.post(path, Some(&token), right).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id_server_unbind_result"], "no-support");

    for token in [&token, &other_token] {
        let (status, _) = server.get("/_matrix/client/v3/account/whoami", Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = server.login("alice", "pw").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = server.get(&format!("/_matrix/client/v3/profile/{user_id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// As in Synapse, a deactivated user leaves every room they were in or invited to.
async fn deactivation_leaves_rooms(db: Db) {
    let server = TestServer::start(db).await;
    let (_, owner) = server.register("owner", "pw").await;
    let (alice, alice_t) = server.register("alice", "pw").await;
    let (_, body) =
        server.post("/_matrix/client/v3/createRoom", Some(&owner), json!({ "preset": "public_chat" })).await;
    let joined = body["room_id"].as_str().unwrap().to_owned();
    let (_, body) = server.post("/_matrix/client/v3/createRoom", Some(&owner), json!({ "invite": [alice] })).await;
    let invited = body["room_id"].as_str().unwrap().to_owned();
    server.post(&format!("/_matrix/client/v3/rooms/{joined}/join"), Some(&alice_t), json!({})).await;
    let auth = json!({ "auth": { "type": "m.login.password", "user": "alice", "password": "pw" } });
    let (status, _) = server.post("/_matrix/client/v3/account/deactivate", Some(&alice_t), auth).await;
    assert_eq!(status, StatusCode::OK);
    for room in [&joined, &invited] {
        let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{alice}");
        let (status, member) = server.get(&path, Some(&owner)).await;
        assert_eq!((status, member["membership"].as_str()), (StatusCode::OK, Some("leave")), "{room}");
    }
}

async fn profiles_and_custom_fields(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, token) = server.register("alice", "pw").await;
    let (bob, bob_token) = server.register("bob", "pw").await;
    let profile = format!("/_matrix/client/v3/profile/{alice}");

    // A new account's display name is its localpart, as in Synapse.
    let (status, body) = server.get(&profile, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "displayname": "alice" })));

    let (status, _) =
        server.put(&format!("{profile}/displayname"), Some(&token), json!({ "displayname": "Alice Cooper" })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .put(&format!("{profile}/avatar_url"), Some(&token), json!({ "avatar_url": "mxc://kith.test/abc" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let pronouns = json!({ "org.example.pronouns": { "en": ["she", "her"] } });
    let (status, _) = server.put(&format!("{profile}/org.example.pronouns"), Some(&token), pronouns).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.put(&format!("{profile}/m.tz"), Some(&token), json!({ "m.tz": "Europe/Paris" })).await;
    assert_eq!(status, StatusCode::OK);

    let (_, body) = server.get(&profile, None).await;
    assert_eq!(
        body,
        json!({
            "displayname": "Alice Cooper",
            "avatar_url": "mxc://kith.test/abc",
            "org.example.pronouns": { "en": ["she", "her"] },
            "m.tz": "Europe/Paris",
        })
    );
    let (status, body) = server.get(&format!("{profile}/displayname"), None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "displayname": "Alice Cooper" })));
    let (status, body) = server.get(&format!("/_matrix/client/r0/profile/{alice}/m.tz"), None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "m.tz": "Europe/Paris" })));

    // Delete, then the field is gone.
    let (status, _) =
        server.request(Method::DELETE, &format!("{profile}/org.example.pronouns"), Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get(&format!("{profile}/org.example.pronouns"), None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")));

    // Someone else's profile is not yours to change.
    let (status, body) =
        server.put(&format!("{profile}/displayname"), Some(&bob_token), json!({ "displayname": "x" })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")));
    let (status, _) = server.request(Method::DELETE, &format!("{profile}/displayname"), Some(&bob_token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server.put(&format!("{profile}/displayname"), None, json!({ "displayname": "x" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Validation.
    let cases = [
        ("displayname", json!({ "displayname": 42 }), "M_BAD_JSON"),
        ("displayname", json!({ "displayname": "x".repeat(300) }), "M_BAD_JSON"),
        ("avatar_url", json!({ "avatar_url": "https://not.mxc/" }), "M_BAD_JSON"),
        ("m.unknown_field", json!({ "m.unknown_field": "x" }), "M_BAD_JSON"),
        ("m.tz", json!({ "m.tz": 1 }), "M_BAD_JSON"),
        ("displayname", json!({ "other": "x" }), "M_MISSING_PARAM"),
        ("org.example.big", json!({ "org.example.big": "x".repeat(70_000) }), "M_PROFILE_TOO_LARGE"),
    ];
    for (key, body, errcode) in cases {
        let (status, response) = server.put(&format!("{profile}/{key}"), Some(&token), body).await;
        assert_eq!(
            (status, response["errcode"].as_str()),
            (StatusCode::BAD_REQUEST, Some(errcode)),
            "{key}: {response}"
        );
    }
    let long_key = "k".repeat(256);
    let (status, body) =
        server.put(&format!("{profile}/{long_key}"), Some(&token), json!({ long_key.clone(): 1 })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_KEY_TOO_LARGE")));
    // The refused writes changed nothing.
    let (_, body) = server.get(&profile, None).await;
    assert_eq!(body["displayname"], "Alice Cooper");
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");

    // Unknown and malformed user ids.
    let (status, _) = server.get(&format!("/_matrix/client/v3/profile/@nobody:{SERVER_NAME}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = server.get("/_matrix/client/v3/profile/not-a-user-id", None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")));
    let _ = bob;
}

async fn profile_changes_are_streamed(db: Db) {
    let mut server = TestServer::start(db).await;
    let (alice, token) = server.register("alice", "pw").await;
    let profile = format!("/_matrix/client/v3/profile/{alice}");
    server.put(&format!("{profile}/displayname"), Some(&token), json!({ "displayname": "Alice" })).await;
    server.put(&format!("{profile}/org.example.x"), Some(&token), json!({ "org.example.x": 1 })).await;
    server.request(Method::DELETE, &format!("{profile}/org.example.x"), Some(&token), None).await;
    server.terminate();

    let config = kith::config::Config::load(&server.config_path).unwrap();
    let store = kith::store::Store::connect(&config.database_target().unwrap()).await.unwrap();
    let changes = store.profile_changes_since(0, 100).await.unwrap();
    let summary: Vec<(i64, &str, Vec<String>)> =
        changes.iter().map(|c| (c.stream_id, c.user_id.as_str(), c.fields.clone())).collect();
    assert_eq!(
        summary,
        vec![
            (1, alice.as_str(), vec!["displayname".to_owned()]),
            (2, alice.as_str(), vec!["displayname".to_owned()]),
            (3, alice.as_str(), vec!["org.example.x".to_owned()]),
            (4, alice.as_str(), vec!["org.example.x".to_owned()]),
        ]
    );
    assert_eq!(store.profile_changes_since(3, 100).await.unwrap().len(), 1);
    store.close().await;
}

async fn bad_input_gets_matrix_errors(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, token) = server.register("alice", "pw").await;
    let login = "/_matrix/client/v3/login";

    let (status, body) = server.raw(Method::POST, login, None, b"{not json".to_vec()).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_NOT_JSON")));
    let (status, body) = server.raw(Method::POST, login, None, b"[1, 2]".to_vec()).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")));
    let (status, body) = server.post(login, None, json!({ "type": 5 })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")));
    let (status, body) = server.post(login, None, json!({ "password": "pw" })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM")));
    let (status, body) = server.raw(Method::POST, login, None, vec![0xff, 0xfe]).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_NOT_JSON")));

    // A path or query string that does not decode still gets a Matrix error.
    let (status, body) = server.get("/_matrix/client/v3/profile/%FF%FE", None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{body}");
    let (status, body) = server.get("/_matrix/client/v3/rooms/%FF/state", Some(&token)).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{body}");

    // Unknown endpoints and methods.
    let (status, body) = server.get("/_matrix/client/v3/no/such/endpoint", None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_UNRECOGNIZED")));
    let (status, body) = server.request(Method::DELETE, login, None, None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("M_UNRECOGNIZED")));

    // Every error above left the account intact.
    let (status, _) = server.login("alice", "pw").await;
    assert_eq!(status, StatusCode::OK);

    // Oversized bodies (last: the server closes a connection whose body it refused).
    let huge = format!("{{\"displayname\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let path = format!("/_matrix/client/v3/profile/{alice}/displayname");
    let (status, body) = server.raw(Method::PUT, &path, Some(&token), huge.into_bytes()).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("M_TOO_LARGE")), "{body}");
}

async fn failed_logins_are_rate_limited(db: Db) {
    let limits = "rc_login:\n  address: {per_second: 1000, burst_count: 1000}\n  account: {per_second: 1000, burst_count: 1000}\n  failed_attempts: {per_second: 0.1, burst_count: 2}";
    let server = TestServer::start_with(db, limits).await;
    server.register("alice", "pw").await;
    for _ in 0..2 {
        let (status, _) = server.login("alice", "wrong").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, body) = server.login("alice", "wrong").await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("M_LIMIT_EXCEEDED")), "{body}");
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0);
    // Even the right password waits until the bucket refills.
    let (status, _) = server.login("alice", "pw").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

/// `rc_login.account` counts successful logins only: wrong passwords from someone else
/// do not lock the owner out (`rc_login.failed_attempts` is for those).
async fn wrong_passwords_do_not_use_up_an_accounts_logins(db: Db) {
    let limits = "rc_login:\n  address: {per_second: 1000, burst_count: 1000}\n  account: {per_second: 0.001, burst_count: 2}\n  failed_attempts: {per_second: 1000, burst_count: 1000}";
    let server = TestServer::start_with(db, limits).await;
    server.register("alice", "pw").await;
    for _ in 0..5 {
        assert_eq!(server.login("alice", "wrong").await.0, StatusCode::FORBIDDEN);
    }
    for _ in 0..2 {
        let (status, body) = server.login("alice", "pw").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = server.login("alice", "pw").await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("M_LIMIT_EXCEEDED")), "{body}");
}

async fn data_survives_restart(db: Db) {
    let mut server = TestServer::start(db).await;
    let (alice, token) = server.register("alice", "pw").await;
    server
        .put(
            &format!("/_matrix/client/v3/profile/{alice}/displayname"),
            Some(&token),
            json!({ "displayname": "Alice" }),
        )
        .await;
    let (_, key_before) = server.get("/_matrix/key/v2/server", None).await;
    server.restart().await;
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server.get(&format!("/_matrix/client/v3/profile/{alice}/displayname"), None).await;
    assert_eq!(body["displayname"], "Alice");
    let (_, key_after) = server.get("/_matrix/key/v2/server", None).await;
    assert_eq!(key_before["verify_keys"], key_after["verify_keys"], "the signing key is kept across restarts");
}
