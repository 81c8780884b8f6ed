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
use std::time::Duration;

use ruma::api::client::keys::{claim_keys, get_keys};
use ruma::api::federation::keys::claim_keys::v1::OneTimeKeys;
use ruma::encryption::{CrossSigningKey, DeviceKeys, OneTimeKey};
use ruma::serde::Raw;
use ruma::{
    DeviceId, OneTimeKeyAlgorithm, OwnedDeviceId, OwnedOneTimeKeyId, OwnedServerName, OwnedUserId, UInt, UserId,
};
use serde_json::Value;
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
/// Key names are bounded like other identifiers.
const MAX_KEY_NAME_BYTES: usize = 255;
const CROSS_SIGNING_TYPES: [(&str, &str); 3] =
    [("master_key", "master"), ("self_signing_key", "self_signing"), ("user_signing_key", "user_signing")];

/// Devices asked for, by user (no devices means all of them).
pub type WantedDevices = BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>;
/// One-time keys asked for: an algorithm per device, by user.
pub type WantedKeys = BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>;
type KeyMap = BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>;

/// What `POST /keys/upload` publishes for a device.
#[derive(Default)]
pub struct KeysUpload {
    pub device_keys: Option<Raw<DeviceKeys>>,
    pub one_time_keys: KeyMap,
    pub fallback_keys: KeyMap,
}

/// Cross-signing keys uploaded together (`POST /keys/device_signing/upload`).
#[derive(Default)]
pub struct CrossSigningUpload {
    pub master_key: Option<Raw<CrossSigningKey>>,
    pub self_signing_key: Option<Raw<CrossSigningKey>>,
    pub user_signing_key: Option<Raw<CrossSigningKey>>,
}

impl CrossSigningUpload {
    fn key(&self, field: &str) -> Option<Value> {
        let key = match field {
            "master_key" => &self.master_key,
            "self_signing_key" => &self.self_signing_key,
            _ => &self.user_signing_key,
        };
        key.as_ref().and_then(|raw| raw.deserialize_as::<Value>().ok()).filter(|key| !key.is_null())
    }
}

/// One user's keys as a query answers them.
#[derive(Default)]
struct UserKeys {
    devices: BTreeMap<OwnedDeviceId, Raw<DeviceKeys>>,
    master: Option<Raw<CrossSigningKey>>,
    self_signing: Option<Raw<CrossSigningKey>>,
    user_signing: Option<Raw<CrossSigningKey>>,
}

