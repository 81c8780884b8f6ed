//! The room directory: room aliases (ours, and other servers' asked with
//! `/query/directory`) and the list of published rooms (ours, and other servers' asked
//! with `/publicRooms`).

use std::sync::Arc;

use axum::http::StatusCode;
use ruma::api::client::room::Visibility;
use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};
use ruma::api::federation::query::get_room_information;
use ruma::directory::PublicRoomsChunk;
use ruma::{OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, ServerName, UInt, UserId};

use super::appservices::AppServices;
use super::federation::FederationClient;
use super::rooms::Rooms;
use crate::error::{ApiResult, MatrixError};
use crate::services::accounts::AuthenticatedUser;
use crate::store::Store;

/// Servers named by another server's alias answer, at most.
const MAX_ALIAS_SERVERS: usize = 20;
/// A remote public room list asks for at most this many rooms.
const MAX_REMOTE_ROOMS: u32 = 500;

/// Which part of a public room list is asked for.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublicRoomsPage<'a> {
    pub limit: Option<u32>,
    pub since: Option<&'a str>,
    pub search_term: Option<&'a str>,
}

/// A page token of the public room list: `o<offset>`.
fn parse_offset(token: &str) -> ApiResult<usize> {
    token
        .strip_prefix('o')
        .and_then(|offset| offset.parse().ok())
        .ok_or_else(|| MatrixError::invalid_param(format!("Invalid since token: {token}")))
}

pub struct RoomDirectory {
    store: Arc<Store>,
    server_name: OwnedServerName,
    client: Arc<FederationClient>,
    rooms: Arc<Rooms>,
    /// Asked about unknown local aliases in their namespaces.
    appservices: Arc<AppServices>,
    /// `allow_public_rooms_over_federation`.
    share_public_rooms: bool,
    /// `require_membership_for_aliases`.
    members_only_aliases: bool,
}

impl RoomDirectory {
    pub fn new(
        store: Arc<Store>,
        server_name: OwnedServerName,
        client: Arc<FederationClient>,
        rooms: Arc<Rooms>,
        appservices: Arc<AppServices>,
        (share_public_rooms, members_only_aliases): (bool, bool),
    ) -> Self {
        Self { store, server_name, client, rooms, appservices, share_public_rooms, members_only_aliases }
    }

    /// `GET /directory/list/room/{roomId}`: whether the room is in our public list.
    pub async fn visibility(&self, room_id: &RoomId) -> ApiResult<Visibility> {
        match self.store.room_published(room_id.as_str()).await? {
            Some(true) => Ok(Visibility::Public),
            Some(false) => Ok(Visibility::Private),
            None => Err(MatrixError::not_found("Unknown room")),
        }
    }

    /// `PUT /directory/list/room/{roomId}`: a server admin, or a member who may set the
    /// room's canonical alias, publishes or hides the room (as in Synapse).
    pub async fn set_visibility(
        &self,
        room_id: &RoomId,
        requester: &AuthenticatedUser,
        visibility: Visibility,
    ) -> ApiResult<()> {
        let public = match visibility {
            Visibility::Public => true,
            Visibility::Private => false,
            _ => return Err(MatrixError::invalid_param("visibility must be public or private")),
        };
        self.visibility(room_id).await?;
        let user = requester.user_id.as_str();
        if !requester.admin && !self.rooms.may_send_state(room_id.as_str(), user, "m.room.canonical_alias").await? {
            return Err(MatrixError::forbidden("You are not allowed to change this room's visibility"));
        }
        self.store.set_room_published(room_id.as_str(), public).await?;
        Ok(())
    }

    /// An alias's room and servers to join it through: ours from the store, others'
    /// from their server (`/query/directory`).
    pub async fn resolve_alias(&self, alias: &RoomAliasId) -> ApiResult<(OwnedRoomId, Vec<OwnedServerName>)> {
        if alias.server_name() == self.server_name {
            let room_id = self.local_alias(alias).await?;
            let room_id = OwnedRoomId::try_from(room_id).map_err(|e| MatrixError::internal("stored room id", e))?;
            return Ok((room_id, vec![self.server_name.clone()]));
        }
        let request = get_room_information::v1::Request::new(alias.to_owned());
        let answer = self.client.send(alias.server_name(), request).await.map_err(|e| e.to_client_error())?;
        let mut servers: Vec<OwnedServerName> = answer.servers.into_iter().take(MAX_ALIAS_SERVERS).collect();
        servers.insert(0, alias.server_name().to_owned());
        Ok((answer.room_id, servers))
    }

