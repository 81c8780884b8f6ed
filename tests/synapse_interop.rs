//! Interop with a real Synapse on loopback. So far: profile queries both ways, each
//! request X-Matrix signed and checked against keys fetched from the other server.

mod common;

use common::synapse::Synapse;
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

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
