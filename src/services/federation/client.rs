//! Outbound federation requests: signed with X-Matrix, sent only to addresses that
//! server discovery resolved and the IP blacklist allows, bounded in time and size.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use ruma::api::auth_scheme::AuthScheme;
use ruma::api::error::FromHttpResponseError;
use ruma::api::federation::authentication::{XMatrix, XMatrixSigningInput};
use ruma::api::path_builder::PathBuilder;
use ruma::api::{IncomingResponseExt, OutgoingRequest, OutgoingRequestExt};
use ruma::{OwnedServerName, ServerName};
use serde_json::Value;

use super::discovery::{self, CappedReadError, read_capped};
use crate::config::Config;
use crate::error::MatrixError;
use crate::services::server_health::ServerHealth;
use crate::services::server_keys::ServerKeys;

/// Every outbound federation request gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses larger than this are refused.
const MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

pub struct FederationClient {
    /// Resolves host names only through discovery's pins and the IP blacklist.
    http: reqwest::Client,
    server_keys: Arc<ServerKeys>,
    discovery: Arc<discovery::Discovery<discovery::NetLookups>>,
    domain_whitelist: Option<Vec<OwnedServerName>>,
    /// Told of every answer: an answer is a sign of life.
    health: Arc<ServerHealth>,
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
    /// Whether the server could not be reached, or answered "not now" (a 5xx, a 429, a
    /// 401): what makes server health back off from it.
    pub fn is_down(&self) -> bool {
        match self {
            Self::Network(_) => true,
            Self::Remote { status, .. } => !is_sign_of_life(*status),
            Self::NotAllowed(_) | Self::InvalidResponse(_) => false,
        }
    }

    /// The Matrix error to show a client whose request needed this one.
    pub fn to_client_error(&self) -> MatrixError {
        match self {
            Self::Remote { status, body } if *status == StatusCode::NOT_FOUND => {
                MatrixError::not_found(body["error"].as_str().unwrap_or("Not found on the remote server").to_owned())
            }
            Self::Remote { status, body } if *status == StatusCode::FORBIDDEN => MatrixError::forbidden(format!(
                "The remote server refused: {}",
                body["error"].as_str().unwrap_or("forbidden")
            )),
            Self::NotAllowed(_) => MatrixError::forbidden(self.to_string()),
            _ => MatrixError::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", format!("Federation request failed: {self}")),
        }
    }

    /// The Matrix error for another server's request that could not be handled because
    /// `what` could not be fetched from `server`: kith's own words, never the body the
    /// remote server answered with.
    pub fn to_peer_error(&self, server: &ServerName, what: &str) -> MatrixError {
        let cause = match self {
            Self::Remote { status, .. } => format!("it answered {}", status.as_u16()),
            Self::NotAllowed(_) => "federation with it is not allowed".to_owned(),
            Self::Network(_) => "it could not be reached".to_owned(),
            Self::InvalidResponse(_) => "its answer was invalid".to_owned(),
        };
        MatrixError::forbidden(format!("Could not fetch {what} from {server} to check the event ({cause})"))
    }
}

