//! Request extractors that fail with Matrix errors: JSON bodies, access tokens and the
//! client's address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use ruma::api::error::{DeserializationError, FromHttpRequestError};
use ruma::api::{IncomingRequest, IncomingRequestExt, OutgoingResponse, OutgoingResponseExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::MatrixError;
use crate::services::Services;
use crate::services::accounts::AuthenticatedUser;
use crate::services::appservices::Masquerade;

pub type AppState = Arc<Services>;

/// A JSON object body: `M_NOT_JSON` if it does not parse, `M_BAD_JSON` /
/// `M_MISSING_PARAM` if it does not fit, `M_TOO_LARGE` past the body limit.
pub struct MatrixJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for MatrixJson<T> {
    type Rejection = MatrixError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        Ok(Self(parse_json_object(&bytes)?))
    }
}

/// Like [`MatrixJson`], but an empty body means `T::default()` (clients often send
/// none to `/leave` or `/logout`).
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = MatrixError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        Ok(Self(parse_json_object(&bytes)?))
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, MatrixError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            MatrixError::body_too_large()
        } else {
            MatrixError::not_json(format!("Could not read the request body: {rejection}"))
        }
    })
}

pub fn parse_json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, MatrixError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|err| MatrixError::not_json(format!("Content not JSON: {err}")))?;
    if !value.is_object() {
        return Err(MatrixError::bad_json("Content must be a JSON object."));
    }
    crate::validation::check_json_text(&value)?;
    serde_json::from_value(value).map_err(|err| {
        let message = err.to_string();
        if message.starts_with("missing field") {
            MatrixError::missing_param(message)
        } else {
            MatrixError::bad_json(message)
        }
    })
}

/// A request parsed into ruma's type for its endpoint (path, query and body), with the
/// same Matrix errors as [`MatrixJson`] for bodies that are not JSON or do not fit.
/// An empty body reads as `{}` (ruma's rule), unless `JSON_BODY`: see [`RumaJson`].
pub struct Ruma<T, const JSON_BODY: bool = false>(pub T);

/// [`Ruma`] for endpoints whose body Synapse requires to be a JSON object, so that an
/// empty body is `M_NOT_JSON` as there (ruma would read it as `{}`).
pub type RumaJson<T> = Ruma<T, true>;

impl<S: Send + Sync, T: IncomingRequest, const JSON_BODY: bool> FromRequest<S> for Ruma<T, JSON_BODY> {
    type Rejection = MatrixError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        ruma_and_body::<S, T>(req, state, JSON_BODY).await.map(|(request, _)| Self(request))
    }
}

/// [`Ruma`] and, read from the same body, what ruma's type for the endpoint lacks
/// (`E`, any serde type; an empty body reads as `{}`).
pub struct RumaWith<T, E>(pub T, pub E);

impl<S: Send + Sync, T: IncomingRequest, E: DeserializeOwned> FromRequest<S> for RumaWith<T, E> {
    type Rejection = MatrixError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (request, bytes) = ruma_and_body::<S, T>(req, state, false).await?;
        let body = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { bytes.as_ref() };
        let extra = serde_json::from_slice(body).map_err(|err| MatrixError::bad_json(err.to_string()))?;
        Ok(Self(request, extra))
    }
}

/// The request as ruma's type, and its body.
async fn ruma_and_body<S: Send + Sync, T: IncomingRequest>(
    req: Request,
    state: &S,
    json_body: bool,
) -> Result<(T, Bytes), MatrixError> {
    let (mut parts, body) = req.into_parts();
    let path_args: Vec<String> = match RawPathParams::from_request_parts(&mut parts, state).await {
        Ok(params) => params.iter().map(|(_, value)| value.to_owned()).collect(),
        Err(_) => return Err(MatrixError::invalid_param("Invalid path parameters")),
    };
    let bytes = read_body(Request::from_parts(parts.clone(), body), state).await?;
    if json_body || !bytes.iter().all(u8::is_ascii_whitespace) {
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|err| MatrixError::not_json(format!("Content not JSON: {err}")))?;
        if !value.is_object() {
            return Err(MatrixError::bad_json("Content must be a JSON object."));
        }
        crate::validation::check_json_text(&value)?;
    }
    let request = axum::http::Request::from_parts(parts, bytes.as_ref());
    Ok((parse_ruma(request, &path_args)?, bytes))
}

/// The request as ruma's type for its endpoint, or the Matrix error for what does not fit.
pub fn parse_ruma<T: IncomingRequest>(
    request: axum::http::Request<&[u8]>,
    path_args: &[String],
) -> Result<T, MatrixError> {
    let path_args: Vec<&str> = path_args.iter().map(String::as_str).collect();
    // A deserializer that panics on odd input must not turn a bad request into a 500.
    let parsed =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| T::try_from_http_request(request, &path_args)));
    match parsed {
        Ok(parsed) => parsed.map_err(request_error),
        Err(_) => Err(MatrixError::bad_json("The request does not fit this endpoint")),
    }
}

/// An answer of ruma's type for its endpoint, serialized as ruma serializes it.
pub struct RumaResponse<T>(pub T);

impl<T> From<T> for RumaResponse<T> {
    fn from(response: T) -> Self {
        Self(response)
    }
}

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(response) => response.map(|body| axum::body::Body::from(body.freeze())).into_response(),
            Err(err) => MatrixError::internal("serializing a response", err).into_response(),
        }
    }
}