    /// The room of one of our aliases; an application service whose namespace holds it
    /// is asked first if it is unknown, and may create it.
    async fn local_alias(&self, alias: &RoomAliasId) -> ApiResult<String> {
        let mut found = self.store.get_alias(alias.as_str()).await?;
        if found.is_none() && self.appservices.query_alias(alias).await {
            found = self.store.get_alias(alias.as_str()).await?;
        }
        let (room_id, _) = found.ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
        Ok(room_id)
    }

    /// `#localpart:ourserver` for `room_alias_name` at `createRoom`, checked and free.
    pub async fn new_alias(&self, localpart: &str) -> ApiResult<String> {
        if localpart.is_empty() || localpart.contains([':', '#', ' ', '\t', '\n']) {
            return Err(MatrixError::invalid_param("room_alias_name may not contain ':', '#' or whitespace"));
        }
        let alias = format!("#{localpart}:{}", self.server_name);
        if alias.len() > 255 {
            return Err(MatrixError::invalid_param("The alias is too long"));
        }
        if self.store.get_alias(&alias).await?.is_some() {
            return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_ROOM_IN_USE", "Room alias already taken"));
        }
        Ok(alias)
    }

    /// `PUT /directory/room/{alias}`: by a member of the room (or a server admin), unless
    /// `require_membership_for_aliases` is off.
    pub async fn put_alias(&self, alias: &RoomAliasId, room_id: &RoomId, creator: &AuthenticatedUser) -> ApiResult<()> {
        self.require_local(alias)?;
        self.rooms.room_version(room_id.as_str()).await?;
        let membership = self.rooms.membership_of(room_id.as_str(), creator.user_id.as_str()).await?;
        let is_member = membership.is_some_and(|m| m.membership == "join");
        if self.members_only_aliases && !is_member && !creator.admin {
            return Err(MatrixError::forbidden("You must be in the room to give it an alias"));
        }
        if !self.store.put_alias(alias.as_str(), room_id.as_str(), creator.user_id.as_str()).await? {
            return Err(MatrixError::new(StatusCode::CONFLICT, "M_UNKNOWN", "Room alias already exists"));
        }
        Ok(())
    }

    /// `DELETE /directory/room/{alias}`: by the alias's creator or a server admin, as in
    /// Synapse.
    pub async fn delete_alias(&self, alias: &RoomAliasId, requester: &AuthenticatedUser) -> ApiResult<()> {
        self.require_local(alias)?;
        let (_, creator) = self
            .store
            .get_alias(alias.as_str())
            .await?
            .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
        if creator != requester.user_id.as_str() && !requester.admin {
            return Err(MatrixError::forbidden("You may not delete this alias"));
        }
        Ok(self.store.delete_alias(alias.as_str()).await?)
    }

    fn require_local(&self, alias: &RoomAliasId) -> ApiResult<()> {
        if alias.server_name() != self.server_name {
            return Err(MatrixError::invalid_param("Room alias must be on this server"));
        }
        Ok(())
    }

    /// `GET /query/directory` from another server: a local alias's room and the
    /// servers in it, ours first.
    pub async fn serve_alias_query(&self, alias: &RoomAliasId) -> ApiResult<get_room_information::v1::Response> {
        if alias.server_name() != self.server_name {
            return Err(MatrixError::not_found("The alias is not on this server"));
        }
        let room_id = self.local_alias(alias).await?;
        let mut servers = vec![self.server_name.clone()];
        for user in self.store.joined_user_ids(&room_id).await? {
            if let Ok(user) = <&UserId>::try_from(user.as_str())
                && !servers.iter().any(|server| server == user.server_name())
            {
                servers.push(user.server_name().to_owned());
            }
        }
        let room_id = OwnedRoomId::try_from(room_id).map_err(|e| MatrixError::internal("a stored room ID", e))?;
        Ok(get_room_information::v1::Response::new(room_id, servers))
    }

