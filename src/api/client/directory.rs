//! Room aliases (`/directory/room/{alias}`) and the public room list.

use axum::extract::{Path, Query, State};
use ruma::api::client::alias::{create_alias, delete_alias, get_alias};
use ruma::api::client::directory::{
    get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
};
use ruma::api::client::room::Visibility;
use ruma::{RoomAliasId, RoomId, ServerName};
use serde::Deserialize;

use crate::api::extract::{AppState, MatrixJson, MaybeRequester, OptionalJson, Requester, RumaResponse, parse_id};
use crate::error::{ApiResult, MatrixError};
use crate::services::room_directory::{PublicRoomList, PublicRoomsPage};

#[derive(Deserialize)]
pub struct PutAlias {
    room_id: String,
}

pub async fn put_alias(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(alias): Path<String>,
    MatrixJson(request): MatrixJson<PutAlias>,
) -> ApiResult<RumaResponse<create_alias::v3::Response>> {
    let alias: &RoomAliasId = parse_id(&alias, "room alias")?;
    let room_id: &RoomId = parse_id(&request.room_id, "room ID")?;
    state.appservices.check_alias_not_reserved(alias.as_str(), &owner)?;
    state.room_directory.put_alias(alias, room_id, &owner).await?;
    Ok(create_alias::v3::Response::new().into())
}

/// A local alias from the store; another server's by asking it.
pub async fn get_alias(
    State(state): State<AppState>,
    _: MaybeRequester,
    Path(alias): Path<String>,
) -> ApiResult<RumaResponse<get_alias::v3::Response>> {
    let alias: &RoomAliasId = parse_id(&alias, "room alias")?;
    let (room_id, servers) = state.room_directory.resolve_alias(alias).await?;
    Ok(get_alias::v3::Response::new(room_id, servers).into())
}

pub async fn delete_alias(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(alias): Path<String>,
) -> ApiResult<RumaResponse<delete_alias::v3::Response>> {
    let alias: &RoomAliasId = parse_id(&alias, "room alias")?;
    state.room_directory.delete_alias(alias, &owner).await?;
    Ok(delete_alias::v3::Response::new().into())
}

#[derive(Deserialize)]
pub struct PublicRoomsQuery {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    since: Option<String>,
}

/// The body of `POST /publicRooms` (its `server` stays in the query string).
#[derive(Deserialize, Default)]
pub struct PublicRoomsBody {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    filter: Option<PublicRoomsFilter>,
}

#[derive(Deserialize, Default)]
pub struct PublicRoomsFilter {
    #[serde(default)]
    generic_search_term: Option<String>,
}

/// `GET /publicRooms[?server=…]`: rooms published with `visibility: public`, here or
/// (asked over federation) on another server. No token is needed; a wrong one is refused.
pub async fn public_rooms(
    State(state): State<AppState>,
    _: MaybeRequester,
    Query(query): Query<PublicRoomsQuery>,
) -> ApiResult<RumaResponse<get_public_rooms::v3::Response>> {
    let limit = query.limit.as_deref().map(str::parse::<u32>).transpose();
    let limit = limit.map_err(|_| MatrixError::invalid_param("limit must be a non-negative integer"))?;
    let page = PublicRoomsPage { limit, since: query.since.as_deref(), search_term: None };
    let list = list_public_rooms(&state, query.server.as_deref(), page).await?;
    let mut answer = get_public_rooms::v3::Response::new(list.chunk);
    (answer.next_batch, answer.prev_batch) = (list.next_batch, list.prev_batch);
    answer.total_room_count_estimate = list.total_room_count_estimate;
    Ok(answer.into())
}

/// `POST /publicRooms[?server=…]`, which needs a token and takes its options as a body.
pub async fn search_public_rooms(
    State(state): State<AppState>,
    _: Requester,
    Query(query): Query<PublicRoomsQuery>,
    OptionalJson(body): OptionalJson<PublicRoomsBody>,
) -> ApiResult<RumaResponse<get_public_rooms_filtered::v3::Response>> {
    let search_term = body.filter.as_ref().and_then(|f| f.generic_search_term.as_deref());
    let page = PublicRoomsPage { limit: body.limit, since: body.since.as_deref(), search_term };
    let list = list_public_rooms(&state, query.server.as_deref(), page).await?;
    let mut answer = get_public_rooms_filtered::v3::Response::new();
    (answer.chunk, answer.next_batch, answer.prev_batch) = (list.chunk, list.next_batch, list.prev_batch);
    answer.total_room_count_estimate = list.total_room_count_estimate;
    Ok(answer.into())
}

async fn list_public_rooms(
    state: &AppState,
    server: Option<&str>,
    page: PublicRoomsPage<'_>,
) -> ApiResult<PublicRoomList> {
    let server: Option<&ServerName> = server.map(|s| parse_id(s, "server name")).transpose()?;
    state.room_directory.public_rooms(server, page).await
}

/// `GET /directory/list/room/{roomId}` (no authentication needed, as in the spec).
pub async fn room_visibility(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
) -> ApiResult<RumaResponse<get_room_visibility::v3::Response>> {
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    Ok(get_room_visibility::v3::Response::new(state.room_directory.visibility(room_id).await?).into())
}

#[derive(Deserialize, Default)]
pub struct SetVisibility {
    #[serde(default)]
    visibility: Option<String>,
}

pub async fn set_room_visibility(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
    OptionalJson(request): OptionalJson<SetVisibility>,
) -> ApiResult<RumaResponse<set_room_visibility::v3::Response>> {
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    let visibility = match request.visibility.as_deref() {
        None | Some("public") => Visibility::Public,
        Some("private") => Visibility::Private,
        Some(_) => return Err(MatrixError::invalid_param("visibility must be public or private")),
    };
    state.room_directory.set_visibility(room_id, &owner, visibility).await?;
    Ok(set_room_visibility::v3::Response::new().into())
}
