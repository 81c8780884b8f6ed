//! Membership endpoints: join, invite, leave, kick, ban, unban, forget.

use axum::Json;
use axum::extract::{Path, Query, State};
use ruma::OwnedServerName;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::{AppState, OptionalJson, Requester};
use crate::error::{ApiResult, MatrixError};
use crate::services::joins::servers_from_query;
use crate::services::rooms::membership::{Change, MembershipChange};

#[derive(Deserialize, Default)]
pub struct MembershipRequest {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// Resolves a room id or an alias (asking the alias's server when it is not ours) to a
/// room id and servers to join it through.
async fn resolve_room(state: &AppState, room_id_or_alias: &str) -> ApiResult<(String, Vec<OwnedServerName>)> {
    if room_id_or_alias.starts_with('#') {
        let alias = <&ruma::RoomAliasId>::try_from(room_id_or_alias)
            .map_err(|_| MatrixError::invalid_param(format!("Invalid room alias: {room_id_or_alias}")))?;
        return state.resolve_alias(alias).await;
    }
    if <&ruma::RoomId>::try_from(room_id_or_alias).is_err() {
        return Err(MatrixError::invalid_param(format!("{room_id_or_alias} is not a room ID or alias")));
    }
    Ok((room_id_or_alias.to_owned(), Vec::new()))
}

/// `POST /join/{roomIdOrAlias}?server_name=…&via=…`.
pub async fn join_by_id_or_alias(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(target): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let (room_id, mut servers) = resolve_room(&state, &target).await?;
    servers.splice(0..0, servers_from_query(&query));
    state.join_room(&owner.user_id, &room_id, &servers).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

pub async fn join_room(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (room_id, servers) = resolve_room(&state, &room_id).await?;
    state.join_room(&owner.user_id, &room_id, &servers).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

fn target_user(request: &MembershipRequest) -> ApiResult<String> {
    let user_id = request.user_id.as_deref().ok_or_else(|| MatrixError::missing_param("user_id is required"))?;
    <&ruma::UserId>::try_from(user_id)
        .map_err(|_| MatrixError::invalid_param(format!("Invalid user ID: {user_id}")))?;
    Ok(user_id.to_owned())
}

async fn change(
    state: &AppState,
    sender: &str,
    room_id: &str,
    change: Change,
    request: MembershipRequest,
) -> ApiResult<Json<Value>> {
    if change == Change::Leave {
        state.leave_room(sender, room_id, request.reason.as_deref()).await?;
        return Ok(Json(json!({})));
    }
    state.rooms.room_version(room_id).await?;
    let target = target_user(&request)?;
    let target_id =
        <&ruma::UserId>::try_from(target.as_str()).map_err(|_| MatrixError::invalid_param("Invalid user ID"))?;
    let is_local = target_id.server_name() == state.config.server_name;
    if change == Change::Invite && !is_local {
        let current = state.store.membership(room_id, &target).await?;
        match current.as_ref().map(|m| m.membership.as_str()) {
            Some("join") => return Err(MatrixError::forbidden("The user is already in the room")),
            Some("ban") => return Err(MatrixError::forbidden("The user is banned from the room")),
            _ => {}
        }
        state.invite_remote(room_id, sender, target_id, request.reason.as_deref()).await?;
        return Ok(Json(json!({})));
    }
    let profile = if change == Change::Invite && is_local {
        Some(state.profiles.get(&target).await.map_err(|_| MatrixError::not_found("Unknown user"))?)
    } else {
        None
    };
    let request = MembershipChange {
        reason: request.reason.as_deref(),
        target_profile: profile.as_ref(),
        ..MembershipChange::new(room_id, sender, &target, change)
    };
    state.rooms.change_membership(request).await?;
    Ok(Json(json!({})))
}

macro_rules! membership_handler {
    ($name:ident, $change:expr) => {
        pub async fn $name(
            State(state): State<AppState>,
            Requester(owner): Requester,
            Path(room_id): Path<String>,
            OptionalJson(request): OptionalJson<MembershipRequest>,
        ) -> ApiResult<Json<Value>> {
            change(&state, &owner.user_id, &room_id, $change, request).await
        }
    };
}

membership_handler!(invite, Change::Invite);
membership_handler!(kick, Change::Kick);
membership_handler!(ban, Change::Ban);
membership_handler!(unban, Change::Unban);

/// `POST /leave` commonly comes with an empty body.
pub async fn leave(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
    OptionalJson(request): OptionalJson<MembershipRequest>,
) -> ApiResult<Json<Value>> {
    change(&state, &owner.user_id, &room_id, Change::Leave, request).await
}

pub async fn forget(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
) -> ApiResult<Json<Value>> {
    match state.store.membership(&room_id, &owner.user_id).await? {
        Some(m) if m.membership == "join" || m.membership == "invite" => Err(MatrixError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "M_UNKNOWN",
            "User must leave the room before forgetting it",
        )),
        Some(_) => {
            state.store.forget_room(&room_id, &owner.user_id).await?;
            Ok(Json(json!({})))
        }
        None => Err(MatrixError::not_found("You have never been in this room")),
    }
}
