//! Accounts: `/_synapse/admin/v2/users`, `/v3/users`, reset_password, whois,
//! joined_rooms, devices and deactivate.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ruma::OwnedUserId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Params;
use crate::api::client::register::MAX_PASSWORD_BYTES;
use crate::api::extract::{AdminUser, AppState, MatrixJson, OptionalJson, parse_id};
use crate::error::{ApiResult, MatrixError};
use crate::services::admin::UserChanges;
use crate::store::{UserOrder, UserQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_synapse/admin/v2/users", get(list_users_v2))
        .route("/_synapse/admin/v3/users", get(list_users_v3))
        .route("/_synapse/admin/v2/users/{user_id}", get(user).put(put_user))
        .route("/_synapse/admin/v1/reset_password/{user_id}", post(reset_password))
        .route("/_synapse/admin/v1/whois/{user_id}", get(whois))
        .route("/_synapse/admin/v1/users/{user_id}/joined_rooms", get(joined_rooms))
        .route("/_synapse/admin/v2/users/{user_id}/devices", get(devices))
        .route("/_synapse/admin/v2/users/{user_id}/devices/{device_id}", delete(delete_device))
        .route("/_synapse/admin/v1/deactivate/{user_id}", post(deactivate))
}

fn user_id(value: &str) -> ApiResult<OwnedUserId> {
    parse_id(value, "user ID")
}

/// The filters both versions share; `deactivated` is left to each.
fn user_query(params: &Params, deactivated: Option<bool>) -> ApiResult<UserQuery> {
    let page = params.page()?;
    let order = match params.string("order_by") {
        None => UserOrder::Name,
        Some(value) => UserOrder::parse(value)
            .ok_or_else(|| MatrixError::invalid_param(format!("Unknown value for order_by: {value}")))?,
    };
    Ok(UserQuery {
        from: page.from,
        limit: page.limit,
        include_guests: params.boolean("guests")?.unwrap_or(true),
        deactivated,
        admins: params.boolean("admins")?,
        include_locked: params.boolean("locked")?.unwrap_or(false),
        name: params.string("name").map(str::to_owned),
        user_id: params.string("user_id").map(str::to_owned),
        order,
        forwards: !params.backwards()?,
    })
}

/// v2: deactivated accounts are left out unless `deactivated=true`.
pub async fn list_users_v2(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let params = Params::new(params);
    let include_deactivated = params.boolean("deactivated")?.unwrap_or(false);
    let query = user_query(&params, (!include_deactivated).then_some(false))?;
    Ok(Json(state.admin.list_users(&query).await?))
}

/// v3: `deactivated` absent lists all, `true` only deactivated, `false` only active.
pub async fn list_users_v3(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let params = Params::new(params);
    let query = user_query(&params, params.boolean("deactivated")?)?;
    Ok(Json(state.admin.list_users(&query).await?))
}

pub async fn user(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(target): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin.user(&user_id(&target)?).await?))
}

#[derive(Deserialize)]
pub struct PutUser {
    #[serde(default)]
    password: Option<String>,
    #[serde(default = "yes")]
    logout_devices: bool,
    #[serde(default)]
    displayname: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
    #[serde(default)]
    admin: Option<bool>,
    #[serde(default)]
    deactivated: Option<bool>,
    #[serde(default)]
    locked: Option<bool>,
    /// Absent leaves the type alone; null clears it.
    #[serde(default, deserialize_with = "present")]
    user_type: Option<Option<String>>,
    #[serde(default)]
    threepids: Option<Vec<Value>>,
    #[serde(default)]
    external_ids: Option<Vec<Value>>,
}

fn yes() -> bool {
    true
}

/// Tells a field given as null (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(deserializer)?))
}

fn check_password(password: &str) -> ApiResult<()> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(MatrixError::invalid_param(format!("The password must be 1 to {MAX_PASSWORD_BYTES} bytes")));
    }
    Ok(())
}

/// `PUT /_synapse/admin/v2/users/{userId}`: 201 with the new account, or 200 with the
/// changed one.
pub async fn put_user(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(target): Path<String>,
    MatrixJson(body): MatrixJson<PutUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let target = user_id(&target)?;
    if let Some(password) = &body.password {
        check_password(password)?;
    }
    // Kith keeps no third-party identifiers or single sign-on mappings.
    if body.threepids.is_some_and(|list| !list.is_empty()) || body.external_ids.is_some_and(|list| !list.is_empty()) {
        return Err(MatrixError::invalid_param("Third-party and external identifiers are not supported"));
    }
    let changes = UserChanges {
        password: body.password,
        logout_devices: body.logout_devices,
        displayname: body.displayname,
        avatar_url: body.avatar_url,
        admin: body.admin,
        deactivated: body.deactivated,
        locked: body.locked,
        user_type: body.user_type,
    };
    let (created, account) = state.admin.put_user(&admin.user_id, &admin.device_id, &target, changes).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(account)))
}

#[derive(Deserialize)]
pub struct ResetPassword {
    new_password: String,
    #[serde(default = "yes")]
    logout_devices: bool,
}

pub async fn reset_password(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(target): Path<String>,
    MatrixJson(body): MatrixJson<ResetPassword>,
) -> ApiResult<Json<Value>> {
    let target = user_id(&target)?;
    check_password(&body.new_password)?;
    state
        .admin
        .reset_password(&admin.user_id, &admin.device_id, &target, &body.new_password, body.logout_devices)
        .await?;
    Ok(Json(json!({})))
}

pub async fn whois(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(target): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin.whois(&user_id(&target)?).await?))
}

pub async fn joined_rooms(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(target): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin.joined_rooms(&user_id(&target)?).await?))
}

pub async fn devices(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(target): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin.devices(&user_id(&target)?).await?))
}

pub async fn delete_device(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path((target, device_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state.admin.delete_device(&user_id(&target)?, &device_id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
pub struct Deactivate {
    #[serde(default)]
    erase: bool,
}

/// `POST /_synapse/admin/v1/deactivate/{userId}`; an empty body is accepted, as in
/// Synapse.
pub async fn deactivate(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(target): Path<String>,
    OptionalJson(body): OptionalJson<Deactivate>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.admin.deactivate(&user_id(&target)?, body.erase).await?))
}
