//! End-to-end encryption keys: what devices publish (device keys, one-time and
//! fallback keys), cross-signing keys and signatures, and who may learn what. Every
//! change goes on the device-list stream, which `/sync`, `/keys/changes` and the
//! federation fan-out (`device_lists.rs`) follow. Other servers' users are asked
//! live (`remote.rs`).

pub mod device_lists;
mod remote;
mod signatures;

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::{OwnedServerName, UserId};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::error::{ApiResult, MatrixError};
use crate::services::federation::FederationClient;
use crate::store::Store;
use signatures::{key_of, verify_signature};

/// One-time keys in one upload, at most.
const MAX_KEYS_PER_UPLOAD: usize = 1_000;
/// Users in one query or claim, at most.
const MAX_USERS_PER_REQUEST: usize = 10_000;
/// Devices in one claim, at most.
const MAX_DEVICES_PER_CLAIM: usize = 1_000;
const CROSS_SIGNING_TYPES: [(&str, &str); 3] =
    [("master_key", "master"), ("self_signing_key", "self_signing"), ("user_signing_key", "user_signing")];

pub struct Keys {
    store: Arc<Store>,
    server_name: OwnedServerName,
    client: Arc<FederationClient>,
    /// Bumped on every device-list change, so that long polls wake.
    changed: watch::Sender<i64>,
}

impl Keys {
    pub fn new(store: Arc<Store>, server_name: OwnedServerName, client: Arc<FederationClient>) -> Self {
        Self { store, server_name, client, changed: watch::channel(0).0 }
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.changed.subscribe()
    }

    fn is_local(&self, user_id: &UserId) -> bool {
        user_id.server_name() == self.server_name
    }

    fn notify(&self, position: i64) {
        self.changed.send_replace(position);
    }

    /// `POST /keys/upload`: the device's keys, one-time keys and fallback keys.
    pub async fn upload(&self, user_id: &UserId, device_id: &str, body: &Value) -> ApiResult<Value> {
        if let Some(keys) = body.get("device_keys").filter(|v| !v.is_null()) {
            self.upload_device_keys(user_id, device_id, keys).await?;
        }
        let one_time = key_list(body.get("one_time_keys"), "one_time_keys")?;
        let fallback_field = body.get("fallback_keys").or_else(|| body.get("org.matrix.msc2732.fallback_keys"));
        let fallback = key_list(fallback_field, "fallback_keys")?;
        if one_time.len() + fallback.len() > MAX_KEYS_PER_UPLOAD {
            return Err(MatrixError::invalid_param(format!("At most {MAX_KEYS_PER_UPLOAD} keys per upload")));
        }
        if !one_time.is_empty() || !fallback.is_empty() {
            self.store.add_one_time_keys(user_id.as_str(), device_id, &one_time, &fallback).await?;
        }
        Ok(json!({ "one_time_key_counts": self.one_time_key_counts(user_id, device_id).await? }))
    }

    /// A device's one-time key counts; `signed_curve25519` always present, as clients
    /// read it to decide whether to upload more.
    pub async fn one_time_key_counts(&self, user_id: &UserId, device_id: &str) -> ApiResult<BTreeMap<String, i64>> {
        let mut counts = self.store.one_time_key_counts(user_id.as_str(), device_id).await?;
        counts.entry("signed_curve25519".to_owned()).or_insert(0);
        Ok(counts)
    }

    pub async fn unused_fallback_key_types(&self, user_id: &UserId, device_id: &str) -> ApiResult<Vec<String>> {
        Ok(self.store.unused_fallback_key_types(user_id.as_str(), device_id).await?)
    }

