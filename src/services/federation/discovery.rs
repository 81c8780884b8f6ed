//! Server discovery, as "Resolving server names" in the server-server API describes it:
//! an IP literal or an explicit port is used as given, then `/.well-known/matrix/server`
//! delegation, then SRV records (`_matrix-fed._tcp`, then the legacy `_matrix._tcp`),
//! then port 8448.
//!
//! Well-known answers are cached as their `Cache-Control` says, DNS answers for their TTL,
//! in bounded caches. Every address a connection goes to passes `ip_range_blacklist` /
//! `ip_range_whitelist` when the connection is made: the HTTP clients resolve host names
//! only through [`PinnedResolver`] (or [`FilteringResolver`] for well-known lookups),
//! which answer with checked addresses alone, so a DNS answer that changes between a
//! check and a connection (rebinding) cannot reach a blacklisted network.
//!
//! Request URLs carry the name certificates must be valid for (the server name or the
//! delegated name, never an SRV target): TLS sends it as SNI and verifies it, while the
//! resolver maps it to the SRV target's addresses ("pins").

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolverConfig;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use ipnet::IpNet;
use rand::Rng;
use ruma::ServerName;

/// Port used when neither the server name, its delegation nor SRV records give one.
pub const DEFAULT_PORT: u16 = 8448;
/// Entries each cache holds at most; the oldest go first.
const MAX_CACHE_ENTRIES: usize = 10_000;
/// Well-known: the whole request, and the body size accepted.
const WELL_KNOWN_TIMEOUT: Duration = Duration::from_secs(10);
const WELL_KNOWN_MAX_BYTES: usize = 50 * 1024;
/// Well-known caching: without `max-age`, at most, at least, and after a failure.
const WELL_KNOWN_DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
const WELL_KNOWN_MAX_TTL: Duration = Duration::from_secs(48 * 60 * 60);
const WELL_KNOWN_MIN_TTL: Duration = Duration::from_secs(5 * 60);
const WELL_KNOWN_FAILURE_TTL: Duration = Duration::from_secs(60 * 60);
/// DNS lookups give up after this long; their answers are kept within these bounds.
const DNS_TIMEOUT: Duration = Duration::from_secs(10);
const DNS_MIN_TTL: Duration = Duration::from_secs(30);
const DNS_MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long an SRV name without records is remembered when DNS gives no negative TTL.
const DNS_NEGATIVE_TTL: Duration = Duration::from_secs(5 * 60);

/// Where requests for a server go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The host of request URLs: what TLS certificates must be valid for (IPv6 literals
    /// in brackets).
    pub host: String,
    pub port: u16,
    /// The `Host` header requests carry.
    pub host_header: String,
}

impl Destination {
    /// `https://host:port`, to which a path is appended.
    pub fn base_url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base_url())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// Every address found is in a blacklisted network.
    #[error("{0} (blacklisted address)")]
    Blacklisted(String),
    #[error("{0}")]
    Lookup(LookupError),
}

/// Why a DNS lookup found no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("cannot resolve {0}: timed out")]
    Timeout(String),
    /// hickory's error, as its message (its error type is not `Clone`).
    #[error("cannot resolve {host}: {message}")]
    Resolve { host: String, message: String },
    #[error("SRV lookup of {0} timed out")]
    SrvTimeout(String),
    #[error("{0}")]
    Srv(String),
    #[error("no such host {0}")]
    NoSuchHost(String),
    #[error("{0} has no addresses")]
    NoAddresses(String),
    #[error("{0}: no SRV target")]
    NoSrvTarget(String),
}

/// Why `.well-known/matrix/server` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WellKnownError {
    #[error("{0}")]
    Request(#[from] reqwest::Error),
    #[error("{0}")]
    Body(CappedReadError),
}

impl From<DiscoveryError> for super::FederationError {
    fn from(err: DiscoveryError) -> Self {
        match err {
            DiscoveryError::Blacklisted(_) => Self::NotAllowed(err.to_string()),
            DiscoveryError::Lookup(lookup) => Self::Network(lookup.to_string()),
        }
    }
}

/// `ip_range_blacklist` and `ip_range_whitelist`: an address is refused when it is in a
/// blacklisted network and not in a whitelisted one, and the unspecified addresses
/// always. IPv4-mapped IPv6 addresses are
/// judged in both forms, so `::ffff:10.0.0.1` is no way around `10.0.0.0/8`.
#[derive(Debug, Clone, Default)]
pub struct IpFilter {
    blacklist: Vec<IpNet>,
    whitelist: Vec<IpNet>,
}

impl IpFilter {
    pub fn new(blacklist: Vec<IpNet>, whitelist: Vec<IpNet>) -> Self {
        Self { blacklist, whitelist }
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let forms = [
            ip,
            ip.to_canonical(),
            match ip {
                IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
                IpAddr::V6(_) => ip,
            },
        ];
        // `0.0.0.0` and `::` reach the host's own services, whatever the lists say (as
        // in Synapse, which always adds them to the blacklist).
        if forms.iter().any(IpAddr::is_unspecified) {
            return false;
        }
        let listed = |nets: &[IpNet]| forms.iter().any(|ip| nets.iter().any(|net| net.contains(ip)));
        listed(&self.whitelist) || !listed(&self.blacklist)
    }

    /// The allowed addresses of `host`, or an error if there are none.
    pub fn check(&self, host: &str, addresses: &[IpAddr]) -> Result<Vec<IpAddr>, DiscoveryError> {
        let allowed: Vec<IpAddr> = addresses.iter().copied().filter(|ip| self.allows(*ip)).collect();
        if allowed.is_empty() {
            return Err(if addresses.is_empty() {
                DiscoveryError::Lookup(LookupError::NoAddresses(host.to_owned()))
            } else {
                DiscoveryError::Blacklisted(host.to_owned())
            });
        }
        Ok(allowed)
    }
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Without the trailing dot.
    pub target: String,
}

/// A DNS answer and how long it may be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    pub value: T,
    pub ttl: Duration,
}

