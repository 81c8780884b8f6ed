//! Synapse's admin API over HTTP, against SQLite and PostgreSQL: who may call it,
//! accounts listed, filtered, paged, created, changed, locked, logged out and
//! deactivated, rooms listed, searched and inspected, client connections recorded,
//! reports of events and of users listed, filtered, read and deleted.

mod common;

use common::{Db, SERVER_NAME, TestServer, matrix};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

both_backends!(
    only_admins_get_in,
    accounts_are_listed_filtered_and_paged,
    admins_change_accounts,
    rooms_are_listed_and_inspected,
    client_connections_are_recorded,
    forwarded_addresses_are_trusted_only_when_configured,
    event_reports_are_listed_read_and_deleted,
    event_reports_outlive_their_room,
    user_reports_are_listed_read_and_deleted
);

const V3: &str = "/_matrix/client/v3";
const ADMIN: &str = "/_synapse/admin";

fn errcode(body: &Value) -> &str {
    body["errcode"].as_str().unwrap_or_default()
}

fn names(body: &Value) -> Vec<&str> {
    body["users"].as_array().expect("users").iter().map(|u| u["name"].as_str().unwrap()).collect()
}

fn user(localpart: &str) -> String {
    format!("@{localpart}:{SERVER_NAME}")
}

async fn set_displayname(server: &TestServer, token: &str, user_id: &str, name: &str) {
    let path = format!("{V3}/profile/{user_id}/displayname");
    let (status, body) = server.put(&path, Some(token), json!({ "displayname": name })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn only_admins_get_in(db: Db) {
    let server = TestServer::start(db).await;
    let (status, body) = server.get(&format!("{ADMIN}/v1/server_version"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["server_version"], env!("CARGO_PKG_VERSION"));

    let (_, admin) = server.register_as("root", "pw", true).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let paths = [
        format!("{ADMIN}/v2/users"),
        format!("{ADMIN}/v3/users"),
        format!("{ADMIN}/v2/users/{alice_id}"),
        format!("{ADMIN}/v1/whois/{alice_id}"),
        format!("{ADMIN}/v2/users/{alice_id}/devices"),
        format!("{ADMIN}/v1/users/{alice_id}/joined_rooms"),
        format!("{ADMIN}/v1/rooms"),
        format!("{ADMIN}/v1/federation/destinations"),
        format!("{ADMIN}/v1/background_updates/status"),
        format!("{ADMIN}/v1/event_reports"),
        format!("{ADMIN}/v1/user_reports"),
    ];
    for path in &paths {
        let (status, body) = server.get(path, None).await;
        assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"), "{path}");
        let (status, body) = server.get(path, Some(&alice)).await;
        assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{path}");
        assert_eq!(body["error"], "You are not a server admin");
        let (status, body) = server.get(path, Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // Changes are refused to non-admins too, and nothing changed.
    let (status, _) = server.put(&format!("{ADMIN}/v2/users/{alice_id}"), Some(&alice), json!({ "admin": true })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server.post(&format!("{ADMIN}/v1/deactivate/{alice_id}"), Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, body) = server.get(&format!("{ADMIN}/v2/users/{alice_id}"), Some(&admin)).await;
    assert_eq!((body["admin"].clone(), body["deactivated"].clone()), (json!(false), json!(false)));

    let (status, body) = server.get(&format!("{ADMIN}/v1/background_updates/status"), Some(&admin)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "enabled": true, "current_updates": {} })));
    let (_, body) = server.get(&format!("{ADMIN}/v1/federation/destinations"), Some(&admin)).await;
    assert_eq!(body, json!({ "destinations": [], "total": 0 }));
}

async fn accounts_are_listed_filtered_and_paged(db: Db) {
    let server = TestServer::start(db).await;
    let (_, admin) = server.register_as("root", "pw", true).await;
    let (_, alice) = server.register("alice", "pw").await;
    let (_, bob) = server.register("bob", "pw").await;
    let (carol_id, carol) = server.register("carol", "pw").await;
    set_displayname(&server, &carol, &carol_id, "Carol Singer").await;
    set_displayname(&server, &alice, &user("alice"), "Zoe Liddell").await;
    set_displayname(&server, &bob, &user("bob"), "Bob").await;
    set_displayname(&server, &admin, &user("root"), "Root").await;

    let (status, body) = server.get(&format!("{ADMIN}/v2/users"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 4);
    assert_eq!(names(&body), [user("alice"), user("bob"), user("carol"), user("root")]);
    assert!(body.get("next_token").is_none());
    let carol_entry = &body["users"][2];
    assert_eq!(carol_entry["displayname"], "Carol Singer");
    assert_eq!(carol_entry["admin"], false);
    assert_eq!(carol_entry["is_guest"], false);
    assert_eq!(carol_entry["deactivated"], false);
    assert_eq!(carol_entry["locked"], false);
    assert_eq!(carol_entry["shadow_banned"], false);
    assert_eq!(carol_entry["user_type"], Value::Null);
    assert_eq!(carol_entry["avatar_url"], Value::Null);
    assert!(carol_entry["creation_ts"].as_i64().unwrap() > 1_600_000_000_000, "milliseconds: {carol_entry}");
    assert_eq!(body["users"][3]["admin"], true);

    // Paging: next_token is the offset of the next page while more remain.
    let (_, page) = server.get(&format!("{ADMIN}/v2/users?limit=3"), Some(&admin)).await;
    assert_eq!(names(&page), [user("alice"), user("bob"), user("carol")]);
    assert_eq!((page["next_token"].clone(), page["total"].clone()), (json!("3"), json!(4)));
    let (_, page) = server.get(&format!("{ADMIN}/v2/users?limit=3&from=3"), Some(&admin)).await;
    assert_eq!(names(&page), [user("root")]);
    assert!(page.get("next_token").is_none(), "{page}");
    let (_, page) = server.get(&format!("{ADMIN}/v2/users?from=10"), Some(&admin)).await;
    assert_eq!((page["users"].clone(), page["total"].clone()), (json!([]), json!(4)));

    // Filters and orders.
    let cases = [
        ("name=singer", vec![user("carol")]),
        ("name=ALICE", vec![user("alice")]),
        ("name=ro", vec![user("carol"), user("root")]),
        ("name=liddell", vec![user("alice")]),
        ("user_id=bo", vec![user("bob")]),
        ("admins=true", vec![user("root")]),
        ("admins=false&dir=b", vec![user("carol"), user("bob"), user("alice")]),
        ("order_by=displayname", vec![user("bob"), user("carol"), user("root"), user("alice")]),
        ("order_by=admin&dir=b", vec![user("root"), user("alice"), user("bob"), user("carol")]),
        ("guests=false&limit=1", vec![user("alice")]),
    ];
    for (query, expected) in cases {
        let (status, body) = server.get(&format!("{ADMIN}/v2/users?{query}"), Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(names(&body), expected, "{query}");
    }
    let (_, body) = server.get(&format!("{ADMIN}/v2/users?order_by=displayname"), Some(&admin)).await;
    let shown: Vec<&str> =
        body["users"].as_array().unwrap().iter().map(|u| u["displayname"].as_str().unwrap()).collect();
    assert_eq!(shown, ["Bob", "Carol Singer", "Root", "Zoe Liddell"]);

    // Bad parameters are Synapse's 400s.
    for query in ["from=-1", "limit=-5", "limit=ten", "order_by=password", "dir=up", "guests=maybe"] {
        let (status, body) = server.get(&format!("{ADMIN}/v2/users?{query}"), Some(&admin)).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{query}: {body}");
    }
    // A huge limit is clamped, not refused.
    let (status, body) = server.get(&format!("{ADMIN}/v2/users?limit=1000000"), Some(&admin)).await;
    assert_eq!((status, body["total"].clone()), (StatusCode::OK, json!(4)));

    // One account in full.
    let (status, body) = server.get(&format!("{ADMIN}/v2/users/{carol_id}"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], carol_id.as_str());
    assert_eq!(body["displayname"], "Carol Singer");
    assert_eq!((body["threepids"].clone(), body["external_ids"].clone()), (json!([]), json!([])));
    assert_eq!((body["erased"].clone(), body["locked"].clone()), (json!(false), json!(false)));
    assert!(body["creation_ts"].as_i64().unwrap() < 100_000_000_000, "seconds, as in Synapse: {body}");
    let (status, body) = server.get(&format!("{ADMIN}/v2/users/{}", user("nobody")), Some(&admin)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    let (status, body) = server.get(&format!("{ADMIN}/v2/users/not-a-user-id"), Some(&admin)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"));
    let (status, _) = server.get(&format!("{ADMIN}/v2/users/@alice:elsewhere.test"), Some(&admin)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Deactivated accounts: v2 hides them unless asked, v3 filters three ways.
    let (status, body) = server.post(&format!("{ADMIN}/v1/deactivate/{}", user("bob")), Some(&admin), json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "id_server_unbind_result": "success" })));
    let (_, body) = server.get(&format!("{ADMIN}/v2/users"), Some(&admin)).await;
    assert_eq!(names(&body), [user("alice"), user("carol"), user("root")]);
    assert_eq!(body["total"], 3);
    let (_, body) = server.get(&format!("{ADMIN}/v2/users?deactivated=true"), Some(&admin)).await;
    assert_eq!(body["total"], 4);
    let (_, body) = server.get(&format!("{ADMIN}/v3/users"), Some(&admin)).await;
    assert_eq!(body["total"], 4);
    let (_, body) = server.get(&format!("{ADMIN}/v3/users?deactivated=true"), Some(&admin)).await;
    assert_eq!(names(&body), [user("bob")]);
    assert_eq!(body["users"][0]["deactivated"], true);
    let (_, body) = server.get(&format!("{ADMIN}/v3/users?deactivated=false"), Some(&admin)).await;
    assert_eq!(body["total"], 3);
}

async fn admins_change_accounts(db: Db) {
    let server = TestServer::start(db).await;
    let (admin_id, admin) = server.register_as("root", "pw", true).await;

    // Creating an account answers 201 and the account; its password works.
    let dave = user("dave");
    let body = json!({ "password": "dave pw", "displayname": "Dave", "avatar_url": "mxc://kith.test/abc", "user_type": "bot" });
    let (status, created) = server.put(&format!("{ADMIN}/v2/users/{dave}"), Some(&admin), body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], dave.as_str());
    assert_eq!(created["displayname"], "Dave");
    assert_eq!(created["avatar_url"], "mxc://kith.test/abc");
    assert_eq!((created["admin"].clone(), created["user_type"].clone()), (json!(false), json!("bot")));
    let (status, login) = server.login("dave", "dave pw").await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let dave_token = login["access_token"].as_str().unwrap().to_owned();

    // Changing it answers 200.
    let body = json!({ "displayname": "David", "admin": true, "user_type": null });
    let (status, changed) = server.put(&format!("{ADMIN}/v2/users/{dave}"), Some(&admin), body).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!((changed["displayname"].clone(), changed["admin"].clone()), (json!("David"), json!(true)));
    assert_eq!(changed["user_type"], Value::Null);
    let (_, profile) = server.get(&format!("{V3}/profile/{dave}"), None).await;
    assert_eq!(profile["displayname"], "David");
    let (status, _) = server.get(&format!("{ADMIN}/v2/users"), Some(&dave_token)).await;
    assert_eq!(status, StatusCode::OK, "dave is an admin now");
    let (status, _) = server.put(&format!("{ADMIN}/v2/users/{dave}"), Some(&admin), json!({ "admin": false })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get(&format!("{ADMIN}/v2/users"), Some(&dave_token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        server.put(&format!("{ADMIN}/v2/users/{admin_id}"), Some(&admin), json!({ "admin": false })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an admin may not demote themself");
    for body in [json!({ "user_type": "wizard" }), json!({ "avatar_url": "https://x" }), json!({ "password": "" })] {
        let (status, reply) = server.put(&format!("{ADMIN}/v2/users/{dave}"), Some(&admin), body.clone()).await;
        assert_eq!((status, errcode(&reply)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{body}");
    }

    // A locked account is refused (a soft logout) until unlocked; its tokens survive.
    let (status, body) = server.put(&format!("{ADMIN}/v2/users/{dave}"), Some(&admin), json!({ "locked": true })).await;
    assert_eq!((status, body["locked"].clone()), (StatusCode::OK, json!(true)));
    let (status, body) = server.get(&format!("{V3}/account/whoami"), Some(&dave_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_USER_LOCKED"));
    assert_eq!(body["soft_logout"], true);
    let (status, body) = server.login("dave", "dave pw").await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_USER_LOCKED"));
    let (_, listed) = server.get(&format!("{ADMIN}/v2/users"), Some(&admin)).await;
    assert!(!names(&listed).contains(&dave.as_str()), "v2 leaves locked accounts out by default");
    let (_, listed) = server.get(&format!("{ADMIN}/v2/users?locked=true"), Some(&admin)).await;
    assert!(names(&listed).contains(&dave.as_str()));
    let (status, _) = server.put(&format!("{ADMIN}/v2/users/{dave}"), Some(&admin), json!({ "locked": false })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.get(&format!("{V3}/account/whoami"), Some(&dave_token)).await;
    assert_eq!((status, body["user_id"].clone()), (StatusCode::OK, json!(dave)));

    // Sessions: whois and devices show both of dave's logins once used; deleting one ends it.
    let (_, second) = server.login("dave", "dave pw").await;
    let second_token = second["access_token"].as_str().unwrap().to_owned();
    let second_device = second["device_id"].as_str().unwrap().to_owned();
    let (status, _) = server.get(&format!("{V3}/account/whoami"), Some(&second_token)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, whois) = server.get(&format!("{ADMIN}/v1/whois/{dave}"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{whois}");
    assert_eq!(whois["user_id"], dave.as_str());
    let connections = whois["devices"][""]["sessions"][0]["connections"].as_array().expect("connections");
    assert!(!connections.is_empty(), "{whois}");
    assert!(connections.iter().all(|c| c["last_seen"].as_i64().is_some_and(|ts| ts > 0)), "{whois}");
    let (_, devices) = server.get(&format!("{ADMIN}/v2/users/{dave}/devices"), Some(&admin)).await;
    assert_eq!(devices["total"], 2);
    assert!(devices["devices"].as_array().unwrap().iter().all(|d| d["user_id"] == dave.as_str()));
    let path = format!("{ADMIN}/v2/users/{dave}/devices/{second_device}");
    let (status, body) = server.request(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (status, body) = server.get(&format!("{V3}/account/whoami"), Some(&second_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"));
    let (_, devices) = server.get(&format!("{ADMIN}/v2/users/{dave}/devices"), Some(&admin)).await;
    assert_eq!(devices["total"], 1);

    // A password reset logs out the old sessions unless told not to.
    let path = format!("{ADMIN}/v1/reset_password/{dave}");
    let (status, body) = server.post(&path, Some(&admin), json!({ "new_password": "new pw" })).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (status, body) = server.get(&format!("{V3}/account/whoami"), Some(&dave_token)).await;
    assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"));
    let (status, _) = server.login("dave", "dave pw").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, login) = server.login("dave", "new pw").await;
    assert_eq!(status, StatusCode::OK);
    let kept_token = login["access_token"].as_str().unwrap().to_owned();
    let body = json!({ "new_password": "third pw", "logout_devices": false });
    let (status, _) = server.post(&path, Some(&admin), body).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get(&format!("{V3}/account/whoami"), Some(&kept_token)).await;
    assert_eq!(status, StatusCode::OK, "logout_devices: false keeps sessions");
    let (status, body) = server.post(&path, Some(&admin), json!({})).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"));
    let missing = format!("{ADMIN}/v1/reset_password/{}", user("nobody"));
    let (status, _) = server.post(&missing, Some(&admin), json!({ "new_password": "x" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Deactivation with erase: logged out, profile gone, marked erased, in no room.
    let (status, room) = server.post(&format!("{V3}/createRoom"), Some(&kept_token), json!({ "name": "Dave's" })).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let room_id = room["room_id"].as_str().unwrap();
    let (_, joined) = server.get(&format!("{ADMIN}/v1/users/{dave}/joined_rooms"), Some(&admin)).await;
    assert_eq!(joined, json!({ "joined_rooms": [room_id], "total": 1 }));
    let deactivate = format!("{ADMIN}/v1/deactivate/{dave}");
    let (status, body) = server.post(&deactivate, Some(&admin), json!({ "erase": true })).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "id_server_unbind_result": "success" })));
    let (status, _) = server.get(&format!("{V3}/account/whoami"), Some(&kept_token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, account) = server.get(&format!("{ADMIN}/v2/users/{dave}"), Some(&admin)).await;
    assert_eq!(account["deactivated"], true);
    assert_eq!(account["erased"], true);
    assert_eq!(account["displayname"], Value::Null);
    assert_eq!(account["avatar_url"], Value::Null);
    let (_, joined) = server.get(&format!("{ADMIN}/v1/users/{dave}/joined_rooms"), Some(&admin)).await;
    assert_eq!(joined, json!({ "joined_rooms": [], "total": 0 }));
    let (status, body) = server.login("dave", "third pw").await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_USER_DEACTIVATED"));

    // Reactivation needs a password; then the account logs in again.
    let (status, _) =
        server.put(&format!("{ADMIN}/v2/users/{dave}"), Some(&admin), json!({ "deactivated": false })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body = json!({ "deactivated": false, "password": "back pw" });
    let (status, account) = server.put(&format!("{ADMIN}/v2/users/{dave}"), Some(&admin), body).await;
    assert_eq!((status, account["deactivated"].clone()), (StatusCode::OK, json!(false)));
    let (status, _) = server.login("dave", "back pw").await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = server.post(&format!("{ADMIN}/v1/deactivate/{}", user("nobody")), Some(&admin), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn rooms_are_listed_and_inspected(db: Db) {
    let server = TestServer::start(db).await;
    let (_, admin) = server.register_as("root", "pw", true).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let (bob_id, bob) = server.register("bob", "pw").await;
    let create = |body: Value| {
        let (server, alice) = (&server, &alice);
        async move {
            let (status, body) = server.post(&format!("{V3}/createRoom"), Some(alice), body).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["room_id"].as_str().unwrap().to_owned()
        }
    };
    let garden = create(json!({
        "name": "Garden Party", "topic": "Roses", "room_alias_name": "garden", "preset": "public_chat",
        "visibility": "public",
    }))
    .await;
    let club = create(json!({
        "name": "Book Club", "preset": "private_chat",
        "initial_state": [{ "type": "m.room.encryption", "content": { "algorithm": "m.megolm.v1.aes-sha2" } }],
    }))
    .await;
    let (status, body) = server.post(&format!("{V3}/join/{garden}"), Some(&bob), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = server.get(&format!("{ADMIN}/v1/rooms"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["total_rooms"].clone(), body["offset"].clone()), (json!(2), json!(0)));
    assert!(body.get("next_batch").is_none());
    let listed: Vec<&str> = body["rooms"].as_array().unwrap().iter().map(|r| r["room_id"].as_str().unwrap()).collect();
    assert_eq!(listed, [club.as_str(), garden.as_str()], "by name: Book Club, Garden Party");
    let entry = &body["rooms"][1];
    assert_eq!(entry["name"], "Garden Party");
    assert_eq!(entry["canonical_alias"], format!("#garden:{SERVER_NAME}"));
    assert_eq!((entry["joined_members"].clone(), entry["joined_local_members"].clone()), (json!(2), json!(2)));
    assert_eq!(entry["creator"], alice_id.as_str());
    assert_eq!((entry["public"].clone(), entry["join_rules"].clone()), (json!(true), json!("public")));
    assert_eq!((entry["encryption"].clone(), entry["federatable"].clone()), (Value::Null, json!(true)));
    assert_eq!(entry["history_visibility"], "shared");
    assert_eq!(entry["room_type"], Value::Null);
    assert!(entry["version"].is_string() && entry["state_events"].as_i64().unwrap() >= 6, "{entry}");
    let club_entry = &body["rooms"][0];
    assert_eq!(club_entry["encryption"], "m.megolm.v1.aes-sha2");
    assert_eq!((club_entry["public"].clone(), club_entry["join_rules"].clone()), (json!(false), json!("invite")));

    let ids = |body: &Value| -> Vec<String> {
        body["rooms"].as_array().unwrap().iter().map(|r| r["room_id"].as_str().unwrap().to_owned()).collect()
    };
    let cases = [
        ("order_by=joined_members", vec![garden.clone(), club.clone()]),
        ("order_by=joined_members&dir=b", vec![club.clone(), garden.clone()]),
        ("order_by=name&dir=b", vec![garden.clone(), club.clone()]),
        ("search_term=GARDEN", vec![garden.clone()]),
        ("search_term=%23garden", vec![garden.clone()]),
        (&*format!("search_term={}", club.replace('!', "%21")), vec![club.clone()]),
        ("search_term=nothing", vec![]),
        ("public_rooms=false", vec![club.clone()]),
    ];
    for (query, expected) in cases {
        let (status, body) = server.get(&format!("{ADMIN}/v1/rooms?{query}"), Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(ids(&body), expected, "{query}");
    }
    let (_, page) = server.get(&format!("{ADMIN}/v1/rooms?limit=1"), Some(&admin)).await;
    assert_eq!((ids(&page), page["next_batch"].clone()), (vec![club.clone()], json!(1)));
    let (_, page) = server.get(&format!("{ADMIN}/v1/rooms?limit=1&from=1"), Some(&admin)).await;
    assert_eq!((ids(&page), page["offset"].clone()), (vec![garden.clone()], json!(1)));
    assert!(page.get("next_batch").is_none(), "{page}");
    for query in ["from=-1", "limit=-1", "order_by=colour", "dir=sideways"] {
        let (status, body) = server.get(&format!("{ADMIN}/v1/rooms?{query}"), Some(&admin)).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{query}");
    }

    // One room in full, its members and its state.
    let (status, room) = server.get(&format!("{ADMIN}/v1/rooms/{garden}"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{room}");
    assert_eq!((room["topic"].clone(), room["avatar"].clone()), (json!("Roses"), Value::Null));
    assert_eq!(room["joined_local_devices"], 2);
    assert_eq!(room["name"], "Garden Party");
    let (_, members) = server.get(&format!("{ADMIN}/v1/rooms/{garden}/members"), Some(&admin)).await;
    let mut expected = vec![alice_id.clone(), bob_id.clone()];
    expected.sort();
    assert_eq!(members, json!({ "members": expected, "total": 2 }));
    let (status, state) = server.get(&format!("{ADMIN}/v1/rooms/{garden}/state"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    let events = state["state"].as_array().unwrap();
    let find = |kind: &str, key: &str| events.iter().find(|e| e["type"] == kind && e["state_key"] == key).cloned();
    assert_eq!(find("m.room.name", "").unwrap()["content"]["name"], "Garden Party");
    assert_eq!(find("m.room.member", &bob_id).unwrap()["content"]["membership"], "join");
    assert_eq!(find("m.room.create", "").unwrap()["room_id"], garden.as_str());

    // Unknown rooms are 404s, malformed ids 400s.
    let unknown = format!("!nowhere:{SERVER_NAME}");
    for suffix in ["", "/members", "/state"] {
        let (status, body) = server.get(&format!("{ADMIN}/v1/rooms/{unknown}{suffix}"), Some(&admin)).await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{suffix}");
        let (status, body) = server.get(&format!("{ADMIN}/v1/rooms/not-a-room{suffix}"), Some(&admin)).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{suffix}");
    }

    // A user's joined rooms, as the admin sees them.
    let (_, joined) = server.get(&format!("{ADMIN}/v1/users/{bob_id}/joined_rooms"), Some(&admin)).await;
    assert_eq!(joined, json!({ "joined_rooms": [garden], "total": 1 }));
    let (_, joined) = server.get(&format!("{ADMIN}/v1/users/{alice_id}/joined_rooms"), Some(&admin)).await;
    assert_eq!(joined["total"], 2);
}

/// A request as a client with its own user agent (and maybe a proxy's header).
async fn get_as(server: &TestServer, path: &str, token: &str, user_agent: &str, forwarded_for: Option<&str>) -> Value {
    let mut request = reqwest::Client::new()
        .get(format!("{}{path}", server.base))
        .bearer_auth(token)
        .header(reqwest::header::USER_AGENT, user_agent);
    if let Some(address) = forwarded_for {
        request = request.header("X-Forwarded-For", address);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The connections whois lists, in Synapse's shape: all under the device `""`.
async fn whois_connections(server: &TestServer, admin: &str, user_id: &str) -> Vec<Value> {
    let (status, whois) = server.get(&format!("{ADMIN}/v1/whois/{user_id}"), Some(admin)).await;
    assert_eq!(status, StatusCode::OK, "{whois}");
    assert_eq!(whois["devices"].as_object().map(|d| d.len()), Some(1), "{whois}");
    let connections = &whois["devices"][""]["sessions"][0]["connections"];
    connections.as_array().cloned().expect("connections")
}

fn device<'a>(devices: &'a Value, device_id: &str) -> &'a Value {
    let list = devices["devices"].as_array().expect("devices");
    list.iter().find(|d| d["device_id"] == device_id).unwrap_or_else(|| panic!("{device_id} in {devices}"))
}

/// Requests are seen at once in whois and device lists (no wait for a batch write),
/// survive a restart, and go with their device.
async fn client_connections_are_recorded(db: Db) {
    let mut server = TestServer::start(db).await;
    let (_, admin) = server.register_as("root", "pw", true).await;
    let (alice, _) = server.register("alice", "pw").await;
    let (_, login) = server.login("alice", "pw").await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let device_id = login["device_id"].as_str().unwrap().to_owned();
    let (_, idle) = server.login("alice", "pw").await;
    let idle_device = idle["device_id"].as_str().unwrap().to_owned();

    let before = now_ms();
    get_as(&server, &format!("{V3}/account/whoami"), &token, "KithTest/1.0", None).await;
    // Alice's other login, not used yet, adds none.
    let connections = whois_connections(&server, &admin, &alice).await;
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(connections[0]["ip"], "127.0.0.1");
    assert_eq!(connections[0]["user_agent"], "KithTest/1.0");
    assert!(connections[0]["last_seen"].as_i64().unwrap() >= before, "{connections:?}");

    // The user's own device list, from a second client on the same device.
    let devices = get_as(&server, &format!("{V3}/devices"), &token, "KithTest/2.0", None).await;
    assert_eq!(device(&devices, &device_id)["last_seen_ip"], "127.0.0.1");
    assert!(device(&devices, &device_id)["last_seen_ts"].as_i64().unwrap() >= before);
    assert_eq!(device(&devices, &idle_device)["last_seen_ip"], Value::Null);
    let one = get_as(&server, &format!("{V3}/devices/{device_id}"), &token, "KithTest/2.0", None).await;
    assert_eq!(one["last_seen_ip"], "127.0.0.1");
    let (_, devices) = server.get(&format!("{ADMIN}/v2/users/{alice}/devices"), Some(&admin)).await;
    assert_eq!(device(&devices, &device_id)["last_seen_user_agent"], "KithTest/2.0", "the newest use wins");
    assert_eq!(device(&devices, &device_id)["last_seen_ip"], "127.0.0.1");
    let (_, users) = server.get(&format!("{ADMIN}/v2/users?name=alice"), Some(&admin)).await;
    assert!(users["users"][0]["last_seen_ts"].as_i64().unwrap() >= before, "{users}");
    let (_, account) = server.get(&format!("{ADMIN}/v2/users/{alice}"), Some(&admin)).await;
    assert!(account["last_seen_ts"].as_i64().unwrap() >= before, "{account}");

    // Uses still in memory are written on shutdown.
    get_as(&server, &format!("{V3}/account/whoami"), &token, "BeforeRestart/1.0", None).await;
    server.restart().await;
    let connections = whois_connections(&server, &admin, &alice).await;
    assert_eq!(connections[0]["user_agent"], "BeforeRestart/1.0", "{connections:?}");

    // A deleted device's connections go with it, pending ones included.
    get_as(&server, &format!("{V3}/account/whoami"), &token, "KithTest/3.0", None).await;
    let path = format!("{ADMIN}/v2/users/{alice}/devices/{device_id}");
    let (status, _) = server.request(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whois_connections(&server, &admin, &alice).await, Vec::<Value>::new());
}

/// `X-Forwarded-For` names the client only behind a listener with `x_forwarded: true`.
async fn forwarded_addresses_are_trusted_only_when_configured(db: Db) {
    let mut server = TestServer::start(db).await;
    let (_, admin) = server.register_as("root", "pw", true).await;
    let (alice, token) = server.register("alice", "pw").await;
    let (_, whoami) = server.get(&format!("{V3}/account/whoami"), Some(&token)).await;
    let device_id = whoami["device_id"].as_str().unwrap().to_owned();

    get_as(&server, &format!("{V3}/account/whoami"), &token, "Proxied/1.0", Some("203.0.113.7")).await;
    let connections = whois_connections(&server, &admin, &alice).await;
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(connections[0]["ip"], "127.0.0.1", "an untrusted header is ignored");

    let port = server.base.rsplit(':').next().unwrap().to_owned();
    server
        .reconfigure(&format!(
            "listeners:\n  - port: {port}\n    tls: false\n    x_forwarded: true\n    bind_addresses: ['127.0.0.1']\n    \
             resources:\n      - names: [client, federation]\n"
        ))
        .await;
    get_as(&server, &format!("{V3}/account/whoami"), &token, "Proxied/1.0", Some("203.0.113.7, 10.0.0.1")).await;
    let connections = whois_connections(&server, &admin, &alice).await;
    let ips: Vec<&str> = connections.iter().map(|c| c["ip"].as_str().unwrap()).collect();
    assert_eq!(ips, ["203.0.113.7", "127.0.0.1"], "newest first: {connections:?}");
    let (_, devices) = server.get(&format!("{ADMIN}/v2/users/{alice}/devices"), Some(&admin)).await;
    assert_eq!(device(&devices, &device_id)["last_seen_ip"], "203.0.113.7");
}

/// Reports `event_id` in `room` as `token`'s user.
async fn report_event(server: &TestServer, token: &str, room: &str, event_id: &str, body: Value) {
    let path = format!("{V3}/rooms/{}/report/{}", matrix::encode(room), matrix::encode(event_id));
    let (status, answer) = server.post(&path, Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// The reported events listed, in order.
fn reported(body: &Value) -> Vec<String> {
    let reports = body["event_reports"].as_array().expect("event_reports");
    reports.iter().map(|r| r["event_id"].as_str().expect("event_id").to_owned()).collect()
}

fn strings(ids: &[&String]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

async fn event_reports_are_listed_read_and_deleted(db: Db) {
    let server = TestServer::start(db).await;
    let (_, admin) = server.register_as("root", "pw", true).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let (bob_id, bob) = server.register("bob", "pw").await;
    let (carol_id, carol) = server.register("carol", "pw").await;
    let garden = json!({ "name": "Garden Party", "room_alias_name": "garden", "preset": "public_chat" });
    let garden = matrix::create_room(&server, &alice, garden).await;
    let club = matrix::create_room(&server, &carol, json!({ "preset": "public_chat" })).await;
    for (token, room) in [(&bob, &garden), (&carol, &garden), (&bob, &club)] {
        assert_eq!(matrix::join(&server, token, room, SERVER_NAME).await.0, StatusCode::OK);
    }
    let rude = matrix::send_text(&server, &alice, &garden, "something rude").await;
    let loud = matrix::send_text(&server, &bob, &garden, "SOMETHING LOUD").await;
    let stray = matrix::send_text(&server, &carol, &club, "off topic").await;

    // Oldest first: bob and carol report alice's message, alice bob's, bob carol's; a
    // room and a user are reported too, and are not event reports.
    report_event(&server, &bob, &garden, &rude, json!({ "reason": "spam", "score": -100 })).await;
    report_event(&server, &carol, &garden, &rude, json!({ "reason": "rude", "score": -50 })).await;
    let path = format!("{V3}/rooms/{}/report", matrix::encode(&club));
    assert_eq!(server.post(&path, Some(&alice), json!({ "reason": "a room" })).await.0, StatusCode::OK);
    report_event(&server, &alice, &garden, &loud, json!({})).await;
    report_event(&server, &bob, &club, &stray, json!({ "reason": "off topic" })).await;
    let path = format!("{V3}/users/{}/report", matrix::encode(&carol_id));
    assert_eq!(server.post(&path, Some(&bob), json!({ "reason": "a user" })).await.0, StatusCode::OK);

    let list = format!("{ADMIN}/v1/event_reports");
    let (status, body) = server.get(&list, Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 4);
    assert!(body.get("next_token").is_none(), "{body}");
    assert_eq!(reported(&body), strings(&[&stray, &loud, &rude, &rude]), "newest first");
    let reports = body["event_reports"].as_array().unwrap();
    let first = &reports[3];
    assert_eq!(first["room_id"], garden.as_str());
    assert_eq!(first["name"], "Garden Party");
    assert_eq!(first["canonical_alias"], format!("#garden:{SERVER_NAME}"));
    assert_eq!((first["user_id"].as_str(), first["sender"].as_str()), (Some(&*bob_id), Some(&*alice_id)));
    assert_eq!((first["reason"].clone(), first["score"].clone()), (json!("spam"), json!(-100)));
    assert!(first["received_ts"].as_i64().unwrap() > 1_600_000_000_000, "{first}");
    let silent = &reports[1];
    assert_eq!((silent["reason"].clone(), silent["score"].clone()), (Value::Null, Value::Null));
    assert_eq!((silent["user_id"].as_str(), silent["sender"].as_str()), (Some(&*alice_id), Some(&*bob_id)));
    let unnamed = &reports[0];
    assert_eq!((unnamed["name"].clone(), unnamed["canonical_alias"].clone()), (Value::Null, Value::Null));
    let ids: Vec<i64> = reports.iter().map(|r| r["id"].as_i64().expect("id")).collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "{ids:?}");
    let fields = ["id", "received_ts", "room_id", "name", "event_id", "user_id", "reason", "score", "sender"];
    for field in fields.iter().chain(&["canonical_alias"]) {
        assert!(first.get(*field).is_some(), "{field} in {first}");
    }

    // Filters, order and paging.
    let cases = [
        ("dir=f", strings(&[&rude, &rude, &loud, &stray])),
        ("dir=b", strings(&[&stray, &loud, &rude, &rude])),
        ("user_id=bob", strings(&[&stray, &rude])),
        ("user_id=%40CAROL", strings(&[&rude])),
        (&*format!("room_id={}", matrix::encode(&club)), strings(&[&stray])),
        (&*format!("event_sender_user_id={}", matrix::encode(&alice_id)), strings(&[&rude, &rude])),
        (&*format!("event_sender_user_id={}&user_id=bob", matrix::encode(&alice_id)), strings(&[&rude])),
        ("event_sender_user_id=alice", vec![]),
        ("user_id=nobody", vec![]),
    ];
    for (query, expected) in cases {
        let (status, body) = server.get(&format!("{list}?{query}"), Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(reported(&body), expected, "{query}");
        assert_eq!(body["total"], expected.len(), "{query}");
    }
    let (_, page) = server.get(&format!("{list}?limit=3"), Some(&admin)).await;
    assert_eq!(reported(&page), strings(&[&stray, &loud, &rude]));
    assert_eq!((page["next_token"].clone(), page["total"].clone()), (json!(3), json!(4)));
    let (_, page) = server.get(&format!("{list}?limit=3&from=3"), Some(&admin)).await;
    assert_eq!(reported(&page), strings(&[&rude]));
    assert!(page.get("next_token").is_none(), "{page}");
    let (_, page) = server.get(&format!("{list}?limit=2&from=1&dir=f"), Some(&admin)).await;
    assert_eq!(reported(&page), strings(&[&rude, &loud]));
    assert_eq!(page["next_token"], 3);
    let (_, page) = server.get(&format!("{list}?from=10"), Some(&admin)).await;
    assert_eq!(page, json!({ "event_reports": [], "total": 4 }));
    for query in ["from=-1", "limit=-1", "from=first", "dir=sideways"] {
        let (status, body) = server.get(&format!("{list}?{query}"), Some(&admin)).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{query}");
    }

    // One report in full, with the event as stored.
    let one = format!("{list}/{}", ids[3]);
    let (status, report) = server.get(&one, Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    for field in fields {
        assert_eq!(report[field], reports[3][field], "{field}");
    }
    // The PDU as stored: signed and hashed, its id not part of it (room versions 3+).
    let event = &report["event_json"];
    assert_eq!(event["sender"], alice_id.as_str());
    assert!(event["hashes"]["sha256"].is_string() && event["signatures"].is_object(), "{event}");
    assert_eq!(
        (event["type"].clone(), event["content"]["body"].clone()),
        (json!("m.room.message"), json!("something rude"))
    );
    assert_eq!(event["room_id"], garden.as_str());

    // Who may not, and what does not exist. The room report (the id after carol's) is
    // not an event report.
    let room_report = format!("{list}/{}", ids[2] + 1);
    for (method, path) in [(Method::GET, &one), (Method::DELETE, &one), (Method::GET, &list)] {
        let (status, body) = server.request(method.clone(), path, None, None).await;
        assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"), "{method} {path}");
        let (status, body) = server.request(method.clone(), path, Some(&carol), None).await;
        assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{method} {path}");
    }
    for method in [Method::GET, Method::DELETE] {
        for path in [format!("{list}/999999"), room_report.clone()] {
            let (status, body) = server.request(method.clone(), &path, Some(&admin), None).await;
            assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{method} {path}");
        }
        for id in ["first", "-1", "1.5"] {
            let (status, body) = server.request(method.clone(), &format!("{list}/{id}"), Some(&admin), None).await;
            assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{method} {id}");
        }
    }

    // Deleting a report leaves the others.
    let (status, body) = server.request(Method::DELETE, &one, Some(&admin), None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (status, body) = server.request(Method::DELETE, &one, Some(&admin), None).await;
    assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    let (status, _) = server.get(&one, Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = server.get(&list, Some(&admin)).await;
    assert_eq!(reported(&body), strings(&[&stray, &loud, &rude]));
    assert_eq!(body["total"], 3);
    assert_eq!(body["event_reports"][2]["user_id"], carol_id.as_str());
}

async fn event_reports_outlive_their_room(db: Db) {
    let server = TestServer::start(db).await;
    let (_, admin) = server.register_as("root", "pw", true).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let (bob_id, bob) = server.register("bob", "pw").await;
    let body = json!({ "name": "Doomed", "room_alias_name": "doomed", "preset": "public_chat" });
    let room = matrix::create_room(&server, &alice, body).await;
    assert_eq!(matrix::join(&server, &bob, &room, SERVER_NAME).await.0, StatusCode::OK);
    let message = matrix::send_text(&server, &alice, &room, "something unlawful").await;
    report_event(&server, &bob, &room, &message, json!({ "reason": "unlawful", "score": -100 })).await;

    let path = format!("{ADMIN}/v1/rooms/{room}");
    let (status, body) = server.request(Method::DELETE, &path, Some(&admin), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = server.get(&format!("{ADMIN}/v1/event_reports"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 1);
    let report = &body["event_reports"][0];
    assert_eq!((report["room_id"].as_str(), report["event_id"].as_str()), (Some(&*room), Some(&*message)));
    assert_eq!((report["user_id"].as_str(), report["reason"].clone()), (Some(&*bob_id), json!("unlawful")));
    for gone in ["name", "canonical_alias", "sender"] {
        assert_eq!(report[gone], Value::Null, "{gone}: {report}");
    }
    let (status, one) = server.get(&format!("{ADMIN}/v1/event_reports/{}", report["id"]), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!((one["event_json"].clone(), one["score"].clone()), (Value::Null, json!(-100)));
    // The sender is no longer known, so filtering by it finds nothing.
    let query = format!("{ADMIN}/v1/event_reports?event_sender_user_id={}", matrix::encode(&alice_id));
    let (_, body) = server.get(&query, Some(&admin)).await;
    assert_eq!(body["total"], 0);
}

async fn report_user(server: &TestServer, token: &str, user_id: &str, body: Value) {
    let path = format!("{V3}/users/{}/report", matrix::encode(user_id));
    let (status, answer) = server.post(&path, Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// (reporter, reported) of each user report listed, in order.
fn reported_users(body: &Value) -> Vec<(String, String)> {
    let reports = body["user_reports"].as_array().expect("user_reports");
    let text = |value: &Value| value.as_str().expect("a user id").to_owned();
    reports.iter().map(|r| (text(&r["user_id"]), text(&r["target_user_id"]))).collect()
}

async fn user_reports_are_listed_read_and_deleted(db: Db) {
    let server = TestServer::start(db).await;
    let (_, admin) = server.register_as("root", "pw", true).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let (bob_id, bob) = server.register("bob", "pw").await;
    let (carol_id, carol) = server.register("carol", "pw").await;
    let room = matrix::create_room(&server, &alice, json!({ "preset": "public_chat" })).await;
    assert_eq!(matrix::join(&server, &bob, &room, SERVER_NAME).await.0, StatusCode::OK);
    let message = matrix::send_text(&server, &alice, &room, "hello").await;

    // Oldest first; an event report in between is not a user report.
    report_user(&server, &alice, &bob_id, json!({ "reason": "spam" })).await;
    report_event(&server, &bob, &room, &message, json!({ "reason": "an event" })).await;
    report_user(&server, &carol, &bob_id, json!({})).await;
    report_user(&server, &alice, &carol_id, json!({ "reason": "rude" })).await;
    let pair = |reporter: &String, reported: &String| (reporter.clone(), reported.clone());
    let (alice_bob, carol_bob, alice_carol) =
        (pair(&alice_id, &bob_id), pair(&carol_id, &bob_id), pair(&alice_id, &carol_id));

    let list = format!("{ADMIN}/v1/user_reports");
    let (status, body) = server.get(&list, Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(reported_users(&body), [alice_carol.clone(), carol_bob.clone(), alice_bob.clone()]);
    assert_eq!(body["total"], 3);
    assert!(body.get("next_token").is_none(), "{body}");
    let reports = body["user_reports"].as_array().unwrap().clone();
    assert_eq!((reports[2]["reason"].clone(), reports[1]["reason"].clone()), (json!("spam"), Value::Null));
    assert!(reports[2]["received_ts"].as_i64().unwrap() > 1_600_000_000_000, "{}", reports[2]);
    let ids: Vec<i64> = reports.iter().map(|r| r["id"].as_i64().expect("id")).collect();

    let cases = [
        ("dir=f", vec![alice_bob.clone(), carol_bob.clone(), alice_carol.clone()]),
        ("user_id=alice", vec![alice_carol.clone(), alice_bob.clone()]),
        (&*format!("target_user_id={}", matrix::encode(&bob_id)), vec![carol_bob.clone(), alice_bob.clone()]),
        ("target_user_id=bob", vec![]),
        (&*format!("user_id=alice&target_user_id={}", matrix::encode(&carol_id)), vec![alice_carol.clone()]),
    ];
    for (query, expected) in cases {
        let (status, body) = server.get(&format!("{list}?{query}"), Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(reported_users(&body), expected, "{query}");
        assert_eq!(body["total"], expected.len(), "{query}");
    }
    let (_, page) = server.get(&format!("{list}?limit=2"), Some(&admin)).await;
    assert_eq!(reported_users(&page), [alice_carol.clone(), carol_bob.clone()]);
    assert_eq!((page["next_token"].clone(), page["total"].clone()), (json!(2), json!(3)));
    let (_, page) = server.get(&format!("{list}?from=2"), Some(&admin)).await;
    assert_eq!(reported_users(&page), vec![alice_bob.clone()]);
    assert!(page.get("next_token").is_none(), "{page}");
    for query in ["from=-1", "limit=-1", "dir=sideways"] {
        let (status, body) = server.get(&format!("{list}?{query}"), Some(&admin)).await;
        assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{query}");
    }

    // One report; the event report (the id after alice's first) is not one, nor is a
    // user report an event report.
    let one = format!("{list}/{}", ids[2]);
    let (status, report) = server.get(&one, Some(&admin)).await;
    assert_eq!((status, report), (StatusCode::OK, reports[2].clone()));
    let event_report = format!("{list}/{}", ids[2] + 1);
    let as_event_report = format!("{ADMIN}/v1/event_reports/{}", ids[2]);
    for (method, path) in [(Method::GET, &one), (Method::DELETE, &one), (Method::GET, &list)] {
        let (status, body) = server.request(method.clone(), path, None, None).await;
        assert_eq!((status, errcode(&body)), (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"), "{method} {path}");
        let (status, body) = server.request(method.clone(), path, Some(&bob), None).await;
        assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{method} {path}");
    }
    for method in [Method::GET, Method::DELETE] {
        for path in [format!("{list}/999999"), event_report.clone(), as_event_report.clone()] {
            let (status, body) = server.request(method.clone(), &path, Some(&admin), None).await;
            assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{method} {path}");
        }
        for id in ["someone", "-1"] {
            let (status, body) = server.request(method.clone(), &format!("{list}/{id}"), Some(&admin), None).await;
            assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{method} {id}");
        }
    }
    let (_, events) = server.get(&format!("{ADMIN}/v1/event_reports"), Some(&admin)).await;
    assert_eq!(events["total"], 1, "the event report is still there: {events}");

    let (status, body) = server.request(Method::DELETE, &one, Some(&admin), None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (status, _) = server.request(Method::DELETE, &one, Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = server.get(&list, Some(&admin)).await;
    assert_eq!(reported_users(&body), [alice_carol, carol_bob]);
}
