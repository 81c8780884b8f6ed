//! A real Synapse (from the `matrix-synapse` virtualenv scripts/test installs) on
//! loopback: TLS federation listener, plain client listener, SQLite, and settings that
//! let it federate with servers named `127.0.0.1:port`. A watchdog stops it when the
//! test process exits.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct Synapse {
    pub server_name: String,
    pub client_base: String,
    pub federation_port: u16,
    pub dir: tempfile::TempDir,
    watchdog: Option<Child>,
    http: reqwest::Client,
}

const SECRET: &str = "synapse-test-secret";

impl Synapse {
    pub async fn start() -> Self {
        let python = super::synapse_venv().join("bin/python");
        super::require_file(&python, "install matrix-synapse into it (scripts/test does) or set KITH_SYNAPSE_VENV");
        let dir = tempfile::tempdir().expect("tempdir");
        let (federation_port, client_port) = (super::free_port(), super::free_port());
        let server_name = format!("127.0.0.1:{federation_port}");
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(path("tls.crt"), cert.cert.pem()).expect("cert");
        std::fs::write(path("tls.key"), cert.signing_key.serialize_pem()).expect("key");
        // Synapse blocks IP-literal server names in its blacklist even when whitelisted,
        // so loopback is left out of the blacklist here.
        let config = format!(
            "server_name: '{server_name}'\nreport_stats: false\n\
             listeners:\n  - {{port: {federation_port}, tls: true, type: http, bind_addresses: ['127.0.0.1'], resources: [{{names: [federation]}}]}}\n\
             \x20 - {{port: {client_port}, tls: false, type: http, bind_addresses: ['127.0.0.1'], resources: [{{names: [client]}}]}}\n\
             tls_certificate_path: {crt}\ntls_private_key_path: {key}\n\
             database: {{name: sqlite3, args: {{database: {db}}}}}\nmedia_store_path: {media}\nsigning_key_path: {signing}\n\
             registration_shared_secret: '{SECRET}'\nbcrypt_rounds: 4\nallow_public_rooms_over_federation: true\nroom_list_publication_rules: [{{action: allow}}]\ntrusted_key_servers: []\nsuppress_key_server_warning: true\n\
             federation_verify_certificates: false\nip_range_whitelist: ['127.0.0.1']\nip_range_blacklist: ['10.0.0.0/8']\n\
             rc_message: {{per_second: 1000, burst_count: 1000}}\nrc_joins: {{local: {{per_second: 1000, burst_count: 1000}}, remote: {{per_second: 1000, burst_count: 1000}}}}\n\
             rc_joins_per_room: {{per_second: 1000, burst_count: 1000}}\nrc_room_creation: {{per_second: 1000, burst_count: 1000}}\nrc_invites: {{per_room: {{per_second: 1000, burst_count: 1000}}, per_user: {{per_second: 1000, burst_count: 1000}}, per_issuer: {{per_second: 1000, burst_count: 1000}}}}\nrc_registration: {{per_second: 1000, burst_count: 1000}}\n\
             rc_login: {{address: {{per_second: 1000, burst_count: 1000}}, account: {{per_second: 1000, burst_count: 1000}}, failed_attempts: {{per_second: 1000, burst_count: 1000}}}}\n\
             rc_federation: {{window_size: 1000, sleep_limit: 100000, reject_limit: 100000, concurrent: 1000}}\n",
            crt = path("tls.crt"),
            key = path("tls.key"),
            db = path("homeserver.db"),
            media = path("media"),
            signing = path("signing.key"),
        );
        std::fs::write(path("homeserver.yaml"), config).expect("config");
        let status = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "-c", &path("homeserver.yaml"), "--generate-keys"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("synapse --generate-keys");
        assert!(status.success(), "synapse could not generate its keys");
        let mut synapse = Self {
            server_name,
            client_base: format!("http://127.0.0.1:{client_port}"),
            federation_port,
            dir,
            watchdog: None,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
        };
        synapse.spawn().await;
        synapse
    }

