//! The user directory over HTTP, against SQLite and PostgreSQL: Synapse's visibility
//! rules, SyTest's `52user-directory` scenarios, Complement's display-name privacy test,
//! Unicode matching, Synapse's PostgreSQL ranking, request handling, rebuilds and
//! restarts.

mod common;

use std::time::Duration;

use common::{Db, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_backends!(
    public_rooms_and_shared_rooms_decide_visibility,
    join_rule_and_history_visibility_flips,
    per_room_nicknames_never_leak,
    display_name_changes_and_leaving,
    excluded_users_never_appear,
    unicode_and_punctuation_matching,
    request_handling,
    disabled_and_search_all_users,
    admin_rebuild_job,
    restart_mid_burst_equals_rebuild,
    ranking_counts_every_matching_position,
    ranking_divides_by_distinct_lexemes,
    ranking_tokenises_dots_and_underscores,
    ranking_ties_go_to_shared_rooms,
);

const V3: &str = "/_matrix/client/v3";

async fn search(server: &TestServer, token: &str, term: &str) -> Value {
    let (status, body) =
        server.post(&format!("{V3}/user_directory/search"), Some(token), json!({ "search_term": term })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn ids(body: &Value) -> Vec<String> {
    body["results"].as_array().unwrap().iter().map(|r| r["user_id"].as_str().unwrap().to_owned()).collect()
}

/// Polls until the search for `term` returns exactly `expected` (in order), as the
/// directory follows the streams in the background.
async fn expect_search(server: &TestServer, token: &str, term: &str, expected: &[&str]) {
    let mut last = Vec::new();
    for _ in 0..600 {
        last = ids(&search(server, token, term).await);
        if last == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("search {term:?}: expected {expected:?}, got {last:?}\n{}", server.log());
}

async fn create(server: &TestServer, token: &str, body: Value) -> String {
    let (status, response) = server.post(&format!("{V3}/createRoom"), Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response["room_id"].as_str().unwrap().to_owned()
}

async fn join(server: &TestServer, token: &str, room: &str) {
    let (status, body) = server.post(&format!("{V3}/rooms/{room}/join"), Some(token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn invite(server: &TestServer, token: &str, room: &str, user: &str) {
    let (status, body) =
        server.post(&format!("{V3}/rooms/{room}/invite"), Some(token), json!({ "user_id": user })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn set_name(server: &TestServer, token: &str, user: &str, name: &str) {
    let path = format!("{V3}/profile/{user}/displayname");
    let (status, _) = server.put(&path, Some(token), json!({ "displayname": name })).await;
    assert_eq!(status, StatusCode::OK);
}

async fn put_state(server: &TestServer, token: &str, room: &str, kind: &str, content: Value) {
    let (status, body) = server.put(&format!("{V3}/rooms/{room}/state/{kind}/"), Some(token), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn public_rooms_and_shared_rooms_decide_visibility(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, alice_t) = server.register("alice", "pw").await;
    let (bob, bob_t) = server.register("bob", "pw").await;
    let (carol, carol_t) = server.register("carol", "pw").await;
    let (dave, dave_t) = server.register("dave", "pw").await;
    let (_, eve_t) = server.register("eve", "pw").await;
    create(&server, &alice_t, json!({ "preset": "public_chat" })).await;
    let private = create(&server, &bob_t, json!({ "preset": "private_chat" })).await;
    invite(&server, &bob_t, &private, &carol).await;
    join(&server, &carol_t, &private).await;
    invite(&server, &bob_t, &private, &dave).await; // an invite is not a join

    expect_search(&server, &eve_t, "alice", &[&alice]).await;
    expect_search(&server, &eve_t, "carol", &[]).await;
    expect_search(&server, &bob_t, "carol", &[&carol]).await;
    expect_search(&server, &carol_t, "bob", &[&bob]).await;
    expect_search(&server, &carol_t, "dave", &[]).await;
    expect_search(&server, &dave_t, "carol", &[]).await;
    join(&server, &dave_t, &private).await;
    expect_search(&server, &dave_t, "carol", &[&carol]).await;
    // Leaving the shared room hides them again.
    server.post(&format!("{V3}/rooms/{private}/leave"), Some(&dave_t), json!({})).await;
    expect_search(&server, &dave_t, "carol", &[]).await;
}

async fn join_rule_and_history_visibility_flips(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, alice_t) = server.register("alice", "pw").await;
    let (_, eve_t) = server.register("eve", "pw").await;
    let room = create(&server, &alice_t, json!({ "preset": "private_chat" })).await;
    expect_search(&server, &eve_t, "alice", &[]).await;
    put_state(&server, &alice_t, &room, "m.room.join_rules", json!({ "join_rule": "public" })).await;
    expect_search(&server, &eve_t, "alice", &[&alice]).await;
    put_state(&server, &alice_t, &room, "m.room.join_rules", json!({ "join_rule": "invite" })).await;
    expect_search(&server, &eve_t, "alice", &[]).await;
    put_state(&server, &alice_t, &room, "m.room.history_visibility", json!({ "history_visibility": "world_readable" }))
        .await;
    expect_search(&server, &eve_t, "alice", &[&alice]).await;
    put_state(&server, &alice_t, &room, "m.room.history_visibility", json!({ "history_visibility": "shared" })).await;
    expect_search(&server, &eve_t, "alice", &[]).await;
}

/// Complement's `TestUserDirectoryDisplayNames`, and the same after the private room
/// becomes public.
async fn per_room_nicknames_never_leak(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, alice_t) = server.register("alice", "pw").await;
    let (bob, bob_t) = server.register("bob", "pw").await;
    let (_, eve_t) = server.register("eve", "pw").await;
    set_name(&server, &alice_t, &alice, "Alice Cooper").await;
    create(&server, &alice_t, json!({ "preset": "public_chat" })).await;
    let private = create(&server, &alice_t, json!({ "preset": "private_chat", "invite": [bob] })).await;
    join(&server, &bob_t, &private).await;
    let member = format!("{V3}/rooms/{private}/state/m.room.member/{alice}");
    let (status, _) =
        server.put(&member, Some(&alice_t), json!({ "membership": "join", "displayname": "Freddy" })).await;
    assert_eq!(status, StatusCode::OK);

    expect_search(&server, &eve_t, "Alice Cooper", &[&alice]).await;
    let body = search(&server, &eve_t, "Alice Cooper").await;
    assert_eq!(body["results"][0]["display_name"], "Alice Cooper");
    expect_search(&server, &eve_t, "alice", &[&alice]).await;
    expect_search(&server, &eve_t, "Freddy", &[]).await;
    expect_search(&server, &bob_t, "Freddy", &[]).await;
    let body = search(&server, &bob_t, "alice").await;
    assert_eq!(body["results"][0]["display_name"], "Alice Cooper");

    put_state(&server, &alice_t, &private, "m.room.join_rules", json!({ "join_rule": "public" })).await;
    expect_search(&server, &eve_t, "bob", &[&bob]).await;
    expect_search(&server, &eve_t, "Freddy", &[]).await;
}

async fn display_name_changes_and_leaving(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, alice_t) = server.register("alice", "pw").await;
    let (_, eve_t) = server.register("eve", "pw").await;
    let room = create(&server, &alice_t, json!({ "preset": "public_chat" })).await;
    set_name(&server, &alice_t, &alice, "Wonderland").await;
    expect_search(&server, &eve_t, "wonder", &[&alice]).await;
    set_name(&server, &alice_t, &alice, "Looking Glass").await;
    expect_search(&server, &eve_t, "wonder", &[]).await;
    expect_search(&server, &eve_t, "looking gl", &[&alice]).await;
    // Leaving the only public room: no longer visible to strangers.
    server.post(&format!("{V3}/rooms/{room}/leave"), Some(&alice_t), json!({})).await;
    expect_search(&server, &eve_t, "looking", &[]).await;
}

async fn excluded_users_never_appear(db: Db) {
    let server = TestServer::start_with(db, "user_directory:\n  search_all_users: true").await;
    let (alice, alice_t) = server.register("alice", "pw").await;
    let (_, eve_t) = server.register("eve", "pw").await;
    expect_search(&server, &eve_t, "alice", &[&alice]).await;
    // Deactivated users disappear.
    let auth = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw" } });
    let (status, _) = server.post(&format!("{V3}/account/deactivate"), Some(&alice_t), auth).await;
    assert_eq!(status, StatusCode::OK);
    expect_search(&server, &eve_t, "alice", &[]).await;

    // Support users (created with user_type) are never listed.
    let (_, body) = server.get("/_synapse/admin/v1/register", None).await;
    let nonce = body["nonce"].as_str().unwrap();
    let mac = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(common::SHARED_SECRET.as_bytes()).unwrap();
        mac.update(format!("{nonce}\0helpdesk\0pw\0notadmin\0support").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let request =
        json!({ "nonce": nonce, "username": "helpdesk", "password": "pw", "user_type": "support", "mac": mac });
    let (status, body) = server.post("/_synapse/admin/v1/register", None, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (bob, _) = server.register("bob", "pw").await;
    expect_search(&server, &eve_t, "bob", &[&bob]).await;
    expect_search(&server, &eve_t, "helpdesk", &[]).await;
}

async fn unicode_and_punctuation_matching(db: Db) {
    let server = TestServer::start_with(db, "user_directory:\n  search_all_users: true").await;
    let (_, eve_t) = server.register("eve", "pw").await;
    let mut users = Vec::new();
    for (localpart, name) in [
        ("ivan", "Иван Петров"),
        ("rene", "Rene\u{301} Dupont"),
        ("gonzalez", "María González"),
        ("user-a1", "Hyphen"),
        ("user.1", "Dot"),
        ("user_1", "Underscore"),
        ("chen", "陈晓明"),
    ] {
        let (user, token) = server.register(localpart, "pw").await;
        set_name(&server, &token, &user, name).await;
        users.push(user);
    }
    let [ivan, rene, gonzalez, hyphen, dot, underscore, chen] = users.try_into().unwrap();
    // The last profile change: once it is searchable, every earlier one has been applied.
    expect_search(&server, &eve_t, "陈晓明", &[&chen]).await;
    expect_search(&server, &eve_t, "иВАН", &[&ivan]).await;
    expect_search(&server, &eve_t, "петр", &[&ivan]).await;
    expect_search(&server, &eve_t, "Ren\u{e9}", &[&rene]).await; // composed query, decomposed name
    expect_search(&server, &eve_t, "gonzalez", &[&gonzalez]).await; // accent-insensitive
    expect_search(&server, &eve_t, "gonzález", &[&gonzalez]).await;
    expect_search(&server, &eve_t, "gonzálex", &[]).await;
    expect_search(&server, &eve_t, "maria", &[&gonzalez]).await;
    for user in [&hyphen, &dot, &underscore] {
        let results = ids(&search(&server, &eve_t, user).await);
        assert_eq!(results.first(), Some(user), "{user}: {results:?}");
    }
    expect_search(&server, &eve_t, "user-a1", &[&hyphen]).await;
}

async fn request_handling(db: Db) {
    let limits = "user_directory:\n  search_all_users: true\nrc_user_directory: {per_second: 0.001, burst_count: 120}";
    let server = TestServer::start_with(db, limits).await;
    let (_, eve_t) = server.register("eve", "pw").await;
    for i in 0..3 {
        server.register(&format!("sam{i}"), "pw").await;
    }
    let path = format!("{V3}/user_directory/search");
    let (status, body) = server.post(&path, Some(&eve_t), json!({})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM")));
    let (status, body) = server.post(&path, Some(&eve_t), json!({ "search_term": 5 })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")));
    let (status, _) = server.post(&path, None, json!({ "search_term": "x" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    expect_search(&server, &eve_t, "sam", &["@sam0:kith.test", "@sam1:kith.test", "@sam2:kith.test"]).await;
    let (_, body) = server.post(&path, Some(&eve_t), json!({ "search_term": "sam", "limit": 1 })).await;
    assert_eq!((body["results"].as_array().unwrap().len(), body["limited"].as_bool()), (1, Some(true)));
    let (_, body) = server.post(&path, Some(&eve_t), json!({ "search_term": "sam", "limit": 3 })).await;
    assert_eq!((body["results"].as_array().unwrap().len(), body["limited"].as_bool()), (3, Some(false)));
    let (_, body) = server.post(&path, Some(&eve_t), json!({ "search_term": "sam", "limit": -5 })).await;
    assert_eq!((body["results"].as_array().unwrap().len(), body["limited"].as_bool()), (0, Some(true)));
    let result = &body["results"];
    assert!(result.is_array());
    let (_, body) = server.post(&path, Some(&eve_t), json!({ "search_term": "sam0" })).await;
    assert_eq!(
        body["results"][0],
        json!({ "user_id": "@sam0:kith.test", "display_name": "sam0" }),
        "absent fields left out"
    );

    // The rate limit answers M_LIMIT_EXCEEDED with a wait.
    let mut limited = None;
    for _ in 0..150 {
        let (status, body) = server.post(&path, Some(&eve_t), json!({ "search_term": "sam" })).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(body);
            break;
        }
    }
    let body = limited.expect("rate limited within 150 requests");
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0);
}

async fn disabled_and_search_all_users(db: Db) {
    let server = TestServer::start_with(db, "user_directory:\n  enabled: false\n  search_all_users: true").await;
    let (_, eve_t) = server.register("eve", "pw").await;
    server.register("alice", "pw").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = search(&server, &eve_t, "alice").await;
    assert_eq!(body, json!({ "limited": false, "results": [] }));

    let server = TestServer::start_with(db, "user_directory:\n  search_all_users: true").await;
    let (_, eve_t) = server.register("eve", "pw").await;
    let (alice, _) = server.register("alice", "pw").await;
    expect_search(&server, &eve_t, "alice", &[&alice]).await;
}

async fn admin_rebuild_job(db: Db) {
    let server = TestServer::start(db).await;
    let (_, admin_t) = server.register_as("admin", "pw", true).await;
    let (alice, alice_t) = server.register("alice", "pw").await;
    create(&server, &alice_t, json!({ "preset": "public_chat" })).await;
    expect_search(&server, &admin_t, "alice", &[&alice]).await;
    let path = "/_synapse/admin/v1/background_updates/start_job";
    let (status, _) = server.post(path, Some(&alice_t), json!({ "job_name": "regenerate_directory" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = server.post(path, Some(&admin_t), json!({ "job_name": "nope" })).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")));
    let (status, _) = server.post(path, Some(&admin_t), json!({ "job_name": "regenerate_directory" })).await;
    assert_eq!(status, StatusCode::OK);
    expect_search(&server, &admin_t, "alice", &[&alice]).await;
    assert!(server.log().contains("user directory built"));
}

/// Kill the server (SIGKILL) in the middle of a burst of membership changes, start it
/// again: its directory answers exactly as a from-scratch rebuild does.
async fn restart_mid_burst_equals_rebuild(db: Db) {
    let mut server = TestServer::start(db).await;
    let (_, admin_t) = server.register_as("admin", "pw", true).await;
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(server.register(&format!("member{i}"), "pw").await);
    }
    let public = create(&server, &users[0].1, json!({ "preset": "public_chat" })).await;
    let private = create(&server, &users[1].1, json!({ "preset": "public_chat" })).await;
    let burst = {
        let base = server.base.clone();
        let users = users.clone();
        let (public, private) = (public.clone(), private.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for round in 0..20 {
                for (i, (_, token)) in users.iter().enumerate() {
                    let room = if (i + round) % 2 == 0 { &public } else { &private };
                    let action = if round % 3 == 2 { "leave" } else { "join" };
                    let url = format!("{base}{V3}/rooms/{room}/{action}");
                    if client.post(url).bearer_auth(token).json(&json!({})).send().await.is_err() {
                        return;
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.kill();
    let _ = burst.await;
    server.start_again().await;

    let queries = ["member", "member1", "mem", "kith", "admin"];
    let mut before = Vec::new();
    for query in queries {
        before.push(ids(&search(&server, &admin_t, query).await));
    }
    let path = "/_synapse/admin/v1/background_updates/start_job";
    server.post(path, Some(&admin_t), json!({ "job_name": "regenerate_directory" })).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    for (query, expected) in queries.iter().zip(before) {
        let after = ids(&search(&server, &admin_t, query).await);
        assert_eq!(after, expected, "{query}");
    }
}

/// A directory of local users, each with the display name and avatar given (`None`
/// removes the name registration sets), searched by `eve` with `search_all_users`.
async fn directory_of(server: &TestServer, users: &[(&str, Option<&str>, bool)]) -> (String, Vec<(String, String)>) {
    let (_, eve_t) = server.register("eve", "pw").await;
    let mut registered = Vec::new();
    for (localpart, name, avatar) in users {
        let (user, token) = server.register(localpart, "pw").await;
        let path = format!("{V3}/profile/{user}/displayname");
        match name {
            Some(name) => set_name(server, &token, &user, name).await,
            None => {
                let (status, body) = server.request(reqwest::Method::DELETE, &path, Some(&token), None).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        }
        if *avatar {
            let path = format!("{V3}/profile/{user}/avatar_url");
            let (status, _) = server.put(&path, Some(&token), json!({ "avatar_url": "mxc://kith.test/a" })).await;
            assert_eq!(status, StatusCode::OK);
        }
        registered.push((user, token));
    }
    (eve_t, registered)
}

const ALL_USERS: &str = "user_directory:\n  search_all_users: true";

/// Every matching position counts. Expected order from Synapse's SQL on PostgreSQL 15
/// (score 4.0 x 1.2 (name) x (3 x exact + prefix ts_rank_cd)): `@mary_martin`
/// "Mary Martin" matches `mar` four times over three lexemes (6.08); `@bob` "Mar" once
/// exactly (5.76); `@mark` "Mark Twain" twice (3.04); `@amar` "Maria" once (1.44).
async fn ranking_counts_every_matching_position(db: Db) {
    let server = TestServer::start_with(db, ALL_USERS).await;
    let users = [
        ("amar", Some("Maria"), false),
        ("bob", Some("Mar"), false),
        ("mark", Some("Mark Twain"), false),
        ("mary_martin", Some("Mary Martin"), false),
    ];
    let (eve_t, _) = directory_of(&server, &users).await;
    let expected = ["@mary_martin:kith.test", "@bob:kith.test", "@mark:kith.test", "@amar:kith.test"];
    expect_search(&server, &eve_t, "mar", &expected).await;
}

/// Normalisation 8 divides by the distinct lexemes, so a user without a display name
/// (two lexemes: `kim`, `kith.test`) outranks one whose name matches, even with an
/// avatar. Synapse's SQL on PostgreSQL 15: `@kim` 8.0, `@lee` "Kim" with an avatar
/// 6.912, `@kimberly` "Kimberly Long Name Here" 1.824.
async fn ranking_divides_by_distinct_lexemes(db: Db) {
    let server = TestServer::start_with(db, ALL_USERS).await;
    let users =
        [("kimberly", Some("Kimberly Long Name Here"), false), ("lee", Some("Kim"), true), ("kim", None, false)];
    let (eve_t, _) = directory_of(&server, &users).await;
    expect_search(&server, &eve_t, "kim", &["@kim:kith.test", "@lee:kith.test", "@kimberly:kith.test"]).await;
}

/// `.` inside a localpart keeps it one lexeme, found only by its own prefixes; `_` in
/// a query word makes a phrase of adjacent words, in the localpart or the display name.
/// Expected results from Synapse's SQL on PostgreSQL 15.
async fn ranking_tokenises_dots_and_underscores(db: Db) {
    let server = TestServer::start_with(db, ALL_USERS).await;
    let users = [
        ("aikaterini.karagiannis", Some("Aikaterini"), false),
        ("karl", Some("Karl"), false),
        ("helen.schmidt3", Some("H. S."), false),
        ("helen", Some("Helen Schmidt"), false),
        ("noah_williams", Some("Noah Williams"), false),
        ("nw", Some("Noah Williams"), false),
        ("noah", Some("Williams Noah"), false),
        ("noahwilliams", Some("NW"), false),
    ];
    let (eve_t, _) = directory_of(&server, &users).await;
    // The last user first: once it is found, every profile before it is indexed.
    expect_search(&server, &eve_t, "noahwilliams", &["@noahwilliams:kith.test"]).await;
    expect_search(&server, &eve_t, "kar", &["@karl:kith.test"]).await;
    expect_search(&server, &eve_t, "aikaterini", &["@aikaterini.karagiannis:kith.test"]).await;
    expect_search(&server, &eve_t, "aikaterini.kar", &["@aikaterini.karagiannis:kith.test"]).await;
    expect_search(&server, &eve_t, "helen schmidt", &["@helen:kith.test"]).await;
    // 12.16 (the phrase in the localpart and the name) and 4.32 (the name only).
    expect_search(&server, &eve_t, "noah_williams", &["@noah_williams:kith.test", "@nw:kith.test"]).await;
}

/// Exact ties (Synapse scores `@sam1` and `@sam2` "Sam" alike, 7.36) go to the user
/// sharing a room with the searcher, then to the smaller user ID.
async fn ranking_ties_go_to_shared_rooms(db: Db) {
    let server = TestServer::start_with(db, ALL_USERS).await;
    let (eve_t, users) = directory_of(&server, &[("sam1", Some("Sam"), false), ("sam2", Some("Sam"), false)]).await;
    expect_search(&server, &eve_t, "sam", &["@sam1:kith.test", "@sam2:kith.test"]).await;
    let room = create(&server, &eve_t, json!({ "preset": "private_chat" })).await;
    invite(&server, &eve_t, &room, &users[1].0).await;
    join(&server, &users[1].1, &room).await;
    expect_search(&server, &eve_t, "sam", &["@sam2:kith.test", "@sam1:kith.test"]).await;
}
