//! `homeserver.yaml`: a subset of Synapse's configuration, same key names and meanings,
//! so an admin can reuse a Synapse config. Unknown keys are warned about and ignored;
//! invalid values stop start-up with a message naming the key.

mod rate_limits;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use ruma::OwnedServerName;
use serde::Deserialize;

pub use rate_limits::{FederationRateLimit, InviteRateLimits, JoinRateLimits, LoginRateLimits, RateLimit};

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub server_name: OwnedServerName,
    #[serde(default)]
    pub public_baseurl: Option<String>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub tls_certificate_path: Option<PathBuf>,
    #[serde(default)]
    pub tls_private_key_path: Option<PathBuf>,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub signing_key_path: Option<PathBuf>,
    #[serde(default)]
    pub registration_shared_secret: Option<String>,
    #[serde(default)]
    pub enable_registration: bool,
    #[serde(default)]
    pub enable_registration_without_verification: bool,
    /// Open registration asks for a registration token (`m.login.registration_token`).
    #[serde(default)]
    pub registration_requires_token: bool,
    #[serde(default)]
    pub user_directory: UserDirectoryConfig,
    #[serde(default = "default_true")]
    pub federation_verify_certificates: bool,
    #[serde(default, deserialize_with = "ip_ranges")]
    pub ip_range_whitelist: Vec<IpNet>,
    #[serde(default = "default_ip_range_blacklist", deserialize_with = "ip_ranges")]
    pub ip_range_blacklist: Vec<IpNet>,
    #[serde(default)]
    pub federation_domain_whitelist: Option<Vec<OwnedServerName>>,
    #[serde(default)]
    pub federation: FederationConfig,
    /// Not a Synapse key: how other servers' users' public profiles are fetched and kept.
    #[serde(default)]
    pub remote_profiles: RemoteProfilesConfig,
    /// Not a Synapse key: trusted peers whose user directories kith pulls and serves.
    /// Read it through [`Config::federated_user_directory`], which also maps BWI's keys.
    #[serde(default, rename = "federated_user_directory")]
    pub federated_user_directory_section: Option<FederatedUserDirectoryConfig>,
    /// Synapse's experimental features kith understands (others are ignored).
    #[serde(default)]
    pub experimental_features: ExperimentalFeatures,
    /// Whether other servers may read the public room list (Synapse's default: no).
    #[serde(default)]
    pub allow_public_rooms_over_federation: bool,
    /// Whether a user must be in a room to give it an alias (Synapse's default: yes).
    #[serde(default = "default_true")]
    pub require_membership_for_aliases: bool,
    #[serde(default = "default_trusted_key_servers")]
    pub trusted_key_servers: Vec<TrustedKeyServer>,
    #[serde(default = "default_room_version")]
    pub default_room_version: String,
    /// Synapse's switch for the `metrics` listener type (Prometheus at `/_synapse/metrics`).
    #[serde(default)]
    pub enable_metrics: bool,
    #[serde(default = "rate_limits::message", deserialize_with = "rate_limits::parse::message")]
    pub rc_message: RateLimit,
    #[serde(default = "rate_limits::registration", deserialize_with = "rate_limits::parse::registration")]
    pub rc_registration: RateLimit,
    #[serde(default)]
    pub rc_login: LoginRateLimits,
    #[serde(default = "rate_limits::user_directory", deserialize_with = "rate_limits::parse::user_directory")]
    pub rc_user_directory: RateLimit,
    #[serde(default)]
    pub rc_joins: JoinRateLimits,
    #[serde(default = "rate_limits::joins_per_room", deserialize_with = "rate_limits::parse::joins_per_room")]
    pub rc_joins_per_room: RateLimit,
    #[serde(default)]
    pub rc_invites: InviteRateLimits,
    #[serde(default = "rate_limits::room_creation", deserialize_with = "rate_limits::parse::room_creation")]
    pub rc_room_creation: RateLimit,
    #[serde(default = "rate_limits::profile", deserialize_with = "rate_limits::parse::profile")]
    pub rc_profile: RateLimit,
    #[serde(default = "rate_limits::reports", deserialize_with = "rate_limits::parse::reports")]
    pub rc_reports: RateLimit,
    #[serde(default = "rate_limits::media_create", deserialize_with = "rate_limits::parse::media_create")]
    pub rc_media_create: RateLimit,
    /// Not a Synapse key: `PUT /sendToDevice` requests, per user.
    #[serde(default = "rate_limits::to_device", deserialize_with = "rate_limits::parse::to_device")]
    pub rc_to_device: RateLimit,
    /// Checks of a registration token's validity, per client address.
    #[serde(
        default = "rate_limits::registration_token_validity",
        deserialize_with = "rate_limits::parse::registration_token_validity"
    )]
    pub rc_registration_token_validity: RateLimit,
    /// Inbound federation requests, per origin server.
    #[serde(default)]
    pub rc_federation: FederationRateLimit,
    /// Not a Synapse key (Synapse points `log_config` at a Python logging file): the
    /// default level for kith's own logs, overridden by `RUST_LOG`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Accepted so a Synapse config starts; kith logs to stderr.
    #[serde(default)]
    pub log_config: Option<PathBuf>,
    #[serde(default)]
    pub report_stats: Option<bool>,
    /// Where uploads and cached remote media live; by default `media_store` next to
    /// the config file.
    #[serde(default)]
    pub media_store_path: Option<PathBuf>,
    #[serde(default = "default_max_upload_size", deserialize_with = "size")]
    pub max_upload_size: u64,
    /// Images with more pixels than this are stored but not thumbnailed.
    #[serde(default = "default_max_image_pixels", deserialize_with = "size")]
    pub max_image_pixels: u64,
    #[serde(default = "default_thumbnail_sizes")]
    pub thumbnail_sizes: Vec<ThumbnailSize>,
    #[serde(default)]
    pub url_preview_enabled: bool,
    /// As in Synapse: media is served only to authenticated requests
    /// (`/_matrix/client/v1/media`); the legacy `/_matrix/media/v3` downloads answer 404.
    #[serde(default = "default_true")]
    pub enable_authenticated_media: bool,
    /// Also serve `/.well-known/matrix/server` (pointing at port 443 of the server name).
    #[serde(default)]
    pub serve_server_wellknown: bool,
    #[serde(default)]
    pub presence: PresenceConfig,
    #[serde(default)]
    pub turn_uris: Vec<String>,
    #[serde(default)]
    pub turn_shared_secret: Option<String>,
    #[serde(default)]
    pub turn_username: Option<String>,
    #[serde(default)]
    pub turn_password: Option<String>,
    #[serde(default = "default_turn_user_lifetime", deserialize_with = "duration")]
    pub turn_user_lifetime: Duration,
    #[serde(default = "default_true")]
    pub turn_allow_guests: bool,
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// Registration files of application services (bridges, bots), in Synapse's format;
    /// read and checked at start-up.
    #[serde(default)]
    pub app_service_config_files: Vec<PathBuf>,
}

