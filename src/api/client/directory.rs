//! Room aliases (`/directory/room/{alias}`) and the public room list.

use axum::extract::State;
use ruma::api::client::alias::{delete_alias, get_alias};
use ruma::api::client::directory::{get_public_rooms, get_public_rooms_filtered, get_room_visibility};
use ruma::api::client::room::Visibility;
use ruma::{RoomId, UInt};

use crate::api::extract::{AppState, MaybeRequester, Requester, Ruma, RumaResponse, parse_id};
use crate::endpoints::client::{create_alias, set_room_visibility};
use crate::error::{ApiResult, MatrixError};
use crate::services::room_directory::PublicRoomsPage;

pub async fn put_alias(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<create_alias::Request>,
) -> ApiResult<RumaResponse<create_alias::Response>> {
    let room_id: &RoomId = parse_id(&request.room_id, "room ID")?;
    state.appservices.check_alias_not_reserved(request.room_alias.as_str(), &owner)?;
    state.room_directory.put_alias(&request.room_alias, room_id, &owner).await?;
    Ok(create_alias::Response {}.into())
}

/// A local alias from the store; another server's by asking it.
pub async fn get_alias(
    State(state): State<AppState>,
    _: MaybeRequester,
    Ruma(request): Ruma<get_alias::v3::Request>,
) -> ApiResult<RumaResponse<get_alias::v3::Response>> {
    let (room_id, servers) = state.room_directory.resolve_alias(&request.room_alias).await?;
    Ok(get_alias::v3::Response::new(room_id, servers).into())
}

pub async fn delete_alias(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<delete_alias::v3::Request>,
) -> ApiResult<RumaResponse<delete_alias::v3::Response>> {
    state.room_directory.delete_alias(&request.room_alias, &owner).await?;
    Ok(delete_alias::v3::Response::new().into())
}

/// `GET /publicRooms[?server=…]`: rooms published with `visibility: public`, here or
/// (asked over federation) on another server. No token is needed; a wrong one is refused.
pub async fn public_rooms(
    State(state): State<AppState>,
    _: MaybeRequester,
    Ruma(request): Ruma<get_public_rooms::v3::Request>,
) -> ApiResult<RumaResponse<get_public_rooms::v3::Response>> {
    let page = PublicRoomsPage { limit: limit(request.limit)?, since: request.since.as_deref(), search_term: None };
    let list = state.room_directory.public_rooms(request.server.as_deref(), page).await?;
    let mut answer = get_public_rooms::v3::Response::new(list.chunk);
    (answer.next_batch, answer.prev_batch) = (list.next_batch, list.prev_batch);
    answer.total_room_count_estimate = list.total_room_count_estimate;
    Ok(answer.into())
}

/// `POST /publicRooms[?server=…]`, which needs a token and takes its options as a body.
pub async fn search_public_rooms(
    State(state): State<AppState>,
    _: Requester,
    Ruma(request): Ruma<get_public_rooms_filtered::v3::Request>,
) -> ApiResult<RumaResponse<get_public_rooms_filtered::v3::Response>> {
    let search_term = request.filter.generic_search_term.as_deref();
    let page = PublicRoomsPage { limit: limit(request.limit)?, since: request.since.as_deref(), search_term };
    let list = state.room_directory.public_rooms(request.server.as_deref(), page).await?;
    let mut answer = get_public_rooms_filtered::v3::Response::new();
    (answer.chunk, answer.next_batch, answer.prev_batch) = (list.chunk, list.next_batch, list.prev_batch);
    answer.total_room_count_estimate = list.total_room_count_estimate;
    Ok(answer.into())
}

fn limit(limit: Option<UInt>) -> ApiResult<Option<u32>> {
    let limit = limit.map(u32::try_from).transpose();
    limit.map_err(|_| MatrixError::invalid_param("limit must be a non-negative integer"))
}

/// `GET /directory/list/room/{roomId}` (no authentication needed, as in the spec).
pub async fn room_visibility(
    State(state): State<AppState>,
    Ruma(request): Ruma<get_room_visibility::v3::Request>,
) -> ApiResult<RumaResponse<get_room_visibility::v3::Response>> {
    Ok(get_room_visibility::v3::Response::new(state.room_directory.visibility(&request.room_id).await?).into())
}

pub async fn set_room_visibility(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<set_room_visibility::Request>,
) -> ApiResult<RumaResponse<set_room_visibility::Response>> {
    let visibility = match request.visibility {
        None | Some(Visibility::Public) => Visibility::Public,
        Some(Visibility::Private) => Visibility::Private,
        Some(_) => return Err(MatrixError::invalid_param("visibility must be public or private")),
    };
    state.room_directory.set_visibility(&request.room_id, &owner, visibility).await?;
    Ok(set_room_visibility::Response {}.into())
}
