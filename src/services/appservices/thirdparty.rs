//! Third-party networks (`/_matrix/client/v3/thirdparty/*`): forwarded to the services
//! whose registration lists the protocol (`protocols`), their answers put together as
//! Synapse does (a protocol's instances from every service, each instance named
//! `<service id>|<network id>`; users and locations from every service).

use std::collections::BTreeMap;
use std::time::Duration;

use ruma::api::appservice::thirdparty::{get_location_for_protocol, get_protocol, get_user_for_protocol};
use ruma::thirdparty::{Location, Protocol, ProtocolInstance, User};

use super::outgoing;
use super::{AppService, AppServices};

/// Each service's answer is waited for this long.
const THIRDPARTY_TIMEOUT: Duration = Duration::from_secs(10);

impl AppServices {
    /// Every protocol some service lists, as the services describe it.
    pub async fn protocols(&self) -> BTreeMap<String, Protocol> {
        let mut names: Vec<&str> =
            self.services.iter().flat_map(|s| s.registration.protocols.iter().flatten()).map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let mut protocols = BTreeMap::new();
        for name in names {
            if let Some(protocol) = self.protocol(name).await {
                protocols.insert(name.to_owned(), protocol);
            }
        }
        protocols
    }

    /// One protocol, `None` if no service lists it or none answered.
    pub async fn protocol(&self, name: &str) -> Option<Protocol> {
        let mut merged: Option<Protocol> = None;
        for service in self.speaking(name) {
            let request = get_protocol::v1::Request::new(name.to_owned());
            let Some(answer) =
                log_failure(service, outgoing::send(&self.http, service, request, THIRDPARTY_TIMEOUT).await)
            else {
                continue;
            };
            let mut protocol: Protocol = answer.protocol.into::<ProtocolInstance>();
            for instance in &mut protocol.instances {
                instance.instance_id = Some(format!("{}|{}", service.id(), instance.network_id));
            }
            match &mut merged {
                Some(merged) => merged.instances.append(&mut protocol.instances),
                None => merged = Some(protocol),
            }
        }
        merged
    }

    /// The users of `protocol` the services find with `fields`.
    pub async fn thirdparty_users(&self, protocol: &str, fields: &BTreeMap<String, String>) -> Vec<User> {
        let mut users = Vec::new();
        for service in self.speaking(protocol) {
            let mut request = get_user_for_protocol::v1::Request::new(protocol.to_owned());
            request.fields = fields.clone();
            let answer = outgoing::send(&self.http, service, request, THIRDPARTY_TIMEOUT).await;
            users.extend(log_failure(service, answer).into_iter().flat_map(|a| a.users));
        }
        users
    }

    /// The locations (rooms) of `protocol` the services find with `fields`.
    pub async fn thirdparty_locations(&self, protocol: &str, fields: &BTreeMap<String, String>) -> Vec<Location> {
        let mut locations = Vec::new();
        for service in self.speaking(protocol) {
            let mut request = get_location_for_protocol::v1::Request::new(protocol.to_owned());
            request.fields = fields.clone();
            let answer = outgoing::send(&self.http, service, request, THIRDPARTY_TIMEOUT).await;
            locations.extend(log_failure(service, answer).into_iter().flat_map(|a| a.locations));
        }
        locations
    }

    fn speaking<'a>(&'a self, protocol: &'a str) -> impl Iterator<Item = &'a AppService> {
        self.with_url().filter(move |s| s.has_protocol(protocol))
    }
}

/// A service that fails is left out of the answer, as in Synapse.
fn log_failure<T>(service: &AppService, answer: Result<T, outgoing::AppServiceError>) -> Option<T> {
    answer.map_err(|err| tracing::warn!(appservice = service.id(), %err, "third-party lookup failed")).ok()
}
