//! The media repository over HTTP, on both backends: uploads (direct and to a `create`d
//! id), authenticated downloads and thumbnails, the headers that keep browsers from
//! running media, limits and bad input, and media of another kith server fetched over
//! federation.

mod common;

use std::io::Cursor;

use common::matrix::encode;
use common::{Db, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const UPLOAD: &str = "/_matrix/media/v3/upload";
const MEDIA: &str = "/_matrix/client/v1/media";

/// A PNG of `width`×`height` with a colour gradient (so scaling has something to do).
fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

async fn upload(server: &TestServer, token: &str, content_type: &str, bytes: Vec<u8>, name: &str) -> String {
    let path = format!("{UPLOAD}?filename={}", encode(name));
    let response = server.send_bytes(Method::POST, &path, Some(token), Some((content_type, bytes))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["content_uri"].as_str().unwrap().to_owned()
}

/// `mxc://server/id` as the `server/id` of download paths.
fn media_path(mxc: &str) -> String {
    let (server, id) = mxc.trim_start_matches("mxc://").split_once('/').unwrap();
    format!("{}/{id}", encode(server))
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

async fn errcode(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    (status, body["errcode"].as_str().unwrap_or_default().to_owned())
}

async fn upload_download_and_thumbnails(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let image = png(800, 600);
    let mxc = upload(&server, &token, "image/png", image.clone(), "holiday é.png").await;
    assert!(mxc.starts_with("mxc://kith.test/"), "{mxc}");

    let response =
        server.send_bytes(Method::GET, &format!("{MEDIA}/download/{}", media_path(&mxc)), Some(&token), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "image/png");
    assert_eq!(header(&response, "content-disposition"), "inline; filename*=utf-8''holiday%20%C3%A9.png");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert!(header(&response, "content-security-policy").contains("sandbox"));
    assert_eq!(response.bytes().await.unwrap().to_vec(), image, "the bytes come back as uploaded");

    let named = format!("{MEDIA}/download/{}/other.png", media_path(&mxc));
    let response = server.send_bytes(Method::GET, &named, Some(&token), None).await;
    assert_eq!(header(&response, "content-disposition"), "inline; filename*=utf-8''other.png");

    for (query, expected) in
        [("width=32&height=32&method=crop", (32, 32)), ("width=300&height=200&method=scale", (320, 240))]
    {
        let path = format!("{MEDIA}/thumbnail/{}?{query}", media_path(&mxc));
        for _ in 0..2 {
            // The second answer comes from the cache and must be the same image.
            let response = server.send_bytes(Method::GET, &path, Some(&token), None).await;
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            assert_eq!(header(&response, "content-type"), "image/jpeg", "an opaque image thumbnails as JPEG");
            let thumbnail = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
            assert_eq!((thumbnail.width(), thumbnail.height()), expected, "{query}");
        }
    }

    let (_, config) = server.get(&format!("{MEDIA}/config"), Some(&token)).await;
    assert_eq!(config["m.upload.size"], 50 * 1024 * 1024);
}

async fn media_needs_authentication_and_legacy_downloads_are_refused(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    let mxc = upload(&server, &token, "text/plain", b"hello".to_vec(), "a.txt").await;
    let path = media_path(&mxc);
    let anonymous = server.send_bytes(Method::GET, &format!("{MEDIA}/download/{path}"), None, None).await;
    assert_eq!(errcode(anonymous).await, (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN".to_owned()));
    let legacy = server.send_bytes(Method::GET, &format!("/_matrix/media/v3/download/{path}"), None, None).await;
    assert_eq!(errcode(legacy).await, (StatusCode::NOT_FOUND, "M_NOT_FOUND".to_owned()));
    let anonymous_upload = server.send_bytes(Method::POST, UPLOAD, None, Some(("text/plain", b"x".to_vec()))).await;
    assert_eq!(errcode(anonymous_upload).await.0, StatusCode::UNAUTHORIZED);

    let mut server = server;
    server.reconfigure("enable_authenticated_media: false").await;
    let legacy = server.send_bytes(Method::GET, &format!("/_matrix/media/v3/download/{path}"), None, None).await;
    assert_eq!(legacy.status(), StatusCode::OK, "legacy downloads work when authenticated media is off");
    assert_eq!(header(&legacy, "content-type"), "text/plain; charset=UTF-8");
    assert_eq!(legacy.bytes().await.unwrap().as_ref(), b"hello");
}

async fn scriptable_media_is_never_inline(db: Db) {
    let server = TestServer::start(db).await;
    let (_, token) = server.register("alice", "pw").await;
    for (content_type, name) in
        [("text/html", "page.html"), ("image/svg+xml", "x.svg"), ("application/javascript", "x.js")]
    {
        let mxc = upload(&server, &token, content_type, b"<script>alert(1)</script>".to_vec(), name).await;
        let response =
            server.send_bytes(Method::GET, &format!("{MEDIA}/download/{}", media_path(&mxc)), Some(&token), None).await;
        let disposition = header(&response, "content-disposition");
        assert!(disposition.starts_with("attachment"), "{content_type}: {disposition}");
    }
    let mxc = upload(&server, &token, "", b"no type".to_vec(), "x").await;
    let response =
        server.send_bytes(Method::GET, &format!("{MEDIA}/download/{}", media_path(&mxc)), Some(&token), None).await;
    assert_eq!(header(&response, "content-type"), "application/octet-stream");
}

async fn limits_and_bad_input_get_matrix_errors(db: Db) {
    let server = TestServer::start_with(db, "max_upload_size: 1K\nmax_image_pixels: 1000").await;
    let (_, token) = server.register("alice", "pw").await;
    let big = server.send_bytes(Method::POST, UPLOAD, Some(&token), Some(("text/plain", vec![b'x'; 2048]))).await;
    assert_eq!(errcode(big).await, (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE".to_owned()));
    let (_, config) = server.get(&format!("{MEDIA}/config"), Some(&token)).await;
    assert_eq!(config["m.upload.size"], 1024);

    let text = upload(&server, &token, "text/plain", b"words".to_vec(), "t.txt").await;
    let image = upload(&server, &token, "image/png", png(40, 40), "big.png").await;
    let bad_name = "/_matrix/media/v3/upload?filename=a%0Ab";
    let response = server.send_bytes(Method::POST, bad_name, Some(&token), Some(("text/plain", b"x".to_vec()))).await;
    assert_eq!(errcode(response).await.0, StatusCode::BAD_REQUEST);
    let cases = [
        (format!("{MEDIA}/download/kith.test/no_such_media"), StatusCode::NOT_FOUND, "M_NOT_FOUND"),
        (format!("{MEDIA}/download/kith.test/..%2F..%2Fetc"), StatusCode::NOT_FOUND, "M_NOT_FOUND"),
        (format!("{MEDIA}/download/not%20a%20server/abc"), StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        (
            format!("{MEDIA}/download/{}?allow_remote=maybe", media_path(&text)),
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        ),
        (
            format!("{MEDIA}/thumbnail/{}?width=abc&height=3", media_path(&image)),
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        ),
        (format!("{MEDIA}/thumbnail/{}?height=3", media_path(&image)), StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
        (
            format!("{MEDIA}/thumbnail/{}?width=3&height=3&method=x", media_path(&image)),
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        ),
        (format!("{MEDIA}/thumbnail/{}?width=32&height=32", media_path(&text)), StatusCode::NOT_FOUND, "M_NOT_FOUND"),
        // 1,600 pixels is over this server's max_image_pixels.
        (format!("{MEDIA}/thumbnail/{}?width=32&height=32", media_path(&image)), StatusCode::NOT_FOUND, "M_NOT_FOUND"),
        (format!("{MEDIA}/download/remote.invalid/abc?allow_remote=false"), StatusCode::NOT_FOUND, "M_NOT_FOUND"),
        (format!("{MEDIA}/preview_url?url=https%3A%2F%2Fexample.org"), StatusCode::NOT_FOUND, "M_UNRECOGNIZED"),
    ];
    for (path, status, code) in cases {
        let response = server.send_bytes(Method::GET, &path, Some(&token), None).await;
        assert_eq!(errcode(response).await, (status, code.to_owned()), "{path}");
    }
    let fake_png = upload(&server, &token, "image/png", b"not really a png".to_vec(), "x.png").await;
    let path = format!("{MEDIA}/thumbnail/{}?width=32&height=32", media_path(&fake_png));
    let response = server.send_bytes(Method::GET, &path, Some(&token), None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "bytes that are no image have no thumbnail");
}

async fn create_then_upload(db: Db) {
    let server = TestServer::start(db).await;
    let (_, alice_t) = server.register("alice", "pw").await;
    let (_, bob_t) = server.register("bob", "pw").await;
    let (status, created) = server.post("/_matrix/media/v1/create", Some(&alice_t), serde_json::json!({})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let mxc = created["content_uri"].as_str().unwrap().to_owned();
    assert!(created["unused_expires_at"].as_i64().unwrap() > 0);
    let download = format!("{MEDIA}/download/{}?timeout_ms=100", media_path(&mxc));
    let waiting = server.send_bytes(Method::GET, &download, Some(&alice_t), None).await;
    assert_eq!(errcode(waiting).await, (StatusCode::GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED".to_owned()));

    let put = format!("/_matrix/media/v3/upload/{}", media_path(&mxc));
    let body = || Some(("text/plain", b"later".to_vec()));
    let by_bob = server.send_bytes(Method::PUT, &put, Some(&bob_t), body()).await;
    assert_eq!(errcode(by_bob).await, (StatusCode::FORBIDDEN, "M_FORBIDDEN".to_owned()));
    // A download waiting for the upload gets it as soon as it lands.
    let waiting_download = format!("{MEDIA}/download/{}", media_path(&mxc));
    let waiter = server.send_bytes(Method::GET, &waiting_download, Some(&alice_t), None);
    let uploader = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        server.send_bytes(Method::PUT, &put, Some(&alice_t), body()).await
    };
    let (waited, uploaded) = tokio::join!(waiter, uploader);
    assert_eq!(uploaded.status(), StatusCode::OK);
    assert_eq!(waited.status(), StatusCode::OK);
    assert_eq!(waited.bytes().await.unwrap().as_ref(), b"later");
    let again = server.send_bytes(Method::PUT, &put, Some(&alice_t), body()).await;
    assert_eq!(errcode(again).await, (StatusCode::CONFLICT, "M_CANNOT_OVERWRITE_MEDIA".to_owned()));
    for _ in 0..5 {
        assert_eq!(
            server.post("/_matrix/media/v1/create", Some(&alice_t), serde_json::json!({})).await.0,
            StatusCode::OK
        );
    }
    let (status, answer) = server.post("/_matrix/media/v1/create", Some(&alice_t), serde_json::json!({})).await;
    assert_eq!((status, answer["errcode"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("M_LIMIT_EXCEEDED")));
}

/// Bob on B downloads Alice's upload on A through his own server: B fetches it over
/// federation once (multipart), caches it and thumbnails it itself.
async fn remote_media_is_fetched_over_federation_and_cached(db: Db) {
    let a = TestServer::start_federating(db).await;
    let b = TestServer::start_federating(db).await;
    let (_, alice_t) = a.register("alice", "pw").await;
    let (_, bob_t) = b.register("bob", "pw").await;
    let image = png(640, 480);
    let mxc = upload(&a, &alice_t, "image/png", image.clone(), "cat.png").await;
    let path = media_path(&mxc);

    let response = b.send_bytes(Method::GET, &format!("{MEDIA}/download/{path}"), Some(&bob_t), None).await;
    let status = response.status();
    if status != StatusCode::OK {
        panic!("{status}: {}", response.text().await.unwrap());
    }
    assert_eq!(header(&response, "content-type"), "image/png");
    assert_eq!(header(&response, "content-disposition"), "inline; filename*=utf-8''cat.png");
    assert_eq!(response.bytes().await.unwrap().to_vec(), image);

    let thumbnail = format!("{MEDIA}/thumbnail/{path}?width=96&height=96&method=crop");
    let response = b.send_bytes(Method::GET, &thumbnail, Some(&bob_t), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let made = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((made.width(), made.height()), (96, 96));

    // Once cached, B serves it even with remote fetching off and A gone.
    drop(a);
    let cached = format!("{MEDIA}/download/{path}?allow_remote=false");
    let response = b.send_bytes(Method::GET, &cached, Some(&bob_t), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().to_vec(), image);
    let unknown = format!("{MEDIA}/download/{}/unknownmedia", path.split('/').next().unwrap());
    let response = b.send_bytes(Method::GET, &unknown, Some(&bob_t), None).await;
    assert!(matches!(response.status(), StatusCode::NOT_FOUND | StatusCode::BAD_GATEWAY), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    assert!(body["errcode"].is_string(), "{body}");

    // Other servers must sign their requests.
    let unsigned = b.send_bytes(Method::GET, "/_matrix/federation/v1/media/download/abc", None, None).await;
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
}

both_backends!(
    upload_download_and_thumbnails,
    media_needs_authentication_and_legacy_downloads_are_refused,
    scriptable_media_is_never_inline,
    limits_and_bad_input_get_matrix_errors,
    create_then_upload,
    remote_media_is_fetched_over_federation_and_cached,
);
