//! The room directory: room aliases (ours, and other servers' asked with
//! `/query/directory`) and the list of published rooms (ours, and other servers' asked
//! with `/publicRooms`).

use std::sync::Arc;

use axum::http::StatusCode;
use ruma::api::federation::query::get_room_information;
use ruma::{OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, ServerName, UserId};
use serde_json::{Value, json};

use super::federation::{FederationClient, encode};
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
        (share_public_rooms, members_only_aliases): (bool, bool),
    ) -> Self {
        Self { store, server_name, client, rooms, share_public_rooms, members_only_aliases }
    }

    /// `GET /directory/list/room/{roomId}`: whether the room is in our public list.
    pub async fn visibility(&self, room_id: &RoomId) -> ApiResult<&'static str> {
        match self.store.room_published(room_id.as_str()).await? {
            Some(true) => Ok("public"),
            Some(false) => Ok("private"),
            None => Err(MatrixError::not_found("Unknown room")),
        }
    }

    /// `PUT /directory/list/room/{roomId}`: a server admin, or a member who may set the
    /// room's canonical alias, publishes or hides the room (as in Synapse).
    pub async fn set_visibility(
        &self,
        room_id: &RoomId,
        requester: &AuthenticatedUser,
        visibility: &str,
    ) -> ApiResult<()> {
        let public = match visibility {
            "public" => true,
            "private" => false,
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
            let (room_id, _) = self
                .store
                .get_alias(alias.as_str())
                .await?
                .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
            let room_id = OwnedRoomId::try_from(room_id).map_err(|e| MatrixError::internal("stored room id", e))?;
            return Ok((room_id, vec![self.server_name.clone()]));
        }
        let request = get_room_information::v1::Request::new(alias.to_owned());
        let answer = self.client.send(alias.server_name(), request).await.map_err(|e| e.to_client_error())?;
        let mut servers: Vec<OwnedServerName> = answer.servers.into_iter().take(MAX_ALIAS_SERVERS).collect();
        servers.insert(0, alias.server_name().to_owned());
        Ok((answer.room_id, servers))
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
    pub async fn serve_alias_query(&self, alias: &RoomAliasId) -> ApiResult<Value> {
        if alias.server_name() != self.server_name {
            return Err(MatrixError::not_found("The alias is not on this server"));
        }
        let (room_id, _) = self
            .store
            .get_alias(alias.as_str())
            .await?
            .ok_or_else(|| MatrixError::not_found("Room alias not found"))?;
        let mut servers = vec![self.server_name.to_string()];
        for user in self.store.joined_user_ids(&room_id).await? {
            if let Ok(user) = <&UserId>::try_from(user.as_str()) {
                let server = user.server_name().to_string();
                if !servers.contains(&server) {
                    servers.push(server);
                }
            }
        }
        Ok(json!({ "room_id": room_id, "servers": servers }))
    }

    /// The rooms published in this server's directory, biggest first, a page at a time:
    /// `since` is the `next_batch` of the page before; `search_term` keeps the rooms whose
    /// name, topic or alias holds it.
    pub async fn local_public_rooms(&self, page: PublicRoomsPage<'_>) -> ApiResult<Value> {
        let mut rooms = Vec::new();
        for room_id in self.store.published_rooms().await? {
            rooms.push(self.rooms.public_room_summary(&room_id).await?);
        }
        if let Some(term) = page.search_term.map(str::to_lowercase).filter(|t| !t.is_empty()) {
            let matches = |room: &Value| {
                ["name", "topic", "canonical_alias"]
                    .iter()
                    .any(|field| room[field].as_str().is_some_and(|text| text.to_lowercase().contains(&term)))
            };
            rooms.retain(matches);
        }
        rooms.sort_by(|a, b| {
            let members = |room: &Value| room["num_joined_members"].as_u64().unwrap_or(0);
            members(b).cmp(&members(a)).then_with(|| a["room_id"].as_str().cmp(&b["room_id"].as_str()))
        });
        let total = rooms.len();
        let start = match page.since {
            Some(token) => parse_offset(token)?.min(total),
            None => 0,
        };
        let end = page.limit.map_or(total, |limit| start.saturating_add(limit as usize).min(total));
        let mut answer = json!({ "chunk": rooms[start..end], "total_room_count_estimate": total });
        if end < total {
            answer["next_batch"] = json!(format!("o{end}"));
        }
        if start > 0 {
            let previous = start.saturating_sub(page.limit.map_or(start, |limit| limit as usize));
            answer["prev_batch"] = json!(format!("o{previous}"));
        }
        Ok(answer)
    }

    /// `/publicRooms` for another server, when `allow_public_rooms_over_federation`
    /// lets it see them.
    pub async fn serve_public_rooms(&self, page: PublicRoomsPage<'_>) -> ApiResult<Value> {
        if !self.share_public_rooms {
            return Err(MatrixError::forbidden("This server does not share its public room list"));
        }
        self.local_public_rooms(page).await
    }

    /// `/publicRooms?server=…`: ours, or another server's asked over federation.
    pub async fn public_rooms(&self, server: Option<&ServerName>, page: PublicRoomsPage<'_>) -> ApiResult<Value> {
        let Some(server) = server.filter(|s| *s != self.server_name) else {
            return self.local_public_rooms(page).await;
        };
        let limit = page.limit.unwrap_or(100).min(MAX_REMOTE_ROOMS);
        let mut path = format!("/_matrix/federation/v1/publicRooms?limit={limit}");
        if let Some(since) = page.since {
            path.push_str(&format!("&since={}", encode(since)));
        }
        let rooms = self.client.get(server, &path).await.map_err(|e| e.to_client_error())?;
        let mut answer = json!({ "chunk": rooms["chunk"].as_array().cloned().unwrap_or_default() });
        for key in ["next_batch", "prev_batch", "total_room_count_estimate"] {
            if let Some(value) = rooms.get(key) {
                answer[key] = value.clone();
            }
        }
        Ok(answer)
    }
}
