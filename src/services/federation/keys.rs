//! Other servers' signing keys: fetched from `/_matrix/key/v2/server`, accepted only
//! when self-signed by the key they publish, cached until their `valid_until_ts`.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::StatusCode;
use ruma::api::federation::authentication::XMatrix;
use ruma::canonical_json::CanonicalJsonObject;
use ruma::serde::Base64;
use ruma::signatures::{PublicKeyMap, PublicKeySet};
use ruma::{OwnedServerName, ServerName};
use serde_json::Value;

use super::{Federation, FederationError};
use crate::error::MatrixError;

/// Servers whose keys are kept at most; the least recently fetched go first.
const MAX_CACHED_SERVERS: usize = 10_000;

#[derive(Default)]
pub struct KeyCache {
    servers: Mutex<HashMap<OwnedServerName, CachedKeys>>,
}

#[derive(Clone)]
struct CachedKeys {
    keys: PublicKeySet,
    valid_until_ts: u64,
    fetched_at: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

impl Federation {
    /// A server's current verify keys, from the cache or fetched.
    pub async fn server_keys(&self, server: &ServerName) -> Result<PublicKeySet, FederationError> {
        if server == self.server_name() {
            return Ok(self.server_keys.public_key_map().remove(server.as_str()).unwrap_or_default());
        }
        if let Some(cached) = self.cached(server) {
            return Ok(cached);
        }
        let body = self.fetch_key_response(server).await?;
        let (keys, valid_until_ts) = verify_key_response(server, &body).map_err(FederationError::InvalidResponse)?;
        let mut servers = self.remote_keys.servers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if servers.len() >= MAX_CACHED_SERVERS
            && let Some(oldest) = servers.iter().min_by_key(|(_, c)| c.fetched_at).map(|(s, _)| s.clone())
        {
            servers.remove(&oldest);
        }
        servers.insert(server.to_owned(), CachedKeys { keys: keys.clone(), valid_until_ts, fetched_at: now_ms() });
        Ok(keys)
    }

    /// A server's own, verified `/_matrix/key/v2/server` response.
    pub async fn fetch_key_response(&self, server: &ServerName) -> Result<Value, FederationError> {
        let body = self.get_unsigned(server, "/_matrix/key/v2/server").await?;
        verify_key_response(server, &body).map_err(FederationError::InvalidResponse)?;
        Ok(body)
    }

    fn cached(&self, server: &ServerName) -> Option<PublicKeySet> {
        let servers = self.remote_keys.servers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        servers.get(server).filter(|c| c.valid_until_ts > now_ms()).map(|c| c.keys.clone())
    }

    /// Key requests are not signed (the keys are what signing needs).
    async fn get_unsigned(&self, server: &ServerName, path: &str) -> Result<Value, FederationError> {
        if !self.allowed(server) {
            return Err(FederationError::NotAllowed(server.to_string()));
        }
        let base = self.resolve(server).await?;
        let response =
            self.http.get(format!("{base}{path}")).send().await.map_err(|e| FederationError::Network(e.to_string()))?;
        super::read_json(response).await
    }

    /// Checks an inbound request's `X-Matrix` authorization and returns its origin.
    pub async fn authenticate(
        &self,
        method: &axum::http::Method,
        uri: &axum::http::Uri,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Result<OwnedServerName, MatrixError> {
        let unauthorized = |message: String| MatrixError::new(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", message);
        let xmatrix = XMatrix::extract_from_http_headers(headers)
            .map_err(|e| unauthorized(format!("Missing or invalid X-Matrix authorization: {e}")))?;
        if xmatrix.destination.as_deref().is_some_and(|d| d != self.server_name()) {
            return Err(unauthorized("The request is for another destination".into()));
        }
        if !self.allowed(&xmatrix.origin) {
            return Err(MatrixError::forbidden("Federation with this server is not allowed"));
        }
        let keys = self
            .server_keys(&xmatrix.origin)
            .await
            .map_err(|e| unauthorized(format!("Cannot get the keys of {}: {e}", xmatrix.origin)))?;
        let mut key_map = PublicKeyMap::new();
        key_map.insert(xmatrix.origin.to_string(), keys);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let request = axum::http::Request::builder()
            .method(method.clone())
            .uri(path)
            .body(body)
            .map_err(|e| unauthorized(e.to_string()))?;
        xmatrix
            .verify_http_request(&request, self.server_name(), &key_map)
            .map_err(|e| unauthorized(format!("Invalid signature: {e}")))?;
        Ok(xmatrix.origin)
    }
}

/// Verifies a `/_matrix/key/v2/server` response: for `server`, self-signed by every key
/// it lists, not expired. Returns the keys and until when they may be cached.
pub fn verify_key_response(server: &ServerName, body: &Value) -> Result<(PublicKeySet, u64), String> {
    if body["server_name"].as_str() != Some(server.as_str()) {
        return Err("the response is for another server".into());
    }
    let valid_until_ts = body["valid_until_ts"].as_u64().ok_or("missing valid_until_ts")?;
    if valid_until_ts <= now_ms() {
        return Err("the keys have expired".into());
    }
    let mut keys = PublicKeySet::new();
    for (key_id, key) in body["verify_keys"].as_object().ok_or("missing verify_keys")? {
        let key = key["key"].as_str().ok_or("a verify key has no `key`")?;
        keys.insert(key_id.clone(), Base64::parse(key).map_err(|e| e.to_string())?);
    }
    if keys.is_empty() {
        return Err("no verify keys".into());
    }
    let object: CanonicalJsonObject = serde_json::from_value(body.clone()).map_err(|e| e.to_string())?;
    let mut key_map = PublicKeyMap::new();
    key_map.insert(server.to_string(), keys.clone());
    ruma::signatures::verify_json(&key_map, &object).map_err(|e| format!("bad self-signature: {e}"))?;
    Ok((keys, valid_until_ts))
}
