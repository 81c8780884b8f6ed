//! Keys across servers: other servers' users asked live (`/user/keys/query`,
//! `/user/keys/claim`, each server at once and within the client's timeout, an
//! unreachable one listed in `failures`), and the same requests served for ours, with
//! `/user/devices/{userId}` for a server resyncing a user's device list.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::Method;
use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};
use serde_json::{Value, json};

use super::{CROSS_SIGNING_TYPES, Keys, parse_user, requested_algorithms, requested_devices};
use crate::error::{ApiResult, MatrixError};
use crate::store::DEVICE_LIST_STREAM;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TIMEOUT: Duration = Duration::from_secs(30);

/// The `timeout` of a query or claim (milliseconds), bounded.
pub fn timeout_of(body: &Value) -> Duration {
    body["timeout"].as_u64().map_or(DEFAULT_TIMEOUT, Duration::from_millis).min(MAX_TIMEOUT)
}

/// Requests grouped by the users' servers.
fn by_server<T>(wanted: Vec<(OwnedUserId, T)>) -> BTreeMap<OwnedServerName, Vec<(OwnedUserId, T)>> {
    let mut grouped: BTreeMap<OwnedServerName, Vec<(OwnedUserId, T)>> = BTreeMap::new();
    for (user, value) in wanted {
        grouped.entry(user.server_name().to_owned()).or_default().push((user, value));
    }
    grouped
}

impl Keys {
    /// Answers from the cache what it holds for users who still share a room with ours,
    /// asks each server for the rest, side by side, and caches what comes back for
    /// users sharing a room (until their next device-list update).
    pub(super) async fn query_remote(
        &self,
        answer: &mut Value,
        wanted: Vec<(OwnedUserId, Vec<String>)>,
        timeout: Duration,
    ) {
        // Where the device-list stream stood before asking: an update received while the
        // servers answer makes their answer too old to cache.
        let asked_at = self.store.stream_head(DEVICE_LIST_STREAM).await.ok();
        let mut to_ask = Vec::new();
        for (user, devices) in wanted {
            match self.cached_keys(&user).await {
                Some(cached) => add_cached(answer, &user, &devices, &cached),
                None => to_ask.push((user, devices)),
            }
        }
        let requests = by_server(to_ask).into_iter().map(|(server, users)| async move {
            let body = json!({ "device_keys": users.iter().map(|(u, d)| (u.to_string(), json!(d))).collect::<serde_json::Map<_, _>>() });
            let result = self.ask(&server, "/_matrix/federation/v1/user/keys/query", &body, timeout).await;
            (server, users, result)
        });
        for (server, users, result) in join_all(requests).await {
            match result {
                Ok(found) => {
                    for field in ["device_keys", "master_keys", "self_signing_keys"] {
                        for (user, keys) in found[field].as_object().into_iter().flatten() {
                            if belongs_to(user, &server) {
                                answer[field][user] = keys.clone();
                            }
                        }
                    }
                    if let Some(asked_at) = asked_at {
                        self.cache_answer(&server, &users, &found, asked_at).await;
                    }
                }
                Err(err) => answer["failures"][server.as_str()] = failure(&err),
            }
        }
    }

    /// A user's cached keys, if they still share a room with a local user (else the entry
    /// goes).
    async fn cached_keys(&self, user: &UserId) -> Option<Value> {
        let cached = self.store.cached_remote_keys(user.as_str()).await.ok()??;
        if self.store.is_tracked_remote_user(user.as_str()).await.unwrap_or(false) {
            return Some(cached);
        }
        let _ = self.store.forget_remote_keys(user.as_str()).await;
        None
    }

    /// Caches the keys of the users asked for with all their devices who share a room.
    async fn cache_answer(
        &self,
        server: &ServerName,
        asked: &[(OwnedUserId, Vec<String>)],
        found: &Value,
        asked_at: i64,
    ) {
        for (user, devices) in found["device_keys"].as_object().into_iter().flatten() {
            let whole = asked.iter().any(|(asked, devices)| asked.as_str() == user && devices.is_empty());
            if !whole || !belongs_to(user, server) || !self.store.is_tracked_remote_user(user).await.unwrap_or(false) {
                continue;
            }
            let entry = json!({
                "device_keys": devices,
                "master_key": found["master_keys"][user],
                "self_signing_key": found["self_signing_keys"][user],
            });
            if let Err(err) = self.store.cache_remote_keys(user, &entry, asked_at).await {
                tracing::warn!(%user, %err, "could not cache a user's keys");
            }
        }
    }

    pub(super) async fn claim_remote(
        &self,
        answer: &mut Value,
        wanted: Vec<(OwnedUserId, BTreeMap<String, String>)>,
        timeout: Duration,
    ) {
        let requests = by_server(wanted).into_iter().map(|(server, users)| async move {
            let body = json!({ "one_time_keys": users.iter().map(|(u, d)| (u.to_string(), json!(d))).collect::<serde_json::Map<_, _>>() });
            let result = self.ask(&server, "/_matrix/federation/v1/user/keys/claim", &body, timeout).await;
            (server, result)
        });
        for (server, result) in join_all(requests).await {
            match result {
                Ok(found) => {
                    for (user, keys) in found["one_time_keys"].as_object().into_iter().flatten() {
                        if belongs_to(user, &server) {
                            answer["one_time_keys"][user] = keys.clone();
                        }
                    }
                }
                Err(err) => answer["failures"][server.as_str()] = failure(&err),
            }
        }
    }

