//! What a client touches on its first day, over HTTP on both backends: `/context`,
//! `/relations`, `/threads`, tags, the room list visibility, presence, TURN, third-party
//! protocols, OpenID tokens, reports, room upgrades, well-known, and `/sync` giving a
//! newly joined room its history.

mod common;

use common::matrix::{self, V3, encode};
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const V1: &str = "/_matrix/client/v1";

async fn send(server: &TestServer, token: &str, room: &str, content: Value) -> String {
    let path = format!("{V3}/rooms/{}/send/m.room.message/t{}", encode(room), rand_txn());
    let (status, answer) = server.put(&path, Some(token), content).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

fn rand_txn() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn ids(events: &Value) -> Vec<String> {
    events.as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
}

fn errcode(answer: &(StatusCode, Value)) -> (StatusCode, Option<&str>) {
    (answer.0, answer.1["errcode"].as_str())
}

async fn context_relations_and_threads(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice_t) = server.register("alice", "pw").await;
    let (_, eve_t) = server.register("eve", "pw").await;
    let room = matrix::create_room(&server, &alice_t, json!({ "preset": "private_chat" })).await;
    let mut messages = Vec::new();
    for i in 0..5 {
        messages.push(matrix::send_text(&server, &alice_t, &room, &format!("m{i}")).await);
    }
    let path = format!("{V3}/rooms/{}/context/{}?limit=4", encode(&room), encode(&messages[2]));
    let (status, context) = server.get(&path, Some(&alice_t)).await;
    assert_eq!(status, StatusCode::OK, "{context}");
    assert_eq!(context["event"]["event_id"], messages[2].as_str());
    assert_eq!(ids(&context["events_before"]), vec![messages[1].clone(), messages[0].clone()], "newest first");
    assert_eq!(ids(&context["events_after"]), vec![messages[3].clone(), messages[4].clone()]);
    assert!(context["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"));
    let (_, older) = server
        .get(
            &format!("{V3}/rooms/{}/messages?dir=b&limit=1&from={}", encode(&room), context["start"].as_str().unwrap()),
            Some(&alice_t),
        )
        .await;
    assert_eq!(ids(&older["chunk"]).len(), 1);
    assert_ne!(ids(&older["chunk"])[0], messages[0], "start continues before the context");
    assert_eq!(
        errcode(&server.get(&path, Some(&eve_t)).await),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "not a member"
    );

    let root = messages[0].clone();
    let thread = |body: &str| json!({ "msgtype": "m.text", "body": body, "m.relates_to": { "rel_type": "m.thread", "event_id": root } });
    let reply1 = send(&server, &alice_t, &room, thread("r1")).await;
    let reply2 = send(&server, &alice_t, &room, thread("r2")).await;
    let edit = json!({ "msgtype": "m.text", "body": "* m1!", "m.new_content": { "msgtype": "m.text", "body": "m1!" },
                       "m.relates_to": { "rel_type": "m.replace", "event_id": messages[1] } });
    send(&server, &alice_t, &room, edit).await;
    let reaction = json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": root, "key": "👍" } });
    let path = format!("{V3}/rooms/{}/send/m.reaction/react", encode(&room));
    let reaction_id = server.put(&path, Some(&alice_t), reaction).await.1["event_id"].as_str().unwrap().to_owned();

    let relations = format!("{V1}/rooms/{}/relations/{}", encode(&room), encode(&root));
    let (status, all) = server.get(&relations, Some(&alice_t)).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(ids(&all["chunk"]), vec![reaction_id.clone(), reply2.clone(), reply1.clone()], "newest first");
    let (_, threaded) = server.get(&format!("{relations}/m.thread?dir=f&limit=1"), Some(&alice_t)).await;
    assert_eq!(ids(&threaded["chunk"]), vec![reply1.clone()]);
    let next = threaded["next_batch"].as_str().expect("a next page");
    let (_, page2) = server.get(&format!("{relations}/m.thread?dir=f&limit=1&from={next}"), Some(&alice_t)).await;
    assert_eq!(ids(&page2["chunk"]), vec![reply2.clone()]);
    let (_, reactions) = server.get(&format!("{relations}/m.annotation/m.reaction"), Some(&alice_t)).await;
    assert_eq!(ids(&reactions["chunk"]), vec![reaction_id]);
    let (_, none) = server.get(&format!("{relations}/m.annotation/m.room.message"), Some(&alice_t)).await;
    assert_eq!(ids(&none["chunk"]), Vec::<String>::new());
    assert_eq!(errcode(&server.get(&format!("{relations}?dir=x"), Some(&alice_t)).await).1, Some("M_INVALID_PARAM"));
    assert_eq!(errcode(&server.get(&relations, Some(&eve_t)).await).0, StatusCode::FORBIDDEN);
    let missing = format!("{V1}/rooms/{}/relations/%24nope", encode(&room));
    assert_eq!(errcode(&server.get(&missing, Some(&alice_t)).await), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")));

    let (status, threads) = server.get(&format!("{V1}/rooms/{}/threads", encode(&room)), Some(&alice_t)).await;
    assert_eq!(status, StatusCode::OK, "{threads}");
    assert_eq!(ids(&threads["chunk"]), vec![root.clone()]);
    let summary = &threads["chunk"][0]["unsigned"]["m.relations"]["m.thread"];
    assert_eq!((summary["count"].as_i64(), summary["current_user_participated"].as_bool()), (Some(2), Some(true)));
    assert_eq!(summary["latest_event"]["event_id"], reply2.as_str());
    let (_, mine) =
        server.get(&format!("{V1}/rooms/{}/threads?include=participated", encode(&room)), Some(&alice_t)).await;
    assert_eq!(ids(&mine["chunk"]), vec![root]);
    let bad = server.get(&format!("{V1}/rooms/{}/threads?include=some", encode(&room)), Some(&alice_t)).await;
    assert_eq!(errcode(&bad), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")));

    // A redaction takes the relation away and the redacted event carries the whole redaction.
    let redact = format!("{V3}/rooms/{}/redact/{}/r1", encode(&room), encode(&reply1));
    let redaction = server.put(&redact, Some(&alice_t), json!({ "reason": "oops" })).await.1["event_id"].clone();
    let (_, after) = server.get(&format!("{relations}/m.thread"), Some(&alice_t)).await;
    assert_eq!(ids(&after["chunk"]), vec![reply2]);
    let (_, redacted) =
        server.get(&format!("{V3}/rooms/{}/event/{}", encode(&room), encode(&reply1)), Some(&alice_t)).await;
    let because = &redacted["unsigned"]["redacted_because"];
    assert_eq!((because["event_id"].clone(), because["type"].clone()), (redaction, json!("m.room.redaction")));
    assert_eq!(because["content"]["reason"], "oops");
}

async fn tags_and_room_list_visibility(db: Db) {
    let server = TestServer::start(db).await;
    let (alice, alice_t) = server.register("alice", "pw").await;
    let (_, bob_t) = server.register("bob", "pw").await;
    let room = matrix::create_room(&server, &alice_t, json!({ "preset": "public_chat" })).await;
    let tags = format!("{V3}/user/{}/rooms/{}/tags", encode(&alice), encode(&room));
    assert_eq!(server.get(&tags, Some(&alice_t)).await.1, json!({ "tags": {} }));
    assert_eq!(
        server.put(&format!("{tags}/m.favourite"), Some(&alice_t), json!({ "order": 0.5 })).await.0,
        StatusCode::OK
    );
    assert_eq!(server.put(&format!("{tags}/u.work"), Some(&alice_t), json!({})).await.0, StatusCode::OK);
    assert_eq!(
        server.get(&tags, Some(&alice_t)).await.1,
        json!({ "tags": { "m.favourite": { "order": 0.5 }, "u.work": {} } })
    );
    let (_, sync) = server.get(&format!("{V3}/sync"), Some(&alice_t)).await;
    let room_data = &sync["rooms"]["join"][&room]["account_data"]["events"];
    assert!(
        room_data
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.tag" && e["content"]["tags"]["u.work"].is_object()),
        "{room_data}"
    );
    assert_eq!(server.request(Method::DELETE, &format!("{tags}/u.work"), Some(&alice_t), None).await.0, StatusCode::OK);
    assert_eq!(server.get(&tags, Some(&alice_t)).await.1, json!({ "tags": { "m.favourite": { "order": 0.5 } } }));
    let bad_order = server.put(&format!("{tags}/x"), Some(&alice_t), json!({ "order": "high" })).await;
    assert_eq!(errcode(&bad_order), (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")));
    assert_eq!(errcode(&server.get(&tags, Some(&bob_t)).await).0, StatusCode::FORBIDDEN, "another user's tags");

    let list = format!("{V3}/directory/list/room/{}", encode(&room));
    assert_eq!(server.get(&list, None).await.1, json!({ "visibility": "private" }));
    assert_eq!(
        server.put(&list, Some(&bob_t), json!({ "visibility": "public" })).await.0,
        StatusCode::FORBIDDEN,
        "not a member"
    );
    assert_eq!(server.put(&list, Some(&alice_t), json!({ "visibility": "public" })).await.0, StatusCode::OK);
    assert_eq!(server.get(&list, None).await.1, json!({ "visibility": "public" }));
    let (_, public) = server.get(&format!("{V3}/publicRooms"), Some(&bob_t)).await;
    assert_eq!(public["chunk"][0]["room_id"], room.as_str());
    assert_eq!(
        errcode(&server.put(&list, Some(&alice_t), json!({ "visibility": "hidden" })).await).1,
        Some("M_INVALID_PARAM")
    );
    assert_eq!(
        errcode(&server.get(&format!("{V3}/directory/list/room/%21nope%3Akith.test"), None).await).0,
        StatusCode::NOT_FOUND
    );
}

async fn presence_voip_thirdparty_and_openid(db: Db) {
    let mut server = TestServer::start(db).await;
    let (alice, alice_t) = server.register("alice", "pw").await;
    let (bob, bob_t) = server.register("bob", "pw").await;
    let (_, carol_t) = server.register("carol", "pw").await;
    let room = matrix::create_room(&server, &alice_t, json!({ "preset": "public_chat" })).await;
    matrix::join(&server, &bob_t, &room, "kith.test").await;
    let status = |user: &str| format!("{V3}/presence/{}/status", encode(user));
    let set = json!({ "presence": "unavailable", "status_msg": "lunch" });
    assert_eq!(server.put(&status(&alice), Some(&alice_t), set).await.0, StatusCode::OK);
    let (_, seen) = server.get(&status(&alice), Some(&bob_t)).await;
    assert_eq!((seen["presence"].as_str(), seen["status_msg"].as_str()), (Some("unavailable"), Some("lunch")));
    assert_eq!(server.get(&status(&alice), Some(&carol_t)).await.0, StatusCode::FORBIDDEN, "shares no room");
    assert_eq!(server.get(&status(&bob), Some(&bob_t)).await.1["presence"], "offline");
    assert_eq!(
        errcode(&server.put(&status(&bob), Some(&alice_t), json!({ "presence": "online" })).await).0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        errcode(&server.put(&status(&alice), Some(&alice_t), json!({ "presence": "asleep" })).await).1,
        Some("M_INVALID_PARAM")
    );

    assert_eq!(server.get(&format!("{V3}/voip/turnServer"), Some(&alice_t)).await.1, json!({}));
    assert_eq!(server.get(&format!("{V3}/thirdparty/protocols"), Some(&alice_t)).await.1, json!({}));

    let (status_code, token) =
        server.post(&format!("{V3}/user/{}/openid/request_token", encode(&alice)), Some(&alice_t), json!({})).await;
    assert_eq!(status_code, StatusCode::OK, "{token}");
    assert_eq!(
        (token["token_type"].as_str(), token["matrix_server_name"].as_str()),
        (Some("Bearer"), Some("kith.test"))
    );
    let userinfo =
        format!("/_matrix/federation/v1/openid/userinfo?access_token={}", token["access_token"].as_str().unwrap());
    assert_eq!(server.get(&userinfo, None).await.1, json!({ "sub": alice }));
    let wrong = server.get("/_matrix/federation/v1/openid/userinfo?access_token=nope", None).await;
    assert_eq!(errcode(&wrong), (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN")));
    let other =
        server.post(&format!("{V3}/user/{}/openid/request_token", encode(&bob)), Some(&alice_t), json!({})).await;
    assert_eq!(other.0, StatusCode::FORBIDDEN);

    server
        .reconfigure("presence:\n  enabled: false\nturn_uris: ['turn:turn.example:3478?transport=udp']\nturn_shared_secret: s3cret\nturn_user_lifetime: 1h\n")
        .await;
    assert_eq!(server.put(&status(&alice), Some(&alice_t), json!({ "presence": "online" })).await.0, StatusCode::OK);
    assert_eq!(server.get(&status(&alice), Some(&bob_t)).await.1, json!({ "presence": "offline" }), "presence off");
    let (_, turn) = server.get(&format!("{V3}/voip/turnServer"), Some(&alice_t)).await;
    assert_eq!(
        (turn["ttl"].as_u64(), turn["uris"][0].as_str()),
        (Some(3600), Some("turn:turn.example:3478?transport=udp"))
    );
    let username = turn["username"].as_str().unwrap();
    assert!(username.ends_with(&format!(":{alice}")), "{username}");
    assert_eq!(turn["password"].as_str().unwrap().len(), 28, "base64 of an HMAC-SHA1");
}

async fn reports_and_upgrades(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice_t) = server.register("alice", "pw").await;
    let (bob, bob_t) = server.register("bob", "pw").await;
    let room = matrix::create_room(&server, &alice_t, json!({ "preset": "public_chat", "room_version": "10", "name": "Old", "room_alias_name": "town", "visibility": "public" })).await;
    matrix::join(&server, &bob_t, &room, "kith.test").await;
    let message = matrix::send_text(&server, &bob_t, &room, "spam").await;
    let report = format!("{V3}/rooms/{}/report/{}", encode(&room), encode(&message));
    assert_eq!(
        server.post(&report, Some(&alice_t), json!({ "reason": "spam", "score": -100 })).await.0,
        StatusCode::OK
    );
    assert_eq!(errcode(&server.post(&report, Some(&alice_t), json!({ "score": 5 })).await).1, Some("M_INVALID_PARAM"));
    let missing = format!("{V3}/rooms/{}/report/%24nope", encode(&room));
    assert_eq!(errcode(&server.post(&missing, Some(&alice_t), json!({})).await).0, StatusCode::NOT_FOUND);
    assert_eq!(
        server.post(&format!("{V3}/rooms/{}/report", encode(&room)), Some(&alice_t), json!({ "reason": "x" })).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.post(&format!("{V3}/users/{}/report", encode(&bob)), Some(&alice_t), json!({ "reason": "x" })).await.0,
        StatusCode::OK
    );

    let upgrade = format!("{V3}/rooms/{}/upgrade", encode(&room));
    assert_eq!(
        server.post(&upgrade, Some(&bob_t), json!({ "new_version": "11" })).await.0,
        StatusCode::FORBIDDEN,
        "bob lacks the power"
    );
    assert_eq!(
        errcode(&server.post(&upgrade, Some(&alice_t), json!({ "new_version": "99" })).await).1,
        Some("M_UNSUPPORTED_ROOM_VERSION")
    );
    assert_eq!(errcode(&server.post(&upgrade, Some(&alice_t), json!({})).await).1, Some("M_MISSING_PARAM"));
    let (status, upgraded) = server.post(&upgrade, Some(&alice_t), json!({ "new_version": "11" })).await;
    assert_eq!(status, StatusCode::OK, "{upgraded}");
    let new_room = upgraded["replacement_room"].as_str().unwrap();
    let state = |room: &str, kind: &str| format!("{V3}/rooms/{}/state/{kind}/", encode(room));
    let (_, tombstone) = server.get(&state(&room, "m.room.tombstone"), Some(&alice_t)).await;
    assert_eq!(tombstone["replacement_room"], new_room);
    let (_, create) = server.get(&state(new_room, "m.room.create"), Some(&alice_t)).await;
    assert_eq!(
        (create["room_version"].as_str(), create["predecessor"]["room_id"].as_str()),
        (Some("11"), Some(room.as_str()))
    );
    assert_eq!(server.get(&state(new_room, "m.room.name"), Some(&alice_t)).await.1["name"], "Old");
    assert_eq!(server.get(&state(new_room, "m.room.join_rules"), Some(&alice_t)).await.1["join_rule"], "public");
    let (_, alias) = server.get(&format!("{V3}/directory/room/{}", encode("#town:kith.test")), None).await;
    assert_eq!(alias["room_id"], new_room, "the alias moved");
    assert_eq!(
        server.get(&format!("{V3}/directory/list/room/{}", encode(new_room)), None).await.1["visibility"],
        "public"
    );
    assert_eq!(
        server.get(&format!("{V3}/directory/list/room/{}", encode(&room)), None).await.1["visibility"],
        "private"
    );
    let path = format!("{V3}/rooms/{}/send/m.room.message/late", encode(&room));
    let late = server.put(&path, Some(&bob_t), json!({ "msgtype": "m.text", "body": "hello?" })).await;
    assert_eq!(late.0, StatusCode::FORBIDDEN, "the old room is read-only for members: {}", late.1);
    assert_eq!(matrix::join(&server, &bob_t, new_room, "kith.test").await.0, StatusCode::OK);
}

async fn well_known_and_history_on_join(db: Db) {
    let server =
        TestServer::start_with(db, "public_baseurl: https://matrix.kith.test/\nserve_server_wellknown: true").await;
    let (_, client) = server.get("/.well-known/matrix/client", None).await;
    assert_eq!(client, json!({ "m.homeserver": { "base_url": "https://matrix.kith.test" } }));
    assert_eq!(server.get("/.well-known/matrix/server", None).await.1, json!({ "m.server": "matrix.kith.test:443" }));

    let (_, alice_t) = server.register("alice", "pw").await;
    let (_, bob_t) = server.register("bob", "pw").await;
    let (_, first) = server.get(&format!("{V3}/sync"), Some(&bob_t)).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let room = matrix::create_room(&server, &alice_t, json!({ "preset": "public_chat" })).await;
    for i in 0..3 {
        matrix::send_text(&server, &alice_t, &room, &format!("before {i}")).await;
    }
    matrix::join(&server, &bob_t, &room, "kith.test").await;
    let (_, sync) = server.get(&format!("{V3}/sync?since={since}"), Some(&bob_t)).await;
    let joined = &sync["rooms"]["join"][&room];
    let bodies: Vec<&str> =
        joined["timeline"]["events"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies, vec!["before 0", "before 1", "before 2"], "the history before the join comes along");
    assert_eq!(joined["summary"]["m.joined_member_count"], 2);
    let filter = json!({ "room": { "timeline": { "limit": 2 } } }).to_string();
    let (_, limited) = server.get(&format!("{V3}/sync?since={since}&filter={}", encode(&filter)), Some(&bob_t)).await;
    let timeline = &limited["rooms"]["join"][&room]["timeline"];
    assert_eq!((timeline["events"].as_array().unwrap().len(), timeline["limited"].as_bool()), (2, Some(true)));
    let (_, earlier) = server
        .get(
            &format!(
                "{V3}/rooms/{}/messages?dir=b&limit=1&from={}",
                encode(&room),
                timeline["prev_batch"].as_str().unwrap()
            ),
            Some(&bob_t),
        )
        .await;
    // The timeline holds "before 2" and Bob's join; paging back goes on from just before.
    assert_eq!(earlier["chunk"][0]["content"]["body"], "before 1", "prev_batch continues where the timeline starts");
}

both_backends!(
    context_relations_and_threads,
    tags_and_room_list_visibility,
    presence_voip_thirdparty_and_openid,
    reports_and_upgrades,
    well_known_and_history_on_join,
);