    async fn upload_device_keys(&self, user_id: &UserId, device_id: &str, keys: &Value) -> ApiResult<()> {
        if keys["user_id"] != user_id.as_str() || keys["device_id"] != device_id {
            return Err(MatrixError::invalid_param("device_keys must be this user's and this device's"));
        }
        if !keys["algorithms"].is_array() || !keys["keys"].is_object() {
            return Err(MatrixError::bad_json("device_keys needs algorithms and keys"));
        }
        let key_id = format!("ed25519:{device_id}");
        let public_key =
            keys["keys"][&key_id].as_str().ok_or_else(|| MatrixError::bad_json("No ed25519 device key"))?;
        if !verify_signature(keys, user_id.as_str(), &key_id, public_key) {
            return Err(MatrixError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "M_INVALID_SIGNATURE",
                "The device keys are not signed by the device",
            ));
        }
        let held = self.store.device_keys(user_id.as_str(), &[device_id.to_owned()]).await?;
        // A re-upload of the same keys keeps the signatures others added since.
        if held.get(device_id).is_some_and(|old| old["keys"] == keys["keys"] && old["algorithms"] == keys["algorithms"])
        {
            return Ok(());
        }
        let mut keys = keys.clone();
        if let Some(object) = keys.as_object_mut() {
            object.remove("unsigned");
        }
        self.store.set_device_keys(user_id.as_str(), device_id, &keys).await?;
        self.notify(self.store.stream_head(crate::store::DEVICE_LIST_STREAM).await?);
        Ok(())
    }

    /// `POST /keys/query`: device and cross-signing keys of local users, and of other
    /// servers' users asked within `timeout`.
    pub async fn query(&self, requester: &UserId, body: &Value) -> ApiResult<Value> {
        let wanted = requested_devices(&body["device_keys"])?;
        let timeout = remote::timeout_of(body);
        let (local, remote): (Vec<_>, Vec<_>) = wanted.into_iter().partition(|(user, _)| self.is_local(user));
        let mut answer = json!({
            "device_keys": {}, "master_keys": {}, "self_signing_keys": {}, "user_signing_keys": {}, "failures": {},
        });
        for (user, devices) in &local {
            self.add_local_keys(&mut answer, user, devices, Some(requester)).await?;
        }
        self.query_remote(&mut answer, remote, timeout).await;
        self.add_signatures_by(&mut answer, requester).await?;
        Ok(answer)
    }

    /// A local user's keys into a query answer; `requester` (a local user) sees device
    /// names and, for themselves, their user-signing key.
    async fn add_local_keys(
        &self,
        answer: &mut Value,
        user: &UserId,
        devices: &[String],
        requester: Option<&UserId>,
    ) -> ApiResult<()> {
        let user_id = user.as_str();
        let mut keys = self.store.device_keys(user_id, devices).await?;
        if requester.is_some() {
            let names: BTreeMap<String, Option<String>> =
                self.store.devices(user_id).await?.into_iter().map(|d| (d.device_id, d.display_name)).collect();
            for (device_id, device) in &mut keys {
                if let Some(Some(name)) = names.get(device_id) {
                    device["unsigned"] = json!({ "device_display_name": name });
                }
            }
        }
        answer["device_keys"][user_id] = json!(keys);
        let cross_signing = self.store.cross_signing_keys(user_id).await?;
        for (field, key_type) in CROSS_SIGNING_TYPES {
            let shown = key_type != "user_signing" || requester == Some(user);
            if let Some(key) = cross_signing.get(key_type).filter(|_| shown) {
                answer[field.replace("_key", "_keys")][user_id] = key.clone();
            }
        }
        Ok(())
    }

    /// The requester's signatures of other users' master keys, added where shown.
    async fn add_signatures_by(&self, answer: &mut Value, requester: &UserId) -> ApiResult<()> {
        for (target, target_key, key_id, signature) in self.store.user_signatures_by(requester.as_str()).await? {
            let Some(master) = answer["master_keys"].get_mut(&target).and_then(Value::as_object_mut) else { continue };
            // Only a signature of the user's current master key counts.
            if !master
                .get("keys")
                .and_then(Value::as_object)
                .is_some_and(|k| k.contains_key(&format!("ed25519:{target_key}")))
            {
                continue;
            }
            let signatures = master.entry("signatures").or_insert_with(|| json!({}));
            let Some(by_signer) = signatures
                .as_object_mut()
                .map(|all| all.entry(requester.as_str()).or_insert_with(|| json!({})))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            by_signer.insert(key_id, json!(signature));
        }
        Ok(())
    }

    /// `POST /keys/claim`: one key per device asked for, local or remote.
    pub async fn claim(&self, body: &Value) -> ApiResult<Value> {
        let wanted = requested_algorithms(&body["one_time_keys"])?;
        let timeout = remote::timeout_of(body);
        let (local, remote): (Vec<_>, Vec<_>) = wanted.into_iter().partition(|(user, _)| self.is_local(user));
        let mut answer = json!({ "one_time_keys": {}, "failures": {} });
        answer["one_time_keys"] = self.claim_local(&local).await?;
        self.claim_remote(&mut answer, remote, timeout).await;
        Ok(answer)
    }

    async fn claim_local(&self, wanted: &[(ruma::OwnedUserId, BTreeMap<String, String>)]) -> ApiResult<Value> {
        let mut claimed = json!({});
        for (user, devices) in wanted {
            for (device_id, algorithm) in devices {
                if let Some(key) = self.store.claim_key(user.as_str(), device_id, algorithm).await? {
                    claimed[user.as_str()][device_id][format!("{algorithm}:{}", key.key_id)] = key.key;
                }
            }
        }
        Ok(claimed)
    }

    /// `GET /keys/changes`: users sharing a room with the requester whose keys changed
    /// between two device-list positions.
    pub async fn changes(&self, requester: &UserId, from: i64, to: i64) -> ApiResult<Vec<String>> {
        Ok(self.store.device_lists_changed_for(requester.as_str(), from, to).await?)
    }

    /// Users who came to share a room with `user` since the event position `since`.
    pub async fn joined_since(&self, user: &UserId, since: i64) -> ApiResult<Vec<String>> {
        Ok(self.store.device_lists_joined_for(user.as_str(), since).await?)
    }

    /// Users who no longer share a room with `user` since the event position `since`.
    pub async fn left_since(&self, user: &UserId, since: i64) -> ApiResult<Vec<String>> {
        Ok(self.store.device_lists_left_for(user.as_str(), since).await?)
    }

    pub async fn stream_head(&self) -> ApiResult<i64> {
        Ok(self.store.stream_head(crate::store::DEVICE_LIST_STREAM).await?)
    }

    /// Whether uploading these cross-signing keys needs the user to authenticate: when
    /// they would replace a different master key.
    pub async fn cross_signing_upload_needs_auth(&self, user_id: &UserId, body: &Value) -> ApiResult<bool> {
        let held = self.store.cross_signing_keys(user_id.as_str()).await?;
        Ok(held.get("master").is_some_and(|master| {
            body.get("master_key").is_none_or(|new| new.is_null() || new["keys"] != master["keys"])
        }))
    }

    /// `POST /keys/device_signing/upload`: checked (owner, usage, one key, signed by the
    /// master key) and stored.
    pub async fn upload_cross_signing(&self, user_id: &UserId, body: &Value) -> ApiResult<()> {
        let held = self.store.cross_signing_keys(user_id.as_str()).await?;
        let master = match body.get("master_key").filter(|k| !k.is_null()) {
            Some(master) => master.clone(),
            None => held.get("master").cloned().ok_or_else(|| MatrixError::invalid_param("No master key"))?,
        };
        let (master_id, master_key) = key_of(&master, user_id, "master")?;
        let mut changed: Vec<(&str, Value)> = Vec::new();
        for (field, key_type) in CROSS_SIGNING_TYPES {
            let Some(key) = body.get(field).filter(|k| !k.is_null()) else { continue };
            key_of(key, user_id, key_type)?;
            if key_type != "master" && !verify_signature(key, user_id.as_str(), &master_id, &master_key) {
                return Err(MatrixError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "M_INVALID_SIGNATURE",
                    format!("The {key_type} key is not signed by the master key"),
                ));
            }
            changed.push((key_type, key.clone()));
        }
        if changed.is_empty() {
            return Ok(());
        }
        self.store.set_cross_signing_keys(user_id.as_str(), &changed).await?;
        self.notify(self.stream_head().await?);
        Ok(())
    }
}

