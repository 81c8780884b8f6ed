//! Signatures on keys: checking one (ed25519 over the canonical JSON, with ruma), and
//! `POST /keys/signatures/upload`, where a user signs their own devices with their
//! self-signing key, their master key with a device, or another user's master key with
//! their user-signing key.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use std::collections::BTreeMap;

use ruma::api::client::keys::upload_signatures::v3::{Failure, SignedKeys};
use ruma::canonical_json::CanonicalJsonObject;
use ruma::signatures::{SigningKeyAlgorithm, to_canonical_json_string_for_signing, verify_canonical_json_bytes};
use ruma::{OwnedUserId, UserId};
use serde::Serialize;
use serde_json::Value;

use super::Keys;
use crate::error::{ApiResult, MatrixError};

/// Whether `object` carries a valid signature by `signer` with the ed25519 key `key_id`
/// (`ed25519:<name>`) whose public half is `public_key` (unpadded base64).
pub fn verify_signature(object: &Value, signer: &str, key_id: &str, public_key: &str) -> bool {
    let Some(signature) = object["signatures"][signer][key_id].as_str() else { return false };
    let (Some(public_key), Some(signature)) = (decode(public_key), decode(signature)) else { return false };
    let Ok(canonical) = serde_json::from_value::<CanonicalJsonObject>(object.clone()) else { return false };
    let Ok(signed) = to_canonical_json_string_for_signing(&canonical) else { return false };
    verify_canonical_json_bytes(&SigningKeyAlgorithm::Ed25519, &public_key, &signature, signed.as_bytes()).is_ok()
}

fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD_NO_PAD.decode(text).or_else(|_| STANDARD.decode(text)).ok()
}

/// A cross-signing key's id and public key, checked to be `user_id`'s, for `usage`, and
/// holding exactly one ed25519 key.
pub fn key_of(key: &Value, user_id: &UserId, usage: &str) -> ApiResult<(String, String)> {
    if key["user_id"] != user_id.as_str() {
        return Err(MatrixError::invalid_param(format!("The {usage} key belongs to another user")));
    }
    if !key["usage"].as_array().is_some_and(|u| u.iter().any(|u| u == usage)) {
        return Err(MatrixError::invalid_param(format!("The {usage} key does not have that usage")));
    }
    let keys = key["keys"].as_object().filter(|k| k.len() == 1);
    let (id, public) = keys
        .and_then(|k| k.iter().next())
        .and_then(|(id, public)| Some((id.clone(), public.as_str()?.to_owned())))
        .filter(|(id, _)| id.starts_with("ed25519:"))
        .ok_or_else(|| MatrixError::invalid_param(format!("The {usage} key must hold one ed25519 key")))?;
    Ok((id, public))
}

/// The signatures `object` carries from `signer` that `held` does not.
fn new_signatures(object: &Value, held: &Value, signer: &str) -> Vec<(String, String)> {
    let Some(signatures) = object["signatures"][signer].as_object() else { return Vec::new() };
    signatures
        .iter()
        .filter(|(key_id, _)| held["signatures"][signer].get(key_id.as_str()).is_none())
        .filter_map(|(key_id, signature)| Some((key_id.clone(), signature.as_str()?.to_owned())))
        .collect()
}

impl Keys {
    /// `POST /keys/signatures/upload`; what could not be checked goes in the failures
    /// answered, by user and key.
    pub async fn upload_signatures(
        &self,
        signer: &UserId,
        signed: &BTreeMap<OwnedUserId, SignedKeys>,
    ) -> ApiResult<BTreeMap<OwnedUserId, BTreeMap<String, Failure>>> {
        let mut failures: BTreeMap<OwnedUserId, BTreeMap<String, Failure>> = BTreeMap::new();
        for (user, objects) in signed {
            for (key_id, object) in objects {
                let result = match serde_json::from_str::<Value>(object.get()) {
                    Ok(object) if user == signer => self.sign_own(signer, key_id, &object).await,
                    Ok(object) => self.sign_other(signer, user.as_str(), key_id, &object).await,
                    Err(err) => Err(MatrixError::bad_json(err.to_string())),
                };
                if let Err(err) = result
                    && let Some(failure) = failure_of(&err)
                {
                    failures.entry(user.clone()).or_default().insert(key_id.to_owned(), failure);
                }
            }
        }
        Ok(failures)
    }

