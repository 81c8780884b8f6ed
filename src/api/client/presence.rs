//! `/presence/{userId}/status`.

use axum::Json;
use axum::extract::{Path, State};
use ruma::UserId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::{AppState, MatrixJson, Requester, parse_id};
use crate::error::{ApiResult, MatrixError};

pub async fn get(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user_id: &UserId = parse_id(&user_id, "user ID")?;
    Ok(Json(state.presence.get(&owner.user_id, user_id).await?))
}

#[derive(Deserialize)]
pub struct SetPresence {
    presence: Option<String>,
    #[serde(default)]
    status_msg: Option<String>,
}

pub async fn set(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(user_id): Path<String>,
    MatrixJson(request): MatrixJson<SetPresence>,
) -> ApiResult<Json<Value>> {
    let user_id: &UserId = parse_id(&user_id, "user ID")?;
    let presence = request.presence.ok_or_else(|| MatrixError::missing_param("presence is required"))?;
    state.presence.set(&owner.user_id, user_id, &presence, request.status_msg.as_deref())?;
    Ok(Json(json!({})))
}
