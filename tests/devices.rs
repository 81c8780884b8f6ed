//! Devices and the account over HTTP, on both backends: list, rename and delete devices
//! (behind the password), change the password (other sessions end unless kept), and
//! the account's (empty) third-party identifiers.

mod common;

use common::matrix::V3;
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn login(server: &TestServer, password: &str, device: &str) -> String {
    let body = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": "alice" },
        "password": password,
        "device_id": device,
        "initial_device_display_name": format!("{device} phone"),
    });
    let (status, answer) = server.post(&format!("{V3}/login"), None, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["access_token"].as_str().unwrap().to_owned()
}

fn password_auth(session: &Value, password: &str) -> Value {
    json!({
        "type": "m.login.password",
        "session": session,
        "identifier": { "type": "m.id.user", "user": "alice" },
        "password": password,
    })
}

async fn device_ids(server: &TestServer, token: &str) -> Vec<String> {
    let (status, listed) = server.get(&format!("{V3}/devices"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    listed["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap().to_owned()).collect()
}

async fn devices_are_listed_renamed_and_deleted(db: Db) {
    let server = TestServer::start(db).await;
    server.register("alice", "pw").await;
    let laptop = login(&server, "pw", "LAPTOP").await;
    let phone = login(&server, "pw", "PHONE").await;
    let tablet = login(&server, "pw", "TABLET").await;
    let ids = device_ids(&server, &laptop).await;
    assert!(["LAPTOP", "PHONE", "TABLET"].iter().all(|d| ids.contains(&d.to_string())), "{ids:?}");

    let (_, phone_device) = server.get(&format!("{V3}/devices/PHONE"), Some(&laptop)).await;
    assert_eq!(phone_device["display_name"], "PHONE phone");
    let rename = json!({ "display_name": "Old phone" });
    assert_eq!(server.put(&format!("{V3}/devices/PHONE"), Some(&laptop), rename).await.0, StatusCode::OK);
    assert_eq!(server.get(&format!("{V3}/devices/PHONE"), Some(&laptop)).await.1["display_name"], "Old phone");
    let (status, body) = server.put(&format!("{V3}/devices/NOPE"), Some(&laptop), json!({ "display_name": "x" })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")));
    let long = "x".repeat(101);
    let (status, body) =
        server.put(&format!("{V3}/devices/PHONE"), Some(&laptop), json!({ "display_name": long })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_TOO_LARGE")));

    // Deleting needs the password: first a 401 with the flow, then a wrong password, then the right one.
    let path = format!("{V3}/devices/PHONE");
    let (status, challenge) = server.request(Method::DELETE, &path, Some(&laptop), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    assert_eq!(challenge["flows"][0]["stages"][0], "m.login.password");
    let session = &challenge["session"];
    let wrong = json!({ "auth": password_auth(session, "wrong") });
    let (status, answer) = server.request(Method::DELETE, &path, Some(&laptop), Some(wrong)).await;
    assert_eq!((status, answer["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_FORBIDDEN")));
    let right = json!({ "auth": password_auth(session, "pw") });
    assert_eq!(server.request(Method::DELETE, &path, Some(&laptop), Some(right)).await.0, StatusCode::OK);
    let (status, answer) = server.get(&format!("{V3}/account/whoami"), Some(&phone)).await;
    assert_eq!((status, answer["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN")));

    let (_, challenge) =
        server.post(&format!("{V3}/delete_devices"), Some(&laptop), json!({ "devices": ["TABLET"] })).await;
    let body = json!({ "devices": ["TABLET", "UNKNOWN"], "auth": password_auth(&challenge["session"], "pw") });
    assert_eq!(server.post(&format!("{V3}/delete_devices"), Some(&laptop), body).await.0, StatusCode::OK);
    assert_eq!(server.get(&format!("{V3}/account/whoami"), Some(&tablet)).await.0, StatusCode::UNAUTHORIZED);
    assert!(!device_ids(&server, &laptop).await.contains(&"TABLET".to_owned()));
    let (status, body) = server.post(&format!("{V3}/delete_devices"), Some(&laptop), json!({})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM")));
    let (status, body) = server.get(&format!("{V3}/devices"), None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_MISSING_TOKEN")));
}

async fn password_change_ends_other_sessions_unless_kept(db: Db) {
    let server = TestServer::start(db).await;
    server.register("alice", "old pw").await;
    let here = login(&server, "old pw", "HERE").await;
    let there = login(&server, "old pw", "THERE").await;
    let path = format!("{V3}/account/password");
    let (status, challenge) = server.post(&path, Some(&here), json!({ "new_password": "new pw" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) =
        server.post(&path, Some(&here), json!({ "auth": password_auth(&challenge["session"], "old pw") })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM")));
    let body = json!({ "new_password": "new pw", "auth": password_auth(&challenge["session"], "old pw") });
    assert_eq!(server.post(&path, Some(&here), body).await.0, StatusCode::OK);
    assert_eq!(server.get(&format!("{V3}/account/whoami"), Some(&here)).await.0, StatusCode::OK, "this session stays");
    assert_eq!(server.get(&format!("{V3}/account/whoami"), Some(&there)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(server.login("alice", "old pw").await.0, StatusCode::FORBIDDEN);
    assert_eq!(server.login("alice", "new pw").await.0, StatusCode::OK);

    let elsewhere = login(&server, "new pw", "ELSEWHERE").await;
    let (_, challenge) = server.post(&path, Some(&here), json!({})).await;
    let body = json!({ "new_password": "newer pw", "logout_devices": false, "auth": password_auth(&challenge["session"], "new pw") });
    assert_eq!(server.post(&path, Some(&here), body).await.0, StatusCode::OK);
    assert_eq!(
        server.get(&format!("{V3}/account/whoami"), Some(&elsewhere)).await.0,
        StatusCode::OK,
        "kept when asked"
    );

    let (_, capabilities) = server.get(&format!("{V3}/capabilities"), Some(&here)).await;
    // Allowed: `{"enabled": true}`, or left out as the default, as the spec allows.
    assert_ne!(capabilities["capabilities"]["m.change_password"]["enabled"], false, "{capabilities}");
    let (status, threepids) = server.get(&format!("{V3}/account/3pid"), Some(&here)).await;
    assert_eq!((status, threepids), (StatusCode::OK, json!({ "threepids": [] })));
}

both_backends!(devices_are_listed_renamed_and_deleted, password_change_ends_other_sessions_unless_kept);
