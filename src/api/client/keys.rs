//! End-to-end encryption: `/keys/*` (device, one-time, fallback and cross-signing keys
//! and their signatures) and `/sendToDevice`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::account::{PasswordAuth, confirm_password};
use crate::api::extract::{AppState, MatrixJson, Requester};
use crate::error::{ApiResult, MatrixError};
use crate::services::sync::SyncToken;

pub async fn upload(
    State(state): State<AppState>,
    Requester(owner): Requester,
    MatrixJson(body): MatrixJson<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.keys.upload(&owner.user_id, &owner.device_id, &body).await?))
}

pub async fn query(
    State(state): State<AppState>,
    Requester(owner): Requester,
    MatrixJson(body): MatrixJson<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.keys.query(&owner.user_id, &body).await?))
}

pub async fn claim(
    State(state): State<AppState>,
    Requester(_owner): Requester,
    MatrixJson(body): MatrixJson<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.keys.claim(&body).await?))
}

/// `GET /keys/changes?from=…&to=…` (sync tokens).
pub async fn changes(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let token = |name: &str| {
        let value = query.get(name).ok_or_else(|| MatrixError::missing_param(format!("{name} is required")))?;
        SyncToken::parse(value)
    };
    let (from, to) = (token("from")?, token("to")?);
    let changed = state.keys.changes(&owner.user_id, from.device_lists, to.device_lists).await?;
    let left = state.keys.left_since(&owner.user_id, from.events).await?;
    Ok(Json(json!({ "changed": changed, "left": left })))
}

/// `POST /keys/device_signing/upload`: the first upload needs no password; replacing a
/// master key does (user-interactive auth).
pub async fn upload_cross_signing(
    State(state): State<AppState>,
    Requester(owner): Requester,
    MatrixJson(body): MatrixJson<Value>,
) -> ApiResult<Json<Value>> {
    if state.keys.cross_signing_upload_needs_auth(&owner.user_id, &body).await? {
        let auth = match body.get("auth").filter(|a| !a.is_null()) {
            Some(auth) => Some(
                serde_json::from_value::<PasswordAuth>(auth.clone())
                    .map_err(|e| MatrixError::bad_json(format!("Invalid auth: {e}")))?,
            ),
            None => None,
        };
        confirm_password(&state, &owner, auth).await?;
    }
    state.keys.upload_cross_signing(&owner.user_id, &body).await?;
    Ok(Json(json!({})))
}

pub async fn upload_signatures(
    State(state): State<AppState>,
    Requester(owner): Requester,
    MatrixJson(body): MatrixJson<Value>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.keys.upload_signatures(&owner.user_id, &body).await?))
}

/// `PUT /sendToDevice/{eventType}/{txnId}`.
pub async fn send_to_device(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((event_type, txn_id)): Path<(String, String)>,
    MatrixJson(body): MatrixJson<Value>,
) -> ApiResult<Json<Value>> {
    state.limits.to_device.check(owner.user_id.as_str())?;
    let messages = body.get("messages").ok_or_else(|| MatrixError::missing_param("messages is required"))?;
    state.to_device.send(&owner.user_id, &owner.device_id, &event_type, &txn_id, messages).await?;
    Ok(Json(json!({})))
}