    async fn ask(&self, server: &ServerName, path: &str, body: &Value, timeout: Duration) -> ApiResult<Value> {
        let request = self.client.request(Method::POST, server, path, Some(body));
        match tokio::time::timeout(timeout, request).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(err)) => Err(err.to_client_error()),
            Err(_) => Err(MatrixError::new(axum::http::StatusCode::GATEWAY_TIMEOUT, "M_UNKNOWN", "Timed out")),
        }
    }

    /// `POST /user/keys/query` from another server: our users' device and
    /// cross-signing keys (without device names or user-signing keys).
    pub async fn serve_query(&self, body: &Value) -> ApiResult<Value> {
        let wanted = requested_devices(&body["device_keys"])?;
        let mut answer = json!({ "device_keys": {}, "master_keys": {}, "self_signing_keys": {} });
        for (user, devices) in wanted.iter().filter(|(user, _)| self.is_local(user)) {
            self.add_local_keys(&mut answer, user, devices, None).await?;
        }
        if let Some(object) = answer.as_object_mut() {
            object.remove("user_signing_keys");
        }
        Ok(answer)
    }

    /// `POST /user/keys/claim` from another server.
    pub async fn serve_claim(&self, body: &Value) -> ApiResult<Value> {
        let wanted = requested_algorithms(&body["one_time_keys"])?;
        let local: Vec<_> = wanted.into_iter().filter(|(user, _)| self.is_local(user)).collect();
        Ok(json!({ "one_time_keys": self.claim_local(&local).await? }))
    }

    /// `GET /user/devices/{userId}`: a local user's devices and keys, with the
    /// device-list position a later `m.device_list_update` will name as `prev_id`.
    pub async fn serve_user_devices(&self, user_id: &str) -> ApiResult<Value> {
        let user = parse_user(user_id)?;
        if !self.is_local(&user) {
            return Err(MatrixError::invalid_param("The user is not on this server"));
        }
        let keys = self.store.device_keys(user_id, &[]).await?;
        let mut devices: Vec<Value> = Vec::new();
        for device in self.store.devices(user_id).await? {
            let mut entry = json!({ "device_id": device.device_id });
            if let Some(key) = keys.get(&device.device_id) {
                entry["keys"] = key.clone();
            }
            devices.push(entry);
        }
        let stream_id = self.store.previous_device_list_change(user_id, i64::MAX).await?.unwrap_or(0);
        let mut answer = json!({ "user_id": user_id, "stream_id": stream_id, "devices": devices });
        let cross_signing = self.store.cross_signing_keys(user_id).await?;
        for (field, key_type) in CROSS_SIGNING_TYPES.iter().take(2) {
            if let Some(key) = cross_signing.get(*key_type) {
                answer[*field] = key.clone();
            }
        }
        Ok(answer)
    }

    /// An `m.device_list_update` or `m.signing_key_update` from `origin`: local users
    /// sharing a room with that user see it in `device_lists.changed` and ask again.
    pub async fn receive_remote_change(
        &self,
        origin: &ServerName,
        user_id: &UserId,
        device_id: Option<&str>,
    ) -> Result<(), String> {
        if user_id.server_name() != origin {
            return Err(format!("{origin} cannot speak for {user_id}"));
        }
        // Only users someone here shares a room with matter (as in Synapse); this also
        // keeps a server from filling the stream with users it makes up.
        if !self.store.is_tracked_remote_user(user_id.as_str()).await.map_err(|e| e.to_string())? {
            return Ok(());
        }
        let position =
            self.store.note_device_list_change(user_id.as_str(), device_id).await.map_err(|e| e.to_string())?;
        self.notify(position);
        Ok(())
    }
}

/// A cached entry into a query answer (only the devices asked for, if any).
fn add_cached(answer: &mut Value, user: &UserId, devices: &[String], cached: &Value) {
    let mut device_keys = cached["device_keys"].clone();
    if !devices.is_empty()
        && let Some(all) = device_keys.as_object_mut()
    {
        all.retain(|device, _| devices.contains(device));
    }
    answer["device_keys"][user.as_str()] = device_keys;
    for (field, key) in [("master_keys", "master_key"), ("self_signing_keys", "self_signing_key")] {
        if cached[key].is_object() {
            answer[field][user.as_str()] = cached[key].clone();
        }
    }
}

fn belongs_to(user: &str, server: &ServerName) -> bool {
    <&UserId>::try_from(user).is_ok_and(|user| user.server_name() == server)
}

fn failure(err: &MatrixError) -> Value {
    json!({ "status": err.status.as_u16(), "message": err.message })
}