    /// One of the signer's devices signed by their self-signing key, or their master
    /// key signed by one of their devices.
    async fn sign_own(&self, user: &UserId, target: &str, object: &Value) -> ApiResult<()> {
        let user_id = user.as_str();
        let devices = self.store.device_keys(user_id, &[target.to_owned()]).await?;
        let cross_signing = self.store.cross_signing_keys(user_id).await?;
        if let Some(held) = devices.get(target) {
            let self_signing = cross_signing.get("self_signing").ok_or_else(|| invalid("No self-signing key"))?;
            let (ssk_id, ssk) = key_of(self_signing, user, "self_signing")?;
            let merged = merge_checked(held, object, user_id, |key_id| (key_id == ssk_id).then(|| ssk.clone()))?;
            self.store.set_device_keys(user_id, target, &merged).await?;
        } else if let Some(master) =
            cross_signing.get("master").filter(|m| m["keys"].get(format!("ed25519:{target}")).is_some())
        {
            let all_devices = self.store.device_keys(user_id, &[]).await?;
            let device_key = |key_id: &str| {
                let device = key_id.strip_prefix("ed25519:")?;
                all_devices.get(device)?["keys"][key_id].as_str().map(str::to_owned)
            };
            let merged = merge_checked(master, object, user_id, device_key)?;
            self.store.set_cross_signing_keys(user_id, &[("master", merged)]).await?;
        } else {
            return Err(MatrixError::not_found("No such device or key"));
        }
        self.notify(self.stream_head().await?);
        Ok(())
    }

    /// Another user's master key signed by the signer's user-signing key.
    async fn sign_other(&self, signer: &UserId, user: &str, target: &str, object: &Value) -> ApiResult<()> {
        let cross_signing = self.store.cross_signing_keys(signer.as_str()).await?;
        let user_signing = cross_signing.get("user_signing").ok_or_else(|| invalid("No user-signing key"))?;
        let (usk_id, usk) = key_of(user_signing, signer, "user_signing")?;
        if object["user_id"] != user || object["keys"].get(format!("ed25519:{target}")).is_none() {
            return Err(invalid("Not that user's master key"));
        }
        if !verify_signature(object, signer.as_str(), &usk_id, &usk) {
            return Err(bad_signature());
        }
        let signature = object["signatures"][signer.as_str()][&usk_id].as_str().unwrap_or_default();
        self.store.add_user_signature(signer.as_str(), user, target, &usk_id, signature).await?;
        Ok(())
    }
}

/// `held` with the new signatures of `object` by `user`, each checked with the key
/// `key_for` gives; the signed content must be what is held.
fn merge_checked(
    held: &Value,
    object: &Value,
    user: &str,
    key_for: impl Fn(&str) -> Option<String>,
) -> ApiResult<Value> {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("signatures");
            o.remove("unsigned");
        }
        v
    };
    if strip(held) != strip(object) {
        return Err(invalid("The signed object differs from the stored one"));
    }
    let added = new_signatures(object, held, user);
    if added.is_empty() {
        return Err(invalid("No new signature"));
    }
    let mut merged = held.clone();
    for (key_id, signature) in added {
        let public = key_for(&key_id).ok_or_else(|| invalid("Signed with an unknown key"))?;
        if !verify_signature(object, user, &key_id, &public) {
            return Err(bad_signature());
        }
        merged["signatures"][user][&key_id] = signature.into();
    }
    Ok(merged)
}

fn invalid(message: &str) -> MatrixError {
    MatrixError::invalid_param(message)
}

fn bad_signature() -> MatrixError {
    MatrixError::new(axum::http::StatusCode::BAD_REQUEST, "M_INVALID_SIGNATURE", "Invalid signature")
}

/// A failure as ruma's type, which has no constructor: built from its JSON form.
fn failure_of(err: &MatrixError) -> Option<Failure> {
    #[derive(Serialize)]
    struct FailureJson<'a> {
        errcode: &'a str,
        error: &'a str,
    }
    let json = serde_json::to_string(&FailureJson { errcode: err.errcode, error: &err.message }).ok()?;
    serde_json::from_str(&json).ok()
}
