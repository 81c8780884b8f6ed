//! Federation: outbound requests signed with X-Matrix, other servers' keys, and
//! authentication of inbound requests.
//!
//! Server discovery so far: an explicit port or an IP literal is used as given, then
//! `/.well-known/matrix/server`, then port 8448 (SRV records are not looked up yet).
//! Outbound connections to blacklisted networks are refused unless whitelisted.

mod keys;
pub mod pdu_checks;
pub mod receiver;
pub mod sender;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use ipnet::IpNet;
use ruma::api::federation::authentication::{XMatrix, XMatrixSigningInput};
use ruma::{OwnedServerName, ServerName};
use serde_json::Value;

use crate::config::Config;
use crate::error::MatrixError;
use crate::services::server_keys::ServerKeys;

/// Every outbound federation request gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses larger than this are refused.
const MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

pub struct Federation {
    http: reqwest::Client,
    server_keys: Arc<ServerKeys>,
    blacklist: Vec<IpNet>,
    whitelist: Vec<IpNet>,
    domain_whitelist: Option<Vec<OwnedServerName>>,
    remote_keys: keys::KeyCache,
}

/// Why an outbound request failed.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("federation with {0} is not allowed")]
    NotAllowed(String),
    #[error("{0}")]
    Network(String),
    #[error("the remote server answered {status}: {body}")]
    Remote { status: StatusCode, body: Value },
    #[error("invalid response: {0}")]
    InvalidResponse(String),
}

impl FederationError {
    /// The Matrix error to show a client whose request needed this one.
    pub fn to_client_error(&self) -> MatrixError {
        match self {
            Self::Remote { status, body } if *status == StatusCode::NOT_FOUND => {
                MatrixError::not_found(body["error"].as_str().unwrap_or("Not found on the remote server").to_owned())
            }
            Self::NotAllowed(_) => MatrixError::forbidden(self.to_string()),
            _ => MatrixError::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", format!("Federation request failed: {self}")),
        }
    }
}

impl Federation {
    pub fn new(config: &Config, server_keys: Arc<ServerKeys>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .danger_accept_invalid_certs(!config.federation_verify_certificates)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            server_keys,
            blacklist: config.ip_range_blacklist.clone(),
            whitelist: config.ip_range_whitelist.clone(),
            domain_whitelist: config.federation_domain_whitelist.clone(),
            remote_keys: keys::KeyCache::default(),
        })
    }

    pub fn server_name(&self) -> &ServerName {
        self.server_keys.server_name()
    }

    /// Whether `federation_domain_whitelist` lets us talk to `server`.
    pub fn allowed(&self, server: &ServerName) -> bool {
        self.domain_whitelist.as_ref().is_none_or(|list| list.iter().any(|s| s == server))
    }

    /// A signed `GET` to another server's federation API.
    pub async fn get(&self, destination: &ServerName, path_and_query: &str) -> Result<Value, FederationError> {
        self.request(Method::GET, destination, path_and_query, None).await
    }

    pub async fn request(
        &self,
        method: Method,
        destination: &ServerName,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, FederationError> {
        if !self.allowed(destination) {
            return Err(FederationError::NotAllowed(destination.to_string()));
        }
        let base = self.resolve(destination).await?;
        let body_bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let signed = axum::http::Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .body(body_bytes.clone())
            .map_err(|e| FederationError::Network(e.to_string()))?;
        let input = XMatrixSigningInput::new(
            self.server_name().to_owned(),
            destination.to_owned(),
            self.server_keys.key_pair(),
        );
        let authorization = XMatrix::sign_http_request(&signed, input)
            .map_err(|e| FederationError::Network(format!("cannot sign request: {e}")))?;
        let mut request = self
            .http
            .request(method, format!("{base}{path_and_query}"))
            .header(reqwest::header::AUTHORIZATION, authorization.to_string());
        if body.is_some() {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body_bytes);
        }
        let response = request.send().await.map_err(|e| FederationError::Network(e.to_string()))?;
        read_json(response).await
    }

    /// `https://host:port` for a server name, refusing blacklisted addresses.
    async fn resolve(&self, server: &ServerName) -> Result<String, FederationError> {
        let (host, port) = match (server.host(), server.port()) {
            (host, Some(port)) => (host.to_owned(), port),
            (host, None) if host.parse::<IpAddr>().is_ok() || host.starts_with('[') => (host.to_owned(), 8448),
            (host, None) => self.well_known(host).await.unwrap_or_else(|| (host.to_owned(), 8448)),
        };
        self.check_addresses(&host, port).await?;
        Ok(format!("https://{host}:{port}"))
    }

    /// `/.well-known/matrix/server` delegation, if the server publishes one.
    async fn well_known(&self, host: &str) -> Option<(String, u16)> {
        self.check_addresses(host, 443).await.ok()?;
        let response = self.http.get(format!("https://{host}/.well-known/matrix/server")).send().await.ok()?;
        let body: Value = read_json(response).await.ok()?;
        let delegated = body["m.server"].as_str()?;
        let server = <&ServerName>::try_from(delegated).ok()?;
        Some((server.host().to_owned(), server.port().unwrap_or(8448)))
    }

    async fn check_addresses(&self, host: &str, port: u16) -> Result<(), FederationError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<IpAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| FederationError::Network(format!("cannot resolve {host}: {e}")))?
            .map(|a| a.ip())
            .collect();
        let allowed = |ip: &IpAddr| {
            self.whitelist.iter().any(|net| net.contains(ip)) || !self.blacklist.iter().any(|net| net.contains(ip))
        };
        if addresses.is_empty() || !addresses.iter().all(allowed) {
            return Err(FederationError::NotAllowed(format!("{host} (blacklisted address)")));
        }
        Ok(())
    }
}

async fn read_json(response: reqwest::Response) -> Result<Value, FederationError> {
    let status = response.status();
    if response.content_length().is_some_and(|len| len as usize > MAX_RESPONSE_BYTES) {
        return Err(FederationError::InvalidResponse("response too large".into()));
    }
    let bytes = response.bytes().await.map_err(|e| FederationError::Network(e.to_string()))?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(FederationError::InvalidResponse("response too large".into()));
    }
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| FederationError::InvalidResponse(e.to_string()))?;
    if !status.is_success() {
        return Err(FederationError::Remote { status, body });
    }
    Ok(body)
}
