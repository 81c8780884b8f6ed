//! Registration tokens over HTTP, against SQLite and PostgreSQL: Synapse's admin API for
//! them, registration that asks for one (`m.login.registration_token`), the validity
//! check, and open registration left as it was without `registration_requires_token`.

mod common;

use std::time::Duration;

use common::fake_server::now_ms;
use common::{Db, SERVER_NAME, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

both_backends!(
    admins_manage_tokens,
    tokens_are_validated,
    registration_asks_for_a_token,
    limited_and_expired_tokens_are_refused,
    a_session_registers_one_account,
    registration_without_tokens_is_unchanged
);

const TOKENS: &str = "/_synapse/admin/v1/registration_tokens";
const REGISTER: &str = "/_matrix/client/v3/register";
const VALIDITY: &str = "/_matrix/client/v1/register/m.login.registration_token/validity";
const TOKEN_STAGE: &str = "m.login.registration_token";
const WITH_TOKENS: &str = "enable_registration: true\nregistration_requires_token: true";

fn errcode(body: &Value) -> &str {
    body["errcode"].as_str().unwrap_or_default()
}

fn token_names(body: &Value) -> Vec<&str> {
    let tokens = body["registration_tokens"].as_array().expect("registration_tokens");
    tokens.iter().map(|t| t["token"].as_str().unwrap()).collect()
}

async fn create_token(server: &TestServer, admin: &str, body: Value) -> Value {
    let (status, body) = server.post(&format!("{TOKENS}/new"), Some(admin), body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn token(server: &TestServer, admin: &str, token: &str) -> Value {
    let (status, body) = server.get(&format!("{TOKENS}/{token}"), Some(admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Starts a registration; returns the UIA session of the challenge.
async fn start_registration(server: &TestServer, username: &str) -> String {
    let (status, body) = server.post(REGISTER, None, json!({ "username": username, "password": "pw" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["flows"], json!([{ "stages": [TOKEN_STAGE] }]));
    assert!(body.get("errcode").is_none(), "a first challenge is not an error: {body}");
    body["session"].as_str().unwrap().to_owned()
}

async fn register_with(server: &TestServer, username: &str, session: &str, token: &str) -> (StatusCode, Value) {
    let auth = json!({ "type": TOKEN_STAGE, "token": token, "session": session });
    server.post(REGISTER, None, json!({ "username": username, "password": "pw", "auth": auth })).await
}

/// A refused token: the challenge again, with Synapse's error.
fn assert_refused(status: StatusCode, body: &Value, session: &str) {
    assert_eq!((status, errcode(body)), (StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED"), "{body}");
    assert_eq!(body["session"], session);
    assert_eq!(body["flows"], json!([{ "stages": [TOKEN_STAGE] }]));
}

async fn validity(server: &TestServer, token: &str) -> bool {
    let (status, body) = server.get(&format!("{VALIDITY}?token={token}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["valid"].as_bool().expect("valid")
}

async fn admins_manage_tokens(db: Db) {
    let server = TestServer::start(db).await;
    let (_, admin) = server.register_as("root", "pw", true).await;
    let (_, alice) = server.register("alice", "pw").await;

    let (status, body) = server.get(TOKENS, Some(&admin)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "registration_tokens": [] })));

    // A named token, limited in uses and time.
    let expiry = now_ms() + 3_600_000;
    let created =
        create_token(&server, &admin, json!({ "token": "abcd", "uses_allowed": 3, "expiry_time": expiry })).await;
    assert_eq!(
        created,
        json!({ "token": "abcd", "uses_allowed": 3, "pending": 0, "completed": 0, "expiry_time": expiry })
    );
    // A generated one: 16 characters unless told otherwise, no limits.
    let generated = create_token(&server, &admin, json!({})).await;
    let name = generated["token"].as_str().unwrap().to_owned();
    assert_eq!(name.len(), 16);
    assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b)), "{name}");
    assert_eq!((generated["uses_allowed"].clone(), generated["expiry_time"].clone()), (Value::Null, Value::Null));
    let short = create_token(&server, &admin, json!({ "length": 5, "uses_allowed": 0 })).await;
    assert_eq!(short["token"].as_str().unwrap().len(), 5);
    let short = short["token"].as_str().unwrap().to_owned();

    assert_eq!(token(&server, &admin, "abcd").await, created);
    let (_, body) = server.get(TOKENS, Some(&admin)).await;
    let mut all = vec!["abcd", name.as_str(), short.as_str()];
    all.sort();
    assert_eq!(token_names(&body), all);
    // `uses_allowed: 0` is never valid.
    let (_, body) = server.get(&format!("{TOKENS}?valid=false"), Some(&admin)).await;
    assert_eq!(token_names(&body), vec![short.as_str()]);
    let (_, body) = server.get(&format!("{TOKENS}?valid=true"), Some(&admin)).await;
    assert_eq!(token_names(&body).len(), 2);
    let (status, body) = server.get(&format!("{TOKENS}?valid=maybe"), Some(&admin)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"));

    // Updates: a field left out stays, null clears.
    let (status, body) = server.put(&format!("{TOKENS}/abcd"), Some(&admin), json!({ "uses_allowed": 1 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["uses_allowed"].clone(), body["expiry_time"].clone()), (json!(1), json!(expiry)));
    let (_, body) = server.put(&format!("{TOKENS}/abcd"), Some(&admin), json!({ "expiry_time": null })).await;
    assert_eq!((body["uses_allowed"].clone(), body["expiry_time"].clone()), (json!(1), Value::Null));
    let (_, body) = server.put(&format!("{TOKENS}/abcd"), Some(&admin), json!({ "uses_allowed": null })).await;
    assert_eq!(body["uses_allowed"], Value::Null);
    let (_, body) = server.put(&format!("{TOKENS}/{short}"), Some(&admin), json!({})).await;
    assert_eq!(body["uses_allowed"], 0);

    // Deletion, then the token is gone.
    let (status, body) = server.request(Method::DELETE, &format!("{TOKENS}/abcd"), Some(&admin), None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = server.request(method.clone(), &format!("{TOKENS}/abcd"), Some(&admin), None).await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{method}");
    }
    let (status, body) = server.put(&format!("{TOKENS}/abcd"), Some(&admin), json!({ "uses_allowed": 1 })).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));

    // Only admins.
    let requests = [
        (Method::GET, TOKENS.to_owned(), None),
        (Method::GET, format!("{TOKENS}/{name}"), None),
        (Method::POST, format!("{TOKENS}/new"), Some(json!({ "token": "mine" }))),
        (Method::PUT, format!("{TOKENS}/{name}"), Some(json!({ "uses_allowed": 100 }))),
        (Method::DELETE, format!("{TOKENS}/{name}"), None),
    ];
    for (method, path, body) in requests {
        let (status, answer) = server.request(method.clone(), &path, Some(&alice), body.clone()).await;
        assert_eq!((status, errcode(&answer)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{method} {path}");
        let (status, answer) = server.request(method.clone(), &path, None, body).await;
        assert_eq!((status, errcode(&answer)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"), "{method} {path}");
    }
    assert_eq!(token(&server, &admin, &name).await, generated);
    let (status, _) = server.get(&format!("{TOKENS}/mine"), Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn tokens_are_validated(db: Db) {
    let server = TestServer::start(db).await;
    let (_, admin) = server.register_as("root", "pw", true).await;
    create_token(&server, &admin, json!({ "token": "taken" })).await;
    let past = now_ms() - 1000;
    let refused = [
        json!({ "token": "taken" }),
        json!({ "token": "" }),
        json!({ "token": "has space" }),
        json!({ "token": "ünïcode" }),
        json!({ "token": "a".repeat(65) }),
        json!({ "token": 7 }),
        json!({ "length": 0 }),
        json!({ "length": 65 }),
        json!({ "length": "8" }),
        json!({ "uses_allowed": -1 }),
        json!({ "uses_allowed": 1.5 }),
        json!({ "uses_allowed": "3" }),
        json!({ "expiry_time": past }),
        json!({ "expiry_time": "tomorrow" }),
    ];
    for body in &refused {
        let (status, answer) = server.post(&format!("{TOKENS}/new"), Some(&admin), body.clone()).await;
        assert_eq!((status, errcode(&answer)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{body}: {answer}");
    }
    for body in [json!({ "uses_allowed": -2 }), json!({ "expiry_time": past }), json!({ "uses_allowed": true })] {
        let (status, answer) = server.put(&format!("{TOKENS}/taken"), Some(&admin), body.clone()).await;
        assert_eq!((status, errcode(&answer)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{body}: {answer}");
    }
    // The longest token and every allowed character.
    let longest = format!("{}._~-", "Az09".repeat(15));
    assert_eq!(create_token(&server, &admin, json!({ "token": longest })).await["token"], longest);
    let (status, body) = server.get(TOKENS, Some(&admin)).await;
    assert_eq!((status, token_names(&body)), (StatusCode::OK, vec![longest.as_str(), "taken"]));
}

async fn registration_asks_for_a_token(db: Db) {
    let server = TestServer::start_with(db, WITH_TOKENS).await;
    let (_, admin) = server.register_as("root", "pw", true).await;
    create_token(&server, &admin, json!({ "token": "welcome", "uses_allowed": 2 })).await;

    assert!(validity(&server, "welcome").await);
    assert!(!validity(&server, "unknown").await);
    let (status, body) = server.get(&format!("{VALIDITY}?token=bad%20token"), None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"));
    let (status, body) = server.get(VALIDITY, None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"));

    // Neither a wrong token nor the dummy stage gets in.
    let session = start_registration(&server, "dora").await;
    let (status, body) = register_with(&server, "dora", &session, "wrong").await;
    assert_refused(status, &body, &session);
    let dummy = json!({ "type": "m.login.dummy", "session": session });
    let (status, body) =
        server.post(REGISTER, None, json!({ "username": "dora", "password": "pw", "auth": dummy })).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNRECOGNIZED"), "{body}");
    assert_eq!(token(&server, &admin, "welcome").await["pending"], 0);

    // The right one registers, and counts as completed.
    let (status, body) = register_with(&server, "dora", &session, "welcome").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], format!("@dora:{SERVER_NAME}"));
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", body["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK);
    let counts = token(&server, &admin, "welcome").await;
    assert_eq!((counts["pending"].clone(), counts["completed"].clone()), (json!(0), json!(1)));

    // A session that passed the stage holds a pending use until it registers, even
    // when the registration then fails for another reason; it goes on without
    // repeating the stage, and may not switch tokens.
    let session = start_registration(&server, "eve").await;
    let auth = json!({ "type": TOKEN_STAGE, "token": "welcome", "session": session });
    let request = json!({ "username": "eve", "password": "pw", "auth": auth, "device_id": "d".repeat(300) });
    let (status, body) = server.post(REGISTER, None, request).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{body}");
    let counts = token(&server, &admin, "welcome").await;
    assert_eq!((counts["pending"].clone(), counts["completed"].clone()), (json!(1), json!(1)));
    let (status, body) = register_with(&server, "eve", &session, "other").await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_INVALID_PARAM"), "{body}");
    let auth = json!({ "session": session });
    let (status, body) =
        server.post(REGISTER, None, json!({ "username": "eve", "password": "pw", "auth": auth })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let counts = token(&server, &admin, "welcome").await;
    assert_eq!((counts["pending"].clone(), counts["completed"].clone()), (json!(0), json!(2)));

    // Used up.
    assert!(!validity(&server, "welcome").await);
    let session = start_registration(&server, "fay").await;
    let (status, body) = register_with(&server, "fay", &session, "welcome").await;
    assert_refused(status, &body, &session);
    let (_, body) = server.get(&format!("{TOKENS}?valid=false"), Some(&admin)).await;
    assert_eq!(token_names(&body), vec!["welcome"]);

    // A deleted token no longer registers.
    create_token(&server, &admin, json!({ "token": "gone" })).await;
    server.request(Method::DELETE, &format!("{TOKENS}/gone"), Some(&admin), None).await;
    let (status, body) = register_with(&server, "fay", &session, "gone").await;
    assert_refused(status, &body, &session);
}

async fn limited_and_expired_tokens_are_refused(db: Db) {
    let server = TestServer::start_with(db, WITH_TOKENS).await;
    let (_, admin) = server.register_as("root", "pw", true).await;
    create_token(&server, &admin, json!({ "token": "once", "uses_allowed": 1 })).await;
    create_token(&server, &admin, json!({ "token": "brief", "expiry_time": now_ms() + 1500 })).await;

    // Two sessions race for a single use: the first to pass the stage holds it.
    let first = start_registration(&server, "ann").await;
    let second = start_registration(&server, "bob").await;
    let (status, body) = register_with(&server, "ann", &first, "once").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = register_with(&server, "bob", &second, "once").await;
    assert_refused(status, &body, &second);
    let counts = token(&server, &admin, "once").await;
    assert_eq!((counts["pending"].clone(), counts["completed"].clone()), (json!(0), json!(1)));
    // Raising the limit lets the second one in.
    server.put(&format!("{TOKENS}/once"), Some(&admin), json!({ "uses_allowed": 2 })).await;
    let (status, body) = register_with(&server, "bob", &second, "once").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Expiry.
    assert!(validity(&server, "brief").await);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(!validity(&server, "brief").await);
    let session = start_registration(&server, "cy").await;
    let (status, body) = register_with(&server, "cy", &session, "brief").await;
    assert_refused(status, &body, &session);
    let (_, body) = server.get(&format!("{TOKENS}?valid=true"), Some(&admin)).await;
    assert!(token_names(&body).is_empty(), "{body}");
    let (_, body) = server.get(&format!("{TOKENS}?valid=false"), Some(&admin)).await;
    assert_eq!(token_names(&body), vec!["brief", "once"]);
}

/// A session that passed the token stage and then failed (an over-long device name)
/// may go on, but registers one account however many requests race on it.
async fn a_session_registers_one_account(db: Db) {
    let server = TestServer::start_with(db, WITH_TOKENS).await;
    let (_, admin) = server.register_as("root", "pw", true).await;
    create_token(&server, &admin, json!({ "token": "single", "uses_allowed": 1 })).await;
    let session = start_registration(&server, "racer0").await;
    let auth = json!({ "type": TOKEN_STAGE, "token": "single", "session": session });
    let long_name = "n".repeat(1000);
    let request =
        json!({ "username": "racer0", "password": "pw", "auth": auth, "initial_device_display_name": long_name });
    let (status, body) = server.post(REGISTER, None, request).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_TOO_LARGE"), "{body}");

    let attempts = (1..=5).map(|n| {
        let auth = json!({ "session": session });
        server.post(REGISTER, None, json!({ "username": format!("racer{n}"), "password": "pw", "auth": auth }))
    });
    let answers = futures_util::future::join_all(attempts).await;
    let registered: Vec<&Value> =
        answers.iter().filter(|(status, _)| *status == StatusCode::OK).map(|(_, body)| body).collect();
    assert_eq!(registered.len(), 1, "one account per session: {answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != StatusCode::OK) {
        assert!(status.is_client_error() && !errcode(body).is_empty(), "a Matrix error: {status} {body}");
    }
    let mut available = 0;
    for n in 0..=5 {
        let (status, _) = server.get(&format!("{REGISTER}/available?username=racer{n}"), None).await;
        available += usize::from(status == StatusCode::OK);
    }
    assert_eq!(available, 5, "only one of the names was taken");
    let counts = token(&server, &admin, "single").await;
    assert_eq!((counts["pending"].clone(), counts["completed"].clone()), (json!(0), json!(1)));
    let auth = json!({ "session": session });
    let (status, body) =
        server.post(REGISTER, None, json!({ "username": "racer9", "password": "pw", "auth": auth })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the session is used up: {body}");
}

async fn registration_without_tokens_is_unchanged(db: Db) {
    let server =
        TestServer::start_with(db, "enable_registration: true\nenable_registration_without_verification: true").await;
    let (status, body) = server.post(REGISTER, None, json!({ "username": "dora", "password": "pw" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["flows"], json!([{ "stages": ["m.login.dummy"] }]));
    let session = body["session"].as_str().unwrap();
    let auth = json!({ "type": TOKEN_STAGE, "token": "anything", "session": session });
    let (status, body) =
        server.post(REGISTER, None, json!({ "username": "dora", "password": "pw", "auth": auth })).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNRECOGNIZED"), "{body}");
    let auth = json!({ "type": "m.login.dummy", "session": session });
    let (status, body) =
        server.post(REGISTER, None, json!({ "username": "dora", "password": "pw", "auth": auth })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!validity(&server, "anything").await);

    // Closed registration: no token is valid.
    let server = TestServer::start(db).await;
    let (status, body) = server.get(&format!("{VALIDITY}?token=anything"), None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"));
}