    /// Starts Synapse and waits until it answers.
    async fn spawn(&mut self) {
        let python = super::synapse_venv().join("bin/python");
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        // Ends Synapse when told to (SIGTERM) or when the test process is gone.
        let script = format!(
            "'{}' -m synapse.app.homeserver -c '{}' >>'{}' 2>&1 & pid=$!; \
             trap 'kill $pid 2>/dev/null; wait $pid; exit 0' TERM; \
             while [ -d /proc/{} ] && kill -0 $pid 2>/dev/null; do sleep 1 & wait $!; done; kill $pid 2>/dev/null",
            python.display(),
            path("homeserver.yaml"),
            path("synapse.log"),
            std::process::id()
        );
        let watchdog = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).spawn().expect("start synapse");
        self.watchdog = Some(watchdog);
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.http.get(format!("{}/health", self.client_base)).send().await.is_err() {
            assert!(Instant::now() < deadline, "synapse did not start:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops Synapse (SIGTERM) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = Command::new("kill").arg(watchdog.id().to_string()).status();
            let _ = watchdog.wait();
        }
    }

    /// Starts a stopped Synapse again with the same configuration and database.
    pub async fn start_again(&mut self) {
        assert!(self.watchdog.is_none(), "synapse is running");
        self.spawn().await;
    }

    /// The Synapse process's id, while it runs (a child of the watchdog shell).
    pub fn pid(&self) -> Option<u32> {
        let watchdog = self.watchdog.as_ref()?.id();
        let children = std::fs::read_to_string(format!("/proc/{watchdog}/task/{watchdog}/children")).ok()?;
        children.split_whitespace().filter_map(|pid| pid.parse().ok()).find(|pid: &u32| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("synapse.app.homeserver")
        })
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("synapse.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn version() -> String {
        let python = super::synapse_venv().join("bin/python");
        let output = Command::new(python).args(["-c", "import synapse; print(synapse.__version__)"]).output();
        output.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
    }

    /// Registers a user with Synapse's own tool; returns (user id, access token).
    pub async fn register(&self, username: &str, password: &str) -> (String, String) {
        let script: PathBuf = super::synapse_venv().join("bin/register_new_matrix_user");
        let output = Command::new(script)
            .args(["-u", username, "-p", password, "--no-admin", "-k", SECRET, &self.client_base])
            .output()
            .expect("register_new_matrix_user");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": username }, "password": password });
        let (_, body) = self.request(reqwest::Method::POST, "/_matrix/client/v3/login", None, Some(login)).await;
        (
            body["user_id"].as_str().expect("user_id").to_owned(),
            body["access_token"].as_str().expect("token").to_owned(),
        )
    }

    /// Registers a user through Synapse's shared-secret admin API over HTTP (faster than
    /// its command-line tool); returns (user id, access token).
    pub async fn register_fast(&self, username: &str) -> (String, String) {
        let (_, nonce) = self.request(reqwest::Method::GET, "/_synapse/admin/v1/register", None, None).await;
        let nonce = nonce["nonce"].as_str().expect("nonce").to_owned();
        let mac = super::shared_secret_mac(SECRET, &nonce, username, "pw", false);
        let body = json!({ "nonce": nonce, "username": username, "password": "pw", "admin": false, "mac": mac });
        let (status, body) = self.request(reqwest::Method::POST, "/_synapse/admin/v1/register", None, Some(body)).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        (
            body["user_id"].as_str().expect("user_id").to_owned(),
            body["access_token"].as_str().expect("token").to_owned(),
        )
    }

    /// A request whose answer the caller reads (headers, bytes).
    pub async fn send_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.client_base)).bearer_auth(token);
        if let Some((content_type, bytes)) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type).body(bytes);
        }
        request.send().await.expect("synapse request")
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.client_base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("synapse request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.stop();
    }
}
