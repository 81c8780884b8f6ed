//! Requests to an application service: ruma's request types for the Application
//! Service API, authenticated with the service's `hs_token`, bounded in time and in the
//! size of the answer read.

use std::time::Duration;

use axum::http::StatusCode;
use ruma::api::appservice::HomeserverToken;
use ruma::api::error::FromHttpResponseError;
use ruma::api::path_builder::SinglePath;
use ruma::api::{IncomingResponseExt, OutgoingRequest, OutgoingRequestExt};

use super::registration::AppService;
use crate::services::federation::discovery::{CappedReadError, read_capped};

/// Connecting to a service gives up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A service's answer is read up to this many bytes.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// What a service may write back in an error that is shown to the pinging client.
const MAX_ERROR_BODY_CHARS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum AppServiceError {
    #[error("the application service has no URL")]
    UrlNotSet,
    #[error("the application service did not answer in time")]
    Timeout,
    #[error("cannot reach the application service: {0}")]
    ConnectionFailed(String),
    #[error("the application service answered {status}")]
    BadStatus { status: StatusCode, body: String },
    #[error("the application service's answer does not fit: {0}")]
    InvalidResponse(String),
}

pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Sends `request` to `service` and decodes the answer into the endpoint's response.
pub async fn send<R>(
    http: &reqwest::Client,
    service: &AppService,
    request: R,
    timeout: Duration,
) -> Result<R::IncomingResponse, AppServiceError>
where
    R: OutgoingRequest<Authentication = HomeserverToken, PathBuilder = SinglePath>,
{
    let base = service.registration.url.as_deref().ok_or(AppServiceError::UrlNotSet)?;
    let request = request
        .try_into_http_request::<Vec<u8>>(base.trim_end_matches('/'), &service.registration.hs_token, ())
        .map_err(|err| AppServiceError::InvalidResponse(format!("cannot build the request: {err}")))?;
    let (parts, body) = request.into_parts();
    let exchange = async {
        let mut response = http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(connection_error)?;
        let status = response.status();
        let bytes = read_capped(&mut response, MAX_ANSWER_BYTES).await.map_err(|err| match err {
            CappedReadError::TooLarge(_) => AppServiceError::InvalidResponse(err.to_string()),
            CappedReadError::Network(text) => AppServiceError::ConnectionFailed(text),
        })?;
        Ok::<_, AppServiceError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(timeout, exchange).await.map_err(|_| AppServiceError::Timeout)??;
    if !status.is_success() {
        let body: String = String::from_utf8_lossy(&bytes).chars().take(MAX_ERROR_BODY_CHARS).collect();
        return Err(AppServiceError::BadStatus { status, body });
    }
    let answer = axum::http::Response::builder()
        .status(status)
        .body(bytes.as_slice())
        .map_err(|err| AppServiceError::InvalidResponse(err.to_string()))?;
    R::IncomingResponse::try_from_http_response(answer).map_err(|err| match err {
        FromHttpResponseError::Server(_) => AppServiceError::BadStatus { status, body: String::new() },
        err => AppServiceError::InvalidResponse(err.to_string()),
    })
}

fn connection_error(err: reqwest::Error) -> AppServiceError {
    if err.is_timeout() { AppServiceError::Timeout } else { AppServiceError::ConnectionFailed(err.to_string()) }
}
