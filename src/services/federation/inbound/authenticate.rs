//! Step 1: who is asking. An inbound request's `X-Matrix` authorization must be signed
//! by a key its origin publishes, over this request, for this server.

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use ruma::api::federation::authentication::XMatrix;
use ruma::signatures::PublicKeyMap;
use ruma::{OwnedServerName, ServerName};

use super::Inbound;
use crate::error::MatrixError;
use crate::services::server_keys::remote::RemoteKeys;

impl Inbound {
    /// The verified origin of a request. A signed request also proves its origin is up,
    /// so the sender stops backing off from it.
    pub async fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<OwnedServerName, MatrixError> {
        let origin = verify_request(&self.keys, &self.server_name, method, uri, headers, body).await?;
        self.sender.remote_is_up(&origin);
        Ok(origin)
    }
}

/// Checks an inbound request's `X-Matrix` authorization and returns its origin.
pub async fn verify_request(
    keys: &RemoteKeys,
    server_name: &ServerName,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<OwnedServerName, MatrixError> {
    let unauthorized = |message: String| MatrixError::new(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", message);
    let xmatrix = XMatrix::extract_from_http_headers(headers)
        .map_err(|e| unauthorized(format!("Missing or invalid X-Matrix authorization: {e}")))?;
    if xmatrix.destination.as_deref().is_some_and(|d| d != server_name) {
        return Err(unauthorized("The request is for another destination".into()));
    }
    if !keys.allowed(&xmatrix.origin) {
        return Err(MatrixError::forbidden("Federation with this server is not allowed"));
    }
    let signing_keys = keys
        .signing_keys(&xmatrix.origin, &[xmatrix.key.as_str()])
        .await
        .map_err(|e| unauthorized(format!("Cannot get the keys of {}: {e}", xmatrix.origin)))?;
    let mut key_map = PublicKeyMap::new();
    key_map.insert(xmatrix.origin.to_string(), signing_keys.verify_keys);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let request = axum::http::Request::builder()
        .method(method.clone())
        .uri(path)
        .body(body)
        .map_err(|e| unauthorized(e.to_string()))?;
    xmatrix
        .verify_http_request(&request, server_name, &key_map)
        .map_err(|e| unauthorized(format!("Invalid signature: {e}")))?;
    Ok(xmatrix.origin)
}