/// A request that does not fit ruma's type, as the Matrix error Synapse answers.
pub fn request_error(err: FromHttpRequestError) -> MatrixError {
    let message = err.to_string();
    match err {
        FromHttpRequestError::Deserialization(DeserializationError::Json(json)) if json.is_data() => {
            if json.to_string().starts_with("missing field") {
                MatrixError::missing_param(json.to_string())
            } else {
                MatrixError::bad_json(json.to_string())
            }
        }
        FromHttpRequestError::Deserialization(DeserializationError::Json(_)) => MatrixError::not_json(message),
        // A required query parameter left out, as Synapse answers it.
        FromHttpRequestError::Deserialization(DeserializationError::Query(query))
            if query.to_string().starts_with("missing field") =>
        {
            MatrixError::missing_param(query.to_string())
        }
        _ => MatrixError::invalid_param(message),
    }
}

/// The user behind the request's access token.
pub struct Requester(pub AuthenticatedUser);

impl FromRequestParts<AppState> for Requester {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = access_token(parts).await?.ok_or_else(|| missing_token("Missing access token."))?;
        if let Some(owner) = state.appservices.authenticate(&token, &masquerade(parts)).await? {
            return Ok(Self(owner));
        }
        // A locked account may still log out, as in Synapse.
        let path = parts.uri.path();
        let owner = if path.ends_with("/logout") || path.ends_with("/logout/all") {
            state.accounts.authenticate_allowing_locked(&token).await?
        } else {
            state.accounts.authenticate(&token).await?
        };
        record_connection(parts, state, &owner, &token);
        Ok(Self(owner))
    }
}

/// Notes where and with which client an authenticated request came.
fn record_connection(parts: &Parts, state: &AppState, owner: &AuthenticatedUser, token: &str) {
    let user_agent = parts.headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    state.client_ips.record(owner, token, client_ip(parts), user_agent);
}

/// The user behind the access token, who must be a server admin (`M_FORBIDDEN`
/// otherwise, as Synapse answers).
pub struct AdminUser(pub AuthenticatedUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Requester(owner) = Requester::from_request_parts(parts, state).await?;
        if !owner.admin {
            return Err(MatrixError::forbidden("You are not a server admin"));
        }
        Ok(Self(owner))
    }
}

/// The user behind the access token, on endpoints that also serve anonymous clients:
/// no token is fine, a wrong one is not.
pub struct MaybeRequester(pub Option<AuthenticatedUser>);

impl FromRequestParts<AppState> for MaybeRequester {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match access_token(parts).await? {
            Some(token) => {
                if let Some(owner) = state.appservices.authenticate(&token, &masquerade(parts)).await? {
                    return Ok(Self(Some(owner)));
                }
                let owner = state.accounts.authenticate(&token).await?;
                record_connection(parts, state, &owner, &token);
                Ok(Self(Some(owner)))
            }
            None => Ok(Self(None)),
        }
    }
}

/// The request's access token, if it carries one (for endpoints that read it
/// themselves, like application-service registration).
pub struct BearerToken(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(access_token(parts).await?))
    }
}

fn missing_token(message: &str) -> MatrixError {
    MatrixError::new(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", message)
}

/// The user and device an application service acts as (`?user_id=`, the spec's
/// identity assertion, and `?device_id=`, MSC3202's, as Synapse reads them).
fn masquerade(parts: &Parts) -> Masquerade {
    let Ok(Query(mut query)) = Query::<HashMap<String, String>>::try_from_uri(&parts.uri) else {
        return Masquerade::default();
    };
    Masquerade { user_id: query.remove("user_id"), device_id: query.remove("device_id") }
}

/// The access token of a request, from the `Authorization` header or the legacy
/// `access_token` query parameter; both at once are refused, as Synapse does.
async fn access_token(parts: &mut Parts) -> Result<Option<String>, MatrixError> {
    let query = Query::<HashMap<String, String>>::from_request_parts(parts, &()).await.ok();
    let from_query = query.and_then(|Query(mut query)| query.remove("access_token"));
    let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(from_query);
    };
    if from_query.is_some() {
        return Err(missing_token("Mixing Authorization headers and access_token query parameters."));
    }
    let header = header.to_str().map_err(|_| missing_token("Invalid Authorization header."))?;
    let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer "));
    let token = token.ok_or_else(|| missing_token("Invalid Authorization header."))?;
    Ok(Some(token.trim().to_owned()))
}

/// Parses an ID from a path or body, or answers `M_INVALID_PARAM` naming what it is.
pub fn parse_id<'a, T>(value: &'a str, what: &str) -> Result<T, MatrixError>
where
    T: TryFrom<&'a str>,
{
    T::try_from(value).map_err(|_| MatrixError::invalid_param(format!("Invalid {what}: {value}")))
}

/// Whether this listener trusts `X-Forwarded-For` (its `x_forwarded` setting).
#[derive(Clone, Copy)]
pub struct TrustForwardedFor(pub bool);

/// The client's IP address, for per-address rate limits.
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts)))
    }
}

/// The peer's address or, on a listener that trusts it, the first `X-Forwarded-For`
/// entry (the client as the proxy saw it).
fn client_ip(parts: &Parts) -> IpAddr {
    let trust_forwarded = parts.extensions.get::<TrustForwardedFor>().is_some_and(|t| t.0);
    if trust_forwarded {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    peer.unwrap_or(IpAddr::from([0, 0, 0, 0]))
}