/// `{ "alg:id": key }` into `(alg, id, key)`.
fn key_list(value: Option<&Value>, field: &str) -> ApiResult<Vec<(String, String, Value)>> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let object = value.as_object().ok_or_else(|| MatrixError::bad_json(format!("{field} must be an object")))?;
    object
        .iter()
        .map(|(name, key)| {
            let (algorithm, key_id) = name
                .split_once(':')
                .filter(|(a, id)| !a.is_empty() && !id.is_empty() && name.len() <= 255)
                .ok_or_else(|| MatrixError::invalid_param(format!("Invalid key name in {field}: {name}")))?;
            if !key.is_object() && !key.is_string() {
                return Err(MatrixError::bad_json(format!("{field}.{name} must be a key")));
            }
            Ok((algorithm.to_owned(), key_id.to_owned(), key.clone()))
        })
        .collect()
}

/// `{ user: [device…] }` parsed (an empty list means every device).
fn requested_devices(value: &Value) -> ApiResult<Vec<(ruma::OwnedUserId, Vec<String>)>> {
    let object = value.as_object().ok_or_else(|| MatrixError::bad_json("device_keys must be an object"))?;
    check_user_count(object)?;
    object
        .iter()
        .map(|(user, devices)| {
            let user = parse_user(user)?;
            let devices = match devices {
                Value::Null => Vec::new(),
                Value::Array(list) => list.iter().filter_map(|d| d.as_str().map(str::to_owned)).collect(),
                _ => return Err(MatrixError::bad_json("device lists must be arrays")),
            };
            Ok((user, devices))
        })
        .collect()
}

