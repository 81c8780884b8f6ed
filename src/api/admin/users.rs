//! Accounts: `/_synapse/admin/v2/users`, `/v3/users`, reset_password, whois,
//! joined_rooms, devices and deactivate.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ruma::OwnedUserId;
use ruma::api::client::account::ThirdPartyIdRemovalStatus;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::Empty;
use super::query::{AdminQuery, Direction, backwards, count, flag, order, page};
use crate::api::client::register::MAX_PASSWORD_BYTES;
use crate::api::extract::{AdminUser, AppState, MatrixJson, OptionalJson, parse_id};
use crate::error::{ApiResult, MatrixError};
use crate::services::admin::{Account, AccountChange, JoinedRooms, UserChanges, UserDevices, UserList, Whois};
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

/// The account list's query (both versions; `deactivated` reads differently in each).
#[derive(Deserialize)]
pub struct UserListQuery {
    #[serde(default, deserialize_with = "count")]
    from: Option<i64>,
    #[serde(default, deserialize_with = "count")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "flag")]
    guests: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    deactivated: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    admins: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    locked: Option<bool>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "user_order")]
    order_by: Option<UserOrder>,
    #[serde(default)]
    dir: Option<Direction>,
}

fn user_order<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<UserOrder>, D::Error> {
    order(deserializer, UserOrder::parse)
}

impl UserListQuery {
    /// The store's query, with `deactivated` as the version reads it.
    fn into_query(self, deactivated: Option<bool>) -> UserQuery {
        let page = page(self.from, self.limit);
        UserQuery {
            from: page.from,
            limit: page.limit,
            include_guests: self.guests.unwrap_or(true),
            deactivated,
            admins: self.admins,
            include_locked: self.locked.unwrap_or(false),
            name: self.name,
            user_id: self.user_id,
            order: self.order_by.unwrap_or(UserOrder::Name),
            forwards: !backwards(self.dir, false),
        }
    }
}

/// v2: deactivated accounts are left out unless `deactivated=true`.
pub async fn list_users_v2(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    AdminQuery(query): AdminQuery<UserListQuery>,
) -> ApiResult<Json<UserList>> {
    let include_deactivated = query.deactivated.unwrap_or(false);
    let query = query.into_query((!include_deactivated).then_some(false));
    Ok(Json(state.admin.list_users(&query).await?))
}

/// v3: `deactivated` absent lists all, `true` only deactivated, `false` only active.
pub async fn list_users_v3(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    AdminQuery(query): AdminQuery<UserListQuery>,
) -> ApiResult<Json<UserList>> {
    let deactivated = query.deactivated;
    Ok(Json(state.admin.list_users(&query.into_query(deactivated)).await?))
}

pub async fn user(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(target): Path<String>,
) -> ApiResult<Json<Account>> {
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
    /// Only their number is read: kith keeps none.
    #[serde(default)]
    threepids: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    external_ids: Option<Vec<IgnoredAny>>,
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
) -> ApiResult<(StatusCode, Json<Account>)> {
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
    let (change, account) = state.admin.put_user(&admin.user_id, &admin.device_id, &target, changes).await?;
    let status = match change {
        AccountChange::Created => StatusCode::CREATED,
        AccountChange::Changed => StatusCode::OK,
    };
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
) -> ApiResult<Json<Empty>> {
    let target = user_id(&target)?;
    check_password(&body.new_password)?;
    state
        .admin
        .reset_password(&admin.user_id, &admin.device_id, &target, &body.new_password, body.logout_devices)
        .await?;
    Ok(Json(Empty {}))
}

pub async fn whois(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(target): Path<String>,
) -> ApiResult<Json<Whois>> {
    Ok(Json(state.admin.whois(&user_id(&target)?).await?))
}

pub async fn joined_rooms(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(target): Path<String>,
) -> ApiResult<Json<JoinedRooms>> {
    Ok(Json(state.admin.joined_rooms(&user_id(&target)?).await?))
}

pub async fn devices(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(target): Path<String>,
) -> ApiResult<Json<UserDevices>> {
    Ok(Json(state.admin.devices(&user_id(&target)?).await?))
}

pub async fn delete_device(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path((target, device_id)): Path<(String, String)>,
) -> ApiResult<Json<Empty>> {
    state.admin.delete_device(&user_id(&target)?, &device_id).await?;
    Ok(Json(Empty {}))
}

#[derive(Deserialize, Default)]
pub struct Deactivate {
    #[serde(default)]
    erase: bool,
}

/// Whether the account's third-party identifiers were unbound from identity servers;
/// kith keeps none, so always `success`.
#[derive(Serialize)]
pub struct Deactivated {
    id_server_unbind_result: ThirdPartyIdRemovalStatus,
}

/// `POST /_synapse/admin/v1/deactivate/{userId}`; an empty body is accepted, as in
/// Synapse.
pub async fn deactivate(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Path(target): Path<String>,
    OptionalJson(body): OptionalJson<Deactivate>,
) -> ApiResult<Json<Deactivated>> {
    state.admin.deactivate(&user_id(&target)?, body.erase).await?;
    Ok(Json(Deactivated { id_server_unbind_result: ThirdPartyIdRemovalStatus::Success }))
}
