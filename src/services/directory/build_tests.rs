//! Building the index from the database: memberships are read unsorted, and the result
//! must be what reading them in stream order gives.

use sqlx::Row;

use super::{BuildProgress, Unlisted, build_index};
use crate::config::DatabaseTarget;
use crate::store::Store;

struct Quiet;

impl BuildProgress for Quiet {
    fn phase(&self, _name: &str, _total: u64) {}
    fn advance(&self, _done: u64) {}
}

async fn insert_member(store: &Store, room: &str, user: &str, name: &str, ordering: i64) {
    let server = user.split_once(':').map(|(_, server)| server).unwrap_or_default();
    sqlx::query(
        "INSERT INTO room_memberships (room_id, user_id, membership, event_id, sender, displayname, \
         stream_ordering, server_name) VALUES ($1, $2, 'join', $3, $2, $4, $5, $6)",
    )
    .bind(room)
    .bind(user)
    .bind(format!("$member{ordering}"))
    .bind(name)
    .bind(ordering)
    .bind(server)
    .execute(store.pool())
    .await
    .unwrap();
}

async fn make_public(store: &Store, room: &str, ordering: i64) {
    let event_id = format!("$rules_{}", &room[1..]);
    let json = r#"{"type":"m.room.join_rules","content":{"join_rule":"public"}}"#;
    sqlx::query(
        "INSERT INTO events (event_id, room_id, stream_ordering, depth, event_type, state_key, sender, \
         origin_server_ts, json) VALUES ($1, $2, $3, 1, 'm.room.join_rules', '', '@kim:here', 0, $4)",
    )
    .bind(&event_id)
    .bind(room)
    .bind(ordering)
    .bind(json)
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO current_state (room_id, event_type, state_key, event_id) VALUES ($1, 'm.room.join_rules', '', $2)",
    )
    .bind(room)
    .bind(&event_id)
    .execute(store.pool())
    .await
    .unwrap();
}

/// A remote user without a public profile shows as their earliest membership shows them
/// (a public room's member event, or nothing for a private room), whatever order the
/// rows are stored in; rooms without a local member are not read into the index.
#[tokio::test]
async fn the_earliest_membership_decides_whatever_the_row_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kith.db").display().to_string();
    let store = Store::connect(&DatabaseTarget::Sqlite { path }).await.unwrap();
    sqlx::query("INSERT INTO users (user_id, created_ts) VALUES ('@kim:here', 0)").execute(store.pool()).await.unwrap();
    make_public(&store, "!a:here", -1).await;
    make_public(&store, "!b:here", -2).await;
    for (room, ordering) in [("!a:here", 1), ("!b:here", 2), ("!p:here", 4)] {
        insert_member(&store, room, "@kim:here", "Kim", ordering).await;
    }
    // Stored later-first, so that a plain scan meets the later membership first.
    insert_member(&store, "!b:here", "@mal:far", "Mal in B", 10).await;
    insert_member(&store, "!a:here", "@mal:far", "Mal in A", 5).await;
    insert_member(&store, "!a:here", "@pri:far", "Pri in A", 20).await;
    insert_member(&store, "!p:here", "@pri:far", "Pri in P", 3).await;
    insert_member(&store, "!x:far", "@solo:far", "Solo", 7).await;
    let stored: Vec<String> = sqlx::query("SELECT user_id FROM room_memberships WHERE user_id = '@mal:far'")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored.len(), 2);

    // More accounts and memberships than one batch of a scan reads.
    let many = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)";
    let accounts = format!("INSERT INTO users (user_id, created_ts) {many} SELECT '@u' || i || ':here', 0 FROM n");
    sqlx::query(&accounts).execute(store.pool()).await.unwrap();
    let members = format!(
        "INSERT INTO room_memberships (room_id, user_id, membership, event_id, sender, stream_ordering, server_name) \
         {many} SELECT '!p:here', '@u' || i || ':here', 'join', '$u' || i, '@u' || i || ':here', 100 + i, 'here' FROM n"
    );
    sqlx::query(&members).execute(store.pool()).await.unwrap();

    let index = build_index(&store, "here", &Unlisted::default(), &Quiet).await.unwrap();
    let name = |user: &str| {
        let id = index.id_of(user).unwrap_or_else(|| panic!("{user} is listed"));
        index.entry(id).and_then(|entry| entry.display_name.map(str::to_owned))
    };
    assert_eq!(name("@kim:here"), None, "a local user shows their global profile, not a room's");
    assert_eq!(name("@mal:far").as_deref(), Some("Mal in A"));
    assert_eq!(name("@pri:far"), None, "first seen in a private room");
    assert!(index.id_of("@solo:far").is_none(), "a room without a local member is not tracked");
    assert_eq!(index.tracked_room_count(), 3);
    assert_eq!(index.user_count(), 5003, "kim, mal, pri and the 5,000");
    let last = index.id_of("@u5000:here").expect("the last account is listed");
    assert_eq!(index.room_count(last), 1, "the last membership was read too");
    assert!(index.room_is_public("!a:here") && !index.room_is_public("!p:here"));
    store.close().await;
}
