//! Interop with a real Synapse (from PyPI) on loopback, kith on SQLite and on
//! PostgreSQL: profile queries, joins both ways, messages, invites, kicks, bans, leaves,
//! remote profiles in memberships and the directory, and delivery across outages.

mod common;

use std::time::Duration;

use common::matrix::{self, Homeserver, V3, eventually};
use common::synapse::Synapse;
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

both_backends!(
    kith_user_joins_a_synapse_room,
    synapse_user_joins_a_kith_room,
    invites_kicks_and_bans_in_a_private_kith_room,
    invites_leaves_and_declines_in_a_private_synapse_room,
    remote_profiles_reach_memberships_and_the_directory,
    synapse_users_show_their_public_name_and_dms_invite_both_ways,
    nothing_is_lost_while_synapse_is_down_and_backoff_is_kept,
    kith_catches_up_on_what_it_missed_while_down,
    synapse_joins_a_kith_room_with_partial_state,
    kith_joins_a_synapse_room_with_partial_state,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_queries_both_ways_with_synapse() {
    println!("interop against matrix-synapse {}", Synapse::version());
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(Db::Sqlite).await;
    let (syn_user, syn_token) = synapse.register("synuser", "pw").await;
    let (kith_user, kith_token) = kith.register("kithuser", "pw").await;
    let path = format!("/_matrix/client/v3/profile/{syn_user}/displayname");
    let (status, _) =
        synapse.request(Method::PUT, &path, Some(&syn_token), Some(json!({ "displayname": "Synapse User" }))).await;
    assert_eq!(status, StatusCode::OK);
    kith.put(
        &format!("/_matrix/client/v3/profile/{kith_user}/displayname"),
        Some(&kith_token),
        json!({ "displayname": "Kith User" }),
    )
    .await;

    let (status, profile) = kith.get(&format!("/_matrix/client/v3/profile/{syn_user}"), Some(&kith_token)).await;
    assert_eq!(status, StatusCode::OK, "kith -> synapse: {profile}\n{}", synapse.log());
    assert_eq!(profile["displayname"], "Synapse User");

    let path = format!("/_matrix/client/v3/profile/{kith_user}");
    let (status, profile) = synapse.request(Method::GET, &path, Some(&syn_token), None).await;
    assert_eq!(status, StatusCode::OK, "synapse -> kith: {profile}\n{}", kith.log());
    assert_eq!(profile["displayname"], "Kith User");

    let path = format!("/_matrix/client/v3/profile/{}/displayname", kith_user.replace("kithuser", "nobody"));
    let (status, _) = synapse.request(Method::GET, &path, Some(&syn_token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Media both ways: a kith user downloads (and thumbnails) a Synapse user's upload
/// through kith, which fetches it over federation; a Synapse user downloads a kith
/// user's upload through Synapse, which fetches it from kith.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_is_fetched_over_federation_both_ways() {
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(Db::Sqlite).await;
    let (_, syn_token) = synapse.register("synuser", "pw").await;
    let (_, kith_token) = kith.register("kithuser", "pw").await;
    let image = {
        let pixels = image::RgbImage::from_fn(120, 90, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut bytes = Vec::new();
        pixels.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
        bytes
    };
    let upload = "/_matrix/media/v3/upload?filename=photo.png";
    let from_synapse = synapse.send_bytes(Method::POST, upload, &syn_token, Some(("image/png", image.clone()))).await;
    let mxc: serde_json::Value = from_synapse.json().await.unwrap();
    let synapse_mxc = mxc["content_uri"].as_str().expect("synapse content_uri").to_owned();
    let from_kith = kith.send_bytes(Method::POST, upload, Some(&kith_token), Some(("image/png", image.clone()))).await;
    let mxc: serde_json::Value = from_kith.json().await.unwrap();
    let kith_mxc = mxc["content_uri"].as_str().expect("kith content_uri").to_owned();
    let download_path = |mxc: &str| format!("/_matrix/client/v1/media/download/{}", mxc.trim_start_matches("mxc://"));

    let response = kith.send_bytes(Method::GET, &download_path(&synapse_mxc), Some(&kith_token), None).await;
    assert_eq!(response.status(), StatusCode::OK, "kith fetching from synapse: {}", kith.log());
    assert_eq!(response.bytes().await.unwrap().to_vec(), image);
    let thumbnail = format!(
        "/_matrix/client/v1/media/thumbnail/{}?width=32&height=32&method=crop",
        synapse_mxc.trim_start_matches("mxc://")
    );
    let response = kith.send_bytes(Method::GET, &thumbnail, Some(&kith_token), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let made = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((made.width(), made.height()), (32, 32));

    let response = synapse.send_bytes(Method::GET, &download_path(&kith_mxc), &syn_token, None).await;
    assert_eq!(response.status(), StatusCode::OK, "synapse fetching from kith: {}", synapse.log());
    assert_eq!(response.bytes().await.unwrap().to_vec(), image);
}

const PATIENCE: Duration = Duration::from_secs(60);

/// Waits until `server` shows `text` among a room's messages.
async fn wait_for_message(server: &impl Homeserver, token: &str, room: &str, text: &str) {
    let what = format!("{text:?} in {room} on {}", server.name());
    eventually(&what, PATIENCE, || async {
        matrix::message_bodies(server, token, room).await.iter().any(|b| b == text).then_some(())
    })
    .await;
}

/// Waits until both servers show the same room state and returns it.
async fn wait_for_same_state(
    a: &impl Homeserver,
    a_token: &str,
    b: &impl Homeserver,
    b_token: &str,
    room: &str,
) -> std::collections::BTreeMap<(String, String), String> {
    eventually("both servers to agree on the room state", PATIENCE, || async {
        let (left, right) = (matrix::state_ids(a, a_token, room).await, matrix::state_ids(b, b_token, room).await);
        (left == right).then_some(left)
    })
    .await
}

async fn kith_user_joins_a_synapse_room(db: Db) {
    println!("interop against matrix-synapse {}", Synapse::version());
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(db).await;
    let (syn_user, syn_token) = synapse.register("alice", "pw").await;
    let (kith_user, kith_token) = kith.register("bob", "pw").await;
    let room = matrix::create_room(
        &synapse,
        &syn_token,
        json!({ "preset": "public_chat", "room_alias_name": "lobby", "name": "Lobby", "visibility": "public" }),
    )
    .await;
    // Kith lists Synapse's public rooms over federation (Synapse updates its list in the
    // background and caches answers per query, hence the polling with varying limits).
    let mut limit = 50;
    eventually("Synapse's room in the list kith shows", PATIENCE, || {
        limit += 1;
        let path = format!("{V3}/publicRooms?server={}&limit={limit}", matrix::encode(&synapse.server_name));
        let (kith, token, room) = (&kith, &kith_token, &room);
        async move {
            let (status, listed) = kith.get(&path, Some(token)).await;
            let found = listed["chunk"].as_array().is_some_and(|c| c.iter().any(|r| r["room_id"] == room.as_str()));
            (status == StatusCode::OK && found).then_some(())
        }
    })
    .await;
    matrix::send_text(&synapse, &syn_token, &room, "before kith joined").await;

    let alias = format!("#lobby:{}", synapse.server_name);
    let (status, body) = matrix::join(&kith, &kith_token, &alias, &synapse.server_name).await;
    assert_eq!(status, StatusCode::OK, "join: {body}\n{}", kith.log());
    assert_eq!(body["room_id"], room);

    matrix::send_text(&kith, &kith_token, &room, "hello from kith").await;
    wait_for_message(&synapse, &syn_token, &room, "hello from kith").await;
    matrix::send_text(&synapse, &syn_token, &room, "hello from synapse").await;
    wait_for_message(&kith, &kith_token, &room, "hello from synapse").await;

    let state = wait_for_same_state(&kith, &kith_token, &synapse, &syn_token, &room).await;
    let members = matrix::memberships(&kith, &kith_token, &room).await;
    assert_eq!(members.get(&syn_user).map(String::as_str), Some("join"));
    assert_eq!(members.get(&kith_user).map(String::as_str), Some("join"));
    assert!(state.contains_key(&("m.room.name".into(), String::new())));

    // The room reaches kith's /sync too.
    let sync = matrix::ok(&kith, Method::GET, &format!("{V3}/sync"), &kith_token, None).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert!(timeline.to_string().contains("hello from synapse"), "{sync}");
}

async fn synapse_user_joins_a_kith_room(db: Db) {
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(db).await;
    let (syn_user, syn_token) = synapse.register("carol", "pw").await;
    let (kith_user, kith_token) = kith.register("dave", "pw").await;
    let room = matrix::create_room(
        &kith,
        &kith_token,
        json!({ "preset": "public_chat", "room_alias_name": "plaza", "name": "Plaza", "topic": "on kith", "visibility": "public" }),
    )
    .await;
    // Synapse lists kith's public rooms through federation.
    let path = format!("{V3}/publicRooms?server={}", matrix::encode(kith.name()));
    let listed = matrix::ok(&synapse, Method::GET, &path, &syn_token, None).await;
    assert!(listed["chunk"].as_array().is_some_and(|c| c.iter().any(|r| r["room_id"] == room)), "{listed}");
    matrix::send_text(&kith, &kith_token, &room, "kith says hi first").await;

    let alias = format!("#plaza:{}", kith.name());
    let (status, body) = matrix::join(&synapse, &syn_token, &alias, kith.name()).await;
    assert_eq!(status, StatusCode::OK, "join: {body}\n{}\n{}", kith.log(), synapse.log());
    assert_eq!(body["room_id"], room);

    matrix::send_text(&synapse, &syn_token, &room, "synapse here").await;
    wait_for_message(&kith, &kith_token, &room, "synapse here").await;
    matrix::send_text(&kith, &kith_token, &room, "welcome, synapse").await;
    wait_for_message(&synapse, &syn_token, &room, "welcome, synapse").await;
    // History from before the join is readable on Synapse (shared history).
    wait_for_message(&synapse, &syn_token, &room, "kith says hi first").await;

    wait_for_same_state(&kith, &kith_token, &synapse, &syn_token, &room).await;
    let members = matrix::memberships(&synapse, &syn_token, &room).await;
    assert_eq!(members.get(&syn_user).map(String::as_str), Some("join"));
    assert_eq!(members.get(&kith_user).map(String::as_str), Some("join"));

    // Typing and read receipts travel as EDUs, both ways.
    let typing = |user: &str| format!("{V3}/rooms/{}/typing/{}", matrix::encode(&room), matrix::encode(user));
    matrix::ok(&kith, Method::PUT, &typing(&kith_user), &kith_token, Some(json!({ "typing": true, "timeout": 30000 })))
        .await;
    matrix::ok(
        &synapse,
        Method::PUT,
        &typing(&syn_user),
        &syn_token,
        Some(json!({ "typing": true, "timeout": 30000 })),
    )
    .await;
    let shows_typing = |sync: &serde_json::Value, user: &str| {
        sync["rooms"]["join"][&room]["ephemeral"]["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| e["type"] == "m.typing" && e["content"]["user_ids"].to_string().contains(user))
        })
    };
    eventually("kith's user typing on synapse", PATIENCE, || async {
        let (_, sync) = fresh_sync(&synapse, &syn_token, "").await;
        shows_typing(&sync, &kith_user).then_some(())
    })
    .await;
    eventually("synapse's user typing on kith", PATIENCE, || async {
        let (_, sync) = kith.get(&format!("{V3}/sync"), Some(&kith_token)).await;
        shows_typing(&sync, &syn_user).then_some(())
    })
    .await;
    let last = matrix::send_text(&synapse, &syn_token, &room, "read me").await;
    wait_for_message(&kith, &kith_token, &room, "read me").await;
    let path = format!("{V3}/rooms/{}/receipt/m.read/{}", matrix::encode(&room), matrix::encode(&last));
    matrix::ok(&kith, Method::POST, &path, &kith_token, Some(json!({}))).await;
    eventually("kith's read receipt on synapse", PATIENCE, || async {
        let (_, sync) = fresh_sync(&synapse, &syn_token, "").await;
        let receipts = sync["rooms"]["join"][&room]["ephemeral"]["events"].to_string();
        (receipts.contains("m.receipt") && receipts.contains(&kith_user)).then_some(())
    })
    .await;

    // A state change on either side reaches the other.
    let path = format!("{V3}/rooms/{}/state/m.room.topic/", matrix::encode(&room));
    matrix::ok(&kith, Method::PUT, &path, &kith_token, Some(json!({ "topic": "changed on kith" }))).await;
    eventually("the topic on synapse", PATIENCE, || async {
        let (status, topic) = synapse.request(Method::GET, &path, Some(&syn_token), None).await;
        (status == StatusCode::OK && topic["topic"] == "changed on kith").then_some(())
    })
    .await;
}

/// kith joins a Synapse room of 21 members with a partial state (MSC3706): `/join`
/// returns once the join is stored; the resync (MSC3902) fetches the full state in the
/// background, after which kith lists every member, its directory finds them, and
/// messages flow both ways.
async fn kith_joins_a_synapse_room_with_partial_state(db: Db) {
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(db).await;
    let (_, owner_token) = synapse.register_fast("owner").await;
    let room = matrix::create_room(&synapse, &owner_token, json!({ "preset": "public_chat" })).await;
    for i in 0..20 {
        let (_, token) = synapse.register_fast(&format!("crowd{i}")).await;
        assert_eq!(matrix::join(&synapse, &token, &room, synapse.name()).await.0, StatusCode::OK);
    }
    let (_, kith_token) = kith.register("bob", "pw").await;
    let (status, body) = matrix::join(&kith, &kith_token, &room, synapse.name()).await;
    assert_eq!(status, StatusCode::OK, "join: {body}\n{}", kith.log());
    assert!(kith.log().contains("joined with a partial state"), "{}", kith.log());
    assert!(synapse.log().contains("omit_members=true"), "Synapse was asked for a partial state");
    eventually("kith to finish its resync", PATIENCE, || async {
        kith.log().contains("partial-state resync complete").then_some(())
    })
    .await;
    let path = format!("{V3}/rooms/{}/joined_members", matrix::encode(&room));
    let joined = matrix::ok(&kith, Method::GET, &path, &kith_token, None).await;
    assert_eq!(
        joined["joined"].as_object().map_or(0, |m| m.len()),
        22,
        "owner, 20 others and bob: {joined}\n{}",
        kith.log()
            .lines()
            .filter(|l| l.contains("resync") || l.contains("reject") || l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let wanted = format!("@crowd17:{}", synapse.name());
    eventually("the directory to find a member known only after the resync", PATIENCE, || async {
        let body = json!({ "search_term": "crowd17", "limit": 5 });
        let (_, found) = kith.post(&format!("{V3}/user_directory/search"), Some(&kith_token), body).await;
        found["results"].as_array().is_some_and(|r| r.iter().any(|hit| hit["user_id"] == wanted.as_str())).then_some(())
    })
    .await;
    matrix::send_text(&kith, &kith_token, &room, "hello after the resync").await;
    wait_for_message(&synapse, &owner_token, &room, "hello after the resync").await;
    matrix::send_text(&synapse, &owner_token, &room, "welcome, kith").await;
    wait_for_message(&kith, &kith_token, &room, "welcome, kith").await;
    wait_for_same_state(&kith, &kith_token, &synapse, &owner_token, &room).await;
}

/// Synapse joins a kith room with many members through a partial join (MSC3706): kith
/// answers `omit_members=true` with the joiner's and the heroes' memberships only, and
/// Synapse completes its resync against kith (`/state_ids`, `/event`…), after which it
/// lists every member.
async fn synapse_joins_a_kith_room_with_partial_state(db: Db) {
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(db).await;
    let (syn_user, syn_token) = synapse.register("carol", "pw").await;
    let (_, owner_token) = kith.register("owner", "pw").await;
    let room = matrix::create_room(&kith, &owner_token, json!({ "preset": "public_chat" })).await;
    for i in 0..8 {
        let (_, token) = kith.register(&format!("member{i}"), "pw").await;
        assert_eq!(matrix::join(&kith, &token, &room, "kith.test").await.0, StatusCode::OK);
    }
    let (status, body) = matrix::join(&synapse, &syn_token, &room, kith.name()).await;
    assert_eq!(status, StatusCode::OK, "join: {body}\n{}\n{}", kith.log(), synapse.log());
    assert!(kith.log().contains("answering send_join with a partial state"), "{}", kith.log());
    let cleared = format!("Clearing partial-state flag for {room}");
    eventually("synapse to finish its resync against kith", PATIENCE, || async {
        synapse.log().contains(&cleared).then_some(())
    })
    .await;
    let path = format!("{V3}/rooms/{}/joined_members", matrix::encode(&room));
    let joined = matrix::ok(&synapse, Method::GET, &path, &syn_token, None).await;
    let count = joined["joined"].as_object().map_or(0, |members| members.len());
    assert_eq!(count, 10, "every member after the resync (owner, 8 members, {syn_user}): {joined}");
    matrix::send_text(&kith, &owner_token, &room, "after the resync").await;
    wait_for_message(&synapse, &syn_token, &room, "after the resync").await;
}

/// Waits until a server shows `user`'s membership in `room` as `expected`; on failure
/// shows the logs of `other`, the server the change came from.
async fn wait_for_membership(
    server: &impl Homeserver,
    token: &str,
    room: &str,
    user: &str,
    expected: &str,
    other: &impl Homeserver,
) {
    let seen = matrix::try_eventually(PATIENCE, || async {
        let path = format!("{V3}/rooms/{}/state/m.room.member/{}", matrix::encode(room), matrix::encode(user));
        let (status, content) = server.call(Method::GET, &path, Some(token), None).await;
        (status == StatusCode::OK && content["membership"] == expected).then_some(())
    })
    .await;
    if seen.is_none() {
        panic!(
            "timed out waiting for {user} to be {expected} in {room} on {}\n--- {} ---\n{}\n--- {} ---\n{}",
            server.name(),
            other.name(),
            other.logs(),
            server.name(),
            server.logs()
        );
    }
}

/// An initial `/sync`. Synapse answers identical sync requests from a cache for a
/// while, so each call asks with a different (short) timeout.
async fn fresh_sync(server: &impl Homeserver, token: &str, query: &str) -> (StatusCode, serde_json::Value) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let timeout = CALLS.fetch_add(1, Ordering::Relaxed) % 1000;
    server.call(Method::GET, &format!("{V3}/sync?timeout={timeout}&{query}"), Some(token), None).await
}

/// Waits until a user's `/sync` shows an invite to `room`.
async fn wait_for_invite(server: &impl Homeserver, token: &str, room: &str) -> serde_json::Value {
    eventually(&format!("an invite to {room} on {}", server.name()), PATIENCE, || async {
        let (status, sync) = fresh_sync(server, token, "").await;
        let invite = &sync["rooms"]["invite"][room];
        (status == StatusCode::OK && invite.is_object()).then(|| invite.clone())
    })
    .await
}

async fn invites_kicks_and_bans_in_a_private_kith_room(db: Db) {
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(db).await;
    let (syn_user, syn_token) = synapse.register("erin", "pw").await;
    let (kith_user, kith_token) = kith.register("frank", "pw").await;
    let room = matrix::create_room(&kith, &kith_token, json!({ "preset": "private_chat", "name": "Secret" })).await;

    // Not invited: Synapse cannot join.
    let (status, _) = matrix::join(&synapse, &syn_token, &room, kith.name()).await;
    assert_ne!(status, StatusCode::OK, "an uninvited user joined a private room");

    let (status, body) =
        matrix::membership_action(&kith, &kith_token, &room, "invite", json!({ "user_id": syn_user })).await;
    assert_eq!(status, StatusCode::OK, "invite: {body}\n{}", kith.log());
    let invite = wait_for_invite(&synapse, &syn_token, &room).await;
    assert!(invite.to_string().contains("Secret"), "the invite shows the room name: {invite}");
    let (status, body) = matrix::join(&synapse, &syn_token, &room, kith.name()).await;
    assert_eq!(status, StatusCode::OK, "join after invite: {body}\n{}", synapse.log());
    matrix::send_text(&synapse, &syn_token, &room, "glad to be in").await;
    wait_for_message(&kith, &kith_token, &room, "glad to be in").await;

    let (status, _) =
        matrix::membership_action(&kith, &kith_token, &room, "kick", json!({ "user_id": syn_user, "reason": "test" }))
            .await;
    assert_eq!(status, StatusCode::OK);
    wait_for_membership(&kith, &kith_token, &room, &syn_user, "leave", &synapse).await;
    wait_for_membership(&synapse, &syn_token, &room, &syn_user, "leave", &kith).await;

    let (status, body) =
        matrix::membership_action(&kith, &kith_token, &room, "invite", json!({ "user_id": syn_user })).await;
    assert_eq!(status, StatusCode::OK, "invite again: {body}\n{}", kith.log());
    wait_for_invite(&synapse, &syn_token, &room).await;
    let (status, body) = matrix::join(&synapse, &syn_token, &room, kith.name()).await;
    assert_eq!(status, StatusCode::OK, "join again: {body}");
    wait_for_membership(&kith, &kith_token, &room, &syn_user, "join", &synapse).await;
    let (status, _) = matrix::membership_action(&kith, &kith_token, &room, "ban", json!({ "user_id": syn_user })).await;
    assert_eq!(status, StatusCode::OK);
    // A banned user no longer reads the room's state; their sync shows the ban.
    let filter = matrix::encode(r#"{"room":{"include_leave":true}}"#);
    eventually("the ban in the synapse user's sync", PATIENCE, || async {
        let (_, sync) = fresh_sync(&synapse, &syn_token, &format!("filter={filter}")).await;
        let timeline = &sync["rooms"]["leave"][&room]["timeline"]["events"];
        let banned = timeline.as_array().is_some_and(|events| {
            events.iter().any(|e| e["state_key"] == syn_user.as_str() && e["content"]["membership"] == "ban")
        });
        banned.then_some(())
    })
    .await;
    let (status, _) = matrix::join(&synapse, &syn_token, &room, kith.name()).await;
    assert_ne!(status, StatusCode::OK, "a banned user joined");
    let members = matrix::memberships(&kith, &kith_token, &room).await;
    assert_eq!(members.get(&syn_user).map(String::as_str), Some("ban"));
    assert_eq!(members.get(&kith_user).map(String::as_str), Some("join"));
}

async fn invites_leaves_and_declines_in_a_private_synapse_room(db: Db) {
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(db).await;
    let (syn_user, syn_token) = synapse.register("grace", "pw").await;
    let (kith_user, kith_token) = kith.register("heidi", "pw").await;
    let room = matrix::create_room(&synapse, &syn_token, json!({ "preset": "private_chat", "name": "Club" })).await;

    let (status, body) =
        matrix::membership_action(&synapse, &syn_token, &room, "invite", json!({ "user_id": kith_user })).await;
    assert_eq!(status, StatusCode::OK, "invite: {body}\n{}", kith.log());
    let invite = wait_for_invite(&kith, &kith_token, &room).await;
    assert!(invite.to_string().contains("Club"), "the invite shows the room name: {invite}");
    let (status, body) = matrix::join(&kith, &kith_token, &room, &synapse.server_name).await;
    assert_eq!(status, StatusCode::OK, "join after invite: {body}\n{}", kith.log());
    matrix::send_text(&kith, &kith_token, &room, "thanks for the invite").await;
    wait_for_message(&synapse, &syn_token, &room, "thanks for the invite").await;
    wait_for_same_state(&kith, &kith_token, &synapse, &syn_token, &room).await;

    let (status, _) = matrix::membership_action(&kith, &kith_token, &room, "leave", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    wait_for_membership(&synapse, &syn_token, &room, &kith_user, "leave", &kith).await;

    // Invited again, the kith user declines: kith is no longer in the room, so the
    // leave goes through Synapse (make_leave/send_leave).
    matrix::membership_action(&synapse, &syn_token, &room, "invite", json!({ "user_id": kith_user })).await;
    wait_for_invite(&kith, &kith_token, &room).await;
    let (status, body) = matrix::membership_action(&kith, &kith_token, &room, "leave", json!({})).await;
    assert_eq!(status, StatusCode::OK, "decline: {body}\n{}", kith.log());
    wait_for_membership(&synapse, &syn_token, &room, &kith_user, "leave", &kith).await;
    let (status, sync) = kith.get(&format!("{V3}/sync"), Some(&kith_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(sync["rooms"]["invite"][&room].is_null(), "the declined invite is gone: {sync}");

    // Invited once more, the kith user accepts: kith joins the room again, on top of the
    // state it kept from before it left.
    matrix::membership_action(&synapse, &syn_token, &room, "invite", json!({ "user_id": kith_user })).await;
    wait_for_invite(&kith, &kith_token, &room).await;
    let (status, body) = matrix::join(&kith, &kith_token, &room, &synapse.server_name).await;
    assert_eq!(status, StatusCode::OK, "join again: {body}\n{}", kith.log());
    matrix::send_text(&kith, &kith_token, &room, "back again").await;
    wait_for_message(&synapse, &syn_token, &room, "back again").await;
    matrix::send_text(&synapse, &syn_token, &room, "welcome back").await;
    wait_for_message(&kith, &kith_token, &room, "welcome back").await;
    wait_for_same_state(&kith, &kith_token, &synapse, &syn_token, &room).await;

    let (status, _) =
        matrix::membership_action(&synapse, &syn_token, &room, "ban", json!({ "user_id": kith_user })).await;
    assert_eq!(status, StatusCode::OK);
    wait_for_membership(&kith, &kith_token, &room, &kith_user, "ban", &synapse).await;
    let (status, _) = matrix::join(&kith, &kith_token, &room, &synapse.server_name).await;
    assert_ne!(status, StatusCode::OK, "a banned user joined");
    let members = matrix::memberships(&synapse, &syn_token, &room).await;
    assert_eq!(members.get(&syn_user).map(String::as_str), Some("join"));
}

/// The user ids and names kith's directory shows `token`'s user for `term`.
async fn directory_search(kith: &TestServer, token: &str, term: &str) -> Vec<(String, String)> {
    let body = json!({ "search_term": term, "limit": 10 });
    let response = matrix::ok(kith, Method::POST, &format!("{V3}/user_directory/search"), token, Some(body)).await;
    response["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["user_id"].as_str().unwrap_or_default().to_owned(),
                r["display_name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn wait_for_directory(kith: &TestServer, token: &str, term: &str, expected: Vec<(String, String)>) {
    let what = format!("kith's directory to answer {term:?} with {expected:?}");
    eventually(&what, PATIENCE, || async {
        let found = directory_search(kith, token, term).await;
        (found == expected).then_some(())
    })
    .await;
}

async fn remote_profiles_reach_memberships_and_the_directory(db: Db) {
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(db).await;
    let (sam, sam_token) = synapse.register("sam", "pw").await;
    let (tess, tess_token) = synapse.register("tess", "pw").await;
    let (kim, kim_token) = kith.register("kim", "pw").await;
    let set_name = |user: String, token: String, name: &'static str| {
        let synapse = &synapse;
        async move {
            let path = format!("{V3}/profile/{}/displayname", matrix::encode(&user));
            matrix::ok(synapse, Method::PUT, &path, &token, Some(json!({ "displayname": name }))).await;
        }
    };
    set_name(sam.clone(), sam_token.clone(), "Sam Synapse").await;
    set_name(tess.clone(), tess_token.clone(), "Tess Tester").await;
    let room = matrix::create_room(&synapse, &sam_token, json!({ "preset": "public_chat", "name": "Town" })).await;

    // Before kith shares a room with Sam, its directory does not know him.
    assert!(directory_search(&kith, &kim_token, "sam").await.is_empty());
    let (status, body) = matrix::join(&kith, &kim_token, &room, &synapse.server_name).await;
    assert_eq!(status, StatusCode::OK, "join: {body}");
    wait_for_directory(&kith, &kim_token, "sam", vec![(sam.clone(), "Sam Synapse".into())]).await;

    // A display-name change on Synapse reaches kith's copy of the room and its directory.
    set_name(sam.clone(), sam_token.clone(), "Samuel Renamed").await;
    eventually("the new name in kith's membership", PATIENCE, || async {
        let path = format!("{V3}/rooms/{}/state/m.room.member/{}", matrix::encode(&room), matrix::encode(&sam));
        let (status, member) = kith.get(&path, Some(&kim_token)).await;
        (status == StatusCode::OK && member["displayname"] == "Samuel Renamed").then_some(())
    })
    .await;
    wait_for_directory(&kith, &kim_token, "samuel", vec![(sam.clone(), "Samuel Renamed".into())]).await;
    assert!(directory_search(&kith, &kim_token, "synapse sam").await.is_empty(), "the old name is gone");

    // Sam leaves: he shares no room with kith any more.
    matrix::membership_action(&synapse, &sam_token, &room, "leave", json!({})).await;
    wait_for_directory(&kith, &kim_token, "samuel", vec![]).await;

    // Tess joins (through kith: Synapse has nobody left in the room), then kith's only
    // user leaves: kith forgets the room's remote members.
    let (status, body) = matrix::join(&synapse, &tess_token, &room, kith.name()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_directory(&kith, &kim_token, "tess", vec![(tess.clone(), "Tess Tester".into())]).await;
    let (status, _) = matrix::membership_action(&kith, &kim_token, &room, "leave", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    wait_for_directory(&kith, &kim_token, "tess", vec![]).await;
    wait_for_membership(&synapse, &tess_token, &room, &kim, "leave", &kith).await;
}

/// Accepts and drops connections on a port, recording when each came.
fn count_connections(
    port: u16,
) -> (std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>, tokio::task::JoinHandle<()>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the dead destination's port");
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    let record = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            record.lock().unwrap().push(std::time::Instant::now());
            drop(socket);
        }
    });
    (seen, task)
}

async fn nothing_is_lost_while_synapse_is_down_and_backoff_is_kept(db: Db) {
    let backoff = "federation:\n  destination_min_retry_interval: 2s\n  destination_retry_multiplier: 2\n  destination_max_retry_interval: 16s\n";
    let mut synapse = Synapse::start().await;
    let mut kith = TestServer::start_federating_with(db, backoff).await;
    let (_, syn_token) = synapse.register("uma", "pw").await;
    let (_, kith_token) = kith.register("vic", "pw").await;
    let room = matrix::create_room(&kith, &kith_token, json!({ "preset": "public_chat" })).await;
    let (status, body) = matrix::join(&synapse, &syn_token, &room, kith.name()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    matrix::send_text(&kith, &kith_token, &room, "before the outage").await;
    wait_for_message(&synapse, &syn_token, &room, "before the outage").await;

    synapse.stop();
    let (attempts, listener) = count_connections(synapse.federation_port);
    let outage = std::time::Instant::now();
    let mut sent = Vec::new();
    for i in 0..6 {
        let text = format!("during the outage {i}");
        matrix::send_text(&kith, &kith_token, &room, &text).await;
        sent.push(text);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // A restart in the middle of the outage keeps both the queue and the backoff.
    kith.restart().await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let times: Vec<Duration> = attempts.lock().unwrap().iter().map(|t| t.duration_since(outage)).collect();
    listener.abort();
    let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    println!(
        "dead destination: {} attempts in {:.1} s (at {:?} s), gaps {gaps:?} s",
        times.len(),
        outage.elapsed().as_secs_f64(),
        times.iter().map(|t| (t.as_secs_f64() * 10.0).round() / 10.0).collect::<Vec<_>>()
    );
    assert!(!times.is_empty(), "kith never tried the dead destination");
    // Backoff 2 s, 4 s, 8 s, 16 s (+ up to 20% jitter): never faster, whatever was sent.
    for (i, gap) in gaps.iter().enumerate() {
        let minimum = 2.0 * 2f64.powi(i as i32).min(8.0);
        assert!(
            *gap >= minimum * 0.95,
            "attempt {} came {gap:.2} s after the previous one (backoff {minimum} s)",
            i + 2
        );
    }
    assert!(times.len() <= 5, "{} attempts in about 24 s", times.len());

    synapse.start_again().await;
    for text in &sent {
        wait_for_message(&synapse, &syn_token, &room, text).await;
    }
    let bodies = matrix::message_bodies(&synapse, &syn_token, &room).await;
    let order: Vec<&String> = bodies.iter().filter(|b| b.starts_with("during the outage")).collect();
    assert_eq!(order, sent.iter().collect::<Vec<_>>(), "every missed message arrives once, in order");
}

async fn kith_catches_up_on_what_it_missed_while_down(db: Db) {
    let synapse = Synapse::start().await;
    let mut kith = TestServer::start_federating(db).await;
    let (_, syn_token) = synapse.register("wendy", "pw").await;
    let (_, kith_token) = kith.register("xavier", "pw").await;
    let room = matrix::create_room(&synapse, &syn_token, json!({ "preset": "public_chat" })).await;
    let (status, body) = matrix::join(&kith, &kith_token, &room, &synapse.server_name).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    matrix::send_text(&synapse, &syn_token, &room, "before kith went down").await;
    wait_for_message(&kith, &kith_token, &room, "before kith went down").await;

    kith.terminate();
    let missed: Vec<String> = (0..30).map(|i| format!("while kith was down {i}")).collect();
    for (i, text) in missed.iter().enumerate() {
        matrix::send_text(&synapse, &syn_token, &room, text).await;
        if i == 3 {
            let path = format!("{V3}/rooms/{}/state/m.room.topic/", matrix::encode(&room));
            matrix::ok(&synapse, Method::PUT, &path, &syn_token, Some(json!({ "topic": "set while kith was down" })))
                .await;
        }
    }
    kith.start_again().await;
    // A transaction from kith tells Synapse kith is back (kith's message forks the DAG:
    // it was sent on the state kith had); Synapse then sends what kith missed, and kith
    // fetches whatever else it lacks and resolves the fork.
    matrix::send_text(&kith, &kith_token, &room, "kith is back").await;
    wait_for_message(&synapse, &syn_token, &room, "kith is back").await;
    for text in &missed {
        wait_for_message(&kith, &kith_token, &room, text).await;
    }
    let state = wait_for_same_state(&kith, &kith_token, &synapse, &syn_token, &room).await;
    assert!(state.contains_key(&("m.room.topic".to_owned(), String::new())), "{state:?}");
    let path = format!("{V3}/rooms/{}/state/m.room.topic/", matrix::encode(&room));
    let topic = matrix::ok(&kith, Method::GET, &path, &kith_token, None).await;
    assert_eq!(topic["topic"], "set while kith was down");
}

/// Complement's `TestRoomSpecificUsernameChange` with a Synapse user: Sam's public name
/// comes from Synapse, never the nickname he uses in a DM with Kim. The DM itself is
/// created by kith with Sam in `invite` (and, the other way, by Synapse with Kim).
async fn synapse_users_show_their_public_name_and_dms_invite_both_ways(db: Db) {
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(db).await;
    let (sam, sam_token) = synapse.register("sam", "pw").await;
    let (kim, kim_token) = kith.register("kim", "pw").await;
    let (_, eve_token) = kith.register("eve", "pw").await;
    let path = format!("{V3}/profile/{}/displayname", matrix::encode(&sam));
    matrix::ok(&synapse, Method::PUT, &path, &sam_token, Some(json!({ "displayname": "Sam Public" }))).await;
    let town = matrix::create_room(&synapse, &sam_token, json!({ "preset": "public_chat" })).await;
    assert_eq!(matrix::join(&kith, &kim_token, &town, &synapse.server_name).await.0, StatusCode::OK);

    let dm = matrix::create_room(
        &kith,
        &kim_token,
        json!({ "preset": "trusted_private_chat", "invite": [sam], "is_direct": true }),
    )
    .await;
    wait_for_invite(&synapse, &sam_token, &dm).await;
    assert_eq!(matrix::join(&synapse, &sam_token, &dm, kith.name()).await.0, StatusCode::OK);
    let member = format!("{V3}/rooms/{}/state/m.room.member/{}", matrix::encode(&dm), matrix::encode(&sam));
    let nickname = json!({ "membership": "join", "displayname": "Sammy Secret" });
    matrix::ok(&synapse, Method::PUT, &member, &sam_token, Some(nickname)).await;
    eventually("the nickname in kith's copy of the DM", PATIENCE, || async {
        let (_, event) = kith.get(&member, Some(&kim_token)).await;
        (event["displayname"] == "Sammy Secret").then_some(())
    })
    .await;
    for token in [&eve_token, &kim_token] {
        wait_for_directory(&kith, token, "sam public", vec![(sam.clone(), "Sam Public".into())]).await;
        assert!(directory_search(&kith, token, "secret").await.is_empty(), "the DM nickname never shows");
    }

    let back = matrix::create_room(
        &synapse,
        &sam_token,
        json!({ "preset": "private_chat", "invite": [kim], "is_direct": true }),
    )
    .await;
    wait_for_invite(&kith, &kim_token, &back).await;
}

/// Alice on kith and Bob on Synapse, both with matrix-js-sdk's Rust crypto (what Element
/// uses): an encrypted DM each side decrypts, to-device keys and device lists across the
/// two servers, Alice's second device reading the history from kith's key backup, and
/// Bob seeing both of Alice's devices cross-signed. Once, on SQLite (the same script runs
/// kith against kith on both backends in `client_sdks.rs`).
/// An admin deletes a kith room a Synapse user is in: Synapse hears that the kith
/// member left before kith purged the room, and an invite back from Synapse into the
/// blocked room is refused by kith.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_kith_room_is_left_on_synapse_and_stays_blocked() {
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(Db::Sqlite).await;
    let (_, admin) = kith.register_as("root", "pw", true).await;
    let (dave, dave_token) = kith.register("dave", "pw").await;
    let (carol, carol_token) = synapse.register("carol", "pw").await;
    let room = matrix::create_room(&kith, &dave_token, json!({ "preset": "public_chat" })).await;
    let (status, body) = matrix::join(&synapse, &carol_token, &room, kith.name()).await;
    assert_eq!(status, StatusCode::OK, "join: {body}");
    wait_for_membership(&kith, &dave_token, &room, &carol, "join", &synapse).await;

    let path = format!("/_synapse/admin/v2/rooms/{room}");
    let (status, body) = kith.request(Method::DELETE, &path, Some(&admin), Some(json!({ "block": true }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let status_path = format!("/_synapse/admin/v2/rooms/delete_status/{}", body["delete_id"].as_str().unwrap());
    let deletion = eventually("the deletion to end", PATIENCE, || async {
        let (_, deletion) = kith.get(&status_path, Some(&admin)).await;
        matches!(deletion["status"].as_str(), Some("complete" | "failed")).then_some(deletion)
    })
    .await;
    assert_eq!(deletion["status"], "complete", "{deletion}");
    wait_for_membership(&synapse, &carol_token, &room, &dave, "leave", &kith).await;

    let invite = format!("{V3}/rooms/{}/invite", matrix::encode(&room));
    let (status, body) =
        synapse.request(Method::POST, &invite, Some(&carol_token), Some(json!({ "user_id": dave }))).await;
    assert!(status.is_client_error(), "kith refuses the invite: {status} {body}");
    let (_, joined) = kith.get(&format!("{V3}/joined_rooms"), Some(&dave_token)).await;
    assert_eq!(joined["joined_rooms"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_js_sdk_encrypts_between_kith_and_synapse() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/e2ee.mjs");
    common::require_file(&script.with_file_name("node_modules/matrix-js-sdk"), "scripts/test installs matrix-js-sdk");
    let synapse = Synapse::start().await;
    let kith = TestServer::start_federating(Db::Sqlite).await;
    kith.register("alice", "alice pw").await;
    synapse.register_fast("bob").await;
    let args = [script.display().to_string(), kith.base.clone(), "alice".into(), "alice pw".into()];
    let args: Vec<String> = args.into_iter().chain([synapse.client_base.clone(), "bob".into(), "pw".into()]).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node").args(&args).env("NODE_TLS_REJECT_UNAUTHORIZED", "0").output()
    })
    .await
    .unwrap()
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.lines().any(|line| line == "OK"),
        "{stdout}\n{}\n--- kith ---\n{}\n--- synapse ---\n{}",
        String::from_utf8_lossy(&output.stderr),
        kith.log(),
        synapse.log()
    );
}
