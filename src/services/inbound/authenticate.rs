//! Step 1: who is asking. An inbound request's `X-Matrix` authorization must be signed
//! by a key its origin publishes, over this request, for this server.

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use ruma::api::federation::authentication::XMatrix;
use ruma::signatures::PublicKeyMap;
use ruma::{OwnedServerName, ServerName};

use super::Inbound;
use crate::error::MatrixError;
use crate::services::remote_keys::RemoteKeys;

impl Inbound {
    /// The verified origin of a request. A signed request also proves its origin is up:
    /// every backoff from it ends.
    pub async fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<OwnedServerName, MatrixError> {
        let origin = verify_request(&self.keys, &self.server_name, method, uri, headers, body).await?;
        self.health.alive(&origin).await;
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
    let xmatrix = parse_authorization(headers, server_name)?;
    if !keys.allowed(&xmatrix.origin) {
        return Err(MatrixError::forbidden("Federation with this server is not allowed"));
    }
    let signing_keys = keys
        .signing_keys(&xmatrix.origin, &[xmatrix.key.as_str()])
        .await
        .map_err(|e| unauthorized(format!("Cannot get the keys of {}: {e}", xmatrix.origin)))?;
    let mut key_map = PublicKeyMap::new();
    key_map.insert(xmatrix.origin.to_string(), signing_keys.verify_keys);
    verify_signature(&xmatrix, &key_map, server_name, method, uri, body)?;
    Ok(xmatrix.origin)
}

fn unauthorized(message: String) -> MatrixError {
    MatrixError::new(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", message)
}

/// The `X-Matrix` authorization of a request, which must be for `server_name` when it
/// names a destination.
pub fn parse_authorization(headers: &HeaderMap, server_name: &ServerName) -> Result<XMatrix, MatrixError> {
    let xmatrix = XMatrix::extract_from_http_headers(headers)
        .map_err(|e| unauthorized(format!("Missing or invalid X-Matrix authorization: {e}")))?;
    if xmatrix.destination.as_deref().is_some_and(|d| d != server_name) {
        return Err(unauthorized("The request is for another destination".into()));
    }
    Ok(xmatrix)
}

/// Checks the signature of an `X-Matrix` authorization over the request, with the
/// origin's keys in `key_map`.
pub fn verify_signature(
    xmatrix: &XMatrix,
    key_map: &PublicKeyMap,
    server_name: &ServerName,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<(), MatrixError> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if let Some(content) = non_canonical_json(body) {
        return verify_lenient(xmatrix, key_map, server_name, method, path, content);
    }
    let request = axum::http::Request::builder()
        .method(method.clone())
        .uri(path)
        .body(body)
        .map_err(|e| unauthorized(e.to_string()))?;
    xmatrix
        .verify_http_request(&request, server_name, key_map)
        .map_err(|e| unauthorized(format!("Invalid signature: {e}")))
}

/// A JSON body canonical JSON cannot represent (a float, an integer past ±2^53): the
/// parsed value, to be verified as a lenient signer signs it. `None` for anything else.
fn non_canonical_json(body: &[u8]) -> Option<serde_json::Value> {
    if body.is_empty() {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let canonical = serde_json::from_value::<ruma::CanonicalJsonValue>(value.clone()).is_ok();
    (!canonical).then_some(value)
}

/// What an X-Matrix signature covers, its keys in canonical (sorted) order.
#[derive(serde::Serialize)]
struct SignedRequest<'a> {
    content: serde_json::Value,
    destination: &'a str,
    method: &'a str,
    origin: &'a str,
    uri: &'a str,
}

/// Verifies the signature over the request's JSON as a lenient signer encodes it: keys
/// sorted, no whitespace, numbers as written. Such a body cannot have been signed as
/// canonical JSON, yet one bad number in one PDU must not cost the rest of a transaction
/// (its PDUs are answered one by one).
fn verify_lenient(
    xmatrix: &XMatrix,
    keys: &PublicKeyMap,
    server_name: &ServerName,
    method: &Method,
    path: &str,
    content: serde_json::Value,
) -> Result<(), MatrixError> {
    let invalid = |reason: String| unauthorized(format!("Invalid signature: {reason}"));
    let signed = SignedRequest {
        content,
        destination: server_name.as_str(),
        method: method.as_str(),
        origin: xmatrix.origin.as_str(),
        uri: path,
    };
    let bytes = serde_json::to_vec(&signed).map_err(|e| invalid(e.to_string()))?;
    let key = keys
        .get(xmatrix.origin.as_str())
        .and_then(|set| set.get(xmatrix.key.as_str()))
        .ok_or_else(|| invalid(format!("no key {} of {}", xmatrix.key, xmatrix.origin)))?;
    ruma::signatures::verify_canonical_json_bytes(
        &ruma::SigningKeyAlgorithm::Ed25519,
        key.as_bytes(),
        xmatrix.sig.as_bytes(),
        &bytes,
    )
    .map_err(|e| invalid(e.to_string()))
}
