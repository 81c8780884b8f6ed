//! One ordinary user must not be able to stall the server or fill it: costly directory
//! searches, to-device messages fanned out to made-up servers, a flooded to-device
//! inbox. Each limit answers with a Matrix error and loses nothing it accepted.

mod common;

use std::time::Duration;

use common::matrix::{V3, eventually};
use common::{Db, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_backends!(huge_directory_terms_are_bounded);

/// A liveness bound, not a performance target: what used to take minutes of CPU under
/// the index lock must not keep the server from answering.
const ANSWERS_WITHIN: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(ANSWERS_WITHIN, request).await.unwrap_or_else(|_| panic!("{what}: no answer"))
}

/// A term of 150,000 distinct words (about 900 KB, under the body cap) costs what its
/// first words cost; two in flight leave the server answering others.
async fn huge_directory_terms_are_bounded(db: Db) {
    let server = TestServer::start_with(db, "user_directory: {search_all_users: true}").await;
    let (_, token) = server.register("alice", "pw").await;
    let (anna, _) = server.register("anna", "pw").await;
    let huge: String = (0..150_000).map(|i| format!("{i:x} ")).collect();
    let path = format!("{V3}/user_directory/search");
    let search = |term: String| server.post(&path, Some(&token), json!({ "search_term": term }));
    let (first, second, versions) = within(
        "two huge searches and /versions",
        futures_util::future::join3(search(huge.clone()), search(huge), server.get("/_matrix/client/versions", None)),
    )
    .await;
    for (status, body) in [first, second] {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["results"], json!([]), "the first words match nobody: {body}");
    }
    assert_eq!(versions.0, StatusCode::OK);

    // Repeated words count once: a long term of one name still finds its owner.
    let repeated = "anna ".repeat(100_000);
    let found = eventually("anna in the directory", Duration::from_secs(10), || async {
        let (status, body) = search(repeated.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let ids: Vec<Value> = body["results"].as_array()?.iter().map(|hit| hit["user_id"].clone()).collect();
        (!ids.is_empty()).then_some(ids)
    })
    .await;
    assert_eq!(found, vec![json!(anna)]);
}
