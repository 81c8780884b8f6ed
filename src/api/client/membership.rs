//! Membership endpoints: join, invite, leave, kick, ban, unban, forget.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::{AppState, OptionalJson, Requester};
use crate::error::{ApiResult, MatrixError};
use crate::services::rooms::membership::{Change, MembershipChange};

#[derive(Deserialize, Default)]
pub struct MembershipRequest {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// Resolves a room id or a local alias to a room id.
async fn resolve_room(state: &AppState, room_id_or_alias: &str) -> ApiResult<String> {
    if room_id_or_alias.starts_with('#') {
        let (room_id, _) = state
            .store
            .get_alias(room_id_or_alias)
            .await?
            .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
        return Ok(room_id);
    }
    if <&ruma::RoomId>::try_from(room_id_or_alias).is_err() {
        return Err(MatrixError::invalid_param(format!("{room_id_or_alias} is not a room ID or alias")));
    }
    Ok(room_id_or_alias.to_owned())
}

pub async fn join_by_id_or_alias(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(target): Path<String>,
) -> ApiResult<Json<Value>> {
    let room_id = resolve_room(&state, &target).await?;
    join(&state, &owner.user_id, &room_id).await
}

pub async fn join_room(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let room_id = resolve_room(&state, &room_id).await?;
    join(&state, &owner.user_id, &room_id).await
}

async fn join(state: &AppState, user_id: &str, room_id: &str) -> ApiResult<Json<Value>> {
    state.rooms.room_version(room_id).await?;
    let profile = state.profiles.get(user_id).await?;
    let join = MembershipChange {
        target_profile: Some(&profile),
        ..MembershipChange::new(room_id, user_id, user_id, Change::Join)
    };
    state.rooms.change_membership(join).await?;
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
    state.rooms.room_version(room_id).await?;
    let target = match change {
        Change::Leave => sender.to_owned(),
        _ => target_user(&request)?,
    };
    let profile = if change == Change::Invite && target.ends_with(&format!(":{}", state.config.server_name)) {
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
