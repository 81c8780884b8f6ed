//! Other servers' signing keys: fetched from `/_matrix/key/v2/server`, or when that fails
//! (or lacks a key asked for) through the `trusted_key_servers` notaries; accepted only
//! when self-signed by a key they publish (and, from a notary, signed by the notary's
//! trusted key too); cached until their `valid_until_ts` (at most a week). Keys a server
//! no longer publishes stay usable for old signatures (`old_verify_keys`).
//!
//! Kith is a notary itself: [`RemoteKeys::notary_query`] gives the responses
//! `/_matrix/key/v2/query` serves, counter-signed by this server; for those it fetches
//! keys only from their servers, never through other notaries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use ruma::api::federation::discovery::ServerSigningKeys as KeyResponse;
use ruma::api::federation::discovery::{get_remote_server_keys_batch, get_server_keys};
use ruma::canonical_json::CanonicalJsonObject;
use ruma::serde::{Base64, Raw};
use ruma::signatures::{PublicKeyMap, PublicKeySet};
use ruma::{OwnedServerName, ServerName};
use serde_json::Value;

use super::server_keys::ServerKeys;
use crate::config::{Config, TrustedKeyServer};
use crate::services::federation::{FederationClient, FederationError};

/// Servers whose keys are kept at most; the least recently fetched go first.
const MAX_CACHED_SERVERS: usize = 10_000;
/// Keys are trusted at most this long past their fetching, whatever `valid_until_ts` says.
const MAX_KEY_VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// A server's keys are fetched again for a missing key id (or a later
/// `minimum_valid_until_ts`) at most this often.
const REFETCH_INTERVAL_MS: u64 = 60 * 1000;

/// Other servers' keys: the cache, and how to fetch and check them.
pub struct RemoteKeys {
    client: Arc<FederationClient>,
    own: Arc<ServerKeys>,
    servers: Mutex<HashMap<OwnedServerName, CachedKeys>>,
    trusted_key_servers: Vec<TrustedKeyServer>,
    verify_certificates: bool,
}

#[derive(Clone)]
struct CachedKeys {
    keys: ServerSigningKeys,
    fetched_at: u64,
    /// The response as its server (and any notary) signed it, to pass on as a notary.
    response: Value,
}

/// A server's keys, verified.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerSigningKeys {
    /// The keys it signs with now.
    pub verify_keys: PublicKeySet,
    /// Until when `verify_keys` may be trusted (milliseconds since the epoch).
    pub valid_until_ts: u64,
    /// Keys it used to sign with: key id -> (key, `expired_ts`).
    pub old_verify_keys: BTreeMap<String, (Base64, u64)>,
}

impl ServerSigningKeys {
    /// The keys that may have made a signature at `ts`: current keys valid until then,
    /// old keys that had not expired.
    pub fn valid_at(&self, ts: u64) -> PublicKeySet {
        let mut keys = PublicKeySet::new();
        if self.valid_until_ts >= ts {
            keys.extend(self.verify_keys.clone());
        }
        for (key_id, (key, expired_ts)) in &self.old_verify_keys {
            if *expired_ts >= ts {
                keys.entry(key_id.clone()).or_insert_with(|| key.clone());
            }
        }
        keys
    }

    /// Every key, current and old.
    pub fn all(&self) -> PublicKeySet {
        let mut keys = self.verify_keys.clone();
        for (key_id, (key, _)) in &self.old_verify_keys {
            keys.entry(key_id.clone()).or_insert_with(|| key.clone());
        }
        keys
    }

    fn has(&self, key_id: &str) -> bool {
        self.verify_keys.contains_key(key_id) || self.old_verify_keys.contains_key(key_id)
    }

