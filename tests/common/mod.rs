//! Test harness: starts the real `kith` binary on an ephemeral loopback port against
//! SQLite or a throwaway PostgreSQL cluster, and drives it over HTTP.
#![allow(dead_code)]

pub mod fake_resident;
pub mod fake_server;
pub mod matrix;
pub mod postgres;
pub mod synapse;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha1::Sha1;

pub const SERVER_NAME: &str = "kith.test";
pub const SHARED_SECRET: &str = "test-shared-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs each scenario once per backend: `both_backends!(name, scenario_fn);`
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Db::Postgres).await;
                }
            )*
        }
    };
}

pub struct TestServer {
    child: Option<Child>,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub db: Db,
    pub database_yaml: String,
    client: reqwest::Client,
}

/// Rate limits generous enough not to trip during tests (each test sets its own when
/// it tests limiting).
const RELAXED_LIMITS: &str = "
rc_login:
  address: {per_second: 1000, burst_count: 1000}
  account: {per_second: 1000, burst_count: 1000}
  failed_attempts: {per_second: 1000, burst_count: 1000}
rc_registration: {per_second: 1000, burst_count: 1000}
rc_user_directory: {per_second: 1000, burst_count: 1000}
rc_message: {per_second: 1000, burst_count: 1000}
rc_joins:
  local: {per_second: 1000, burst_count: 1000}
  remote: {per_second: 1000, burst_count: 1000}
rc_joins_per_room: {per_second: 1000, burst_count: 1000}
rc_invites:
  per_room: {per_second: 1000, burst_count: 1000}
  per_user: {per_second: 1000, burst_count: 1000}
  per_issuer: {per_second: 1000, burst_count: 1000}
rc_room_creation: {per_second: 1000, burst_count: 1000}
rc_profile: {per_second: 1000, burst_count: 1000}
rc_reports: {per_second: 1000, burst_count: 1000}
rc_media_create: {per_second: 1000, burst_count: 1000}
rc_to_device: {per_second: 1000, burst_count: 1000}
rc_federation: {sleep_limit: 100000, reject_limit: 100000, concurrent: 1000}
";

impl TestServer {
    pub async fn start(db: Db) -> Self {
        Self::start_with(db, "").await
    }

    /// Starts a server whose config is the default test config plus `extra_yaml`
    /// (later keys win).
    pub async fn start_with(db: Db, extra_yaml: &str) -> Self {
        Self::start_configured(db, extra_yaml, false).await
    }

    /// Starts a server whose listener serves TLS with a fresh self-signed certificate.
    pub async fn start_tls(db: Db) -> Self {
        Self::start_configured(db, "", true).await
    }

    /// Starts a server named after its own address (`127.0.0.1:port`) with a TLS
    /// listener, trusting loopback and self-signed certificates: what two servers on one
    /// machine need to federate.
    pub async fn start_federating(db: Db) -> Self {
        Self::start_federating_with(db, "").await
    }

    async fn start_configured(db: Db, extra_yaml: &str, tls: bool) -> Self {
        Self::start_named(db, extra_yaml, tls, false).await
    }

    async fn start_named(db: Db, extra_yaml: &str, tls: bool, named_after_address: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls_yaml = if tls { write_self_signed_cert(dir.path()) } else { String::new() };
        let database_yaml = match db {
            Db::Sqlite => format!(
                "database:\n  name: sqlite3\n  args:\n    database: {}\n",
                dir.path().join("homeserver.db").display()
            ),
            Db::Postgres => postgres::fresh_database_yaml().await,
        };
        let port = free_port();
        let server_name = if named_after_address { format!("'127.0.0.1:{port}'") } else { SERVER_NAME.to_owned() };
        let config = format!(
            "server_name: {server_name}\n\
             listeners:\n  - port: {port}\n    tls: {tls}\n    bind_addresses: ['127.0.0.1']\n    resources:\n      - names: [client, federation]\n\
             {database_yaml}\
             registration_shared_secret: {SHARED_SECRET}\n\
             trusted_key_servers: []\n\
             {tls_yaml}{RELAXED_LIMITS}\n{extra_yaml}\n"
        );
        let config_path = dir.path().join("homeserver.yaml");
        std::fs::write(&config_path, dedupe_top_level_keys(&config)).expect("write config");
        let mut server = Self {
            child: None,
            base: format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
            dir,
            config_path,
            db,
            database_yaml,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .danger_accept_invalid_certs(tls)
                .build()
                .expect("client"),
        };
        server.spawn_and_wait().await;
        server
    }

    /// Starts kith on a config file written elsewhere (in `dir`, which the server
    /// keeps), whose plain HTTP listener is on `port`.
    pub async fn start_from_config_file(dir: tempfile::TempDir, config_path: PathBuf, port: u16) -> Self {
        let mut server = Self {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            config_path,
            db: Db::Sqlite,
            database_yaml: String::new(),
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
        };
        server.spawn_and_wait().await;
        server
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("kith.log")
    }