    /// The rooms published in this server's directory, biggest first, a page at a time:
    /// `since` is the `next_batch` of the page before; `search_term` keeps the rooms whose
    /// name, topic or alias holds it.
    pub async fn local_public_rooms(&self, page: PublicRoomsPage<'_>) -> ApiResult<PublicRoomList> {
        let mut rooms = Vec::new();
        for room_id in self.store.published_rooms().await? {
            let Ok(room_id) = OwnedRoomId::try_from(room_id) else { continue };
            rooms.push(PublicRoomsChunk::from(self.rooms.summary(&room_id).await?));
        }
        if let Some(term) = page.search_term.map(str::to_lowercase).filter(|t| !t.is_empty()) {
            rooms.retain(|room| {
                let alias = room.canonical_alias.as_ref().map(|alias| alias.as_str());
                [room.name.as_deref(), room.topic.as_deref(), alias]
                    .into_iter()
                    .flatten()
                    .any(|text| text.to_lowercase().contains(&term))
            });
        }
        rooms.sort_by(|a, b| b.num_joined_members.cmp(&a.num_joined_members).then_with(|| a.room_id.cmp(&b.room_id)));
        let total = rooms.len();
        let start = match page.since {
            Some(token) => parse_offset(token)?.min(total),
            None => 0,
        };
        let end = page.limit.map_or(total, |limit| start.saturating_add(limit as usize).min(total));
        let previous = start.saturating_sub(page.limit.map_or(start, |limit| limit as usize));
        Ok(PublicRoomList {
            next_batch: (end < total).then(|| format!("o{end}")),
            prev_batch: (start > 0).then(|| format!("o{previous}")),
            total_room_count_estimate: UInt::try_from(total).ok(),
            chunk: rooms.drain(start..end).collect(),
        })
    }

    /// `/publicRooms` for another server, when `allow_public_rooms_over_federation`
    /// lets it see them.
    pub async fn serve_public_rooms(&self, page: PublicRoomsPage<'_>) -> ApiResult<PublicRoomList> {
        if !self.share_public_rooms {
            return Err(MatrixError::forbidden("This server does not share its public room list"));
        }
        self.local_public_rooms(page).await
    }

    /// `/publicRooms?server=…`: ours, or another server's asked over federation (with
    /// the search term when there is one).
    pub async fn public_rooms(
        &self,
        server: Option<&ServerName>,
        page: PublicRoomsPage<'_>,
    ) -> ApiResult<PublicRoomList> {
        let Some(server) = server.filter(|s| *s != self.server_name) else {
            return self.local_public_rooms(page).await;
        };
        let limit = Some(UInt::from(page.limit.unwrap_or(100).min(MAX_REMOTE_ROOMS)));
        let since = page.since.map(str::to_owned);
        let answer = match page.search_term {
            Some(term) => {
                let mut request = get_public_rooms_filtered::v1::Request::new();
                (request.limit, request.since) = (limit, since);
                request.filter.generic_search_term = Some(term.to_owned());
                let answer = self.client.send(server, request).await;
                answer.map(|a| {
                    PublicRoomList::from_remote(a.chunk, a.next_batch, a.prev_batch, a.total_room_count_estimate)
                })
            }
            None => {
                let mut request = get_public_rooms::v1::Request::new();
                (request.limit, request.since) = (limit, since);
                let answer = self.client.send(server, request).await;
                answer.map(|a| {
                    PublicRoomList::from_remote(a.chunk, a.next_batch, a.prev_batch, a.total_room_count_estimate)
                })
            }
        };
        answer.map_err(|e| e.to_client_error())
    }
}

/// A page of a public room list, ours or another server's.
#[derive(Debug, Default)]
pub struct PublicRoomList {
    pub chunk: Vec<PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total_room_count_estimate: Option<UInt>,
}

impl PublicRoomList {
    fn from_remote(
        mut chunk: Vec<PublicRoomsChunk>,
        next_batch: Option<String>,
        prev_batch: Option<String>,
        total_room_count_estimate: Option<UInt>,
    ) -> Self {
        chunk.truncate(MAX_REMOTE_ROOMS as usize);
        Self { chunk, next_batch, prev_batch, total_room_count_estimate }
    }
}