/// One of the sizes thumbnails are made in (Synapse's `thumbnail_sizes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ThumbnailSize {
    pub width: u32,
    pub height: u32,
    #[serde(default = "ThumbnailMethod::scale")]
    pub method: ThumbnailMethod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThumbnailMethod {
    Crop,
    Scale,
}

impl ThumbnailMethod {
    fn scale() -> Self {
        Self::Scale
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PresenceConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn default_max_upload_size() -> u64 {
    50 * 1024 * 1024
}

fn default_max_image_pixels() -> u64 {
    32 * 1024 * 1024
}

fn default_turn_user_lifetime() -> Duration {
    Duration::from_secs(3600)
}

fn default_thumbnail_sizes() -> Vec<ThumbnailSize> {
    let size = |width, height, method| ThumbnailSize { width, height, method };
    vec![
        size(32, 32, ThumbnailMethod::Crop),
        size(96, 96, ThumbnailMethod::Crop),
        size(320, 240, ThumbnailMethod::Scale),
        size(640, 480, ThumbnailMethod::Scale),
        size(800, 600, ThumbnailMethod::Scale),
    ]
}

/// A size as Synapse writes them: a number of bytes, or a number with `K`, `M` or `G`.
fn size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Bytes(u64),
        Text(String),
    }
    match Text::deserialize(deserializer)? {
        Text::Bytes(bytes) => Ok(bytes),
        Text::Text(text) => parse_size(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a size (use e.g. 512K, 50M, 1G)"))),
    }
}

pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit: u64 = match unit {
        "" => 1,
        "K" | "k" => 1024,
        "M" | "m" => 1024 * 1024,
        "G" | "g" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(unit)
}

#[derive(Debug, Clone, Deserialize)]
pub struct Listener {
    pub port: u16,
    #[serde(default = "default_bind_addresses")]
    pub bind_addresses: Vec<std::net::IpAddr>,
    #[serde(rename = "type", default = "default_listener_type")]
    pub kind: String,
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub x_forwarded: bool,
    #[serde(default)]
    pub resources: Vec<ListenerResource>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ListenerResource {
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub compress: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseConfig {
    #[serde(default = "default_database_name")]
    pub name: String,
    #[serde(default)]
    pub args: DatabaseArgs,
    #[serde(default)]
    pub allow_unsafe_locale: bool,
    #[serde(default)]
    pub txn_limit: Option<u64>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            name: default_database_name(),
            args: DatabaseArgs::default(),
            allow_unsafe_locale: false,
            txn_limit: None,
        }
    }
}

/// Synapse passes `args` to the database driver; kith understands the connection keys and
/// the pool size, and ignores the psycopg2 tuning keys.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DatabaseArgs {
    pub database: Option<String>,
    pub dbname: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub cp_min: Option<u32>,
    pub cp_max: Option<u32>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserDirectoryConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub search_all_users: bool,
    #[serde(default)]
    pub prefer_local_users: bool,
    #[serde(default)]
    pub exclude_remote_users: bool,
    #[serde(default)]
    pub show_locked_users: bool,
    /// Users in application services' exclusive namespaces (and their bots) are left
    /// out, as in Synapse; `true` lists them (bridged colleagues found by name).
    #[serde(default)]
    pub include_appservice_users: bool,
}

