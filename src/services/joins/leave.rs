//! Leaving a room: locally when this server is in it, else (declining an invite to a
//! room hosted elsewhere) with `make_leave`/`send_leave` through the inviting server.

use ruma::api::federation::membership::create_leave_event;
use ruma::{RoomId, ServerName, UserId};

use super::{Joins, Template, raw};
use crate::error::{ApiResult, MatrixError};
use crate::services::inbound::parse_id;
use crate::services::rooms::membership::{Change, MembershipChange};

impl Joins {
    /// Leaves a room: locally when this server is in it, else (an invite to decline)
    /// through the inviting server.
    pub async fn leave_room(&self, user: &UserId, room: &RoomId, reason: Option<&str>) -> ApiResult<()> {
        let (user_id, room_id) = (user.as_str(), room.as_str());
        if self.rooms.is_resident(room_id).await? {
            let leave = MembershipChange { reason, ..MembershipChange::new(room_id, user_id, user_id, Change::Leave) };
            self.rooms.change_membership(leave).await?;
            return Ok(());
        }
        let membership = self.store.membership(room_id, user_id).await?;
        let Some(invite) = membership.filter(|m| m.membership == "invite") else {
            return Err(MatrixError::forbidden("You are not a member of this room"));
        };
        let candidates = self.candidate_servers(room_id, user_id, &[]).await?;
        let mut last_error = MatrixError::not_found("No server to leave the room through");
        for server in candidates {
            match self.leave_through(&server, user_id, room_id, reason).await {
                Ok(()) => return Ok(()),
                Err(err) => last_error = err,
            }
        }
        tracing::info!(%room_id, %user_id, invite = %invite.event_id, %last_error, "could not decline remotely");
        Err(last_error)
    }

    async fn leave_through(
        &self,
        server: &ServerName,
        user_id: &str,
        room_id: &str,
        reason: Option<&str>,
    ) -> ApiResult<()> {
        let mut content = serde_json::Map::new();
        if let Some(reason) = reason {
            content.insert("reason".into(), reason.into());
        }
        let (_, rules, event_id, signed) =
            self.sign_remote_template(server, room_id, user_id, Template::Leave, content).await?;
        let request = create_leave_event::v2::Request::new(parse_id(room_id)?, parse_id(&event_id)?, raw(&signed)?);
        self.client.send(server, request).await.map_err(|e| e.to_client_error())?;
        let leave = self.inbound.check_pdu(&signed, &rules).await.map_err(|e| MatrixError::bad_json(e.to_string()))?;
        self.rooms.persist_outside_membership(&leave, None).await
    }
}
