//! Membership endpoints: join, invite, leave, kick, ban, unban, forget.

use axum::extract::State;
use ruma::api::client::membership::{ban_user, forget_room, kick_user, leave_room, unban_user};
use ruma::{OwnedRoomId, OwnedRoomOrAliasId, OwnedServerName, RoomId, UserId};

use crate::api::extract::{AppState, Requester, Ruma, RumaResponse, parse_id};
use crate::endpoints::client::{invite_user, join_room_by_id, join_room_by_id_or_alias};
use crate::error::ApiResult;
use crate::services::joins::{MembershipRequest as Request, servers_from_query};
use crate::services::rooms::membership::Change;

/// Resolves a room id or an alias (asking the alias's server when it is not ours) to a
/// room id and servers to join it through.
async fn resolve_room(
    state: &AppState,
    room_id_or_alias: OwnedRoomOrAliasId,
) -> ApiResult<(OwnedRoomId, Vec<OwnedServerName>)> {
    match OwnedRoomId::try_from(room_id_or_alias) {
        Ok(room_id) => Ok((room_id, Vec::new())),
        Err(alias) => state.room_directory.resolve_alias(&alias).await,
    }
}

/// `POST /join/{roomIdOrAlias}?server_name=…&via=…`: the servers named are tried
/// before those the alias resolves to.
pub async fn join_by_id_or_alias(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<join_room_by_id_or_alias::Request>,
) -> ApiResult<RumaResponse<join_room_by_id_or_alias::Response>> {
    let (room_id, mut servers) = resolve_room(&state, request.room_id_or_alias).await?;
    servers.splice(0..0, servers_from_query(&request.query));
    check_join_limits(&state, &owner.user_id, &room_id).await?;
    state.joins.join_room(&owner.user_id, &room_id, &servers).await?;
    Ok(join_room_by_id_or_alias::Response { room_id }.into())
}

/// `POST /rooms/{roomId}/join` (an alias is taken too: see the local type).
pub async fn join_room(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<join_room_by_id::Request>,
) -> ApiResult<RumaResponse<join_room_by_id::Response>> {
    let (room_id, servers) = resolve_room(&state, request.room_id).await?;
    check_join_limits(&state, &owner.user_id, &room_id).await?;
    state.joins.join_room(&owner.user_id, &room_id, &servers).await?;
    Ok(join_room_by_id::Response { room_id }.into())
}

/// `rc_joins.local` for rooms this server is in, `rc_joins.remote` for joins over
/// federation (per user), and `rc_joins_per_room`.
async fn check_join_limits(state: &AppState, user_id: &UserId, room_id: &RoomId) -> ApiResult<()> {
    if state.rooms.is_resident(room_id.as_str()).await? {
        state.limits.joins.check(user_id.as_str())?;
    } else {
        state.limits.remote_joins.check(user_id.as_str())?;
    }
    state.limits.joins_per_room.check(room_id.as_str())
}

async fn change(
    state: &AppState,
    sender: &UserId,
    room_id: &RoomId,
    change: Change,
    (target, reason): (Option<&UserId>, Option<&str>),
) -> ApiResult<()> {
    if let (Change::Invite, Some(invitee)) = (&change, target) {
        state.limits.invites_per_room.check(room_id.as_str())?;
        state.limits.invites_per_issuer.check(sender.as_str())?;
        state.limits.invites_per_user.check(invitee.as_str())?;
    }
    let request = Request { room_id, sender, change, target, reason };
    state.joins.change_membership(request).await
}

/// `POST /rooms/{roomId}/invite`.
pub async fn invite(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<invite_user::Request>,
) -> ApiResult<RumaResponse<invite_user::Response>> {
    let target: Option<&UserId> = request.user_id.as_deref().map(|user| parse_id(user, "user ID")).transpose()?;
    let reason = request.reason.as_deref();
    change(&state, &owner.user_id, &request.room_id, Change::Invite, (target, reason)).await?;
    Ok(invite_user::Response {}.into())
}

/// One handler per change of another member, answering its endpoint's (empty) response.
macro_rules! membership_handler {
    ($name:ident, $change:expr, $endpoint:ident) => {
        pub async fn $name(
            State(state): State<AppState>,
            Requester(owner): Requester,
            Ruma(request): Ruma<$endpoint::v3::Request>,
        ) -> ApiResult<RumaResponse<$endpoint::v3::Response>> {
            let (target, reason) = (Some(&*request.user_id), request.reason.as_deref());
            change(&state, &owner.user_id, &request.room_id, $change, (target, reason)).await?;
            Ok($endpoint::v3::Response::new().into())
        }
    };
}

membership_handler!(kick, Change::Kick, kick_user);
membership_handler!(ban, Change::Ban, ban_user);
membership_handler!(unban, Change::Unban, unban_user);

/// `POST /rooms/{roomId}/leave`, commonly with an empty body.
pub async fn leave(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<leave_room::v3::Request>,
) -> ApiResult<RumaResponse<leave_room::v3::Response>> {
    let reason = request.reason.as_deref();
    change(&state, &owner.user_id, &request.room_id, Change::Leave, (None, reason)).await?;
    Ok(leave_room::v3::Response::new().into())
}

pub async fn forget(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<forget_room::v3::Request>,
) -> ApiResult<RumaResponse<forget_room::v3::Response>> {
    state.rooms.forget(&request.room_id, &owner.user_id).await?;
    Ok(forget_room::v3::Response::new().into())
}