impl Default for UserDirectoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            search_all_users: false,
            prefer_local_users: false,
            exclude_remote_users: false,
            show_locked_users: false,
            include_appservice_users: false,
        }
    }
}

/// Synapse's `federation` section: how the sender backs off from failing destinations.
#[derive(Debug, Clone, Deserialize)]
pub struct FederationConfig {
    #[serde(default = "FederationConfig::min_retry", deserialize_with = "duration")]
    pub destination_min_retry_interval: Duration,
    #[serde(default = "FederationConfig::multiplier")]
    pub destination_retry_multiplier: f64,
    #[serde(default = "FederationConfig::max_retry", deserialize_with = "duration")]
    pub destination_max_retry_interval: Duration,
}

impl FederationConfig {
    // Synapse's defaults.
    fn min_retry() -> Duration {
        Duration::from_secs(10 * 60)
    }
    fn multiplier() -> f64 {
        2.0
    }
    fn max_retry() -> Duration {
        Duration::from_secs(7 * 24 * 60 * 60)
    }
}

/// The federated user directory.
#[derive(Debug, Clone, Deserialize)]
pub struct FederatedUserDirectoryConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Trusted servers: kith pulls their directories and lets them pull its own.
    #[serde(default)]
    pub peers: Vec<OwnedServerName>,
    #[serde(default = "FederatedUserDirectoryConfig::interval", deserialize_with = "duration")]
    pub sync_interval: Duration,
    /// Also ask the peers at query time (MSC4258).
    #[serde(default = "default_true")]
    pub live_search: bool,
    #[serde(default = "FederatedUserDirectoryConfig::timeout", deserialize_with = "duration")]
    pub live_search_timeout: Duration,
}

