//! Spaces over HTTP on both backends: `/hierarchy` walks a space's children breadth
//! first, lists what the requester may see with summaries and child events, pages, stops
//! at `max_depth`, follows only suggested children when asked, and refuses rooms the
//! requester may not see.

mod common;

use common::matrix::{self, V3};
use common::{Db, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

const V1: &str = "/_matrix/client/v1";

both_backends!(a_space_hierarchy_is_walked, odd_room_state_does_not_break_a_hierarchy);

async fn add_child(server: &TestServer, token: &str, space: &str, child: &str, content: Value) {
    let path = format!("{V3}/rooms/{}/state/m.space.child/{}", matrix::encode(space), matrix::encode(child));
    let (status, body) = server.put(&path, Some(token), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn hierarchy(server: &TestServer, token: &str, space: &str, query: &str) -> (StatusCode, Value) {
    server.get(&format!("{V1}/rooms/{}/hierarchy{query}", matrix::encode(space)), Some(token)).await
}

fn room_ids(answer: &Value) -> Vec<String> {
    answer["rooms"].as_array().expect("rooms").iter().map(|r| r["room_id"].as_str().unwrap().to_owned()).collect()
}

async fn a_space_hierarchy_is_walked(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice) = server.register("alice", "pw").await;
    let (_, bob) = server.register("bob", "pw").await;
    let name = common::SERVER_NAME;
    let space_body =
        |title: &str| json!({ "preset": "public_chat", "name": title, "creation_content": { "type": "m.space" } });
    let space = matrix::create_room(&server, &alice, space_body("Hospital")).await;
    let lobby = matrix::create_room(&server, &alice, json!({ "preset": "public_chat", "name": "Lobby" })).await;
    let staff = matrix::create_room(&server, &alice, json!({ "preset": "private_chat", "name": "Staff" })).await;
    let wards = matrix::create_room(&server, &alice, space_body("Wards")).await;
    let ward_a = matrix::create_room(&server, &alice, json!({ "preset": "public_chat", "name": "Ward A" })).await;
    add_child(&server, &alice, &space, &wards, json!({ "via": [name], "order": "b" })).await;
    add_child(&server, &alice, &space, &lobby, json!({ "via": [name], "order": "a", "suggested": true })).await;
    add_child(&server, &alice, &space, &staff, json!({ "via": [name], "order": "c" })).await;
    add_child(&server, &alice, &space, "!removed:elsewhere.example", json!({})).await;
    add_child(&server, &alice, &wards, &ward_a, json!({ "via": [name] })).await;

    // Bob, in none of them, sees the public ones, breadth first and in `order`.
    let (status, answer) = hierarchy(&server, &bob, &space, "").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(room_ids(&answer), [space.clone(), lobby.clone(), wards.clone(), ward_a.clone()], "{answer}");
    assert!(answer.get("next_batch").is_none(), "{answer}");
    let root = &answer["rooms"][0];
    assert_eq!((root["name"].as_str(), root["room_type"].as_str()), (Some("Hospital"), Some("m.space")));
    assert_eq!(root["num_joined_members"], 1);
    // A public room's join rule may be left out, as the spec allows (absent reads as public).
    assert!(root.get("join_rule").is_none_or(|rule| rule == "public"), "{root}");
    let children: Vec<&str> =
        root["children_state"].as_array().unwrap().iter().map(|c| c["state_key"].as_str().unwrap()).collect();
    assert_eq!(children, [lobby.as_str(), wards.as_str(), staff.as_str()], "a child without via is none: {root}");
    assert_eq!(root["children_state"][0]["content"]["suggested"], true);
    assert_eq!(answer["rooms"][1]["room_type"], Value::Null);
    // Alice, in every room, sees the private one too.
    let (_, answer) = hierarchy(&server, &alice, &space, "").await;
    assert_eq!(room_ids(&answer), [space.clone(), lobby.clone(), wards.clone(), staff.clone(), ward_a.clone()]);
    assert_eq!(answer["rooms"][3]["join_rule"], "invite", "{answer}");

    // Paging, depth and suggested children.
    let (_, first) = hierarchy(&server, &bob, &space, "?limit=2").await;
    assert_eq!(room_ids(&first), [space.clone(), lobby.clone()]);
    let next = first["next_batch"].as_str().expect("next_batch").to_owned();
    let (_, second) = hierarchy(&server, &bob, &space, &format!("?limit=2&from={next}")).await;
    assert_eq!(room_ids(&second), [wards.clone(), ward_a.clone()], "{second}");
    assert!(second.get("next_batch").is_none(), "{second}");
    let (_, shallow) = hierarchy(&server, &bob, &space, "?max_depth=1").await;
    assert_eq!(room_ids(&shallow), [space.clone(), lobby.clone(), wards.clone()]);
    let (_, suggested) = hierarchy(&server, &bob, &space, "?suggested_only=true").await;
    assert_eq!(room_ids(&suggested), [space.clone(), lobby.clone()]);

    // What may not be seen, and what does not parse.
    let (status, body) = hierarchy(&server, &bob, &staff, "").await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
    for query in ["?limit=x", "?max_depth=-1", "?suggested_only=yes", "?from=nonsense"] {
        let (status, body) = hierarchy(&server, &bob, &space, query).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{query}");
    }
    let (status, _) = server.get(&format!("{V1}/rooms/not-a-room/hierarchy"), Some(&bob)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Members may set a join rule clients do not know and an alias that is no alias; the
/// hierarchy still lists the room, reading the rule as invite only and leaving the alias
/// out.
async fn odd_room_state_does_not_break_a_hierarchy(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice) = server.register("alice", "pw").await;
    let space_body = json!({ "preset": "public_chat", "name": "Club", "creation_content": { "type": "m.space" } });
    let space = matrix::create_room(&server, &alice, space_body).await;
    let odd = matrix::create_room(&server, &alice, json!({ "preset": "private_chat", "name": "Odd" })).await;
    add_child(&server, &alice, &space, &odd, json!({ "via": [common::SERVER_NAME] })).await;
    for (event_type, content) in [
        ("m.room.join_rules", json!({ "join_rule": "org.example.members_only" })),
        ("m.room.canonical_alias", json!({ "alias": "not an alias" })),
    ] {
        let path = format!("{V3}/rooms/{}/state/{event_type}", matrix::encode(&odd));
        let (status, body) = server.put(&path, Some(&alice), content).await;
        assert_eq!(status, StatusCode::OK, "{event_type}: {body}");
    }

    let (status, answer) = hierarchy(&server, &alice, &space, "").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(room_ids(&answer), [space.clone(), odd.clone()]);
    let listed = &answer["rooms"][1];
    assert_eq!((listed["name"].as_str(), listed["join_rule"].as_str()), (Some("Odd"), Some("invite")), "{listed}");
    assert!(listed.get("canonical_alias").is_none(), "{listed}");
}