    async fn spawn_and_wait(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kith"))
            .arg("--config")
            .arg(&self.config_path)
            .arg("--generate-missing")
            // `KITH_TEST_LOG` (a `RUST_LOG` filter) widens the servers' logs when debugging a test.
            .env("RUST_LOG", std::env::var("KITH_TEST_LOG").unwrap_or_else(|_| "kith=debug,warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kith");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last_error;
        loop {
            match self.client.get(format!("{}/health", self.base)).send().await {
                Ok(response) if response.status() == StatusCode::OK => return,
                Ok(response) => last_error = format!("status {}", response.status()),
                Err(err) => last_error = format!("{err:?}"),
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("kith exited with {status} during start-up:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "kith did not start within 60 s ({last_error}):\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server process's resident memory in KiB, from `/proc`.
    pub fn resident_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The most resident memory the server process has had, in KiB (`VmHWM`).
    pub fn peak_resident_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("kith did not stop within 20 s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "server still running");
        self.spawn_and_wait().await;
    }

    pub async fn restart(&mut self) {
        self.terminate();
        self.spawn_and_wait().await;
    }

    /// Stops the server, adds `extra_yaml` to its config (later keys win), starts it again.
    pub async fn reconfigure(&mut self, extra_yaml: &str) {
        self.terminate();
        let config = std::fs::read_to_string(&self.config_path).expect("read config");
        std::fs::write(&self.config_path, dedupe_top_level_keys(&format!("{config}\n{extra_yaml}\n"))).expect("config");
        self.spawn_and_wait().await;
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        read_response(response).await
    }

    pub async fn raw(&self, method: Method, path: &str, token: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read_response(request.send().await.expect("request")).await
    }

    /// A request whose answer is read by the caller (headers, bytes).
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type).body(bytes);
        }
        request.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    /// Registers a user through shared-secret registration; returns (user id, token).
    pub async fn register(&self, username: &str, password: &str) -> (String, String) {
        self.register_as(username, password, false).await
    }

    pub async fn register_as(&self, username: &str, password: &str, admin: bool) -> (String, String) {
        let (status, body) = self.get("/_synapse/admin/v1/register", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let nonce = body["nonce"].as_str().expect("nonce").to_owned();
        let mac = shared_secret_mac(SHARED_SECRET, &nonce, username, password, admin);
        let (status, body) = self
            .post(
                "/_synapse/admin/v1/register",
                None,
                json!({ "nonce": nonce, "username": username, "password": password, "admin": admin, "mac": mac }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body["user_id"].as_str().unwrap().to_owned(), body["access_token"].as_str().unwrap().to_owned())
    }

    pub async fn login(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/_matrix/client/v3/login",
            None,
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": username }, "password": password }),
        )
        .await
    }

    /// Like [`Self::start_federating`], with `extra_yaml` added to the config (later
    /// keys win).
    pub async fn start_federating_with(db: Db, extra_yaml: &str) -> Self {
        let extra = format!(
            "federation_verify_certificates: false\nip_range_whitelist: ['127.0.0.1']\n\
             allow_public_rooms_over_federation: true\n{extra_yaml}"
        );
        Self::start_named(db, &extra, true, true).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn read_response(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub fn shared_secret_mac(secret: &str, nonce: &str, username: &str, password: &str, admin: bool) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("hmac key");
    let admin = if admin { "admin" } else { "notadmin" };
    mac.update(format!("{nonce}\0{username}\0{password}\0{admin}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Writes a self-signed certificate for 127.0.0.1 and returns the config keys naming it.
fn write_self_signed_cert(dir: &Path) -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("cert");
    let cert_path = dir.join("tls.crt");
    let key_path = dir.join("tls.key");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    format!("tls_certificate_path: {}\ntls_private_key_path: {}\n", cert_path.display(), key_path.display())
}

/// A loopback port nobody listens on, taken below the kernel's ephemeral range
/// (32768 and up on Linux): a port the kernel handed out for `bind(0)` may be given
/// again as the source port of an outgoing connection before the test binds it, or
/// while a server in a test is stopped for a restart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 15_000;
    const COUNT: u32 = 17_000;
    // Each test binary starts somewhere else, so binaries run one after another never
    // reuse a port their predecessor's children may still hold in TIME_WAIT.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, rand::random::<u32>() % COUNT, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {}", FIRST + COUNT)
}

/// Keeps the last occurrence of each top-level key, so tests can override defaults.
fn dedupe_top_level_keys(yaml: &str) -> String {
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in yaml.lines() {
        let top_level = !line.starts_with([' ', '-', '#']) && line.contains(':');
        if top_level {
            let key = line.split(':').next().unwrap_or_default().to_owned();
            blocks.retain(|(k, _)| *k != key);
            blocks.push((key, format!("{line}\n")));
        } else if let Some((_, block)) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    blocks.into_iter().map(|(_, block)| block).collect()
}

/// The directory holding a `matrix-synapse` virtualenv (installed by scripts/test).
pub fn synapse_venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("KITH_SYNAPSE_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/kith/synapse-venv")
}

/// The virtualenv holding matrix-nio (`KITH_NIO_VENV`, set by `scripts/test`).
pub fn nio_venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("KITH_NIO_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/kith/nio-venv")
}

/// The virtualenv holding mautrix-python (`KITH_MAUTRIX_VENV`, set by `scripts/test`).
pub fn mautrix_venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("KITH_MAUTRIX_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/kith/mautrix-venv")
}

/// The matrix-rust-sdk test program (`tests/element_x`, built by scripts/test into its
/// own target directory, `KITH_ELEMENT_X_BIN`).
pub fn element_x_program() -> PathBuf {
    if let Some(path) = std::env::var_os("KITH_ELEMENT_X_BIN") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/kith/element-x-target/debug/kith-element-x-test")
}

pub fn require_file(path: &Path, hint: &str) {
    assert!(path.exists(), "{} is missing: {hint}", path.display());
}
