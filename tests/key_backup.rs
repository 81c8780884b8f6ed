//! Server-side key backups over HTTP, on both backends: versions created, read, updated
//! and deleted; keys stored, read and deleted for all rooms, one room and one session,
//! with etags and counts; which copy of a session is kept; uploads only to the current
//! version; one user's backup hidden from another; bad input refused with Matrix errors.

mod common;

use common::matrix::{V3, encode};
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ALGORITHM: &str = "m.megolm_backup.v1";
const ROOM: &str = "!backup:kith.test";
const OTHER_ROOM: &str = "!other:kith.test";

fn auth_data(public_key: &str) -> Value {
    json!({ "public_key": public_key, "signatures": { "@alice:kith.test": { "ed25519:DEV": "sig" } } })
}

fn key(is_verified: bool, first_message_index: i64, forwarded_count: i64, ciphertext: &str) -> Value {
    json!({
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": is_verified,
        "session_data": { "ephemeral": "eph", "ciphertext": ciphertext, "mac": "mac" },
    })
}

/// `/room_keys/keys`, `/room_keys/keys/{room}` or `/room_keys/keys/{room}/{session}`.
fn keys_path(room: Option<&str>, session: Option<&str>, version: &str) -> String {
    let mut path = format!("{V3}/room_keys/keys");
    for part in [room, session].into_iter().flatten() {
        path.push('/');
        path.push_str(&encode(part));
    }
    format!("{path}?version={version}")
}