/// A `/.well-known/matrix/server` result: the delegated server name, if any, and how
/// long to keep the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WellKnown {
    pub server: Option<String>,
    pub ttl: Duration,
}

impl WellKnown {
    fn failed() -> Self {
        Self { server: None, ttl: WELL_KNOWN_FAILURE_TTL }
    }
}

/// The network lookups discovery needs; [`NetLookups`] does them for real.
pub trait Lookups: Send + Sync + 'static {
    /// A and AAAA records (or the hosts file).
    fn ips(&self, host: &str) -> impl Future<Output = Result<Answer<Vec<IpAddr>>, LookupError>> + Send;
    /// SRV records of a full name such as `_matrix-fed._tcp.example.org`; none is `Ok`
    /// with an empty list.
    fn srv(&self, name: &str) -> impl Future<Output = Result<Answer<Vec<SrvRecord>>, LookupError>> + Send;
    /// `GET https://host/.well-known/matrix/server`.
    fn well_known(&self, host: &str) -> impl Future<Output = WellKnown> + Send;
}

type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Server discovery with its caches.
pub struct Discovery<L> {
    lookups: L,
    filter: Arc<IpFilter>,
    clock: Clock,
    well_known: TtlCache<String, Option<String>>,
    srv: TtlCache<String, Vec<SrvRecord>>,
    addresses: TtlCache<String, Vec<IpAddr>>,
    /// URL host -> the DNS name whose addresses connections to it use (an SRV target).
    pins: TtlCache<String, String>,
}

/// What the first steps decide, before any address is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    Ip {
        ip: IpAddr,
        host: String,
        port: u16,
        host_header: String,
    },
    /// Connect to one of `candidates` (target host, port), in order, with URLs for
    /// `name`.
    Named {
        name: String,
        host_header: String,
        candidates: Vec<(String, u16)>,
        ttl: Duration,
    },
}

impl<L: Lookups> Discovery<L> {
    pub fn new(lookups: L, filter: Arc<IpFilter>) -> Self {
        Self::with_clock(lookups, filter, Arc::new(Instant::now))
    }

    fn with_clock(lookups: L, filter: Arc<IpFilter>, clock: Clock) -> Self {
        Self {
            lookups,
            filter,
            clock,
            well_known: TtlCache::new(MAX_CACHE_ENTRIES),
            srv: TtlCache::new(MAX_CACHE_ENTRIES),
            addresses: TtlCache::new(MAX_CACHE_ENTRIES),
            pins: TtlCache::new(MAX_CACHE_ENTRIES),
        }
    }

    pub fn filter(&self) -> &IpFilter {
        &self.filter
    }

    /// Where requests for `server` go. Fails if no address is allowed (or found).
    pub async fn resolve(&self, server: &ServerName) -> Result<Destination, DiscoveryError> {
        match self.plan(server).await {
            Plan::Ip { ip, host, port, host_header } => {
                self.filter.check(&host, &[ip])?;
                Ok(Destination { host, port, host_header })
            }
            Plan::Named { name, host_header, candidates, ttl } => {
                let mut last_error = DiscoveryError::Lookup(LookupError::NoSrvTarget(name.clone()));
                for (target, port) in candidates {
                    match self.checked_addresses(&target).await {
                        Ok(_) => {
                            self.pins.insert(name.clone(), target, (self.clock)() + ttl);
                            tracing::debug!(%server, host = %name, port, "resolved server name");
                            return Ok(Destination { host: name, port, host_header });
                        }
                        // A blacklisted answer is the more telling error.
                        Err(err) if !matches!(last_error, DiscoveryError::Blacklisted(_)) => last_error = err,
                        Err(_) => {}
                    }
                }
                Err(last_error)
            }
        }
    }

    /// The checked addresses a connection to URL host `host` may use: those of the
    /// target it was pinned to by [`Self::resolve`], or else its own.
    pub async fn connect_addresses(&self, host: &str) -> Result<Vec<IpAddr>, DiscoveryError> {
        if let Some(ip) = url_address(host) {
            return self.filter.check(host, &[ip]);
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let target = self.pins.get(&host.to_ascii_lowercase(), (self.clock)()).unwrap_or_else(|| host.to_owned());
        self.checked_addresses(&target).await
    }

    async fn plan(&self, server: &ServerName) -> Plan {
        let host = server.host();
        if let Some(plan) = literal_or_explicit_port(host, server.port(), server.as_str()) {
            return plan;
        }
        let host = host.to_ascii_lowercase();
        if let Some(delegated) = self.well_known_of(&host).await
            && let Ok(delegated) = <&ServerName>::try_from(delegated.as_str())
        {
            let delegated_host = delegated.host().to_ascii_lowercase();
            if let Some(plan) = literal_or_explicit_port(&delegated_host, delegated.port(), delegated.as_str()) {
                return plan;
            }
            return self.srv_or_default(&delegated_host).await;
        }
        self.srv_or_default(&host).await
    }

    /// SRV `_matrix-fed._tcp`, then `_matrix._tcp`, else `host:8448`; the `Host` header
    /// and certificates are for `host` in every case.
    async fn srv_or_default(&self, host: &str) -> Plan {
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let (records, ttl) = self.srv_of(&format!("{service}.{host}")).await;
            let candidates: Vec<(String, u16)> = order_srv(records, |total| rand::thread_rng().gen_range(0..=total))
                .into_iter()
                .map(|record| (record.target, record.port))
                .collect();
            if !candidates.is_empty() {
                return Plan::Named { name: host.to_owned(), host_header: host.to_owned(), candidates, ttl };
            }
        }
        Plan::Named {
            name: host.to_owned(),
            host_header: host.to_owned(),
            candidates: vec![(host.to_owned(), DEFAULT_PORT)],
            ttl: WELL_KNOWN_FAILURE_TTL,
        }
    }

    async fn well_known_of(&self, host: &str) -> Option<String> {
        let now = (self.clock)();
        if let Some(cached) = self.well_known.get(&host.to_owned(), now) {
            return cached;
        }
        let result = self.lookups.well_known(host).await;
        tracing::debug!(host, delegated = ?result.server, ttl = ?result.ttl, "well-known lookup");
        self.well_known.insert(host.to_owned(), result.server.clone(), now + result.ttl);
        result.server
    }