impl FederatedUserDirectoryConfig {
    fn interval() -> Duration {
        Duration::from_secs(5 * 60)
    }
    fn timeout() -> Duration {
        Duration::from_secs(2)
    }
}

impl Default for FederatedUserDirectoryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            peers: Vec::new(),
            sync_interval: Self::interval(),
            live_search: true,
            live_search_timeout: Self::timeout(),
        }
    }
}

/// Synapse's `experimental_features` that kith maps onto its own settings.
#[derive(Debug, Clone, Deserialize)]
pub struct ExperimentalFeatures {
    /// Join rooms on other servers with a partial state (MSC3706/MSC3902), as Synapse
    /// does by default; false asks for the whole state.
    #[serde(default = "default_true")]
    pub faster_joins: bool,
    /// Synapse+BWI's federated user directory.
    #[serde(default)]
    pub bwi_federated_user_dir_enabled: bool,
    #[serde(default, deserialize_with = "optional_duration")]
    pub bwi_federated_user_dir_sync_interval: Option<Duration>,
    /// Milliseconds.
    #[serde(default)]
    pub bwi_federated_user_dir_federation_search_timeout: Option<u64>,
    /// To-device messages for their users pushed to application services that receive
    /// ephemeral data (MSC2409), as Synapse does with this flag.
    #[serde(default)]
    pub msc2409_to_device_messages_enabled: bool,
}

impl Default for ExperimentalFeatures {
    fn default() -> Self {
        Self {
            faster_joins: true,
            bwi_federated_user_dir_enabled: false,
            bwi_federated_user_dir_sync_interval: None,
            bwi_federated_user_dir_federation_search_timeout: None,
            msc2409_to_device_messages_enabled: false,
        }
    }
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// The remote-profile fetch queue's limits.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteProfilesConfig {
    /// Profile requests in flight at once, overall and to one server.
    #[serde(default = "RemoteProfilesConfig::concurrency")]
    pub fetch_concurrency: usize,
    #[serde(default = "RemoteProfilesConfig::per_destination")]
    pub fetch_concurrency_per_destination: usize,
    /// How long a hint waits before its fetch, so a burst of hints (a rename in many
    /// rooms) and a profile EDU that may follow it cost one request or none.
    #[serde(default = "RemoteProfilesConfig::hint_delay", deserialize_with = "duration")]
    pub hint_delay: Duration,
    /// The first retry after a failed fetch; each next one waits five times longer.
    #[serde(default = "RemoteProfilesConfig::retry", deserialize_with = "duration")]
    pub retry_interval: Duration,
    /// Failed fetches of one user before giving up until the next hint.
    #[serde(default = "RemoteProfilesConfig::attempts")]
    pub max_attempts: u32,
    /// Changes of a local user's profile within this window go out as one profile EDU.
    #[serde(default = "RemoteProfilesConfig::coalesce", deserialize_with = "duration")]
    pub edu_coalesce_window: Duration,
}

impl RemoteProfilesConfig {
    fn concurrency() -> usize {
        10
    }
    fn per_destination() -> usize {
        2
    }
    fn hint_delay() -> Duration {
        Duration::from_secs(2)
    }
    fn retry() -> Duration {
        Duration::from_secs(60)
    }
    fn attempts() -> u32 {
        8
    }
    fn coalesce() -> Duration {
        Duration::from_millis(500)
    }
}