async fn create_version(server: &TestServer, token: &str, public_key: &str) -> String {
    let body = json!({ "algorithm": ALGORITHM, "auth_data": auth_data(public_key) });
    let (status, answer) = server.post(&format!("{V3}/room_keys/version"), Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["version"].as_str().expect("version is a string").to_owned()
}

async fn current_version(server: &TestServer, token: &str) -> (StatusCode, Value) {
    server.get(&format!("{V3}/room_keys/version"), Some(token)).await
}

fn error(answer: &(StatusCode, Value)) -> (StatusCode, Option<&str>) {
    (answer.0, answer.1["errcode"].as_str())
}

/// Asserts a 200 `{etag, count}` answer and returns the etag.
fn etag_with_count(answer: &(StatusCode, Value), count: i64) -> String {
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    assert_eq!(answer.1["count"], count, "{}", answer.1);
    answer.1["etag"].as_str().expect("etag is a string").to_owned()
}

async fn versions_are_created_read_updated_and_deleted(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let none = current_version(&server, &token).await;
    assert_eq!(error(&none), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{}", none.1);
    assert_eq!(none.1["error"], "No current backup version");

    assert_eq!(create_version(&server, &token, "first").await, "1");
    let (status, current) = current_version(&server, &token).await;
    assert_eq!(status, StatusCode::OK, "{current}");
    assert_eq!(current["version"], "1");
    assert_eq!(current["algorithm"], ALGORITHM);
    assert_eq!(current["auth_data"], auth_data("first"));
    assert_eq!(current["count"], 0);
    assert!(current["etag"].is_string(), "{current}");

    assert_eq!(create_version(&server, &token, "second").await, "2");
    assert_eq!(current_version(&server, &token).await.1["version"], "2", "the newest version is current");
    let legacy = server.get("/_matrix/client/r0/room_keys/version", Some(&token)).await;
    assert_eq!((legacy.0, &legacy.1["version"]), (StatusCode::OK, &json!("2")), "served under r0 too");
    let (status, first) = server.get(&format!("{V3}/room_keys/version/1"), Some(&token)).await;
    assert_eq!((status, &first["auth_data"]), (StatusCode::OK, &auth_data("first")), "{first}");

    // Updating: the same algorithm, and the path's version if the body names one.
    let path = format!("{V3}/room_keys/version/2");
    let update = json!({ "algorithm": ALGORITHM, "auth_data": auth_data("renewed"), "version": "2" });
    assert_eq!(server.put(&path, Some(&token), update).await, (StatusCode::OK, json!({})));
    let update = json!({ "algorithm": ALGORITHM, "auth_data": auth_data("again") });
    assert_eq!(server.put(&path, Some(&token), update).await.0, StatusCode::OK);
    assert_eq!(server.get(&path, Some(&token)).await.1["auth_data"], auth_data("again"));
    let other_algorithm = json!({ "algorithm": "m.other", "auth_data": auth_data("x") });
    let refused = server.put(&path, Some(&token), other_algorithm).await;
    assert_eq!(error(&refused), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{}", refused.1);
    let other_version = json!({ "algorithm": ALGORITHM, "auth_data": auth_data("x"), "version": "1" });
    let refused = server.put(&path, Some(&token), other_version).await;
    assert_eq!(error(&refused), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{}", refused.1);
    let no_algorithm = server.put(&path, Some(&token), json!({ "auth_data": auth_data("x") })).await;
    assert_eq!(error(&no_algorithm), (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM")), "{}", no_algorithm.1);
    assert_eq!(
        server.get(&path, Some(&token)).await.1["auth_data"],
        auth_data("again"),
        "refused updates change nothing"
    );
    let update = json!({ "algorithm": ALGORITHM, "auth_data": auth_data("x") });
    let missing = server.put(&format!("{V3}/room_keys/version/9"), Some(&token), update).await;
    assert_eq!(error(&missing), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{}", missing.1);

    // Deleting the current version makes the previous one current again.
    assert_eq!(server.request(Method::DELETE, &path, Some(&token), None).await, (StatusCode::OK, json!({})));
    assert_eq!(current_version(&server, &token).await.1["version"], "1");
    let again = server.request(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(error(&again), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{}", again.1);
    assert_eq!(server.get(&path, Some(&token)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(create_version(&server, &token, "third").await, "3", "a deleted version's number is not reused");
    assert_eq!(current_version(&server, &token).await.1["version"], "3");

    for bad in ["abc", "0", "-1", "1.0", "99999999999999999999"] {
        let answer = server.get(&format!("{V3}/room_keys/version/{bad}"), Some(&token)).await;
        assert_eq!(error(&answer), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{bad}: {}", answer.1);
    }
    for version in ["3", "1"] {
        let path = format!("{V3}/room_keys/version/{version}");
        assert_eq!(server.request(Method::DELETE, &path, Some(&token), None).await.0, StatusCode::OK);
    }
    assert_eq!(current_version(&server, &token).await.0, StatusCode::NOT_FOUND);
}

async fn keys_are_stored_read_and_deleted_at_three_levels(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let version = create_version(&server, &token, "pk").await;
    let token = Some(token.as_str());

    let one = server.put(&keys_path(Some(ROOM), Some("s1"), &version), token, key(false, 0, 0, "c1")).await;
    let etag_one = etag_with_count(&one, 1);
    let room_body = json!({ "sessions": { "s2": key(true, 3, 1, "c2"), "s3": key(false, 7, 0, "c3") } });
    let room = server.put(&keys_path(Some(ROOM), None, &version), token, room_body).await;
    let etag_room = etag_with_count(&room, 3);
    assert_ne!(etag_room, etag_one, "new keys change the etag");
    let all_body = json!({ "rooms": { OTHER_ROOM: { "sessions": { "s4": key(false, 1, 2, "c4") } } } });
    let all = server.put(&keys_path(None, None, &version), token, all_body).await;
    let etag_all = etag_with_count(&all, 4);
    assert_ne!(etag_all, etag_room);

    let (status, everything) = server.get(&keys_path(None, None, &version), token).await;
    assert_eq!(status, StatusCode::OK, "{everything}");
    let expected_room = json!({ "sessions": {
        "s1": key(false, 0, 0, "c1"), "s2": key(true, 3, 1, "c2"), "s3": key(false, 7, 0, "c3"),
    } });
    let expected_other = json!({ "sessions": { "s4": key(false, 1, 2, "c4") } });
    assert_eq!(everything, json!({ "rooms": { ROOM: expected_room, OTHER_ROOM: expected_other } }));
    assert_eq!(server.get(&keys_path(Some(ROOM), None, &version), token).await, (StatusCode::OK, expected_room));
    let session = server.get(&keys_path(Some(ROOM), Some("s2"), &version), token).await;
    assert_eq!(session, (StatusCode::OK, key(true, 3, 1, "c2")));
    let unknown = server.get(&keys_path(Some(ROOM), Some("nope"), &version), token).await;
    assert_eq!(error(&unknown), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{}", unknown.1);
    let empty_room = server.get(&keys_path(Some("!empty:kith.test"), None, &version), token).await;
    assert_eq!(empty_room, (StatusCode::OK, json!({ "sessions": {} })));

    let (_, info) = server.get(&format!("{V3}/room_keys/version/{version}"), token).await;
    assert_eq!((info["count"].as_i64(), info["etag"].as_str()), (Some(4), Some(etag_all.as_str())), "{info}");
    let same = server.put(&keys_path(Some(ROOM), Some("s1"), &version), token, key(false, 0, 0, "c1")).await;
    assert_eq!(etag_with_count(&same, 4), etag_all, "a key already held changes nothing");

    let path = keys_path(Some(ROOM), Some("s1"), &version);
    let deleted = server.request(Method::DELETE, &path, token, None).await;
    let etag_deleted = etag_with_count(&deleted, 3);
    assert_ne!(etag_deleted, etag_all, "deleting keys changes the etag");
    assert_eq!(server.get(&path, token).await.0, StatusCode::NOT_FOUND);
    let nothing = server.request(Method::DELETE, &path, token, None).await;
    assert_eq!(etag_with_count(&nothing, 3), etag_deleted, "deleting nothing changes nothing");
    let room_gone = server.request(Method::DELETE, &keys_path(Some(ROOM), None, &version), token, None).await;
    etag_with_count(&room_gone, 1);
    assert_eq!(server.get(&keys_path(Some(ROOM), None, &version), token).await.1, json!({ "sessions": {} }));
    let (_, remaining) = server.get(&keys_path(None, None, &version), token).await;
    assert_eq!(remaining, json!({ "rooms": { OTHER_ROOM: expected_other } }));
    let all_gone = server.request(Method::DELETE, &keys_path(None, None, &version), token, None).await;
    etag_with_count(&all_gone, 0);
    assert_eq!(server.get(&keys_path(None, None, &version), token).await, (StatusCode::OK, json!({ "rooms": {} })));

    // Every keys request names its version.
    let unversioned = format!("{V3}/room_keys/keys");
    for method in [Method::GET, Method::DELETE] {
        let answer = server.request(method.clone(), &unversioned, token, None).await;
        assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM")), "{method}: {}", answer.1);
    }
    let answer = server.put(&unversioned, token, json!({ "rooms": {} })).await;
    assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM")), "{}", answer.1);
    for missing in ["9", "abc"] {
        for method in [Method::GET, Method::DELETE] {
            let answer = server.request(method.clone(), &keys_path(None, None, missing), token, None).await;
            assert_eq!(
                error(&answer),
                (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")),
                "{method} {missing}: {}",
                answer.1
            );
        }
    }
}

/// The spec's rule: verified beats unverified, then the lower first message index, then
/// the lower forwarded count; otherwise the stored copy stays.
async fn the_better_copy_of_a_session_is_kept(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let version = create_version(&server, &token, "pk").await;
    let path = keys_path(Some(ROOM), Some("session"), &version);
    let token = Some(token.as_str());
    let mut etag = etag_with_count(&server.put(&path, token, key(false, 5, 2, "first")).await, 1);

    let steps = [
        (key(false, 6, 0, "higher index"), "first"),
        (key(false, 5, 3, "more forwards"), "first"),
        (key(false, 5, 2, "equal"), "first"),
        (key(false, 5, 1, "fewer forwards"), "fewer forwards"),
        (key(false, 4, 9, "lower index"), "lower index"),
        (key(true, 10, 10, "verified"), "verified"),
        (key(false, 0, 0, "unverified"), "verified"),
        (key(true, 10, 9, "verified, fewer forwards"), "verified, fewer forwards"),
        (key(true, 11, 0, "verified, higher index"), "verified, fewer forwards"),
    ];
    for (upload, kept) in steps {
        let label = upload["session_data"]["ciphertext"].clone();
        let answer = server.put(&path, token, upload).await;
        let new_etag = etag_with_count(&answer, 1);
        let (_, stored) = server.get(&path, token).await;
        assert_eq!(stored["session_data"]["ciphertext"], kept, "after uploading {label}");
        assert_eq!(new_etag != etag, label == kept, "the etag moves only when the key is replaced ({label})");
        etag = new_etag;
    }
    let (_, stored) = server.get(&path, token).await;
    assert_eq!(stored, key(true, 10, 9, "verified, fewer forwards"));
}

async fn only_the_current_version_takes_keys(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice) = server.register("alice", "pw").await;
    let token = Some(alice.as_str());
    let no_backup = server.put(&keys_path(Some(ROOM), Some("s"), "1"), token, key(false, 0, 0, "c")).await;
    assert_eq!(error(&no_backup), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{}", no_backup.1);

    let old = create_version(&server, &alice, "old").await;
    etag_with_count(&server.put(&keys_path(Some(ROOM), Some("s"), &old), token, key(false, 0, 0, "old")).await, 1);
    let new = create_version(&server, &alice, "new").await;
    let stale = server.put(&keys_path(Some(ROOM), Some("t"), &old), token, key(false, 0, 0, "stale")).await;
    assert_eq!(error(&stale), (StatusCode::FORBIDDEN, Some("M_WRONG_ROOM_KEYS_VERSION")), "{}", stale.1);
    assert_eq!(stale.1["current_version"], new.as_str());
    for missing in ["7", "abc"] {
        let answer = server.put(&keys_path(Some(ROOM), Some("t"), missing), token, key(false, 0, 0, "x")).await;
        assert_eq!(error(&answer), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{missing}: {}", answer.1);
    }
    // An old version stays readable, and each version holds its own keys.
    let (status, old_keys) = server.get(&keys_path(None, None, &old), token).await;
    assert_eq!(
        (status, old_keys["rooms"][ROOM]["sessions"]["s"]["session_data"]["ciphertext"].as_str()),
        (StatusCode::OK, Some("old"))
    );
    assert_eq!(server.get(&keys_path(None, None, &new), token).await.1, json!({ "rooms": {} }));
    assert_eq!(server.get(&format!("{V3}/room_keys/version/{old}"), token).await.1["count"], 1);

    let delete_new = format!("{V3}/room_keys/version/{new}");
    assert_eq!(server.request(Method::DELETE, &delete_new, token, None).await.0, StatusCode::OK);
    let resumed = server.put(&keys_path(Some(ROOM), Some("t"), &old), token, key(false, 0, 0, "resumed")).await;
    etag_with_count(&resumed, 2);

    let delete_old = format!("{V3}/room_keys/version/{old}");
    assert_eq!(server.request(Method::DELETE, &delete_old, token, None).await.0, StatusCode::OK);
    let gone = server.get(&keys_path(None, None, &old), token).await;
    assert_eq!(error(&gone), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{}", gone.1);
    let gone = server.put(&keys_path(Some(ROOM), Some("u"), &old), token, key(false, 0, 0, "x")).await;
    assert_eq!(error(&gone), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{}", gone.1);
    let fresh = create_version(&server, &alice, "fresh").await;
    assert_eq!(fresh, "3");
    assert_eq!(current_version(&server, &alice).await.1["count"], 0);
}

async fn a_backup_belongs_to_its_user(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice) = server.register("alice", "pw").await;
    let (_, bob) = server.register("bob", "pw").await;
    let version = create_version(&server, &alice, "alice's").await;
    let put = server.put(&keys_path(Some(ROOM), Some("s"), &version), Some(&alice), key(false, 0, 0, "secret")).await;
    etag_with_count(&put, 1);

    assert_eq!(error(&current_version(&server, &bob).await), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")));
    let version_path = format!("{V3}/room_keys/version/{version}");
    for method in [Method::GET, Method::DELETE] {
        let answer = server.request(method.clone(), &version_path, Some(&bob), None).await;
        assert_eq!(error(&answer), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{method}: {}", answer.1);
        let answer = server.request(method.clone(), &keys_path(None, None, &version), Some(&bob), None).await;
        assert_eq!(error(&answer), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{method}: {}", answer.1);
    }
    let update = json!({ "algorithm": ALGORITHM, "auth_data": auth_data("bob's") });
    assert_eq!(server.put(&version_path, Some(&bob), update).await.0, StatusCode::NOT_FOUND);
    let answer = server.put(&keys_path(Some(ROOM), Some("s"), &version), Some(&bob), key(true, 0, 0, "bob's")).await;
    assert_eq!(error(&answer), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "{}", answer.1);

    assert_eq!(create_version(&server, &bob, "bob's").await, "1", "versions count per user");
    assert_eq!(server.get(&keys_path(None, None, "1"), Some(&bob)).await.1, json!({ "rooms": {} }));
    let (_, alice_keys) = server.get(&keys_path(Some(ROOM), Some("s"), &version), Some(&alice)).await;
    assert_eq!(alice_keys, key(false, 0, 0, "secret"), "untouched by bob");
    assert_eq!(current_version(&server, &alice).await.1["auth_data"], auth_data("alice's"));

    let unauthenticated = server.get(&format!("{V3}/room_keys/version"), None).await;
    assert_eq!(error(&unauthenticated), (StatusCode::UNAUTHORIZED, Some("M_MISSING_TOKEN")));

    // Deactivating an account takes its backup with it.
    let auth = json!({ "auth": { "type": "m.login.password", "user": "alice", "password": "pw" } });
    assert_eq!(server.post(&format!("{V3}/account/deactivate"), Some(&alice), auth).await.0, StatusCode::OK);
    assert_eq!(current_version(&server, &bob).await.1["version"], "1", "bob's backup stays");
}

async fn bad_input_is_refused(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let version_path = format!("{V3}/room_keys/version");
    let refused = [
        (json!([1, 2]), "M_BAD_JSON"),
        (json!({ "auth_data": {} }), "M_MISSING_PARAM"),
        (json!({ "algorithm": ALGORITHM }), "M_MISSING_PARAM"),
        (json!({ "algorithm": 7, "auth_data": {} }), "M_BAD_JSON"),
        (json!({ "algorithm": ALGORITHM, "auth_data": 5 }), "M_BAD_JSON"),
        (json!({ "algorithm": ALGORITHM, "auth_data": null }), "M_BAD_JSON"),
        (json!({ "algorithm": "", "auth_data": {} }), "M_INVALID_PARAM"),
        (json!({ "algorithm": "a".repeat(300), "auth_data": {} }), "M_INVALID_PARAM"),
    ];
    for (body, errcode) in refused {
        let answer = server.post(&version_path, Some(&token), body.clone()).await;
        assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, Some(errcode)), "{body}: {}", answer.1);
    }
    let not_json = server.raw(Method::POST, &version_path, Some(&token), b"{not json".to_vec()).await;
    assert_eq!(error(&not_json), (StatusCode::BAD_REQUEST, Some("M_NOT_JSON")), "{}", not_json.1);
    assert_eq!(current_version(&server, &token).await.0, StatusCode::NOT_FOUND, "nothing was created");

    let version = create_version(&server, &token, "pk").await;
    let token = Some(token.as_str());
    let good = key(false, 0, 0, "c");
    let with = |field: &str, value: Value| {
        let mut key = good.clone();
        key[field] = value;
        key
    };
    let mut without_data = good.clone();
    without_data.as_object_mut().unwrap().remove("session_data");
    let session_bodies = [
        (json!("a string"), "M_BAD_JSON"),
        (json!([good.clone()]), "M_BAD_JSON"),
        (with("first_message_index", json!(-1)), "M_INVALID_PARAM"),
        (with("forwarded_count", json!(-5)), "M_INVALID_PARAM"),
        (with("first_message_index", json!(1.5)), "M_BAD_JSON"),
        (with("first_message_index", json!("1")), "M_BAD_JSON"),
        (with("first_message_index", json!(u64::MAX)), "M_BAD_JSON"),
        (with("forwarded_count", json!(1u64 << 60)), "M_INVALID_PARAM"),
        (with("is_verified", json!("yes")), "M_BAD_JSON"),
        (with("session_data", json!(5)), "M_BAD_JSON"),
        (without_data, "M_MISSING_PARAM"),
    ];
    let session_path = keys_path(Some(ROOM), Some("s"), &version);
    for (body, errcode) in session_bodies {
        let answer = server.put(&session_path, token, body.clone()).await;
        assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, Some(errcode)), "{body}: {}", answer.1);
    }
    let room_bodies = [
        (json!({}), "M_MISSING_PARAM"),
        (json!({ "sessions": [] }), "M_BAD_JSON"),
        (json!({ "sessions": { "s": "key" } }), "M_BAD_JSON"),
        (json!({ "sessions": { "": good } }), "M_INVALID_PARAM"),
        (json!({ "sessions": { "s".repeat(300): good } }), "M_INVALID_PARAM"),
    ];
    for (body, errcode) in room_bodies {
        let answer = server.put(&keys_path(Some(ROOM), None, &version), token, body.clone()).await;
        assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, Some(errcode)), "{body}: {}", answer.1);
    }
    let all_bodies = [
        (json!({ "rooms": [] }), "M_BAD_JSON"),
        (json!({ "rooms": { ROOM: { "sessions": { "s": good, "t": with("is_verified", json!(1)) } } } }), "M_BAD_JSON"),
        (json!({ "rooms": { "not a room": { "sessions": { "s": good } } } }), "M_INVALID_PARAM"),
        (
            json!({ "rooms": { ROOM: { "sessions": { "s": good } }, "#alias:kith.test": { "sessions": {} } } }),
            "M_INVALID_PARAM",
        ),
    ];
    for (body, errcode) in all_bodies {
        let answer = server.put(&keys_path(None, None, &version), token, body.clone()).await;
        assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, Some(errcode)), "{body}: {}", answer.1);
    }
    for method in [Method::PUT, Method::GET, Method::DELETE] {
        let body = (method == Method::PUT).then(|| good.clone());
        let answer =
            server.request(method.clone(), &keys_path(Some("not-a-room"), Some("s"), &version), token, body).await;
        assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{method}: {}", answer.1);
    }

    // Too many sessions at once.
    let many: serde_json::Map<String, Value> = (0..2001)
        .map(|i| {
            (
                format!("session{i}"),
                json!({ "first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": {} }),
            )
        })
        .collect();
    let answer = server.put(&keys_path(Some(ROOM), None, &version), token, json!({ "sessions": many })).await;
    assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, Some("M_TOO_LARGE")), "{}", answer.1);

    let (_, info) = server.get(&format!("{V3}/room_keys/version/{version}"), token).await;
    assert_eq!(info["count"], 0, "no refused upload stored anything: {info}");
    let accepted =
        server.put(&keys_path(Some(ROOM), None, &version), token, json!({ "sessions": { "s": good } })).await;
    etag_with_count(&accepted, 1);

    // A body past the global cap (last: the server closes a connection whose body it refused).
    let huge = with("session_data", json!({ "ciphertext": "x".repeat(2 * 1024 * 1024) }));
    let answer = server.put(&session_path, token, huge).await;
    assert_eq!(error(&answer), (StatusCode::PAYLOAD_TOO_LARGE, Some("M_TOO_LARGE")), "{}", answer.1);
}

both_backends!(
    versions_are_created_read_updated_and_deleted,
    keys_are_stored_read_and_deleted_at_three_levels,
    the_better_copy_of_a_session_is_kept,
    only_the_current_version_takes_keys,
    a_backup_belongs_to_its_user,
    bad_input_is_refused,
);