    /// SRV records of `name` (lookup failures count as none, and are not cached) and
    /// how long the answer stays valid.
    async fn srv_of(&self, name: &str) -> (Vec<SrvRecord>, Duration) {
        let now = (self.clock)();
        if let Some((records, expires)) = self.srv.get_with_expiry(&name.to_owned(), now) {
            return (records, expires.saturating_duration_since(now));
        }
        match self.lookups.srv(name).await {
            Ok(answer) => {
                let ttl = answer.ttl.clamp(DNS_MIN_TTL, DNS_MAX_TTL);
                let records: Vec<SrvRecord> = answer.value.into_iter().filter(|r| r.target != ".").collect();
                self.srv.insert(name.to_owned(), records.clone(), now + ttl);
                (records, ttl)
            }
            Err(err) => {
                tracing::debug!(name, %err, "SRV lookup failed");
                (Vec::new(), DNS_MIN_TTL)
            }
        }
    }

    /// A host's addresses (from the cache or DNS) that the blacklist allows.
    async fn checked_addresses(&self, host: &str) -> Result<Vec<IpAddr>, DiscoveryError> {
        let host = host.to_ascii_lowercase();
        if let Some(ip) = url_address(&host) {
            return self.filter.check(&host, &[ip]);
        }
        let now = (self.clock)();
        let addresses = match self.addresses.get(&host, now) {
            Some(addresses) => addresses,
            None => {
                let answer = self.lookups.ips(&host).await.map_err(DiscoveryError::Lookup)?;
                let ttl = answer.ttl.clamp(DNS_MIN_TTL, DNS_MAX_TTL);
                self.addresses.insert(host.clone(), answer.value.clone(), now + ttl);
                answer.value
            }
        };
        self.filter.check(&host, &addresses)
    }
}

/// Steps 1 and 2 (and 3.1, 3.2 for a delegated name): an IP literal, or a host name with
/// an explicit port, is used as it is, with `display` (the name as written) as `Host`.
fn literal_or_explicit_port(host: &str, port: Option<u16>, display: &str) -> Option<Plan> {
    if let Some(ip) = url_address(host) {
        let url_host = match ip {
            IpAddr::V4(_) => ip.to_string(),
            IpAddr::V6(_) => format!("[{ip}]"),
        };
        return Some(Plan::Ip {
            ip,
            host: url_host,
            port: port.unwrap_or(DEFAULT_PORT),
            host_header: display.to_owned(),
        });
    }
    let port = port?;
    let host = host.to_ascii_lowercase();
    Some(Plan::Named {
        name: host.clone(),
        host_header: display.to_ascii_lowercase(),
        candidates: vec![(host, port)],
        ttl: WELL_KNOWN_FAILURE_TTL,
    })
}

/// The address a URL with this host names, as the HTTP client's URL parser reads it:
/// an IP literal, or one of the other ways it writes IPv4 (`2130706433`, `0x7f.1`,
/// `127.1`), which are valid server names too. The client connects to such an address
/// without asking a resolver, so it must be checked as an address, never looked up.
fn url_address(host: &str) -> Option<IpAddr> {
    let url = reqwest::Url::parse(&format!("https://{host}/")).ok()?;
    url.host_str()?.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// SRV records in the order to try them (RFC 2782): lowest priority first; within a
/// priority, picked at random in proportion to weight. `pick(total)` returns a number
/// in `0..=total`.
pub fn order_srv(mut records: Vec<SrvRecord>, mut pick: impl FnMut(u32) -> u32) -> Vec<SrvRecord> {
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records.iter().position(|r| r.priority != priority).unwrap_or(records.len());
        let mut group: Vec<SrvRecord> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let chosen = pick(total).min(total);
            let mut running = 0;
            let index = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= chosen
                })
                .unwrap_or(0);
            ordered.push(group.remove(index));
        }
    }
    ordered
}

/// How long to keep a well-known answer, from its `Cache-Control` header: `max-age`, or
/// a day without one; never more than two days nor less than five minutes.
pub fn well_known_ttl(cache_control: Option<&str>) -> Duration {
    let mut ttl = WELL_KNOWN_DEFAULT_TTL;
    for directive in cache_control.unwrap_or_default().split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-store" || directive == "no-cache" {
            ttl = Duration::ZERO;
            break;
        }
        if let Some(seconds) = directive.strip_prefix("max-age=").and_then(|s| s.trim_matches('"').parse::<u64>().ok())
        {
            ttl = Duration::from_secs(seconds);
        }
    }
    ttl.clamp(WELL_KNOWN_MIN_TTL, WELL_KNOWN_MAX_TTL)
}

/// Reads a well-known response: a 200 with a JSON object whose `m.server` is a valid
/// server name delegates; anything else is a failure.
pub fn parse_well_known(status: u16, cache_control: Option<&str>, body: &[u8]) -> WellKnown {
    if status != 200 {
        return WellKnown::failed();
    }
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return WellKnown::failed();
    };
    match object.get("m.server").and_then(|v| v.as_str()) {
        Some(server) if <&ServerName>::try_from(server).is_ok() => {
            WellKnown { server: Some(server.to_owned()), ttl: well_known_ttl(cache_control) }
        }
        _ => WellKnown::failed(),
    }
}

/// Lookups over the network: DNS through hickory, well-known over HTTPS.
pub struct NetLookups {
    dns: TokioResolver,
    http: reqwest::Client,
    /// Only tests serve well-known elsewhere than on 443.
    well_known_port: Option<u16>,
}

