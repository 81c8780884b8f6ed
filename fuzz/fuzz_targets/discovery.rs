//! Server discovery from what other servers and DNS say: a server name (from a PDU, a
//! user id, a request), its `/.well-known/matrix/server` answer (`Cache-Control` and
//! body) and the SRV and address records DNS gives, resolved as for a real request.
//! Whatever they say, no connection may go to an address in the default
//! `ip_range_blacklist`: neither one a URL names directly (which the HTTP client
//! connects to without asking any resolver), nor one the resolver hands out.
//!
//! The input is lines: the server name, the `Cache-Control` value, the well-known body,
//! then records, `srv PRIORITY WEIGHT PORT TARGET` or `ip ADDRESS`, which every lookup
//! answers.

#![no_main]

use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use kith::config::default_ip_range_blacklist;
use kith::services::federation::discovery::{
    Answer, Discovery, IpFilter, LookupError, Lookups, SrvRecord, WellKnown, parse_well_known,
};
use libfuzzer_sys::fuzz_target;
use ruma::ServerName;

/// Lookups that answer from the input, the same for every name; the hosts asked for
/// their well-known are noted.
struct Recorded {
    well_known: WellKnown,
    srv: Vec<SrvRecord>,
    ips: Vec<IpAddr>,
    well_known_hosts: Arc<Mutex<Vec<String>>>,
}

impl Lookups for Recorded {
    async fn ips(&self, _host: &str) -> Result<Answer<Vec<IpAddr>>, LookupError> {
        Ok(Answer { value: self.ips.clone(), ttl: Duration::from_secs(60) })
    }

    async fn srv(&self, _name: &str) -> Result<Answer<Vec<SrvRecord>>, LookupError> {
        Ok(Answer { value: self.srv.clone(), ttl: Duration::from_secs(60) })
    }

    async fn well_known(&self, host: &str) -> WellKnown {
        self.well_known_hosts.lock().unwrap_or_else(|e| e.into_inner()).push(host.to_owned());
        self.well_known.clone()
    }
}

fn record(line: &str, srv: &mut Vec<SrvRecord>, ips: &mut Vec<IpAddr>) -> Option<()> {
    let mut words = line.split(' ');
    match words.next()? {
        "srv" => srv.push(SrvRecord {
            priority: words.next()?.parse().ok()?,
            weight: words.next()?.parse().ok()?,
            port: words.next()?.parse().ok()?,
            target: words.next()?.to_owned(),
        }),
        "ip" => ips.push(words.next()?.parse().ok()?),
        _ => return None,
    }
    Some(())
}

/// The address an `https://{authority}/` URL connects to directly, as the HTTP client's
/// URL parser reads it.
fn url_address(authority: &str) -> Option<IpAddr> {
    let url = reqwest::Url::parse(&format!("https://{authority}/")).ok()?;
    url.host_str()?.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let (Some(server), Some(cache_control), Some(body)) = (lines.next(), lines.next(), lines.next()) else { return };
    let Ok(server) = <&ServerName>::try_from(server) else { return };
    let (mut srv, mut ips) = (Vec::new(), Vec::new());
    for line in lines {
        let _ = record(line, &mut srv, &mut ips);
    }
    let well_known = parse_well_known(200, Some(cache_control), body.as_bytes());
    let filter = Arc::new(IpFilter::new(default_ip_range_blacklist(), Vec::new()));
    let well_known_hosts = Arc::new(Mutex::new(Vec::new()));
    let lookups = Recorded { well_known, srv, ips, well_known_hosts: well_known_hosts.clone() };
    let discovery = Discovery::new(lookups, filter.clone());
    RUNTIME.block_on(async {
        let resolved = discovery.resolve(server).await;
        for host in well_known_hosts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Some(ip) = url_address(host) {
                assert!(filter.allows(ip), "the well-known of {host} is fetched from {ip}");
            }
        }
        let Ok(destination) = resolved else { return };
        if let Some(ip) = url_address(&format!("{}:{}", destination.host, destination.port)) {
            assert!(filter.allows(ip), "{destination} connects to {ip}");
        }
        if let Ok(addresses) = discovery.connect_addresses(&destination.host).await {
            assert!(addresses.iter().all(|ip| filter.allows(*ip)), "{destination} connects to {addresses:?}");
        }
    });
});