impl Default for RemoteProfilesConfig {
    fn default() -> Self {
        Self {
            fetch_concurrency: Self::concurrency(),
            fetch_concurrency_per_destination: Self::per_destination(),
            hint_delay: Self::hint_delay(),
            retry_interval: Self::retry(),
            max_attempts: Self::attempts(),
            edu_coalesce_window: Self::coalesce(),
        }
    }
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            destination_min_retry_interval: Self::min_retry(),
            destination_retry_multiplier: Self::multiplier(),
            destination_max_retry_interval: Self::max_retry(),
        }
    }
}

/// A duration as Synapse writes them: a number of milliseconds, or a number with a unit
/// (`500ms`, `30s`, `10m`, `2h`, `1d`, `1w`, `1y`).
fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Millis(u64),
        Text(String),
    }
    match Text::deserialize(deserializer)? {
        Text::Millis(ms) => Ok(Duration::from_millis(ms)),
        Text::Text(text) => parse_duration(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not a duration (use e.g. 500ms, 30s, 10m, 2h, 1d, 1w)"))
        }),
    }
}

pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit_ms: u64 = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        "y" => 365 * 86_400_000,
        _ => return None,
    };
    number.checked_mul(unit_ms).map(Duration::from_millis)
}

#[derive(Debug, Clone, Deserialize)]
pub struct TrustedKeyServer {
    pub server_name: OwnedServerName,
    #[serde(default)]
    pub verify_keys: BTreeMap<String, String>,
    #[serde(default)]
    pub accept_keys_insecurely: bool,
}

/// A network (`10.0.0.0/8`) or a single address (`127.0.0.1`), as Synapse accepts.
fn ip_ranges<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| serde::de::Error::custom(format!("`{text}` is not an IP address or network")))
        })
        .collect()
}

fn default_true() -> bool {
    true
}
fn default_database_name() -> String {
    "sqlite3".into()
}
fn default_listener_type() -> String {
    "http".into()
}
fn default_bind_addresses() -> Vec<std::net::IpAddr> {
    vec!["::".parse().expect("literal"), "0.0.0.0".parse().expect("literal")]
}
fn default_room_version() -> String {
    "10".into()
}
fn default_log_level() -> String {
    "info".into()
}
fn default_trusted_key_servers() -> Vec<TrustedKeyServer> {
    vec![TrustedKeyServer {
        server_name: "matrix.org".try_into().expect("literal"),
        verify_keys: BTreeMap::new(),
        accept_keys_insecurely: false,
    }]
}

/// Synapse's default outbound blacklist: private, loopback, link-local and reserved ranges.
pub fn default_ip_range_blacklist() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "169.254.0.0/16",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
        "2001:db8::/32",
        "ff00::/8",
        "fec0::/10",
    ]
    .iter()
    .map(|net| net.parse().expect("literal network"))
    .collect()
}

/// Room versions kith can create and join.
pub const SUPPORTED_ROOM_VERSIONS: &[&str] = &["10", "11"];
/// Room versions kith can join on other servers (and serve once joined); creating a
/// version 12 room (whose id is its create event's hash) is not supported yet.
pub const JOINABLE_ROOM_VERSIONS: &[&str] = &["10", "11", "12"];

/// How the database is reached, resolved from `database`.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseTarget {
    Sqlite { path: String },
    Postgres { url: String, max_connections: u32 },
}

impl Config {
    /// The federated user directory as configured: `federated_user_directory`, or else
    /// Synapse+BWI's `experimental_features` (its peers are then
    /// `federation_domain_whitelist`: BWI asks every server it knows, kith only trusted
    /// ones; its interval defaults to BWI's 4 h).
    pub fn federated_user_directory(&self) -> FederatedUserDirectoryConfig {
        if let Some(section) = &self.federated_user_directory_section {
            return section.clone();
        }
        let bwi = &self.experimental_features;
        if !bwi.bwi_federated_user_dir_enabled {
            return FederatedUserDirectoryConfig::default();
        }
        FederatedUserDirectoryConfig {
            enabled: true,
            peers: self.federation_domain_whitelist.clone().unwrap_or_default(),
            sync_interval: bwi.bwi_federated_user_dir_sync_interval.unwrap_or(Duration::from_secs(4 * 60 * 60)),
            live_search: true,
            live_search_timeout: bwi
                .bwi_federated_user_dir_federation_search_timeout
                .map_or(FederatedUserDirectoryConfig::timeout(), Duration::from_millis),
        }
    }

