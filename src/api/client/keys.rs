//! End-to-end encryption: `/keys/*` (device, one-time, fallback and cross-signing keys
//! and their signatures) and `/sendToDevice`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use ruma::api::client::keys::{claim_keys, get_key_changes, get_keys, upload_signatures, upload_signing_keys};
use ruma::api::client::to_device::send_event_to_device;
use ruma::encryption::{CrossSigningKey, DeviceKeys};
use ruma::serde::Raw;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde::Serialize;
use serde_json::Value;

use super::account::confirm_password;
use crate::api::extract::{AppState, Requester, Ruma, RumaJson, RumaResponse};
use crate::endpoints::client::{upload_keys, upload_signing_keys as local_upload_signing_keys};
use crate::error::{ApiResult, MatrixError};
use crate::services::keys::{CrossSigningUpload, KeysUpload};
use crate::services::sync::SyncToken;

pub async fn upload(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<upload_keys::Request>,
) -> ApiResult<RumaResponse<upload_keys::Response>> {
    let device_id: OwnedDeviceId = owner.device_id.as_str().into();
    let upload = KeysUpload {
        device_keys: request.device_keys,
        one_time_keys: request.one_time_keys.unwrap_or_default(),
        fallback_keys: request.fallback_keys.or(request.unstable_fallback_keys).unwrap_or_default(),
    };
    let counts = state.keys.upload(&owner.user_id, &device_id, upload).await?;
    Ok(upload_keys::Response { one_time_key_counts: counts }.into())
}

/// Not ruma's response: ruma leaves out an empty `device_keys`, which matrix-nio
/// requires, and an empty `failures`; both are always there, as Synapse sends them.
#[derive(Serialize)]
pub struct KeysQueryAnswer {
    device_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Raw<DeviceKeys>>>,
    failures: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    master_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    self_signing_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    user_signing_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
}

impl From<get_keys::v3::Response> for KeysQueryAnswer {
    fn from(answer: get_keys::v3::Response) -> Self {
        Self {
            device_keys: answer.device_keys,
            failures: answer.failures,
            master_keys: answer.master_keys,
            self_signing_keys: answer.self_signing_keys,
            user_signing_keys: answer.user_signing_keys,
        }
    }
}

pub async fn query(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_keys::v3::Request>,
) -> ApiResult<Json<KeysQueryAnswer>> {
    let answer = state.keys.query(&owner.user_id, request.device_keys, request.timeout).await?;
    Ok(Json(answer.into()))
}

pub async fn claim(
    State(state): State<AppState>,
    Requester(_owner): Requester,
    Ruma(request): Ruma<claim_keys::v3::Request>,
) -> ApiResult<RumaResponse<claim_keys::v3::Response>> {
    Ok(state.keys.claim(request.one_time_keys, request.timeout).await?.into())
}

/// `GET /keys/changes?from=…&to=…` (sync tokens).
pub async fn changes(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_key_changes::v3::Request>,
) -> ApiResult<RumaResponse<get_key_changes::v3::Response>> {
    let (from, to) = (SyncToken::parse(&request.from)?, SyncToken::parse(&request.to)?);
    let from = (from.device_lists, from.events);
    let (changed, left) = state.keys.changes_between(&owner.user_id, from, to.device_lists).await?;
    Ok(get_key_changes::v3::Response::new(changed, left).into())
}

/// `POST /keys/device_signing/upload`: the first upload needs no password; replacing a
/// master key does (user-interactive auth; the local type's comment says why not
/// ruma's request).
pub async fn upload_cross_signing(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<local_upload_signing_keys::Request>,
) -> ApiResult<RumaResponse<upload_signing_keys::v3::Response>> {
    let upload = CrossSigningUpload {
        master_key: request.master_key,
        self_signing_key: request.self_signing_key,
        user_signing_key: request.user_signing_key,
    };
    if state.keys.cross_signing_upload_needs_auth(&owner.user_id, &upload).await? {
        let auth = match request.auth {
            Some(auth) => Some(auth.deserialize().map_err(|e| MatrixError::bad_json(format!("Invalid auth: {e}")))?),
            None => None,
        };
        confirm_password(&state, &owner, auth).await?;
    }
    state.keys.upload_cross_signing(&owner.user_id, &upload).await?;
    Ok(upload_signing_keys::v3::Response::new().into())
}

pub async fn upload_signatures(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<upload_signatures::v3::Request>,
) -> ApiResult<RumaResponse<upload_signatures::v3::Response>> {
    let mut answer = upload_signatures::v3::Response::new();
    answer.failures = state.keys.upload_signatures(&owner.user_id, &request.signed_keys).await?;
    Ok(answer.into())
}

/// `PUT /sendToDevice/{eventType}/{txnId}`.
pub async fn send_to_device(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<send_event_to_device::v3::Request>,
) -> ApiResult<RumaResponse<send_event_to_device::v3::Response>> {
    state.limits.to_device.check(owner.user_id.as_str())?;
    let (event_type, txn_id) = (request.event_type.to_string(), request.txn_id.as_str());
    state.to_device.send(&owner.user_id, &owner.device_id, &event_type, txn_id, &request.messages).await?;
    Ok(send_event_to_device::v3::Response::new().into())
}