impl NetLookups {
    pub fn new(filter: Arc<IpFilter>, verify_certificates: bool) -> anyhow::Result<Self> {
        let dns = system_resolver()?;
        let http = reqwest::Client::builder()
            .timeout(WELL_KNOWN_TIMEOUT)
            .connect_timeout(WELL_KNOWN_TIMEOUT)
            .danger_accept_invalid_certs(!verify_certificates)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(FilteringResolver { dns: dns.clone(), filter }))
            .build()?;
        Ok(Self { dns, http, well_known_port: None })
    }

    async fn fetch_well_known(&self, host: &str) -> Result<WellKnown, WellKnownError> {
        let authority = match self.well_known_port {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let mut response = self.http.get(format!("https://{authority}/.well-known/matrix/server")).send().await?;
        let status = response.status().as_u16();
        let cache_control =
            response.headers().get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = read_capped(&mut response, WELL_KNOWN_MAX_BYTES).await.map_err(WellKnownError::Body)?;
        Ok(parse_well_known(status, cache_control.as_deref(), &body))
    }
}

/// hickory with the system's configuration (`/etc/resolv.conf`, hosts file); without
/// one, only the hosts file and `localhost` resolve.
fn system_resolver() -> anyhow::Result<TokioResolver> {
    let builder = TokioResolver::builder_tokio().unwrap_or_else(|err| {
        tracing::warn!(%err, "no usable system DNS configuration; only the hosts file resolves");
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(Vec::new()),
            TokioRuntimeProvider::default(),
        )
    });
    Ok(builder.build()?)
}

fn remaining(valid_until: Instant) -> Duration {
    valid_until.saturating_duration_since(Instant::now())
}

impl Lookups for NetLookups {
    async fn ips(&self, host: &str) -> Result<Answer<Vec<IpAddr>>, LookupError> {
        let lookup = tokio::time::timeout(DNS_TIMEOUT, self.dns.lookup_ip(host))
            .await
            .map_err(|_| LookupError::Timeout(host.to_owned()))?
            .map_err(|e| LookupError::Resolve { host: host.to_owned(), message: e.to_string() })?;
        Ok(Answer { value: lookup.iter().collect(), ttl: remaining(lookup.valid_until()) })
    }

    async fn srv(&self, name: &str) -> Result<Answer<Vec<SrvRecord>>, LookupError> {
        let fqdn = format!("{name}.");
        let lookup = match tokio::time::timeout(DNS_TIMEOUT, self.dns.srv_lookup(fqdn.as_str())).await {
            Err(_) => return Err(LookupError::SrvTimeout(name.to_owned())),
            Ok(Err(err)) if err.is_no_records_found() => {
                let ttl = match &err {
                    hickory_resolver::net::NetError::Dns(hickory_resolver::net::DnsError::NoRecordsFound(none)) => {
                        none.negative_ttl.map(|s| Duration::from_secs(s.into()))
                    }
                    _ => None,
                };
                return Ok(Answer { value: Vec::new(), ttl: ttl.unwrap_or(DNS_NEGATIVE_TTL) });
            }
            Ok(Err(err)) => return Err(LookupError::Srv(err.to_string())),
            Ok(Ok(lookup)) => lookup,
        };
        let records = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(SrvRecord {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: match srv.target.to_ascii().trim_end_matches('.') {
                        "" => ".".to_owned(),
                        target => target.to_owned(),
                    },
                }),
                _ => None,
            })
            .collect();
        Ok(Answer { value: records, ttl: remaining(lookup.valid_until()) })
    }

    async fn well_known(&self, host: &str) -> WellKnown {
        self.fetch_well_known(host).await.unwrap_or_else(|err| {
            tracing::debug!(host, %err, "no well-known delegation");
            WellKnown::failed()
        })
    }
}

fn to_addrs(ips: Vec<IpAddr>) -> reqwest::dns::Addrs {
    Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)))
}

/// The federation client's resolver: pinned SRV targets, checked addresses only.
pub struct PinnedResolver<L>(pub Arc<Discovery<L>>);

impl<L: Lookups> reqwest::dns::Resolve for PinnedResolver<L> {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let discovery = self.0.clone();
        Box::pin(async move {
            let ips = discovery.connect_addresses(name.as_str()).await?;
            Ok(to_addrs(ips))
        })
    }
}

/// An HTTP client for addresses users give (push gateways): host names resolve through
/// DNS and then `ip_range_blacklist` / `ip_range_whitelist`, no redirect is followed, and
/// every request ends within `timeout`. A URL naming an IP address directly does not
/// resolve: check it with [`IpFilter::allows`] before sending.
pub fn filtered_http_client(filter: Arc<IpFilter>, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(FilteringResolver { dns: system_resolver()?, filter }))
        .build()?)
}

/// Why a capped read stopped.
#[derive(Debug, thiserror::Error)]
pub enum CappedReadError {
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Network(String),
}

