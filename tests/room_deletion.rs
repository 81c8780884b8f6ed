//! Synapse's block and delete room admin API over HTTP, against SQLite and PostgreSQL:
//! members moved to a notice room or just removed, aliases moved or deleted, rooms
//! blocked (before they are known, too), histories purged while the other servers hear
//! of the departures and the user directory forgets the room.

mod common;

use std::time::Duration;

use common::matrix::{self, Homeserver, V3};
use common::{Db, SERVER_NAME, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

both_backends!(
    a_deleted_room_moves_its_members_and_stays_blocked,
    a_room_is_deleted_in_one_call,
    purging_a_shared_room_tells_the_other_server_and_the_directory,
    a_purge_waits_for_an_unreachable_server_only_so_long
);

const ADMIN: &str = "/_synapse/admin";

fn errcode(body: &Value) -> &str {
    body["errcode"].as_str().unwrap_or_default()
}

async fn joined_rooms(server: &TestServer, token: &str) -> Vec<String> {
    let (_, body) = server.get(&format!("{V3}/joined_rooms"), Some(token)).await;
    serde_json::from_value(body["joined_rooms"].clone()).expect("joined_rooms")
}

async fn search(server: &TestServer, token: &str, term: &str) -> Vec<String> {
    let path = format!("{V3}/user_directory/search");
    let (status, body) = server.post(&path, Some(token), json!({ "search_term": term })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["results"].as_array().expect("results").iter().map(|r| r["user_id"].as_str().unwrap().to_owned()).collect()
}

/// Polls a background deletion until it ends; returns its status.
async fn finished_deletion(server: &TestServer, admin: &str, delete_id: &str) -> Value {
    let path = format!("{ADMIN}/v2/rooms/delete_status/{delete_id}");
    matrix::eventually("the deletion to end", Duration::from_secs(30), || async {
        let (status, body) = server.get(&path, Some(admin)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        matches!(body["status"].as_str(), Some("complete" | "failed")).then_some(body)
    })
    .await
}

async fn a_deleted_room_moves_its_members_and_stays_blocked(db: Db) {
    let server = TestServer::start(db).await;
    let (admin_id, admin) = server.register_as("root", "pw", true).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let (bob_id, bob) = server.register("bob", "pw").await;
    let (carol_id, carol) = server.register("carol", "pw").await;
    let body = json!({ "preset": "public_chat", "room_alias_name": "bad", "invite": [carol_id] });
    let room = matrix::create_room(&server, &alice, body).await;
    assert_eq!(matrix::join(&server, &bob, &room, server.name()).await.0, StatusCode::OK);
    matrix::send_text(&server, &alice, &room, "something unlawful").await;
    let alias = format!("#bad:{SERVER_NAME}");

    let (status, body) = server
        .request(
            Method::DELETE,
            &format!("{ADMIN}/v2/rooms/{room}"),
            Some(&admin),
            Some(json!({
                "new_room_user_id": admin_id,
                "room_name": "Moved",
                "message": "The room broke our rules.",
                "block": true,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let delete_id = body["delete_id"].as_str().expect("delete_id").to_owned();
    let deletion = finished_deletion(&server, &admin, &delete_id).await;
    assert_eq!(deletion["status"], "complete", "{deletion}");
    assert_eq!((deletion["delete_id"].as_str(), deletion["room_id"].as_str()), (Some(&*delete_id), Some(&*room)));
    let report = &deletion["shutdown_room"];
    let mut kicked: Vec<String> = serde_json::from_value(report["kicked_users"].clone()).unwrap();
    kicked.sort();
    assert_eq!(kicked, [alice_id.clone(), bob_id.clone(), carol_id.clone()], "{report}");
    assert_eq!((report["failed_to_kick_users"].clone(), report["local_aliases"].clone()), (json!([]), json!([alias])));
    let new_room = report["new_room_id"].as_str().expect("new_room_id").to_owned();
    let (_, by_room) = server.get(&format!("{ADMIN}/v2/rooms/{room}/delete_status"), Some(&admin)).await;
    assert_eq!(by_room["results"][0]["delete_id"], delete_id.as_str(), "{by_room}");

    // Everyone is in the notice room, which says why and where nobody else may speak.
    for token in [&alice, &bob, &carol] {
        assert_eq!(joined_rooms(&server, token).await, vec![new_room.clone()]);
    }
    assert_eq!(matrix::message_bodies(&server, &bob, &new_room).await, ["The room broke our rules."]);
    let path = format!("{V3}/rooms/{}/send/m.room.message/t1", matrix::encode(&new_room));
    let (status, _) = server.put(&path, Some(&alice), json!({ "msgtype": "m.text", "body": "why?" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, resolved) = server.get(&format!("{V3}/directory/room/{}", matrix::encode(&alias)), Some(&bob)).await;
    assert_eq!(resolved["room_id"], new_room.as_str());

    // The old room is gone from the database, and stays closed.
    let (status, _) = server.get(&format!("{ADMIN}/v1/rooms/{room}"), Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = server.get(&format!("{ADMIN}/v1/rooms"), Some(&admin)).await;
    assert_eq!(listed["total_rooms"], 1, "{listed}");
    let (_, block) = server.get(&format!("{ADMIN}/v1/rooms/{room}/block"), Some(&admin)).await;
    assert_eq!(block, json!({ "block": true, "user_id": admin_id }));
    let (status, body) = matrix::join(&server, &bob, &room, server.name()).await;
    assert_eq!((status, errcode(&body)), (StatusCode::FORBIDDEN, "M_FORBIDDEN"), "{body}");
    assert_eq!(body["error"], "This room has been blocked on this server");
    let (status, body) = server.get(&format!("{V3}/rooms/{room}/messages?dir=b"), Some(&alice)).await;
    assert!(status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND, "{status} {body}");

    // Unblocked, it is only unknown: the join is tried, and fails for that reason.
    let (status, body) =
        server.put(&format!("{ADMIN}/v1/rooms/{room}/block"), Some(&admin), json!({ "block": false })).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "block": false })));
    let (_, block) = server.get(&format!("{ADMIN}/v1/rooms/{room}/block"), Some(&admin)).await;
    assert_eq!(block, json!({ "block": false }));
    let (status, body) = matrix::join(&server, &bob, &room, server.name()).await;
    assert_ne!(status, StatusCode::OK);
    assert_ne!(body["error"], "This room has been blocked on this server");
}

async fn a_room_is_deleted_in_one_call(db: Db) {
    let server = TestServer::start(db).await;
    let (admin_id, admin) = server.register_as("root", "pw", true).await;
    let (alice_id, alice) = server.register("alice", "pw").await;
    let (bob_id, bob) = server.register("bob", "pw").await;
    let room =
        matrix::create_room(&server, &alice, json!({ "preset": "private_chat", "room_alias_name": "quiet" })).await;
    matrix::ok(&server, Method::POST, &format!("{V3}/rooms/{room}/invite"), &alice, Some(json!({ "user_id": bob_id })))
        .await;
    matrix::membership_action(&server, &bob, &room, "join", json!({})).await;
    let found = || async { (search(&server, &alice, "bob").await == [bob_id.clone()]).then_some(()) };
    matrix::eventually("bob in the directory", Duration::from_secs(10), found).await;

    // Who may call it, and what it refuses.
    let path = format!("{ADMIN}/v1/rooms/{room}");
    let (status, _) = server.request(Method::DELETE, &path, Some(&alice), Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = server.raw(Method::DELETE, &path, Some(&admin), Vec::new()).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_NOT_JSON"), "{body}");
    let (status, body) = server
        .request(Method::DELETE, &path, Some(&admin), Some(json!({ "new_room_user_id": "@x:elsewhere.example" })))
        .await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"), "{body}");
    let (status, body) = server.request(Method::DELETE, &path, Some(&admin), Some(json!({ "block": "yes" }))).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_BAD_JSON"), "{body}");
    // A room this server does not know is deleted with nothing done, as in Synapse.
    let unknown = format!("!nowhere:{SERVER_NAME}");
    let (status, body) =
        server.request(Method::DELETE, &format!("{ADMIN}/v2/rooms/{unknown}"), Some(&admin), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deletion = finished_deletion(&server, &admin, body["delete_id"].as_str().unwrap()).await;
    assert_eq!(deletion["status"], "complete", "{deletion}");
    assert_eq!(deletion["shutdown_room"]["kicked_users"], json!([]));
    let (_, block) = server.get(&format!("{ADMIN}/v1/rooms/{unknown}/block"), Some(&admin)).await;
    assert_eq!(block, json!({ "block": false }));
    for path in [format!("{ADMIN}/v2/rooms/{room}/delete_status"), format!("{ADMIN}/v2/rooms/delete_status/nope")] {
        let (status, body) = server.get(&path, Some(&admin)).await;
        assert_eq!((status, errcode(&body)), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "{path}: {body}");
    }
    assert_eq!(joined_rooms(&server, &bob).await, vec![room.clone()], "nothing was done");

    // Without a purge the room stays known, emptied of local members and aliases.
    let (status, report) = server.request(Method::DELETE, &path, Some(&admin), Some(json!({ "purge": false }))).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let mut kicked: Vec<String> = serde_json::from_value(report["kicked_users"].clone()).unwrap();
    kicked.sort();
    assert_eq!(kicked, [alice_id, bob_id.clone()]);
    assert_eq!(
        (report["local_aliases"].clone(), report["new_room_id"].clone()),
        (json!([format!("#quiet:{SERVER_NAME}")]), Value::Null)
    );
    assert!(joined_rooms(&server, &bob).await.is_empty());
    let (status, details) = server.get(&path, Some(&admin)).await;
    assert_eq!((status, details["joined_local_members"].clone()), (StatusCode::OK, json!(0)), "{details}");
    let (status, _) = server
        .get(&format!("{V3}/directory/room/{}", matrix::encode(&format!("#quiet:{SERVER_NAME}"))), Some(&bob))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let bob_found = || async { search(&server, &alice, "bob").await.is_empty().then_some(()) };
    matrix::eventually("the directory to forget the shared room", Duration::from_secs(10), bob_found).await;
    let (_, block) = server.get(&format!("{ADMIN}/v1/rooms/{room}/block"), Some(&admin)).await;
    assert_eq!(block, json!({ "block": false }));

    // The deprecated POST form purges what is left.
    let (status, report) = server.post(&format!("{path}/delete"), Some(&admin), json!({})).await;
    assert_eq!((status, report["kicked_users"].clone()), (StatusCode::OK, json!([])), "{report}");
    let (status, _) = server.get(&path, Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Version 1 blocks a room this server has never seen.
    let path = format!("{ADMIN}/v1/rooms/{unknown}");
    let (status, report) = server.request(Method::DELETE, &path, Some(&admin), Some(json!({ "block": true }))).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["kicked_users"], json!([]));
    let (_, block) = server.get(&format!("{path}/block"), Some(&admin)).await;
    assert_eq!(block, json!({ "block": true, "user_id": admin_id }));
}

async fn purging_a_shared_room_tells_the_other_server_and_the_directory(db: Db) {
    let home = TestServer::start_federating(db).await;
    // A full join: a partial one could not complete once the only resident purged the room.
    let other = TestServer::start_federating_with(db, "experimental_features:\n  faster_joins: false\n").await;
    let (_, admin) = home.register_as("root", "pw", true).await;
    let (alice_id, alice) = home.register("alice", "pw").await;
    let (_, erin) = home.register("erin", "pw").await;
    let (bob_id, bob) = other.register("bob", "pw").await;
    let room = matrix::create_room(&home, &alice, json!({ "preset": "public_chat" })).await;
    assert_eq!(matrix::join(&other, &bob, &room, home.name()).await.0, StatusCode::OK);
    matrix::send_text(&other, &bob, &room, "hello from elsewhere").await;
    // Erin shares no room with Bob, but his public room makes him visible.
    let found = || async { (search(&home, &erin, "bob").await == [bob_id.clone()]).then_some(()) };
    matrix::eventually("bob in the directory", Duration::from_secs(20), found).await;

    let path = format!("{ADMIN}/v2/rooms/{room}");
    let (status, body) = home.request(Method::DELETE, &path, Some(&admin), Some(json!({ "purge": true }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deletion = finished_deletion(&home, &admin, body["delete_id"].as_str().unwrap()).await;
    assert_eq!(deletion["status"], "complete", "{deletion}");
    assert_eq!(deletion["shutdown_room"]["kicked_users"], json!([alice_id]));

    // The other server heard that Alice left before her server forgot the room.
    let left = || async {
        let members = matrix::memberships(&other, &bob, &room).await;
        (members.get(&alice_id).map(String::as_str) == Some("leave")).then_some(())
    };
    matrix::eventually("alice's leave on the other server", Duration::from_secs(20), left).await;
    let gone = || async { search(&home, &erin, "bob").await.is_empty().then_some(()) };
    matrix::eventually("bob gone from the directory", Duration::from_secs(20), gone).await;
    let (status, _) = home.get(&format!("{ADMIN}/v1/rooms/{room}"), Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = home.get(&format!("{ADMIN}/v1/rooms"), Some(&admin)).await;
    assert_eq!(listed["total_rooms"], 0, "{listed}");
}

async fn a_purge_waits_for_an_unreachable_server_only_so_long(db: Db) {
    let home = TestServer::start_federating(db).await;
    let mut other = TestServer::start_federating_with(db, "experimental_features:\n  faster_joins: false\n").await;
    let (_, admin) = home.register_as("root", "pw", true).await;
    let (_, alice) = home.register("alice", "pw").await;
    let (_, bob) = other.register("bob", "pw").await;
    let room = matrix::create_room(&home, &alice, json!({ "preset": "public_chat" })).await;
    assert_eq!(matrix::join(&other, &bob, &room, home.name()).await.0, StatusCode::OK);
    other.kill();

    let path = format!("{ADMIN}/v2/rooms/{room}");
    let (status, body) = home.request(Method::DELETE, &path, Some(&admin), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let delete_id = body["delete_id"].as_str().unwrap().to_owned();
    // Alice's leave cannot reach the other server: the purge waits, and one at a time.
    let (status, body) = home.request(Method::DELETE, &path, Some(&admin), Some(json!({}))).await;
    assert_eq!((status, errcode(&body)), (StatusCode::BAD_REQUEST, "M_UNKNOWN"), "{body}");
    assert_eq!(body["error"], format!("Purge already in progress for {room}"));
    let (_, running) = home.get(&format!("{ADMIN}/v2/rooms/delete_status/{delete_id}"), Some(&admin)).await;
    assert!(matches!(running["status"].as_str(), Some("scheduled" | "active")), "{running}");

    let deletion = finished_deletion(&home, &admin, &delete_id).await;
    assert_eq!(deletion["status"], "complete", "{deletion}");
    let (status, _) = home.get(&format!("{ADMIN}/v1/rooms/{room}"), Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(home.log().contains("purging a room before other servers took all of its last events"));
}
