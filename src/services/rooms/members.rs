//! Who is in a room, which rooms a user is in, and forgetting a room.

use std::collections::BTreeMap;

use ruma::api::client::membership::joined_members::v3::RoomMember;
use ruma::{OwnedMxcUri, OwnedUserId, RoomId, UserId};

use super::Rooms;
use crate::error::{ApiResult, MatrixError};
use crate::store::Membership;

impl Rooms {
    /// Whether this server takes part in a room: some local user is joined to it.
    pub async fn is_resident(&self, room_id: &str) -> ApiResult<bool> {
        Ok(self.store.room_version(room_id).await?.is_some() && self.store.has_local_member(room_id).await?)
    }

    /// A user's latest membership of a room, if any.
    pub async fn membership_of(&self, room_id: &str, user_id: &str) -> ApiResult<Option<Membership>> {
        Ok(self.store.membership(room_id, user_id).await?)
    }

    /// Every membership a user has (joined, invited, left, banned).
    pub async fn memberships_of(&self, user_id: &UserId) -> ApiResult<Vec<Membership>> {
        Ok(self.store.memberships_of_user(user_id.as_str()).await?)
    }

    /// `GET /joined_rooms`.
    pub async fn joined_rooms(&self, user_id: &UserId) -> ApiResult<Vec<String>> {
        let memberships = self.memberships_of(user_id).await?;
        Ok(memberships.into_iter().filter(|m| m.membership == "join").map(|m| m.room_id).collect())
    }

    /// `GET /joined_members`: display names and avatars of the joined members, for a
    /// user joined to the room.
    pub async fn joined_members(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> ApiResult<BTreeMap<OwnedUserId, RoomMember>> {
        let mine = self.store.membership(room_id.as_str(), user_id.as_str()).await?;
        if mine.is_none_or(|m| m.membership != "join") {
            return Err(MatrixError::forbidden("You are not joined to this room"));
        }
        let members = self.store.room_members(room_id.as_str()).await?;
        Ok(members
            .into_iter()
            .filter(|m| m.membership == "join")
            .filter_map(|m| {
                let mut member = RoomMember::new();
                member.display_name = m.displayname;
                member.avatar_url = m.avatar_url.map(OwnedMxcUri::from);
                Some((OwnedUserId::try_from(m.user_id).ok()?, member))
            })
            .collect())
    }

    /// `POST /forget`: only a room the user has left.
    pub async fn forget(&self, room_id: &RoomId, user_id: &UserId) -> ApiResult<()> {
        match self.store.membership(room_id.as_str(), user_id.as_str()).await? {
            Some(m) if m.membership == "join" || m.membership == "invite" => Err(MatrixError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "M_UNKNOWN",
                "User must leave the room before forgetting it",
            )),
            Some(_) => Ok(self.store.forget_room(room_id.as_str(), user_id.as_str()).await?),
            None => Err(MatrixError::not_found("You have never been in this room")),
        }
    }
}