/// Reads a response's body, giving up as soon as it passes `max_bytes` whatever
/// `Content-Length` says (or does not say), so the other end cannot make us buffer
/// without end.
pub async fn read_capped(response: &mut reqwest::Response, max_bytes: usize) -> Result<Vec<u8>, CappedReadError> {
    if response.content_length().is_some_and(|len| len > max_bytes as u64) {
        return Err(CappedReadError::TooLarge(max_bytes));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| CappedReadError::Network(e.to_string()))? {
        if body.len() + chunk.len() > max_bytes {
            return Err(CappedReadError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The well-known client's resolver: DNS, then the blacklist.
struct FilteringResolver {
    dns: TokioResolver,
    filter: Arc<IpFilter>,
}

impl reqwest::dns::Resolve for FilteringResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.dns.clone();
        let filter = self.filter.clone();
        Box::pin(async move {
            let host = name.as_str();
            let lookup = tokio::time::timeout(DNS_TIMEOUT, dns.lookup_ip(host))
                .await
                .map_err(|_| DiscoveryError::Lookup(LookupError::Timeout(host.to_owned())))?
                .map_err(|e| {
                    DiscoveryError::Lookup(LookupError::Resolve { host: host.to_owned(), message: e.to_string() })
                })?;
            let ips = filter.check(host, &lookup.iter().collect::<Vec<_>>())?;
            Ok(to_addrs(ips))
        })
    }
}

/// A map whose entries expire, holding at most `capacity` of them (the oldest inserted
/// go first).
struct TtlCache<K, V> {
    capacity: usize,
    inner: Mutex<CacheInner<K, V>>,
}

struct CacheInner<K, V> {
    entries: HashMap<K, (V, Instant, u64)>,
    order: BTreeMap<u64, K>,
    next: u64,
}

impl<K: Clone + Eq + Hash, V: Clone> TtlCache<K, V> {
    fn new(capacity: usize) -> Self {
        Self { capacity, inner: Mutex::new(CacheInner { entries: HashMap::new(), order: BTreeMap::new(), next: 0 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner<K, V>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, key: &K, now: Instant) -> Option<V> {
        self.get_with_expiry(key, now).map(|(value, _)| value)
    }

    fn get_with_expiry(&self, key: &K, now: Instant) -> Option<(V, Instant)> {
        let inner = self.lock();
        inner
            .entries
            .get(key)
            .filter(|(_, expires, _)| *expires > now)
            .map(|(value, expires, _)| (value.clone(), *expires))
    }

    fn insert(&self, key: K, value: V, expires: Instant) {
        let mut inner = self.lock();
        let seq = inner.next;
        inner.next += 1;
        if let Some((_, _, old_seq)) = inner.entries.remove(&key) {
            inner.order.remove(&old_seq);
        }
        while inner.entries.len() >= self.capacity {
            let Some((_, oldest)) = inner.order.pop_first() else { break };
            inner.entries.remove(&oldest);
        }
        inner.order.insert(seq, key.clone());
        inner.entries.insert(key, (value, expires, seq));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Canned lookups that count their calls.
    #[derive(Default)]
    struct Fake {
        ips: Mutex<HashMap<String, Vec<IpAddr>>>,
        srv: HashMap<String, Vec<SrvRecord>>,
        well_known: HashMap<String, WellKnown>,
        calls: Mutex<Vec<String>>,
    }

    impl Fake {
        fn ip(mut self, host: &str, ips: &[&str]) -> Self {
            self.ips.get_mut().unwrap().insert(host.into(), ips.iter().map(|ip| ip.parse().unwrap()).collect());
            self
        }
        fn srv(mut self, name: &str, records: &[(u16, u16, u16, &str)]) -> Self {
            let records = records
                .iter()
                .map(|&(priority, weight, port, target)| SrvRecord { priority, weight, port, target: target.into() })
                .collect();
            self.srv.insert(name.into(), records);
            self
        }
        fn delegate(mut self, host: &str, server: &str, ttl_secs: u64) -> Self {
            let ttl = Duration::from_secs(ttl_secs);
            self.well_known.insert(host.into(), WellKnown { server: Some(server.into()), ttl });
            self
        }
        fn calls(&self, prefix: &str) -> usize {
            self.calls.lock().unwrap().iter().filter(|c| c.starts_with(prefix)).count()
        }
    }

    impl Lookups for Arc<Fake> {
        async fn ips(&self, host: &str) -> Result<Answer<Vec<IpAddr>>, LookupError> {
            self.calls.lock().unwrap().push(format!("ips {host}"));
            let ips =
                self.ips.lock().unwrap().get(host).cloned().ok_or_else(|| LookupError::NoSuchHost(host.to_owned()))?;
            Ok(Answer { value: ips, ttl: Duration::from_secs(60) })
        }
        async fn srv(&self, name: &str) -> Result<Answer<Vec<SrvRecord>>, LookupError> {
            self.calls.lock().unwrap().push(format!("srv {name}"));
            Ok(Answer { value: self.srv.get(name).cloned().unwrap_or_default(), ttl: Duration::from_secs(120) })
        }
        async fn well_known(&self, host: &str) -> WellKnown {
            self.calls.lock().unwrap().push(format!("well-known {host}"));
            self.well_known.get(host).cloned().unwrap_or_else(WellKnown::failed)
        }
    }

    struct Setup {
        fake: Arc<Fake>,
        discovery: Discovery<Arc<Fake>>,
        now: Arc<Mutex<Instant>>,
    }

    impl Setup {
        fn advance(&self, secs: u64) {
            *self.now.lock().unwrap() += Duration::from_secs(secs);
        }
        async fn resolve(&self, server: &str) -> Result<Destination, DiscoveryError> {
            self.discovery.resolve(<&ServerName>::try_from(server).unwrap()).await
        }
    }

    fn default_filter() -> Arc<IpFilter> {
        Arc::new(IpFilter::new(crate::config::default_ip_range_blacklist(), Vec::new()))
    }

    fn setup(fake: Fake) -> Setup {
        setup_with(fake, default_filter())
    }

    fn setup_with(fake: Fake, filter: Arc<IpFilter>) -> Setup {
        let fake = Arc::new(fake);
        let now = Arc::new(Mutex::new(Instant::now()));
        let clock_now = now.clone();
        let clock: Clock = Arc::new(move || *clock_now.lock().unwrap());
        Setup { discovery: Discovery::with_clock(fake.clone(), filter, clock), fake, now }
    }

    fn dest(host: &str, port: u16, host_header: &str) -> Destination {
        Destination { host: host.into(), port, host_header: host_header.into() }
    }

    #[tokio::test]
    async fn ip_literals_are_used_as_given() {
        let s = setup(Fake::default());
        assert_eq!(s.resolve("1.2.3.4").await.unwrap(), dest("1.2.3.4", 8448, "1.2.3.4"));
        assert_eq!(s.resolve("1.2.3.4:99").await.unwrap(), dest("1.2.3.4", 99, "1.2.3.4:99"));
        assert_eq!(s.resolve("[2a01:4f8::1]").await.unwrap(), dest("[2a01:4f8::1]", 8448, "[2a01:4f8::1]"));
        assert_eq!(
            s.resolve("[2a01:4f8::1]:8000").await.unwrap().base_url(),
            "https://[2a01:4f8::1]:8000",
            "IPv6 literals keep their brackets in URLs"
        );
        assert!(s.fake.calls.lock().unwrap().is_empty(), "no lookups for IP literals");
        assert_eq!(s.resolve("127.0.0.2:8448").await, Err(DiscoveryError::Blacklisted("127.0.0.2".into())));
        assert!(matches!(s.resolve("[::1]:8448").await, Err(DiscoveryError::Blacklisted(_))));
    }

    #[tokio::test]
    async fn names_a_url_reads_as_ipv4_addresses_are_judged_as_those_addresses() {
        let s = setup(Fake::default().ip("2130706433", &["93.184.216.34"]).ip("0x7f.1", &["93.184.216.34"]));
        // Fetching `https://2130706433/.well-known/…` would connect to 127.0.0.1.
        assert_eq!(s.resolve("2130706433").await, Err(DiscoveryError::Blacklisted("127.0.0.1".into())));
        assert_eq!(s.resolve("0x7f.1:8448").await, Err(DiscoveryError::Blacklisted("127.0.0.1".into())));
        assert!(s.discovery.connect_addresses("0x7f.1").await.is_err());
        assert!(s.fake.calls.lock().unwrap().is_empty(), "no lookups for addresses");
        assert_eq!(s.resolve("1249763106:99").await.unwrap(), dest("74.125.223.34", 99, "1249763106:99"));
    }

    #[tokio::test]
    async fn an_explicit_port_skips_well_known_and_srv() {
        let s = setup(
            Fake::default()
                .ip("example.org", &["93.184.216.34"])
                .delegate("example.org", "elsewhere.org", 3600)
                .srv("_matrix-fed._tcp.example.org", &[(0, 0, 443, "srv.example.org")]),
        );
        assert_eq!(s.resolve("Example.org:8449").await.unwrap(), dest("example.org", 8449, "example.org:8449"));
        assert_eq!(s.fake.calls("well-known") + s.fake.calls("srv"), 0);
        assert_eq!(
            s.discovery.connect_addresses("example.org").await.unwrap(),
            ["93.184.216.34".parse::<IpAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn well_known_delegation_variants() {
        let s = setup(
            Fake::default()
                .delegate("ip.org", "5.6.7.8", 3600)
                .delegate("ipport.org", "5.6.7.8:1234", 3600)
                .delegate("port.org", "m.port.org:443", 3600)
                .ip("m.port.org", &["5.6.7.9"])
                .delegate("srv.org", "m.srv.org", 3600)
                .srv("_matrix-fed._tcp.m.srv.org", &[(10, 0, 8000, "target.srv.org")])
                .srv("_matrix-fed._tcp.srv.org", &[(10, 0, 9999, "wrong.srv.org")])
                .ip("target.srv.org", &["5.6.7.10"])
                .delegate("legacy.org", "m.legacy.org", 3600)
                .srv("_matrix._tcp.m.legacy.org", &[(10, 0, 8001, "target.legacy.org")])
                .ip("target.legacy.org", &["5.6.7.11"])
                .delegate("plain.org", "m.plain.org", 3600)
                .ip("m.plain.org", &["5.6.7.12"]),
        );
        assert_eq!(s.resolve("ip.org").await.unwrap(), dest("5.6.7.8", 8448, "5.6.7.8"));
        assert_eq!(s.resolve("ipport.org").await.unwrap(), dest("5.6.7.8", 1234, "5.6.7.8:1234"));
        assert_eq!(s.resolve("port.org").await.unwrap(), dest("m.port.org", 443, "m.port.org:443"));
        // SRV of the delegated name: URL and Host for the delegated name, connections to
        // the target.
        assert_eq!(s.resolve("srv.org").await.unwrap(), dest("m.srv.org", 8000, "m.srv.org"));
        assert_eq!(s.discovery.connect_addresses("m.srv.org").await.unwrap(), ["5.6.7.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.resolve("legacy.org").await.unwrap(), dest("m.legacy.org", 8001, "m.legacy.org"));
        assert_eq!(
            s.discovery.connect_addresses("m.legacy.org").await.unwrap(),
            ["5.6.7.11".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(s.resolve("plain.org").await.unwrap(), dest("m.plain.org", 8448, "m.plain.org"));
        assert_eq!(s.fake.calls("srv _matrix-fed._tcp.srv.org"), 0, "the delegating name's SRV is not used");
    }

    #[tokio::test]
    async fn without_well_known_srv_then_legacy_then_8448() {
        let s = setup(
            Fake::default()
                .srv("_matrix-fed._tcp.fed.org", &[(0, 0, 8443, "matrix.fed.org")])
                .srv("_matrix._tcp.fed.org", &[(0, 0, 1, "legacy.fed.org")])
                .ip("matrix.fed.org", &["5.6.7.8"])
                .srv("_matrix._tcp.old.org", &[(0, 0, 8444, "matrix.old.org")])
                .ip("matrix.old.org", &["5.6.7.9"])
                .ip("bare.org", &["5.6.7.10"]),
        );
        assert_eq!(s.resolve("fed.org").await.unwrap(), dest("fed.org", 8443, "fed.org"));
        assert_eq!(s.discovery.connect_addresses("fed.org").await.unwrap(), ["5.6.7.8".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.fake.calls("srv _matrix._tcp.fed.org"), 0);
        assert_eq!(s.resolve("old.org").await.unwrap(), dest("old.org", 8444, "old.org"));
        assert_eq!(s.discovery.connect_addresses("old.org").await.unwrap(), ["5.6.7.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.resolve("bare.org").await.unwrap(), dest("bare.org", 8448, "bare.org"));
        assert!(matches!(s.resolve("nowhere.org").await, Err(DiscoveryError::Lookup(_))));
    }

    #[test]
    fn srv_records_are_ordered_by_priority_then_weight() {
        let record = |priority, weight, target: &str| SrvRecord { priority, weight, port: 1, target: target.into() };
        let records = vec![record(20, 0, "c"), record(10, 1, "b1"), record(10, 99, "b99"), record(5, 0, "a")];
        let targets = |picks: &[u32]| {
            let mut picks = picks.iter().copied();
            order_srv(records.clone(), |_| picks.next().unwrap()).into_iter().map(|r| r.target).collect::<Vec<_>>()
        };
        // Priority 5 first, 20 last; within 10, the pick (running sums 1, 100) decides.
        assert_eq!(targets(&[0, 50, 0, 0]), ["a", "b99", "b1", "c"]);
        assert_eq!(targets(&[0, 1, 0, 0]), ["a", "b1", "b99", "c"]);
        // Weight 0 comes first in its group and is picked only for a pick of 0.
        let zero = vec![record(1, 5, "heavy"), record(1, 0, "zero")];
        assert_eq!(order_srv(zero.clone(), |_| 0)[0].target, "zero");
        assert_eq!(order_srv(zero, |total| total)[0].target, "heavy");
    }

    #[tokio::test]
    async fn blacklisted_srv_targets_are_skipped() {
        let s = setup(
            Fake::default()
                .srv("_matrix-fed._tcp.a.org", &[(0, 0, 1, "inside.a.org"), (5, 0, 2, "outside.a.org")])
                .ip("inside.a.org", &["10.1.2.3"])
                .ip("outside.a.org", &["5.6.7.8"])
                .srv("_matrix-fed._tcp.b.org", &[(0, 0, 1, "inside.b.org")])
                .ip("inside.b.org", &["192.168.1.1", "::ffff:10.0.0.1"]),
        );
        assert_eq!(s.resolve("a.org").await.unwrap(), dest("a.org", 2, "a.org"));
        assert_eq!(s.resolve("b.org").await, Err(DiscoveryError::Blacklisted("inside.b.org".into())));
    }

    #[tokio::test]
    async fn well_known_results_are_cached_for_their_ttl_and_failures_for_an_hour() {
        let s = setup(Fake::default().delegate("a.org", "1.2.3.4", 600).ip("b.org", &["5.6.7.8"]));
        for _ in 0..3 {
            s.resolve("a.org").await.unwrap();
            s.resolve("b.org").await.unwrap();
        }
        assert_eq!((s.fake.calls("well-known a.org"), s.fake.calls("well-known b.org")), (1, 1));
        s.advance(601);
        s.resolve("a.org").await.unwrap();
        s.resolve("b.org").await.unwrap();
        assert_eq!((s.fake.calls("well-known a.org"), s.fake.calls("well-known b.org")), (2, 1));
        s.advance(3000);
        s.resolve("b.org").await.unwrap();
        assert_eq!(s.fake.calls("well-known b.org"), 2, "a failure is retried after an hour");
    }

    #[tokio::test]
    async fn dns_answers_are_cached_for_their_ttl() {
        let s =
            setup(Fake::default().srv("_matrix-fed._tcp.a.org", &[(0, 0, 1, "t.a.org")]).ip("t.a.org", &["5.6.7.8"]));
        s.resolve("a.org").await.unwrap();
        s.resolve("a.org").await.unwrap();
        s.discovery.connect_addresses("a.org").await.unwrap();
        assert_eq!((s.fake.calls("srv _matrix-fed"), s.fake.calls("ips t.a.org")), (1, 1));
        s.advance(61); // past the A record TTL, not the SRV TTL
        s.resolve("a.org").await.unwrap();
        assert_eq!((s.fake.calls("srv _matrix-fed"), s.fake.calls("ips t.a.org")), (1, 2));
        s.advance(60); // past the SRV TTL
        s.resolve("a.org").await.unwrap();
        assert_eq!(s.fake.calls("srv _matrix-fed"), 2);
    }

    #[tokio::test]
    async fn rebinding_to_a_blacklisted_address_is_refused_when_connecting() {
        let s = setup(Fake::default().ip("a.org", &["5.6.7.8"]));
        assert_eq!(s.resolve("a.org").await.unwrap(), dest("a.org", 8448, "a.org"));
        s.fake.ips.lock().unwrap().insert("a.org".into(), vec!["127.0.0.1".parse().unwrap()]);
        s.advance(61);
        assert_eq!(s.discovery.connect_addresses("a.org").await, Err(DiscoveryError::Blacklisted("a.org".into())));
        // Mixed answers keep only the allowed addresses.
        s.fake
            .ips
            .lock()
            .unwrap()
            .insert("a.org".into(), vec!["127.0.0.1".parse().unwrap(), "5.6.7.8".parse().unwrap()]);
        s.advance(61);
        assert_eq!(s.discovery.connect_addresses("a.org").await.unwrap(), ["5.6.7.8".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn the_filter_blocks_blacklisted_networks_in_every_form_unless_whitelisted() {
        let filter = IpFilter::new(crate::config::default_ip_range_blacklist(), Vec::new());
        for ip in
            ["127.0.0.1", "10.1.2.3", "192.168.0.1", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"]
        {
            assert!(!filter.allows(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "2a01:4f8::1", "::ffff:1.1.1.1"] {
            assert!(filter.allows(ip.parse().unwrap()), "{ip}");
        }
        let filter = IpFilter::new(
            crate::config::default_ip_range_blacklist(),
            vec!["127.0.0.1/32".parse().unwrap(), "fd00::/8".parse().unwrap()],
        );
        assert!(filter.allows("127.0.0.1".parse().unwrap()), "the whitelist wins");
        assert!(filter.allows("::ffff:127.0.0.1".parse().unwrap()), "in its mapped form too");
        assert!(filter.allows("fd12::1".parse().unwrap()));
        assert!(!filter.allows("127.0.0.2".parse().unwrap()));
        assert!(!filter.allows("fc00::1".parse().unwrap()));
        // A v6 blacklist entry for mapped addresses covers plain IPv4 too.
        let filter = IpFilter::new(vec!["::ffff:0:0/96".parse().unwrap()], Vec::new());
        assert!(!filter.allows("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn unspecified_addresses_are_refused_whatever_the_lists_say() {
        let everything: Vec<IpNet> = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
        for filter in [IpFilter::new(Vec::new(), Vec::new()), IpFilter::new(Vec::new(), everything)] {
            for ip in ["0.0.0.0", "::", "::ffff:0.0.0.0"] {
                assert!(!filter.allows(ip.parse().unwrap()), "{ip}");
            }
            assert!(filter.allows("1.1.1.1".parse().unwrap()));
        }
    }

    #[test]
    fn well_known_ttl_follows_cache_control_within_bounds() {
        let hours = |h: u64| Duration::from_secs(h * 3600);
        assert_eq!(well_known_ttl(None), hours(24));
        assert_eq!(well_known_ttl(Some("public, max-age=7200")), hours(2));
        assert_eq!(well_known_ttl(Some("max-age=999999999")), hours(48));
        assert_eq!(well_known_ttl(Some("max-age=10")), Duration::from_secs(300));
        assert_eq!(well_known_ttl(Some("no-store")), Duration::from_secs(300));
        assert_eq!(well_known_ttl(Some("max-age=nonsense")), hours(24));
    }

    #[test]
    fn well_known_bodies_are_validated() {
        let ok = parse_well_known(200, Some("max-age=3600"), br#"{"m.server": "matrix.example.org:443"}"#);
        assert_eq!(ok, WellKnown { server: Some("matrix.example.org:443".into()), ttl: Duration::from_secs(3600) });
        for (status, body) in [
            (404, &br#"{"m.server": "a.org"}"#[..]),
            (301, br#"{"m.server": "a.org"}"#),
            (200, b"not json"),
            (200, br#"["a.org"]"#),
            (200, br#"{"server": "a.org"}"#),
            (200, br#"{"m.server": 5}"#),
            (200, br#"{"m.server": "https://a.org/"}"#),
            (200, br#"{"m.server": "a.org:99999"}"#),
        ] {
            assert_eq!(parse_well_known(status, None, body), WellKnown::failed(), "{status} {body:?}");
        }
    }

    #[test]
    fn caches_are_bounded_and_evict_the_oldest() {
        let cache = TtlCache::new(3);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        for key in 0..5 {
            cache.insert(key, key * 10, later);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!((cache.get(&0, now), cache.get(&1, now), cache.get(&4, now)), (None, None, Some(40)));
        cache.insert(2, 21, later); // refreshed: now the newest
        cache.insert(5, 50, later);
        assert_eq!((cache.get(&2, now), cache.get(&3, now)), (Some(21), None));
        assert_eq!(cache.get(&5, later), None, "expired");
    }

    /// A loopback HTTPS server answering `/.well-known/matrix/server` with `body`.
    async fn serve_well_known(body: &'static str, cache_control: &'static str) -> u16 {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert.cert.pem().into_bytes(),
            cert.signing_key.serialize_pem().into_bytes(),
        )
        .await
        .unwrap();
        let app = axum::Router::new().route(
            "/.well-known/matrix/server",
            axum::routing::get(move || async move { ([("cache-control", cache_control)], body) }),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = axum_server::from_tcp_rustls(listener, tls).unwrap();
        tokio::spawn(async move { server.serve(app.into_make_service()).await });
        port
    }

    fn net_lookups(filter: &Arc<IpFilter>, port: u16) -> NetLookups {
        let mut lookups = NetLookups::new(filter.clone(), false).unwrap();
        lookups.well_known_port = Some(port);
        lookups
    }

    #[tokio::test]
    async fn well_known_over_loopback_https() {
        let port = serve_well_known(r#"{"m.server": "127.0.0.1:4567"}"#, "max-age=3600").await;
        let loopback =
            Arc::new(IpFilter::new(crate::config::default_ip_range_blacklist(), vec!["127.0.0.1/32".parse().unwrap()]));
        let result = net_lookups(&loopback, port).well_known("localhost").await;
        assert_eq!(result, WellKnown { server: Some("127.0.0.1:4567".into()), ttl: Duration::from_secs(3600) });

        // The whole discovery: delegated to an IP literal with a port.
        let discovery = Discovery::new(net_lookups(&loopback, port), loopback.clone());
        let destination = discovery.resolve("localhost".try_into().unwrap()).await.unwrap();
        assert_eq!(destination, dest("127.0.0.1", 4567, "127.0.0.1:4567"));

        // Without the whitelist, loopback is not even asked.
        let result = net_lookups(&default_filter(), port).well_known("localhost").await;
        assert_eq!(result, WellKnown::failed());

        // Oversized bodies are refused.
        let huge: &'static str =
            Box::leak(format!(r#"{{"m.server": "a.org", "pad": "{}"}}"#, "x".repeat(60_000)).into());
        let port = serve_well_known(huge, "max-age=3600").await;
        assert_eq!(net_lookups(&loopback, port).well_known("localhost").await, WellKnown::failed());
    }

    #[tokio::test]
    async fn the_pinned_resolver_only_connects_to_checked_addresses() {
        use reqwest::dns::Resolve;
        let port = serve_well_known(r#"{"m.server": "x.org"}"#, "max-age=3600").await;
        let fake = || {
            Fake::default().srv("_matrix-fed._tcp.a.org", &[(0, 0, port, "localhost")]).ip("localhost", &["127.0.0.1"])
        };
        let loopback = Arc::new(IpFilter::new(Vec::new(), Vec::new()));
        let s = setup_with(fake(), loopback);
        let destination = s.resolve("a.org").await.unwrap();
        assert_eq!(destination, dest("a.org", port, "a.org"));
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .dns_resolver(Arc::new(PinnedResolver(Arc::new(s.discovery))))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let response =
            client.get(format!("{destination}/.well-known/matrix/server")).send().await.expect("pinned to localhost");
        assert_eq!(response.text().await.unwrap(), r#"{"m.server": "x.org"}"#);

        // The same pin with loopback blacklisted: the resolver refuses.
        let s = setup(fake());
        s.discovery.pins.insert("a.org".into(), "localhost".into(), Instant::now() + Duration::from_secs(3600));
        let resolver = PinnedResolver(Arc::new(s.discovery));
        let err = resolver.resolve("a.org".parse().unwrap()).await.err().expect("refused");
        assert!(err.to_string().contains("blacklisted"), "{err}");
    }
}
