//! Registration tokens: `/_synapse/admin/v1/registration_tokens`.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::Empty;
use super::query::{AdminQuery, flag};
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

/// A token in Synapse's shape; a limit not set is null.
#[derive(Serialize)]
pub struct RegistrationToken {
    token: String,
    uses_allowed: Option<i64>,
    pending: i64,
    completed: i64,
    expiry_time: Option<i64>,
}

impl From<RegistrationTokenRow> for RegistrationToken {
    fn from(row: RegistrationTokenRow) -> Self {
        let RegistrationTokenRow { token, uses_allowed, pending, completed, expiry_time } = row;
        Self { token, uses_allowed, pending, completed, expiry_time }
    }
}

#[derive(Serialize)]
pub struct TokenList {
    registration_tokens: Vec<RegistrationToken>,
}

/// A body field that is absent, null, of the type asked for, or not: Synapse answers
/// the last with `M_INVALID_PARAM` and a message of its own, not `M_BAD_JSON`.
#[derive(Default)]
pub enum Field<T> {
    #[default]
    Absent,
    Null,
    Given(T),
    Invalid,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Null => Self::Null,
            value => serde_json::from_value(value).map_or(Self::Invalid, Self::Given),
        })
    }
}

impl<T> Field<T> {
    /// `None` when absent, `Some(None)` when null; `message` when of another type.
    fn nullable(self, message: &str) -> ApiResult<Option<Option<T>>> {
        match self {
            Self::Absent => Ok(None),
            Self::Null => Ok(Some(None)),
            Self::Given(value) => Ok(Some(Some(value))),
            Self::Invalid => Err(MatrixError::invalid_param(message)),
        }
    }

    /// Null and absent are alike.
    fn optional(self, message: &str) -> ApiResult<Option<T>> {
        Ok(self.nullable(message)?.flatten())
    }
}

const USES_ALLOWED: &str = "uses_allowed must be a non-negative integer or null";
const EXPIRY_TIME: &str = "expiry_time must be an integer or null";

#[derive(Deserialize)]
pub struct TokenListQuery {
    #[serde(default, deserialize_with = "flag")]
    valid: Option<bool>,
}

pub async fn list(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    AdminQuery(query): AdminQuery<TokenListQuery>,
) -> ApiResult<Json<TokenList>> {
    let tokens = state.registration_tokens.list(query.valid).await?;
    Ok(Json(TokenList { registration_tokens: tokens.into_iter().map(RegistrationToken::from).collect() }))
}

pub async fn token(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(token): Path<String>,
) -> ApiResult<Json<RegistrationToken>> {
    Ok(Json(state.registration_tokens.get(&token).await?.into()))
}

#[derive(Deserialize)]
pub struct NewTokenRequest {
    #[serde(default)]
    token: Field<String>,
    #[serde(default)]
    length: Field<i64>,
    #[serde(default)]
    uses_allowed: Field<i64>,
    #[serde(default)]
    expiry_time: Field<i64>,
}

/// `POST /_synapse/admin/v1/registration_tokens/new`: `token` (or `length` for a
/// generated one), `uses_allowed`, `expiry_time`; null and absent are alike.
pub async fn create(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    MatrixJson(request): MatrixJson<NewTokenRequest>,
) -> ApiResult<Json<RegistrationToken>> {
    let new = NewToken {
        token: request.token.optional("token must be a string")?,
        length: request.length.optional("length must be an integer > 0 and <= 64")?,
        uses_allowed: request.uses_allowed.optional(USES_ALLOWED)?,
        expiry_time: request.expiry_time.optional(EXPIRY_TIME)?,
    };
    Ok(Json(state.registration_tokens.create(new).await?.into()))
}

#[derive(Deserialize)]
pub struct TokenUpdate {
    #[serde(default)]
    uses_allowed: Field<i64>,
    #[serde(default)]
    expiry_time: Field<i64>,
}

/// `PUT /_synapse/admin/v1/registration_tokens/{token}`: `uses_allowed` and
/// `expiry_time`, null clearing a limit; a field left out is left alone.
pub async fn update(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(token): Path<String>,
    MatrixJson(request): MatrixJson<TokenUpdate>,
) -> ApiResult<Json<RegistrationToken>> {
    let changes = TokenChanges {
        uses_allowed: request.uses_allowed.nullable(USES_ALLOWED)?,
        expiry_time: request.expiry_time.nullable(EXPIRY_TIME)?,
    };
    Ok(Json(state.registration_tokens.update(&token, changes).await?.into()))
}

pub async fn delete(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(token): Path<String>,
) -> ApiResult<Json<Empty>> {
    state.registration_tokens.delete(&token).await?;
    Ok(Json(Empty {}))
}
