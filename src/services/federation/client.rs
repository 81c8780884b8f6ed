//! Outbound federation requests: signed with X-Matrix, sent only to addresses that
//! server discovery resolved and the IP blacklist allows, bounded in time and size.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
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
        let response = self.dispatch_signed(destination, request).await?;
        decode::<R>(response, max_bytes).await
    }

    /// [`Self::send`] for an answer read leniently by the caller: the body of a success,
    /// at most 10 MiB.
    pub async fn send_for_body<R>(&self, destination: &ServerName, request: R) -> Result<Vec<u8>, FederationError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = XMatrixSigningInput<'a>>,
        for<'a> R::PathBuilder: PathBuilder<Input<'a> = ()>,
    {
        let response = success(self.dispatch_signed(destination, request).await?).await?;
        read_body(response, MAX_RESPONSE_BYTES).await
    }

    /// [`Self::send`] for an answer that is not JSON (media): the successful response,
    /// to be read by the caller within its own bounds.
    pub async fn send_streamed<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<reqwest::Response, FederationError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = XMatrixSigningInput<'a>>,
        for<'a> R::PathBuilder: PathBuilder<Input<'a> = ()>,
    {
        success(self.dispatch_signed(destination, request).await?).await
    }

    /// A key request (ruma's key endpoints take no authentication: the keys are what
    /// checking a signature needs). `signed` adds X-Matrix anyway, as Synapse does when
    /// it asks a notary.
    pub async fn send_key_request<R>(
        &self,
        destination: &ServerName,
        request: R,
        signed: bool,
    ) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = ()>,
        for<'a> R::PathBuilder: PathBuilder<Input<'a> = ()>,
    {
        let base = self.resolve_allowed(destination).await?;
        let mut http_request =
            request.try_into_http_request::<Vec<u8>>(&base.to_string(), (), ()).map_err(build_error)?;
        if signed {
            let authorization = XMatrix::sign_http_request(&http_request, self.signing_input(destination))
                .map_err(|e| FederationError::Network(format!("cannot sign request: {e}")))?;
            let value = reqwest::header::HeaderValue::from_str(&authorization.to_string())
                .map_err(|e| FederationError::Network(format!("cannot sign request: {e}")))?;
            http_request.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
        }
        let response = self.dispatch(destination, &base, http_request).await?;
        decode::<R>(response, MAX_RESPONSE_BYTES).await
    }

    async fn dispatch_signed<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<reqwest::Response, FederationError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = XMatrixSigningInput<'a>>,
        for<'a> R::PathBuilder: PathBuilder<Input<'a> = ()>,
    {
        let base = self.resolve_allowed(destination).await?;
        let signing = self.signing_input(destination);
        let http_request =
            request.try_into_http_request::<Vec<u8>>(&base.to_string(), signing, ()).map_err(build_error)?;
        self.dispatch(destination, &base, http_request).await
    }

    fn signing_input(&self, destination: &ServerName) -> XMatrixSigningInput<'_> {
        XMatrixSigningInput::new(self.server_name().to_owned(), destination.to_owned(), self.server_keys.key_pair())
    }

    /// Sends a request ruma built; every answer but "not now" tells server health the
    /// destination is up.
    async fn dispatch(
        &self,
        destination: &ServerName,
        base: &discovery::Destination,
        request: axum::http::Request<Vec<u8>>,
    ) -> Result<reqwest::Response, FederationError> {
        let (parts, body) = request.into_parts();
        let response = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .header(reqwest::header::HOST, &base.host_header)
            .body(body)
            .send()
            .await
            .map_err(|e| FederationError::Network(e.to_string()))?;
        self.answered(destination, response.status()).await;
        Ok(response)
    }

    /// Any answer but "not now" shows the server is up, to every caller at once.
    async fn answered(&self, server: &ServerName, status: StatusCode) {
        if is_sign_of_life(status) {
            self.health.alive(server).await;
        }
    }

    async fn resolve_allowed(&self, server: &ServerName) -> Result<discovery::Destination, FederationError> {
        if !self.allowed(server) {
            return Err(FederationError::NotAllowed(server.to_string()));
        }
        self.resolve(server).await
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

/// Reads an answer of at most `max_bytes` into the endpoint's response type; an error
/// answer is [`FederationError::Remote`] with its body.
async fn decode<R: OutgoingRequest>(
    response: reqwest::Response,
    max_bytes: usize,
) -> Result<R::IncomingResponse, FederationError> {
    let status = response.status();
    let bytes = read_body(response, max_bytes).await?;
    let answer = axum::http::Response::builder()
        .status(status)
        .body(bytes.as_slice())
        .map_err(|e| FederationError::InvalidResponse(e.to_string()))?;
    R::IncomingResponse::try_from_http_response(answer).map_err(|err| match err {
        FromHttpResponseError::Server(_) => FederationError::Remote { status, body: error_body(&bytes) },
        err => FederationError::InvalidResponse(err.to_string()),
    })
}

/// The response if it is a success, else [`FederationError::Remote`] with its body.
async fn success(response: reqwest::Response) -> Result<reqwest::Response, FederationError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let bytes = read_body(response, MAX_RESPONSE_BYTES).await?;
    Err(FederationError::Remote { status, body: error_body(&bytes) })
}

async fn read_body(mut response: reqwest::Response, max_bytes: usize) -> Result<Vec<u8>, FederationError> {
    let bytes = read_capped(&mut response, max_bytes).await.map_err(capped_read_error)?;
    tracing::debug!(path = %response.url().path(), status = %response.status(), bytes = bytes.len(), "federation response read");
    Ok(bytes)
}

fn build_error(err: impl std::fmt::Display) -> FederationError {
    FederationError::Network(format!("cannot build the request: {err}"))
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
