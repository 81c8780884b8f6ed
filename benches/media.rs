//! The media repository on loopback (release build, SQLite):
//!
//! 1. a 50 MiB upload and its download (MB/s);
//! 2. the first thumbnail of a 4000×3000 JPEG (decoded, scaled, encoded) and the same
//!    thumbnail again (served from the store);
//! 3. a 10 MiB file of another kith server, fetched over federation on first download,
//!    then served from the cache.
//!
//! `cargo bench --bench media`

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Cursor;
use std::time::Instant;

use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const MIB: usize = 1024 * 1024;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        upload_and_download().await;
        thumbnails().await;
        remote_fetch().await;
    });
}

async fn upload(server: &TestServer, token: &str, content_type: &str, bytes: Vec<u8>) -> String {
    let response =
        server.send_bytes(Method::POST, "/_matrix/media/v3/upload", Some(token), Some((content_type, bytes))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["content_uri"].as_str().unwrap().trim_start_matches("mxc://").to_owned()
}

async fn timed_get(server: &TestServer, token: &str, path: &str) -> (f64, usize) {
    let started = Instant::now();
    let response = server.send_bytes(Method::GET, path, Some(token), None).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let length = response.bytes().await.unwrap().len();
    (started.elapsed().as_secs_f64(), length)
}

async fn upload_and_download() {
    let server = TestServer::start(Db::Sqlite).await;
    let (_, token) = server.register("alice", "pw").await;
    let bytes: Vec<u8> = (0..50 * MIB).map(|i| (i * 31 % 251) as u8).collect();
    let started = Instant::now();
    let media = upload(&server, &token, "application/octet-stream", bytes).await;
    let up = started.elapsed().as_secs_f64();
    let (down, length) = timed_get(&server, &token, &format!("/_matrix/client/v1/media/download/{media}")).await;
    assert_eq!(length, 50 * MIB);
    println!(
        "50 MiB upload: {:.0} ms ({:.0} MB/s); download: {:.0} ms ({:.0} MB/s)",
        up * 1e3,
        52.4 / up,
        down * 1e3,
        52.4 / down
    );
}

async fn thumbnails() {
    let server = TestServer::start(Db::Sqlite).await;
    let (_, token) = server.register("alice", "pw").await;
    let photo =
        image::RgbImage::from_fn(4000, 3000, |x, y| image::Rgb([(x / 16) as u8, (y / 12) as u8, ((x + y) / 28) as u8]));
    let mut jpeg = Vec::new();
    photo.write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
    let size = jpeg.len();
    let media = upload(&server, &token, "image/jpeg", jpeg).await;
    for (query, label) in
        [("width=800&height=600&method=scale", "800x600 scale"), ("width=96&height=96&method=crop", "96x96 crop")]
    {
        let path = format!("/_matrix/client/v1/media/thumbnail/{media}?{query}");
        let (first, length) = timed_get(&server, &token, &path).await;
        let (again, _) = timed_get(&server, &token, &path).await;
        println!(
            "4000x3000 JPEG ({} KiB) → {label} ({} KiB): first {:.0} ms, cached {:.1} ms",
            size / 1024,
            length / 1024,
            first * 1e3,
            again * 1e3
        );
    }
}

async fn remote_fetch() {
    let a = TestServer::start_federating(Db::Sqlite).await;
    let b = TestServer::start_federating(Db::Sqlite).await;
    let (_, alice_t) = a.register("alice", "pw").await;
    let (_, bob_t) = b.register("bob", "pw").await;
    let bytes: Vec<u8> = (0..10 * MIB).map(|i| (i * 17 % 253) as u8).collect();
    let media = upload(&a, &alice_t, "application/octet-stream", bytes).await;
    let path = format!("/_matrix/client/v1/media/download/{media}");
    let (first, length) = timed_get(&b, &bob_t, &path).await;
    assert_eq!(length, 10 * MIB);
    let (again, _) = timed_get(&b, &bob_t, &path).await;
    println!(
        "10 MiB of another server: first download (fetched over federation) {:.0} ms, then {:.0} ms from the cache",
        first * 1e3,
        again * 1e3
    );
}