    /// Keys this response no longer lists but `previous` did become old keys.
    fn merge_previous(&mut self, previous: &ServerSigningKeys) {
        for (key_id, key) in &previous.verify_keys {
            if !self.verify_keys.contains_key(key_id) {
                self.old_verify_keys.entry(key_id.clone()).or_insert_with(|| (key.clone(), previous.valid_until_ts));
            }
        }
        for (key_id, old) in &previous.old_verify_keys {
            if !self.verify_keys.contains_key(key_id) {
                self.old_verify_keys.entry(key_id.clone()).or_insert_with(|| old.clone());
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

impl RemoteKeys {
    pub fn new(config: &Config, client: Arc<FederationClient>, own: Arc<ServerKeys>) -> Self {
        Self {
            client,
            own,
            servers: Mutex::default(),
            trusted_key_servers: config.trusted_key_servers.clone(),
            verify_certificates: config.federation_verify_certificates,
        }
    }

    fn server_name(&self) -> &ServerName {
        self.own.server_name()
    }

    /// Whether `federation_domain_whitelist` lets us deal with `server`.
    pub fn allowed(&self, server: &ServerName) -> bool {
        self.client.allowed(server)
    }

    /// A server's current verify keys, from the cache or fetched.
    pub async fn server_keys(&self, server: &ServerName) -> Result<PublicKeySet, FederationError> {
        Ok(self.signing_keys(server, &[]).await?.verify_keys)
    }

    /// A server's keys, current and old, fetched again (directly, then from the trusted
    /// notaries) when one of `key_ids` is unknown or the cached ones have expired. For a
    /// signature made at `ts`, use [`ServerSigningKeys::valid_at`].
    pub async fn signing_keys(
        &self,
        server: &ServerName,
        key_ids: &[&str],
    ) -> Result<ServerSigningKeys, FederationError> {
        if server == self.server_name() {
            return Ok(self.own_keys());
        }
        Ok(self.keys_satisfying(server, key_ids, now_ms(), true).await?.keys)
    }

    /// A server's own, verified `/_matrix/key/v2/server` response.
    pub async fn fetch_key_response(&self, server: &ServerName) -> Result<Value, FederationError> {
        let request = get_server_keys::v2::Request::new();
        let answer = self.client.send_key_request(server, request, false).await?;
        let body = raw_to_value(&answer.server_key)?;
        verify_key_response(server, &body)?;
        Ok(body)
    }

    /// What this server, as a notary, answers about `server` for
    /// `/_matrix/key/v2/query`: its key responses (none if it cannot be reached and
    /// nothing is cached), each counter-signed by this server.
    pub async fn notary_query(
        &self,
        server: &ServerName,
        key_ids: &[&str],
        minimum_valid_until_ts: Option<u64>,
    ) -> Vec<Raw<KeyResponse>> {
        let response = if server == self.server_name() {
            match self.own.server_key_response() {
                Ok(response) => response,
                Err(err) => {
                    tracing::error!(%err, "cannot sign our key response");
                    return Vec::new();
                }
            }
        } else {
            if !self.allowed(server) {
                return Vec::new();
            }
            let minimum = minimum_valid_until_ts.unwrap_or_else(now_ms);
            // Only fetched directly: notaries asking each other about a server none of
            // them reaches would go round in circles.
            match self.keys_satisfying(server, key_ids, minimum, false).await {
                Ok(cached) => cached.response,
                Err(err) => {
                    tracing::debug!(%server, %err, "notary query: no keys");
                    // What we have, even expired, is still the server's word.
                    match self.lock_cache().get(server) {
                        Some(cached) => cached.response.clone(),
                        None => return Vec::new(),
                    }
                }
            }
        };
        match self.counter_sign(response) {
            Ok(signed) => vec![signed],
            Err(err) => {
                tracing::warn!(%server, %err, "cannot counter-sign a key response");
                Vec::new()
            }
        }
    }

    fn counter_sign(&self, response: Value) -> anyhow::Result<Raw<KeyResponse>> {
        let mut object: CanonicalJsonObject = serde_json::from_value(response)?;
        self.own.sign(&mut object)?;
        Ok(Raw::from_json(serde_json::value::to_raw_value(&object)?))
    }

    fn own_keys(&self) -> ServerSigningKeys {
        ServerSigningKeys {
            verify_keys: self.own.public_key_map().remove(self.server_name().as_str()).unwrap_or_default(),
            valid_until_ts: u64::MAX,
            old_verify_keys: BTreeMap::new(),
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedServerName, CachedKeys>> {
        self.servers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Cached keys that know every one of `key_ids` and are valid until `minimum`, or
    /// else fetched ones: from the server, then (with `use_notaries`) from each trusted
    /// notary. Keys fetched a moment ago are not fetched again (what they lack, the
    /// server does not have).
    async fn keys_satisfying(
        &self,
        server: &ServerName,
        key_ids: &[&str],
        minimum: u64,
        use_notaries: bool,
    ) -> Result<CachedKeys, FederationError> {
        if !self.allowed(server) {
            return Err(FederationError::NotAllowed(server.to_string()));
        }
        let satisfies = |keys: &ServerSigningKeys| {
            keys.valid_until_ts >= minimum.max(now_ms()) && key_ids.iter().all(|id| keys.has(id))
        };
        let cached = self.lock_cache().get(server).cloned();
        if let Some(cached) = &cached
            && (satisfies(&cached.keys)
                || (cached.keys.valid_until_ts > now_ms() && now_ms() < cached.fetched_at + REFETCH_INTERVAL_MS))
        {
            return Ok(cached.clone());
        }
        let mut last_error = match self.fetch_key_response(server).await {
            Ok(response) => match self.store(server, response) {
                Ok(fetched) if satisfies(&fetched.keys) => return Ok(fetched),
                Ok(_) => FederationError::InvalidResponse("the server's keys do not include the keys asked for".into()),
                Err(err) => err,
            },
            Err(err) => err,
        };
        let notaries = if use_notaries { self.trusted_key_servers.as_slice() } else { &[] };
        for notary in notaries {
            if notary.server_name == server || notary.server_name == self.server_name() {
                continue;
            }
            match self.query_notary(notary, server).await {
                Ok(response) => match self.store(server, response) {
                    Ok(fetched) if satisfies(&fetched.keys) => return Ok(fetched),
                    Ok(_) => {}
                    Err(err) => last_error = err,
                },
                Err(err) => {
                    tracing::debug!(notary = %notary.server_name, %server, %err, "notary key query failed");
                    last_error = err;
                }
            }
        }
        // Keys that are valid but lack what was asked for are still the best there is.
        match self.lock_cache().get(server) {
            Some(keys) if keys.keys.valid_until_ts > now_ms() => Ok(keys.clone()),
            _ => Err(last_error),
        }
    }

    /// Caches a verified response, keeping the keys it no longer lists as old keys.
    fn store(&self, server: &ServerName, response: Value) -> Result<CachedKeys, FederationError> {
        let mut keys = parse_key_response(server, &response)?;
        let now = now_ms();
        keys.valid_until_ts = keys.valid_until_ts.min(now + MAX_KEY_VALIDITY_MS);
        let mut servers = self.lock_cache();
        if let Some(previous) = servers.get(server) {
            keys.merge_previous(&previous.keys);
        } else if servers.len() >= MAX_CACHED_SERVERS
            && let Some(oldest) = servers.iter().min_by_key(|(_, c)| c.fetched_at).map(|(s, _)| s.clone())
        {
            servers.remove(&oldest);
        }
        let cached = CachedKeys { keys, fetched_at: now, response };
        servers.insert(server.to_owned(), cached.clone());
        Ok(cached)
    }

    /// Asks a trusted notary for `server`'s keys; returns the newest response that is
    /// signed by `server` and by the notary.
    async fn query_notary(&self, notary: &TrustedKeyServer, server: &ServerName) -> Result<Value, FederationError> {
        let notary_keys = self.notary_keys(notary).await?;
        let query = BTreeMap::from([(server.to_owned(), BTreeMap::new())]);
        let request = get_remote_server_keys_batch::v2::Request::new(query);
        let answer = self.client.send_key_request(&notary.server_name, request, true).await?;
        let responses = answer.server_keys.iter().map(raw_to_value).collect::<Result<Vec<_>, _>>()?;
        let mut best: Option<(u64, &Value)> = None;
        let mut last_error = format!("{} has no keys of {server}", notary.server_name);
        for response in responses.iter().filter(|r| r["server_name"].as_str() == Some(server.as_str())) {
            match verify_notary_response(server, &notary.server_name, &notary_keys, response) {
                Ok(keys) if best.is_none_or(|(ts, _)| keys.valid_until_ts > ts) => {
                    best = Some((keys.valid_until_ts, response))
                }
                Ok(_) => {}
                Err(err) => last_error = format!("{}'s answer about {server}: {err}", notary.server_name),
            }
        }
        best.map(|(_, response)| response.clone()).ok_or(FederationError::InvalidResponse(last_error))
    }

    /// The keys a notary's signatures are checked with: those configured for it, or else
    /// its own, fetched from it, where certificates are verified or
    /// `accept_keys_insecurely` is set.
    async fn notary_keys(&self, notary: &TrustedKeyServer) -> Result<PublicKeySet, FederationError> {
        if !notary.verify_keys.is_empty() {
            let mut keys = PublicKeySet::new();
            for (key_id, key) in &notary.verify_keys {
                match Base64::parse(key.trim_end_matches('=')) {
                    Ok(key) => {
                        keys.insert(key_id.clone(), key);
                    }
                    Err(err) => tracing::warn!(notary = %notary.server_name, key_id, %err, "invalid verify key"),
                }
            }
            return Ok(keys);
        }
        if !self.verify_certificates && !notary.accept_keys_insecurely {
            return Err(FederationError::NotAllowed(format!(
                "{}: trusted key server without verify_keys while certificates are not verified \
                 (set accept_keys_insecurely to allow it)",
                notary.server_name
            )));
        }
        let server = &notary.server_name;
        if let Some(cached) = self.lock_cache().get(server).filter(|c| c.keys.valid_until_ts > now_ms()) {
            return Ok(cached.keys.verify_keys.clone());
        }
        let response = self.fetch_key_response(server).await?;
        Ok(self.store(server, response)?.keys.verify_keys)
    }
}

/// A key response as JSON, for the checks of its signatures.
fn raw_to_value(raw: &Raw<KeyResponse>) -> Result<Value, FederationError> {
    raw.deserialize_as().map_err(|e| FederationError::InvalidResponse(e.to_string()))
}

/// Why a key response is refused.
#[derive(Debug, thiserror::Error)]
pub enum BadKeyResponse {
    #[error("the response is for another server")]
    OtherServer,
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("the keys have expired")]
    Expired,
    #[error("a verify key is not base64: {0}")]
    NotBase64(String),
    #[error("no verify keys")]
    NoVerifyKeys,
    #[error("bad self-signature: {0}")]
    SelfSignature(BadSignature),
    #[error("bad notary signature: {0}")]
    NotarySignature(BadSignature),
}

/// Why an entity's signature on a key response does not check out.
#[derive(Debug, thiserror::Error)]
pub enum BadSignature {
    #[error("no signatures")]
    NoSignatures,
    #[error("not signed by {0}")]
    NotSignedBy(OwnedServerName),
    #[error("not canonical JSON: {0}")]
    NotCanonical(serde_json::Error),
    #[error(transparent)]
    Invalid(#[from] ruma::signatures::VerificationError),
}

impl From<BadKeyResponse> for FederationError {
    fn from(err: BadKeyResponse) -> Self {
        Self::InvalidResponse(err.to_string())
    }
}

/// Verifies a `/_matrix/key/v2/server` response: for `server`, self-signed by the keys
/// it lists (every signature by a listed key must check out, and there must be one),
/// not expired. Returns the keys and until when they may be cached.
pub fn verify_key_response(server: &ServerName, body: &Value) -> Result<(PublicKeySet, u64), BadKeyResponse> {
    let keys = parse_key_response(server, body)?;
    Ok((keys.verify_keys, keys.valid_until_ts))
}

/// Verifies a key response a notary passed on: self-signed by `server` as
/// [`verify_key_response`] checks, and signed by `notary` with one of `notary_keys`.
pub fn verify_notary_response(
    server: &ServerName,
    notary: &ServerName,
    notary_keys: &PublicKeySet,
    body: &Value,
) -> Result<ServerSigningKeys, BadKeyResponse> {
    let keys = parse_key_response(server, body)?;
    if notary != server {
        verify_signatures_of(notary, notary_keys, body).map_err(BadKeyResponse::NotarySignature)?;
    }
    Ok(keys)
}

fn parse_key_response(server: &ServerName, body: &Value) -> Result<ServerSigningKeys, BadKeyResponse> {
    if body["server_name"].as_str() != Some(server.as_str()) {
        return Err(BadKeyResponse::OtherServer);
    }
    let valid_until_ts = body["valid_until_ts"].as_u64().ok_or(BadKeyResponse::Missing("valid_until_ts"))?;
    if valid_until_ts <= now_ms() {
        return Err(BadKeyResponse::Expired);
    }
    let mut verify_keys = PublicKeySet::new();
    for (key_id, key) in body["verify_keys"].as_object().ok_or(BadKeyResponse::Missing("verify_keys"))? {
        let key = key["key"].as_str().ok_or(BadKeyResponse::Missing("the `key` of a verify key"))?;
        verify_keys.insert(key_id.clone(), Base64::parse(key).map_err(|e| BadKeyResponse::NotBase64(e.to_string()))?);
    }
    if verify_keys.is_empty() {
        return Err(BadKeyResponse::NoVerifyKeys);
    }
    let mut old_verify_keys = BTreeMap::new();
    if let Some(old) = body.get("old_verify_keys").and_then(Value::as_object) {
        for (key_id, old) in old {
            // An old key that does not parse is of no use, but no reason to refuse the rest.
            if let (Some(key), Some(expired_ts)) = (old["key"].as_str(), old["expired_ts"].as_u64())
                && let Ok(key) = Base64::parse(key)
            {
                old_verify_keys.insert(key_id.clone(), (key, expired_ts));
            }
        }
    }
    verify_signatures_of(server, &verify_keys, body).map_err(BadKeyResponse::SelfSignature)?;
    Ok(ServerSigningKeys { verify_keys, valid_until_ts, old_verify_keys })
}

/// Checks `entity`'s signatures on `body` (other entities' signatures are left aside).
fn verify_signatures_of(entity: &ServerName, keys: &PublicKeySet, body: &Value) -> Result<(), BadSignature> {
    let mut body = body.clone();
    let signatures = body.get_mut("signatures").and_then(Value::as_object_mut).ok_or(BadSignature::NoSignatures)?;
    let own = signatures.remove(entity.as_str()).ok_or_else(|| BadSignature::NotSignedBy(entity.to_owned()))?;
    signatures.clear();
    signatures.insert(entity.to_string(), own);
    let object: CanonicalJsonObject = serde_json::from_value(body).map_err(BadSignature::NotCanonical)?;
    let mut key_map = PublicKeyMap::new();
    key_map.insert(entity.to_string(), keys.clone());
    Ok(ruma::signatures::verify_json(&key_map, &object)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::server_keys::ServerKeys;
    use serde_json::json;

    fn keys(name: &str, file: &str, dir: &tempfile::TempDir) -> ServerKeys {
        let path = dir.path().join(file);
        ServerKeys::generate_file(&path).unwrap();
        ServerKeys::load(name.try_into().unwrap(), &path).unwrap()
    }

    fn key_set(keys: &ServerKeys) -> PublicKeySet {
        keys.public_key_map().remove(keys.server_name().as_str()).unwrap()
    }

    fn sign(keys: &ServerKeys, body: Value) -> Value {
        let mut object: CanonicalJsonObject = serde_json::from_value(body).unwrap();
        keys.sign(&mut object).unwrap();
        serde_json::to_value(object).unwrap()
    }

    struct World {
        _dir: tempfile::TempDir,
        origin: ServerKeys,
        notary: ServerKeys,
        other: ServerKeys,
    }

    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let origin = keys("origin.org", "origin.key", &dir);
        let notary = keys("notary.org", "notary.key", &dir);
        let other = keys("notary.org", "other.key", &dir);
        World { _dir: dir, origin, notary, other }
    }

    fn name(s: &str) -> &ServerName {
        s.try_into().unwrap()
    }

    #[test]
    fn a_response_signed_by_its_server_and_the_notary_is_accepted() {
        let w = world();
        let response = sign(&w.notary, w.origin.server_key_response().unwrap());
        let keys =
            verify_notary_response(name("origin.org"), name("notary.org"), &key_set(&w.notary), &response).unwrap();
        assert_eq!(keys.verify_keys, key_set(&w.origin));
        assert!(keys.valid_until_ts > now_ms());
        // A response relayed through another notary before still verifies.
        let mut relayed = response.clone();
        relayed["signatures"]["elsewhere.org"] = json!({ "ed25519:x": "AAAA" });
        verify_notary_response(name("origin.org"), name("notary.org"), &key_set(&w.notary), &relayed).unwrap();
        // And the plain self-signed check ignores the notary's signature.
        assert_eq!(verify_key_response(name("origin.org"), &response).unwrap().0, key_set(&w.origin));
    }

    #[test]
    fn a_response_without_the_notary_signature_is_refused() {
        let w = world();
        let response = w.origin.server_key_response().unwrap();
        let err =
            verify_notary_response(name("origin.org"), name("notary.org"), &key_set(&w.notary), &response).unwrap_err();
        assert!(matches!(err, BadKeyResponse::NotarySignature(_)), "{err}");
    }

    #[test]
    fn a_notary_signature_by_another_key_is_refused() {
        let w = world();
        // Signed as notary.org, but with a key that is not the trusted one.
        let response = sign(&w.other, w.origin.server_key_response().unwrap());
        let err =
            verify_notary_response(name("origin.org"), name("notary.org"), &key_set(&w.notary), &response).unwrap_err();
        assert!(matches!(err, BadKeyResponse::NotarySignature(_)), "{err}");
        // A forged signature under the trusted key id is refused too.
        let mut forged = response.clone();
        let trusted_id = w.notary.key_id();
        let signature = forged["signatures"]["notary.org"].as_object().unwrap().values().next().unwrap().clone();
        forged["signatures"]["notary.org"] = json!({ trusted_id: signature });
        assert!(verify_notary_response(name("origin.org"), name("notary.org"), &key_set(&w.notary), &forged).is_err());
    }

    #[test]
    fn expired_responses_are_refused() {
        let w = world();
        let mut body = w.origin.server_key_response().unwrap();
        body.as_object_mut().unwrap().remove("signatures");
        body["valid_until_ts"] = json!(now_ms() - 1000);
        let response = sign(&w.notary, sign(&w.origin, body));
        let err =
            verify_notary_response(name("origin.org"), name("notary.org"), &key_set(&w.notary), &response).unwrap_err();
        assert!(matches!(err, BadKeyResponse::Expired), "{err}");
    }

    #[test]
    fn responses_not_signed_by_their_server_are_refused() {
        let w = world();
        // Only the notary signed it.
        let mut body = w.origin.server_key_response().unwrap();
        body.as_object_mut().unwrap().remove("signatures");
        let response = sign(&w.notary, body.clone());
        let err =
            verify_notary_response(name("origin.org"), name("notary.org"), &key_set(&w.notary), &response).unwrap_err();
        assert!(matches!(err, BadKeyResponse::SelfSignature(_)), "{err}");
        // Signed under the server's name by a key it does not list.
        let impostor = keys("origin.org", "impostor.key", &w._dir);
        let response = sign(&w.notary, sign(&impostor, body.clone()));
        assert!(
            verify_notary_response(name("origin.org"), name("notary.org"), &key_set(&w.notary), &response).is_err()
        );
        // Keys changed after signing.
        let mut tampered = sign(&w.notary, sign(&w.origin, body));
        tampered["valid_until_ts"] = json!(now_ms() + 999_999_999);
        assert!(
            verify_notary_response(name("origin.org"), name("notary.org"), &key_set(&w.notary), &tampered).is_err()
        );
        // A response about another server.
        let response = sign(&w.notary, w.origin.server_key_response().unwrap());
        assert!(verify_notary_response(name("other.org"), name("notary.org"), &key_set(&w.notary), &response).is_err());
    }

    #[test]
    fn old_keys_are_kept_and_used_for_their_time() {
        let w = world();
        let old_key = Base64::new(vec![7; 32]);
        let mut body = w.origin.server_key_response().unwrap();
        body.as_object_mut().unwrap().remove("signatures");
        body["old_verify_keys"] = json!({ "ed25519:old": { "key": old_key.encode(), "expired_ts": 1000 } });
        let response = sign(&w.origin, body);
        let keys = parse_key_response(name("origin.org"), &response).unwrap();
        assert_eq!(keys.old_verify_keys["ed25519:old"], (old_key.clone(), 1000));
        assert!(keys.valid_at(999).contains_key("ed25519:old"));
        assert!(!keys.valid_at(1001).contains_key("ed25519:old"));
        assert!(keys.valid_at(now_ms()).contains_key(&w.origin.key_id()));
        assert!(!keys.valid_at(keys.valid_until_ts + 1).contains_key(&w.origin.key_id()));
        assert_eq!(keys.all().len(), 2);

        // A key the server stops listing becomes an old key.
        let mut next = ServerSigningKeys {
            verify_keys: [("ed25519:new".to_owned(), Base64::new(vec![1; 32]))].into(),
            valid_until_ts: keys.valid_until_ts + 10,
            old_verify_keys: BTreeMap::new(),
        };
        next.merge_previous(&keys);
        assert_eq!(next.old_verify_keys[&w.origin.key_id()].1, keys.valid_until_ts);
        assert!(next.old_verify_keys.contains_key("ed25519:old"));
        assert!(next.has("ed25519:new") && next.has("ed25519:old") && !next.has("ed25519:nope"));
    }
}
