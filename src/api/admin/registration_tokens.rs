//! Registration tokens: `/_synapse/admin/v1/registration_tokens`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::Params;
use crate::api::extract::{AdminUser, AppState, MatrixJson};
use crate::error::{ApiResult, MatrixError};
use crate::services::registration_tokens::NewToken;
use crate::store::{RegistrationTokenRow, TokenChanges};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_synapse/admin/v1/registration_tokens", get(list))
        .route("/_synapse/admin/v1/registration_tokens/new", post(create))
        .route("/_synapse/admin/v1/registration_tokens/{token}", get(token).put(update).delete(delete))
}

fn token_json(token: &RegistrationTokenRow) -> Value {
    json!({
        "token": token.token,
        "uses_allowed": token.uses_allowed,
        "pending": token.pending,
        "completed": token.completed,
        "expiry_time": token.expiry_time,
    })
}

/// A field that is absent (`None`), null (`Some(None)`) or an integer; anything else
/// is `M_INVALID_PARAM` with `message`.
fn nullable_integer(body: &Map<String, Value>, name: &str, message: &str) -> ApiResult<Option<Option<i64>>> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(value) => value.as_i64().map(|n| Some(Some(n))).ok_or_else(|| MatrixError::invalid_param(message)),
    }
}

const USES_ALLOWED: &str = "uses_allowed must be a non-negative integer or null";
const EXPIRY_TIME: &str = "expiry_time must be an integer or null";

pub async fn list(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let valid = Params::new(params).boolean("valid")?;
    let tokens = state.registration_tokens.list(valid).await?;
    Ok(Json(json!({ "registration_tokens": tokens.iter().map(token_json).collect::<Vec<_>>() })))
}

pub async fn token(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(token): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(token_json(&state.registration_tokens.get(&token).await?)))
}

/// `POST /_synapse/admin/v1/registration_tokens/new`: `token` (or `length` for a
/// generated one), `uses_allowed`, `expiry_time`; null and absent are alike.
pub async fn create(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    MatrixJson(body): MatrixJson<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let token = match body.get("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) => Some(token.clone()),
        Some(_) => return Err(MatrixError::invalid_param("token must be a string")),
    };
    let length = nullable_integer(&body, "length", "length must be an integer > 0 and <= 64")?.flatten();
    let new = NewToken {
        token,
        length,
        uses_allowed: nullable_integer(&body, "uses_allowed", USES_ALLOWED)?.flatten(),
        expiry_time: nullable_integer(&body, "expiry_time", EXPIRY_TIME)?.flatten(),
    };
    Ok(Json(token_json(&state.registration_tokens.create(new).await?)))
}

/// `PUT /_synapse/admin/v1/registration_tokens/{token}`: `uses_allowed` and
/// `expiry_time`, null clearing a limit; a field left out is left alone.
pub async fn update(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(token): Path<String>,
    MatrixJson(body): MatrixJson<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let changes = TokenChanges {
        uses_allowed: nullable_integer(&body, "uses_allowed", USES_ALLOWED)?,
        expiry_time: nullable_integer(&body, "expiry_time", EXPIRY_TIME)?,
    };
    Ok(Json(token_json(&state.registration_tokens.update(&token, changes).await?)))
}

pub async fn delete(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(token): Path<String>,
) -> ApiResult<Json<Value>> {
    state.registration_tokens.delete(&token).await?;
    Ok(Json(json!({})))
}