impl UserKeys {
    fn add_to(self, user: &UserId, answer: &mut get_keys::v3::Response) {
        answer.device_keys.insert(user.to_owned(), self.devices);
        for (keys, key) in [
            (&mut answer.master_keys, self.master),
            (&mut answer.self_signing_keys, self.self_signing),
            (&mut answer.user_signing_keys, self.user_signing),
        ] {
            if let Some(key) = key {
                keys.insert(user.to_owned(), key);
            }
        }
    }
}

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

    /// `POST /keys/upload`: the device's keys, one-time keys and fallback keys; answers
    /// the device's one-time key counts.
    pub async fn upload(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        upload: KeysUpload,
    ) -> ApiResult<BTreeMap<OneTimeKeyAlgorithm, UInt>> {
        if let Some(keys) = &upload.device_keys {
            let keys: Value = keys.deserialize_as().map_err(|e| MatrixError::bad_json(e.to_string()))?;
            if !keys.is_null() {
                self.upload_device_keys(user_id, device_id.as_str(), keys).await?;
            }
        }
        let one_time = key_list(upload.one_time_keys, "one_time_keys")?;
        let fallback = key_list(upload.fallback_keys, "fallback_keys")?;
        if one_time.len() + fallback.len() > MAX_KEYS_PER_UPLOAD {
            return Err(MatrixError::invalid_param(format!("At most {MAX_KEYS_PER_UPLOAD} keys per upload")));
        }
        if !one_time.is_empty() || !fallback.is_empty() {
            self.store.add_one_time_keys(user_id.as_str(), device_id.as_str(), &one_time, &fallback).await?;
        }
        let counts = self.one_time_key_counts(user_id, device_id.as_str()).await?;
        Ok(counts
            .into_iter()
            .map(|(algorithm, count)| (algorithm.into(), UInt::try_from(count).unwrap_or_default()))
            .collect())
    }

    /// A device's one-time key counts; `signed_curve25519` always present, as clients
    /// read it to decide whether to upload more.
    pub async fn one_time_key_counts(&self, user_id: &UserId, device_id: &str) -> ApiResult<BTreeMap<String, i64>> {
        let mut counts = self.store.one_time_key_counts(user_id.as_str(), device_id).await?;
        counts.entry("signed_curve25519".to_owned()).or_insert(0);
        Ok(counts)
    }

    /// [`Self::one_time_key_counts`] and the algorithms of the device's unused fallback keys,
    /// in one read: every sync asks for both.
    pub async fn key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> ApiResult<(BTreeMap<String, i64>, Vec<String>)> {
        let (mut counts, fallback) = self.store.device_key_counts(user_id.as_str(), device_id).await?;
        counts.entry("signed_curve25519".to_owned()).or_insert(0);
        Ok((counts, fallback))
    }

    async fn upload_device_keys(&self, user_id: &UserId, device_id: &str, mut keys: Value) -> ApiResult<()> {
        if keys["user_id"] != user_id.as_str() || keys["device_id"] != device_id {
            return Err(MatrixError::invalid_param("device_keys must be this user's and this device's"));
        }
        if !keys["algorithms"].is_array() || !keys["keys"].is_object() {
            return Err(MatrixError::bad_json("device_keys needs algorithms and keys"));
        }
        let key_id = format!("ed25519:{device_id}");
        let public_key =
            keys["keys"][&key_id].as_str().ok_or_else(|| MatrixError::bad_json("No ed25519 device key"))?;
        if !verify_signature(&keys, user_id.as_str(), &key_id, public_key) {
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
        if let Some(object) = keys.as_object_mut() {
            object.remove("unsigned");
        }
        self.store.set_device_keys(user_id.as_str(), device_id, &keys).await?;
        self.notify(self.store.stream_head(crate::store::DEVICE_LIST_STREAM).await?);
        Ok(())
    }

    /// `POST /keys/query`: device and cross-signing keys of local users, and of other
    /// servers' users asked within `timeout`.
    pub async fn query(
        &self,
        requester: &UserId,
        wanted: WantedDevices,
        timeout: Option<Duration>,
    ) -> ApiResult<get_keys::v3::Response> {
        check_user_count(wanted.len())?;
        let timeout = remote::bounded(timeout);
        let (local, remote): (Vec<_>, Vec<_>) = wanted.into_iter().partition(|(user, _)| self.is_local(user));
        let mut answer = get_keys::v3::Response::new();
        for (user, devices) in &local {
            self.local_keys(user, devices, Some(requester)).await?.add_to(user, &mut answer);
        }
        self.query_remote(&mut answer, remote, timeout).await;
        self.add_signatures_by(&mut answer.master_keys, requester).await?;
        Ok(answer)
    }

    /// A local user's keys; `requester` (a local user) sees device names and, for
    /// themselves, their user-signing key.
    async fn local_keys(
        &self,
        user: &UserId,
        devices: &[OwnedDeviceId],
        requester: Option<&UserId>,
    ) -> ApiResult<UserKeys> {
        let user_id = user.as_str();
        let devices: Vec<String> = devices.iter().map(ToString::to_string).collect();
        let mut keys = self.store.device_keys(user_id, &devices).await?;
        if requester.is_some() {
            let names: BTreeMap<String, Option<String>> =
                self.store.devices(user_id).await?.into_iter().map(|d| (d.device_id, d.display_name)).collect();
            for (device_id, device) in &mut keys {
                if let (Some(Some(name)), Some(device)) = (names.get(device_id), device.as_object_mut()) {
                    let unsigned =
                        serde_json::Map::from_iter([("device_display_name".to_owned(), name.clone().into())]);
                    device.insert("unsigned".to_owned(), unsigned.into());
                }
            }
        }
        let mut answer = UserKeys {
            devices: keys.into_iter().filter_map(|(id, key)| Some((id.into(), to_raw(&key)?))).collect(),
            ..UserKeys::default()
        };
        let cross_signing = self.store.cross_signing_keys(user_id).await?;
        answer.master = cross_signing.get("master").and_then(to_raw);
        answer.self_signing = cross_signing.get("self_signing").and_then(to_raw);
        if requester == Some(user) {
            answer.user_signing = cross_signing.get("user_signing").and_then(to_raw);
        }
        Ok(answer)
    }

    /// The requester's signatures of other users' master keys, added where shown.
    async fn add_signatures_by(
        &self,
        master_keys: &mut BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
        requester: &UserId,
    ) -> ApiResult<()> {
        for (target, target_key, key_id, signature) in self.store.user_signatures_by(requester.as_str()).await? {
            let Some(raw) = <&UserId>::try_from(target.as_str()).ok().and_then(|t| master_keys.get_mut(t)) else {
                continue;
            };
            let Ok(Value::Object(mut master)) = raw.deserialize_as::<Value>() else { continue };
            // Only a signature of the user's current master key counts.
            if !master
                .get("keys")
                .and_then(Value::as_object)
                .is_some_and(|k| k.contains_key(&format!("ed25519:{target_key}")))
            {
                continue;
            }
            let signatures = master.entry("signatures").or_insert_with(|| serde_json::Map::new().into());
            let Some(by_signer) = signatures
                .as_object_mut()
                .map(|all| all.entry(requester.as_str()).or_insert_with(|| serde_json::Map::new().into()))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            by_signer.insert(key_id, signature.into());
            if let Some(signed) = to_raw(&Value::Object(master)) {
                *raw = signed;
            }
        }
        Ok(())
    }

    /// `POST /keys/claim`: one key per device asked for, local or remote.
    pub async fn claim(&self, wanted: WantedKeys, timeout: Option<Duration>) -> ApiResult<claim_keys::v3::Response> {
        check_claim_size(&wanted)?;
        let timeout = remote::bounded(timeout);
        let (local, remote): (WantedKeys, WantedKeys) = wanted.into_iter().partition(|(user, _)| self.is_local(user));
        let mut answer = claim_keys::v3::Response::new(self.claim_local(&local).await?);
        self.claim_remote(&mut answer, remote, timeout).await;
        Ok(answer)
    }

    async fn claim_local(&self, wanted: &WantedKeys) -> ApiResult<OneTimeKeys> {
        let mut claimed = OneTimeKeys::new();
        for (user, devices) in wanted {
            for (device_id, algorithm) in devices {
                let Some(key) = self.store.claim_key(user.as_str(), device_id.as_str(), algorithm.as_str()).await?
                else {
                    continue;
                };
                let key_id = OwnedOneTimeKeyId::try_from(format!("{algorithm}:{}", key.key_id));
                if let (Ok(key_id), Some(key)) = (key_id, to_raw(&key.key)) {
                    claimed.entry(user.clone()).or_default().entry(device_id.clone()).or_default().insert(key_id, key);
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

    /// [`Self::changes`] and [`Self::left_since`] between two sync positions (device
    /// lists, then events), as user IDs.
    pub async fn changes_between(
        &self,
        requester: &UserId,
        from: (i64, i64),
        to_device_lists: i64,
    ) -> ApiResult<(Vec<OwnedUserId>, Vec<OwnedUserId>)> {
        let user_ids = |users: Vec<String>| users.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect();
        let changed = self.changes(requester, from.0, to_device_lists).await?;
        let left = self.left_since(requester, from.1).await?;
        Ok((user_ids(changed), user_ids(left)))
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
    pub async fn cross_signing_upload_needs_auth(
        &self,
        user_id: &UserId,
        upload: &CrossSigningUpload,
    ) -> ApiResult<bool> {
        let held = self.store.cross_signing_keys(user_id.as_str()).await?;
        let new_master = upload.key("master_key");
        Ok(held.get("master").is_some_and(|master| new_master.is_none_or(|new| new["keys"] != master["keys"])))
    }

    /// `POST /keys/device_signing/upload`: checked (owner, usage, one key, signed by the
    /// master key) and stored.
    pub async fn upload_cross_signing(&self, user_id: &UserId, upload: &CrossSigningUpload) -> ApiResult<()> {
        let held = self.store.cross_signing_keys(user_id.as_str()).await?;
        let master = match upload.key("master_key") {
            Some(master) => master,
            None => held.get("master").cloned().ok_or_else(|| MatrixError::invalid_param("No master key"))?,
        };
        let (master_id, master_key) = key_of(&master, user_id, "master")?;
        let mut changed: Vec<(&str, Value)> = Vec::new();
        for (field, key_type) in CROSS_SIGNING_TYPES {
            let Some(key) = upload.key(field) else { continue };
            key_of(&key, user_id, key_type)?;
            if key_type != "master" && !verify_signature(&key, user_id.as_str(), &master_id, &master_key) {
                return Err(MatrixError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "M_INVALID_SIGNATURE",
                    format!("The {key_type} key is not signed by the master key"),
                ));
            }
            changed.push((key_type, key));
        }
        if changed.is_empty() {
            return Ok(());
        }
        self.store.set_cross_signing_keys(user_id.as_str(), &changed).await?;
        self.notify(self.stream_head().await?);
        Ok(())
    }
}

/// Stored JSON as ruma's raw type for it.
fn to_raw<T>(value: &Value) -> Option<Raw<T>> {
    serde_json::value::to_raw_value(value).ok().map(Raw::from_json)
}

/// `{ "alg:id": key }` into `(alg, id, key)`, each key checked to be a key.
fn key_list(keys: KeyMap, field: &str) -> ApiResult<Vec<(String, String, Value)>> {
    keys.into_iter()
        .map(|(name, key)| {
            let (algorithm, key_id) = (name.algorithm().to_string(), name.key_name().to_string());
            if key_id.is_empty() || name.as_str().len() > MAX_KEY_NAME_BYTES {
                return Err(MatrixError::invalid_param(format!("Invalid key name in {field}: {name}")));
            }
            let key: Value = key.deserialize_as().map_err(|e| MatrixError::bad_json(e.to_string()))?;
            if !key.is_object() && !key.is_string() {
                return Err(MatrixError::bad_json(format!("{field}.{name} must be a key")));
            }
            Ok((algorithm, key_id, key))
        })
        .collect()
}

/// Each device claimed is a write: a claim is bounded in devices, not only users.
fn check_claim_size(wanted: &WantedKeys) -> ApiResult<()> {
    check_user_count(wanted.len())?;
    let devices: usize = wanted.values().map(BTreeMap::len).sum();
    if devices > MAX_DEVICES_PER_CLAIM {
        return Err(MatrixError::invalid_param(format!("At most {MAX_DEVICES_PER_CLAIM} devices per claim")));
    }
    Ok(())
}

fn check_user_count(users: usize) -> ApiResult<()> {
    if users > MAX_USERS_PER_REQUEST {
        return Err(MatrixError::invalid_param(format!("At most {MAX_USERS_PER_REQUEST} users at once")));
    }
    Ok(())
}