    /// Reads and validates a config file, warning about keys kith does not know.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let config = Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(config)
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let mut warn_unknown = |path: serde_ignored::Path<'_>| {
            tracing::warn!(key = %path, "ignoring unknown config key");
        };
        let deserializer = serde_ignored::Deserializer::new(deserializer, &mut warn_unknown);
        let config: Config = serde_path_to_error::deserialize(deserializer)
            .map_err(|err| anyhow::anyhow!("{}: {}", err.path(), err.inner()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        for (i, listener) in self.listeners.iter().enumerate() {
            if listener.kind != "http" && listener.kind != "metrics" {
                bail!(
                    "listeners[{i}].type: only `http` and `metrics` listeners are supported, got `{}`",
                    listener.kind
                );
            }
            if listener.kind == "metrics" && !self.enable_metrics {
                tracing::warn!("listeners[{i}]: a metrics listener without `enable_metrics: true` is not started");
            }
            for resource in &listener.resources {
                for name in &resource.names {
                    if !KNOWN_RESOURCES.contains(&name.as_str()) {
                        tracing::warn!(key = %format!("listeners[{i}].resources.names"), %name, "ignoring unknown listener resource");
                    }
                }
            }
            if listener.tls && (self.tls_certificate_path.is_none() || self.tls_private_key_path.is_none()) {
                bail!(
                    "listeners[{i}].tls: tls_certificate_path and tls_private_key_path must be set for a TLS listener"
                );
            }
        }
        if !SUPPORTED_ROOM_VERSIONS.contains(&self.default_room_version.as_str()) {
            bail!(
                "default_room_version: `{}` is not supported (supported: {})",
                self.default_room_version,
                SUPPORTED_ROOM_VERSIONS.join(", ")
            );
        }
        // A registration token counts as verification, as in Synapse.
        if self.enable_registration
            && !self.enable_registration_without_verification
            && !self.registration_requires_token
        {
            bail!(
                "enable_registration: open registration needs a verification method: set \
                 registration_requires_token: true, or enable_registration_without_verification: true \
                 (as Synapse requires)"
            );
        }
        let federation = &self.federation;
        if !(federation.destination_retry_multiplier >= 1.0 && federation.destination_retry_multiplier <= 100.0) {
            bail!("federation.destination_retry_multiplier: must be between 1 and 100");
        }
        if federation.destination_min_retry_interval.is_zero()
            || federation.destination_max_retry_interval < federation.destination_min_retry_interval
        {
            bail!(
                "federation.destination_max_retry_interval: must be at least destination_min_retry_interval, which must not be 0"
            );
        }
        if self.rc_federation.concurrent == 0 {
            bail!("rc_federation.concurrent: must be at least 1, or no federation request is ever handled");
        }
        for (key, limit) in self.rate_limits() {
            if !(limit.per_second >= 0.0 && limit.burst_count >= 0.0) {
                bail!("{key}: per_second and burst_count must be non-negative numbers");
            }
        }
        self.database_target()?;
        Ok(())
    }

    fn rate_limits(&self) -> [(&'static str, RateLimit); 18] {
        [
            ("rc_message", self.rc_message),
            ("rc_registration", self.rc_registration),
            ("rc_login.address", self.rc_login.address),
            ("rc_login.account", self.rc_login.account),
            ("rc_login.failed_attempts", self.rc_login.failed_attempts),
            ("rc_user_directory", self.rc_user_directory),
            ("rc_joins.local", self.rc_joins.local),
            ("rc_joins.remote", self.rc_joins.remote),
            ("rc_joins_per_room", self.rc_joins_per_room),
            ("rc_invites.per_room", self.rc_invites.per_room),
            ("rc_invites.per_user", self.rc_invites.per_user),
            ("rc_invites.per_issuer", self.rc_invites.per_issuer),
            ("rc_room_creation", self.rc_room_creation),
            ("rc_profile", self.rc_profile),
            ("rc_reports", self.rc_reports),
            ("rc_media_create", self.rc_media_create),
            ("rc_to_device", self.rc_to_device),
            ("rc_registration_token_validity", self.rc_registration_token_validity),
        ]
    }

    pub fn database_target(&self) -> anyhow::Result<DatabaseTarget> {
        let args = &self.database.args;
        match self.database.name.as_str() {
            "sqlite3" | "sqlite" => {
                let path = args.database.clone().unwrap_or_else(|| "homeserver.db".into());
                Ok(DatabaseTarget::Sqlite { path })
            }
            "psycopg2" | "postgres" | "postgresql" => {
                let dbname = args.dbname.clone().or_else(|| args.database.clone());
                let Some(dbname) = dbname else {
                    bail!("database.args.dbname: the PostgreSQL database name is required");
                };
                let mut url = String::from("postgres://");
                if let Some(user) = &args.user {
                    url.push_str(&percent_encode(user));
                    if let Some(password) = &args.password {
                        url.push(':');
                        url.push_str(&percent_encode(password));
                    }
                    url.push('@');
                }
                let host = args.host.clone().unwrap_or_else(|| "localhost".into());
                // A host starting with `/` is a Unix socket directory, as with libpq; the URL
                // still needs a host name, and the `host` parameter points at the socket.
                if host.starts_with('/') {
                    url.push_str(&format!("localhost/{}?host={}", percent_encode(&dbname), percent_encode(&host)));
                    if let Some(port) = args.port {
                        url.push_str(&format!("&port={port}"));
                    }
                } else {
                    url.push_str(&host);
                    url.push_str(&format!(":{}/{}", args.port.unwrap_or(5432), percent_encode(&dbname)));
                }
                let max_connections = args.cp_max.unwrap_or(10).max(1);
                Ok(DatabaseTarget::Postgres { url, max_connections })
            }
            other => {
                bail!("database.name: unsupported database `{other}` (use sqlite3 or psycopg2)")
            }
        }
    }

    pub fn media_store_path(&self, config_dir: &Path) -> PathBuf {
        match &self.media_store_path {
            Some(path) if path.is_absolute() => path.clone(),
            Some(path) => config_dir.join(path),
            None => config_dir.join("media_store"),
        }
    }

    pub fn signing_key_path(&self, config_dir: &Path) -> PathBuf {
        match &self.signing_key_path {
            Some(path) => path.clone(),
            None => config_dir.join(format!("{}.signing.key", self.server_name)),
        }
    }
}

const KNOWN_RESOURCES: &[&str] =
    &["client", "federation", "keys", "health", "metrics", "media", "openid", "static", "replication"];

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_synapse_defaults() {
        let config = Config::parse("server_name: example.org\n").unwrap();
        assert_eq!(config.server_name.as_str(), "example.org");
        assert!(config.user_directory.enabled);
        assert_eq!(config.rc_user_directory, RateLimit { per_second: 0.016, burst_count: 200.0 });
        assert_eq!(config.database_target().unwrap(), DatabaseTarget::Sqlite { path: "homeserver.db".into() });
        assert!(config.federation_verify_certificates);
    }

    #[test]
    fn bwi_keys_map_onto_the_federated_directory() {
        let kith = "server_name: a.example\nfederated_user_directory:\n  enabled: true\n  peers: [b.example]\n  sync_interval: 10s\n";
        let config = Config::parse(kith).unwrap().federated_user_directory();
        assert!(config.enabled && config.live_search);
        assert_eq!((config.peers.len(), config.sync_interval), (1, Duration::from_secs(10)));
        let bwi = "server_name: a.example\nfederation_domain_whitelist: [b.example, c.example]\nexperimental_features:\n  \
                   bwi_federated_user_dir_enabled: true\n  bwi_federated_user_dir_sync_interval: 1h\n  \
                   bwi_federated_user_dir_federation_search_timeout: 1500\n";
        let config = Config::parse(bwi).unwrap().federated_user_directory();
        assert!(config.enabled);
        assert_eq!(config.peers.len(), 2);
        assert_eq!(
            (config.sync_interval, config.live_search_timeout),
            (Duration::from_secs(3600), Duration::from_millis(1500))
        );
        assert!(!Config::parse("server_name: a.example\n").unwrap().federated_user_directory().enabled);
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let config =
            Config::parse("server_name: example.org\nmax_upload_size: 50M\nexperimental_features: {a: 1}\n").unwrap();
        assert_eq!(config.server_name.as_str(), "example.org");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = Config::parse("server_name: example.org\nlisteners:\n  - port: notaport\n").unwrap_err();
        assert!(format!("{err:#}").contains("port"), "{err:#}");
        let err = Config::parse("server_name: example.org\ndefault_room_version: '99'\n").unwrap_err();
        assert!(format!("{err:#}").contains("default_room_version"), "{err:#}");
        let err = Config::parse("server_name: 'bad server name!'\n").unwrap_err();
        assert!(format!("{err:#}").contains("server_name"), "{err:#}");
        let err = Config::parse("server_name: example.org\nip_range_blacklist: ['not-a-net']\n").unwrap_err();
        assert!(format!("{err:#}").contains("ip_range_blacklist"), "{err:#}");
        let err = Config::parse("server_name: example.org\ndatabase: {name: mysql}\n").unwrap_err();
        assert!(format!("{err:#}").contains("database.name"), "{err:#}");
    }

    #[test]
    fn postgres_args_become_a_url() {
        let config = Config::parse(
            "server_name: example.org\ndatabase:\n  name: psycopg2\n  args: {user: kith, password: 'p@ss', host: /tmp/pg, port: 5433, dbname: kith, cp_max: 5, keepalives_idle: 10}\n",
        )
        .unwrap();
        assert_eq!(
            config.database_target().unwrap(),
            DatabaseTarget::Postgres {
                url: "postgres://kith:p%40ss@localhost/kith?host=%2Ftmp%2Fpg&port=5433".into(),
                max_connections: 5
            }
        );
    }

    #[test]
    fn federation_backoff_durations_parse_like_synapse() {
        let config = Config::parse(
            "server_name: example.org\nfederation: {destination_min_retry_interval: 30s, destination_max_retry_interval: 2h, destination_retry_multiplier: 3}\n",
        )
        .unwrap();
        assert_eq!(config.federation.destination_min_retry_interval, Duration::from_secs(30));
        assert_eq!(config.federation.destination_max_retry_interval, Duration::from_secs(7200));
        assert_eq!(
            Config::parse("server_name: a.b\n").unwrap().federation.destination_min_retry_interval.as_secs(),
            600
        );
        assert_eq!(parse_duration("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1w"), Some(Duration::from_secs(604_800)));
        for bad in ["", "m", "10x", "-1s", "99999999999999999999y"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        let err = Config::parse("server_name: a.b\nfederation: {destination_min_retry_interval: soon}\n").unwrap_err();
        assert!(format!("{err:#}").contains("federation.destination_min_retry_interval"), "{err:#}");
    }

    #[test]
    fn open_registration_needs_the_no_verification_flag() {
        let err = Config::parse("server_name: example.org\nenable_registration: true\n").unwrap_err();
        assert!(format!("{err:#}").contains("enable_registration"));
        let config =
            Config::parse("server_name: example.org\nenable_registration: true\nregistration_requires_token: true\n")
                .expect("a registration token is a verification method");
        assert!(config.registration_requires_token);
    }
}