impl FederationClient {
    pub fn new(config: &Config, server_keys: Arc<ServerKeys>, health: Arc<ServerHealth>) -> anyhow::Result<Self> {
        let filter =
            Arc::new(discovery::IpFilter::new(config.ip_range_blacklist.clone(), config.ip_range_whitelist.clone()));
        let lookups = discovery::NetLookups::new(filter.clone(), config.federation_verify_certificates)?;
        let discovery = Arc::new(discovery::Discovery::new(lookups, filter));
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .danger_accept_invalid_certs(!config.federation_verify_certificates)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(discovery::PinnedResolver(discovery.clone())))
            .build()?;
        Ok(Self { http, server_keys, discovery, domain_whitelist: config.federation_domain_whitelist.clone(), health })
    }

    pub fn server_name(&self) -> &ServerName {
        self.server_keys.server_name()
    }

    /// Whether `federation_domain_whitelist` lets us talk to `server`.
    pub fn allowed(&self, server: &ServerName) -> bool {
        self.domain_whitelist.as_ref().is_none_or(|list| list.iter().any(|s| s == server))
    }

    /// A request of ruma's type for another server's federation endpoint: ruma builds its
    /// path, query and body and signs it (X-Matrix); the answer, at most 10 MiB, is
    /// decoded into the endpoint's response type.
    pub async fn send<R>(&self, destination: &ServerName, request: R) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = XMatrixSigningInput<'a>>,
        for<'a> R::PathBuilder: PathBuilder<Input<'a> = ()>,
    {
        self.send_with_limit(destination, request, MAX_RESPONSE_BYTES).await
    }

    /// [`Self::send`] with an answer of at most `max_bytes` (a big room's state).
    pub async fn send_with_limit<R>(
        &self,
        destination: &ServerName,
        request: R,
        max_bytes: usize,
    ) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = XMatrixSigningInput<'a>>,
        for<'a> R::PathBuilder: PathBuilder<Input<'a> = ()>,
    {
        if !self.allowed(destination) {
            return Err(FederationError::NotAllowed(destination.to_string()));
        }
        let base = self.resolve(destination).await?;
        let signing = XMatrixSigningInput::new(
            self.server_name().to_owned(),
            destination.to_owned(),
            self.server_keys.key_pair(),
        );
        let request = request
            .try_into_http_request::<Vec<u8>>(&base.to_string(), signing, ())
            .map_err(|e| FederationError::Network(format!("cannot build the request: {e}")))?;
        let (parts, body) = request.into_parts();
        let mut response = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .header(reqwest::header::HOST, &base.host_header)
            .body(body)
            .send()
            .await
            .map_err(|e| FederationError::Network(e.to_string()))?;
        let status = response.status();
        self.answered(destination, status).await;
        let bytes = read_capped(&mut response, max_bytes).await.map_err(capped_read_error)?;
        let answer = axum::http::Response::builder()
            .status(status)
            .body(bytes.as_slice())
            .map_err(|e| FederationError::InvalidResponse(e.to_string()))?;
        R::IncomingResponse::try_from_http_response(answer).map_err(|err| match err {
            FromHttpResponseError::Server(_) => FederationError::Remote { status, body: error_body(&bytes) },
            err => FederationError::InvalidResponse(err.to_string()),
        })
    }

    /// A signed `GET` to another server's federation API.
    pub async fn get(&self, destination: &ServerName, path_and_query: &str) -> Result<Value, FederationError> {
        self.request(Method::GET, destination, path_and_query, None).await
    }

    /// A signed `GET` whose answer may be up to `max_bytes` (a peer's whole user list).
    pub async fn get_with_limit(
        &self,
        destination: &ServerName,
        path_and_query: &str,
        max_bytes: usize,
    ) -> Result<Value, FederationError> {
        self.request_with_limit(Method::GET, destination, path_and_query, None, max_bytes).await
    }

    pub async fn request(
        &self,
        method: Method,
        destination: &ServerName,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, FederationError> {
        self.request_with_limit(method, destination, path_and_query, body, MAX_RESPONSE_BYTES).await
    }

    /// A signed request whose answer may be up to `max_bytes` (a big room's state).
    pub async fn request_with_limit(
        &self,
        method: Method,
        destination: &ServerName,
        path_and_query: &str,
        body: Option<&Value>,
        max_bytes: usize,
    ) -> Result<Value, FederationError> {
        let response = self.signed(method, destination, path_and_query, body).await?;
        read_json(response, max_bytes).await
    }

    /// A signed `GET` whose answer is not JSON (media): the response, to be read by the
    /// caller within its own bounds. Error answers are read as JSON errors.
    pub async fn get_raw(
        &self,
        destination: &ServerName,
        path_and_query: &str,
    ) -> Result<reqwest::Response, FederationError> {
        let response = self.signed(Method::GET, destination, path_and_query, None).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        match read_json(response, MAX_RESPONSE_BYTES).await {
            Err(FederationError::InvalidResponse(_)) | Ok(_) => {
                Err(FederationError::Remote { status, body: serde_json::json!({}) })
            }
            Err(err) => Err(err),
        }
    }

    async fn signed(
        &self,
        method: Method,
        destination: &ServerName,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, FederationError> {
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
            .header(reqwest::header::HOST, &base.host_header)
            .header(reqwest::header::AUTHORIZATION, authorization.to_string());
        if body.is_some() {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body_bytes);
        }
        let response = request.send().await.map_err(|e| FederationError::Network(e.to_string()))?;
        self.answered(destination, response.status()).await;
        Ok(response)
    }

    /// Any answer but "not now" shows the server is up, to every caller at once.
    async fn answered(&self, server: &ServerName, status: StatusCode) {
        if is_sign_of_life(status) {
            self.health.alive(server).await;
        }
    }

    /// A request that is not signed: key requests (the keys are what signing needs).
    pub async fn get_unsigned(&self, server: &ServerName, path: &str) -> Result<Value, FederationError> {
        if !self.allowed(server) {
            return Err(FederationError::NotAllowed(server.to_string()));
        }
        let destination = self.resolve(server).await?;
        let response = self
            .http
            .get(format!("{destination}{path}"))
            .header(reqwest::header::HOST, &destination.host_header)
            .send()
            .await
            .map_err(|e| FederationError::Network(e.to_string()))?;
        self.answered(server, response.status()).await;
        read_json(response, MAX_RESPONSE_BYTES).await
    }

    /// Where requests for a server go (its `Display` is the `https://host:port` base of
    /// request URLs; requests should also carry its `host_header` as `Host`). Fails with
    /// `NotAllowed` when every address is blacklisted.
    async fn resolve(&self, server: &ServerName) -> Result<discovery::Destination, FederationError> {
        Ok(self.discovery.resolve(server).await?)
    }
}

/// A 4xx is a server saying no, not a server that is down, except 429 ("later") and
/// 401: a server that cannot check our signature (most often because it cannot reach us
/// yet, as when both restart) is not one we can talk to; as Synapse, keep backing off.
fn is_sign_of_life(status: StatusCode) -> bool {
    !status.is_server_error() && !matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::UNAUTHORIZED)
}

/// Reads a JSON response of at most `max_bytes`.
async fn read_json(mut response: reqwest::Response, max_bytes: usize) -> Result<Value, FederationError> {
    let status = response.status();
    let path = response.url().path().to_owned();
    let bytes = read_capped(&mut response, max_bytes).await.map_err(capped_read_error)?;
    tracing::debug!(%path, %status, bytes = bytes.len(), "federation response read");
    if !status.is_success() {
        return Err(FederationError::Remote { status, body: error_body(&bytes) });
    }
    serde_json::from_slice::<Value>(&bytes).map_err(|e| FederationError::InvalidResponse(e.to_string()))
}

fn capped_read_error(err: CappedReadError) -> FederationError {
    match err {
        CappedReadError::TooLarge(_) => FederationError::InvalidResponse(err.to_string()),
        CappedReadError::Network(err) => FederationError::Network(err),
    }
}

/// An error answer's body; a proxy's error page in front of a server that is down is
/// not JSON, and counts as an empty one.
fn error_body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::Object(serde_json::Map::new()))
}