/// `{ user: { device: algorithm } }` parsed.
fn requested_algorithms(value: &Value) -> ApiResult<Vec<(ruma::OwnedUserId, BTreeMap<String, String>)>> {
    let object = value.as_object().ok_or_else(|| MatrixError::bad_json("one_time_keys must be an object"))?;
    check_user_count(object)?;
    // Each device claimed is a write: a claim is bounded in devices, not only users.
    let devices: usize = object.values().map(|devices| devices.as_object().map_or(0, Map::len)).sum();
    if devices > MAX_DEVICES_PER_CLAIM {
        return Err(MatrixError::invalid_param(format!("At most {MAX_DEVICES_PER_CLAIM} devices per claim")));
    }
    object
        .iter()
        .map(|(user, devices)| {
            let user = parse_user(user)?;
            let devices = devices.as_object().ok_or_else(|| MatrixError::bad_json("devices must be an object"))?;
            let devices = devices
                .iter()
                .map(|(device, algorithm)| {
                    let algorithm =
                        algorithm.as_str().ok_or_else(|| MatrixError::bad_json("algorithms are strings"))?;
                    Ok((device.clone(), algorithm.to_owned()))
                })
                .collect::<ApiResult<_>>()?;
            Ok((user, devices))
        })
        .collect()
}

fn check_user_count(object: &Map<String, Value>) -> ApiResult<()> {
    if object.len() > MAX_USERS_PER_REQUEST {
        return Err(MatrixError::invalid_param(format!("At most {MAX_USERS_PER_REQUEST} users at once")));
    }
    Ok(())
}

fn parse_user(user: &str) -> ApiResult<ruma::OwnedUserId> {
    ruma::OwnedUserId::try_from(user).map_err(|_| MatrixError::invalid_param(format!("Invalid user ID: {user}")))
}
