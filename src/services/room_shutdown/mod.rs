//! Shutting a room down, as Synapse's delete room admin API does: the room may be
//! blocked, its local members leave (and may be moved to a new room that says why), its
//! aliases move there or go, it leaves the public room list, and its history may be
//! purged from the database. The synchronous version answers when done; the background
//! one answers with a delete id whose progress [`tasks`] keeps, and waits its turn in a
//! bounded queue that the room deletions worker takes one at a time.

mod tasks;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, UserId};
use serde::Serialize;
use tokio::sync::mpsc;

use super::directory::Directory;
use super::joins::Joins;
use super::profiles::{Profile, Profiles};
use super::rooms::create::{CreateRoom, CreateRoomRequest};
use super::rooms::{NewEvent, Rooms};
use super::sender::Sender;
use super::workers::{Shutdown, Worker};
use crate::error::{ApiResult, MatrixError};
use crate::store::Store;
use tasks::Deletions;
pub use tasks::{Deletion, DeletionStatus};

/// Background deletions waiting their turn, at most.
const MAX_WAITING_DELETIONS: usize = 100;
/// How long a purge waits for other servers to take the members' leave events.
const DELIVERY_WAIT: Duration = Duration::from_secs(10);
const DEFAULT_ROOM_NAME: &str = "Content Violation Notification";
const DEFAULT_MESSAGE: &str =
    "Sharing illegal content on this server is not permitted and rooms in violation will be blocked.";

/// What an admin asks of a room's deletion (Synapse's body, its defaults applied).
#[derive(Debug, Clone)]
pub struct DeleteRoom {
    pub room_id: OwnedRoomId,
    pub requester: OwnedUserId,
    /// Creates a room as this local user and moves the local members into it.
    pub new_room_user_id: Option<OwnedUserId>,
    pub room_name: Option<String>,
    pub message: Option<String>,
    pub block: bool,
    pub purge: bool,
    /// Purge even when local users are still joined.
    pub force_purge: bool,
}

/// What shutting the room down did, in Synapse's shape.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShutdownReport {
    pub kicked_users: Vec<OwnedUserId>,
    pub failed_to_kick_users: Vec<OwnedUserId>,
    pub local_aliases: Vec<String>,
    pub new_room_id: Option<OwnedRoomId>,
}

pub struct RoomShutdown {
    store: Arc<Store>,
    server_name: OwnedServerName,
    rooms: Arc<Rooms>,
    joins: Arc<Joins>,
    profiles: Arc<Profiles>,
    sender: Arc<Sender>,
    directory: Arc<Directory>,
    deletions: Mutex<Deletions>,
    queue: mpsc::Sender<(String, DeleteRoom)>,
    waiting: tokio::sync::Mutex<mpsc::Receiver<(String, DeleteRoom)>>,
}

impl RoomShutdown {
    pub fn new(
        store: Arc<Store>,
        server_name: OwnedServerName,
        rooms: Arc<Rooms>,
        joins: Arc<Joins>,
        profiles: Arc<Profiles>,
        sender: Arc<Sender>,
        directory: Arc<Directory>,
    ) -> Self {
        let deletions = Mutex::new(Deletions::default());
        let (queue, waiting) = mpsc::channel(MAX_WAITING_DELETIONS);
        let waiting = tokio::sync::Mutex::new(waiting);
        Self { store, server_name, rooms, joins, profiles, sender, directory, deletions, queue, waiting }
    }

    /// `PUT /rooms/{roomId}/block`: a room may be blocked before this server knows it.
    pub async fn set_blocked(&self, room_id: &RoomId, blocked: bool, admin: &UserId) -> ApiResult<()> {
        match blocked {
            true => self.store.block_room(room_id.as_str(), admin.as_str()).await?,
            false => self.store.unblock_room(room_id.as_str()).await?,
        }
        Ok(())
    }

    /// Who blocked the room, if it is blocked.
    pub async fn blocked_by(&self, room_id: &RoomId) -> ApiResult<Option<String>> {
        Ok(self.store.room_blocked_by(room_id.as_str()).await?)
    }

    /// Version 1: shuts the room down and answers when done.
    pub async fn delete_now(&self, request: DeleteRoom) -> ApiResult<ShutdownReport> {
        self.check(&request)?;
        let delete_id = self.lock_deletions().begin(&request.room_id)?;
        self.carry_out(&delete_id, &request).await
    }

    /// Version 2: queues the deletion for the background worker; returns its delete id.
    pub async fn start(&self, request: DeleteRoom) -> ApiResult<String> {
        self.check(&request)?;
        let Ok(turn) = self.queue.try_reserve() else {
            let message = format!("{MAX_WAITING_DELETIONS} deletions are already waiting; try again later");
            return Err(MatrixError::new(StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", message));
        };
        let delete_id = self.lock_deletions().begin(&request.room_id)?;
        turn.send((delete_id.clone(), request));
        Ok(delete_id)
    }

    /// The deletions of a room, running or finished in the last day.
    pub fn deletions_of(&self, room_id: &RoomId) -> Vec<Deletion> {
        self.lock_deletions().of_room(room_id)
    }

    pub fn deletion(&self, delete_id: &str) -> Option<Deletion> {
        self.lock_deletions().get(delete_id)
    }

    fn lock_deletions(&self) -> std::sync::MutexGuard<'_, Deletions> {
        self.deletions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check(&self, request: &DeleteRoom) -> ApiResult<()> {
        match &request.new_room_user_id {
            Some(user) if user.server_name() != self.server_name => {
                Err(MatrixError::invalid_param(format!("User must be our own: {user}")))
            }
            _ => Ok(()),
        }
    }

    /// Runs a deletion, recording its progress and outcome under `delete_id`.
    async fn carry_out(&self, delete_id: &str, request: &DeleteRoom) -> ApiResult<ShutdownReport> {
        self.lock_deletions().set_active(delete_id);
        let outcome = self.shut_down(delete_id, request).await;
        match &outcome {
            Ok(report) => self.lock_deletions().complete(delete_id, report.clone()),
            Err(err) => {
                tracing::warn!(room_id = %request.room_id, %err, "room deletion failed");
                self.lock_deletions().fail(delete_id, err.message.clone());
            }
        }
        outcome
    }

    async fn shut_down(&self, delete_id: &str, request: &DeleteRoom) -> ApiResult<ShutdownReport> {
        let room_id = &request.room_id;
        // Blocked first, even a room this server does not know (yet): nothing else to do then.
        if request.block {
            self.set_blocked(room_id, true, &request.requester).await?;
        }
        if self.store.room_version(room_id.as_str()).await?.is_none() {
            return Ok(ShutdownReport::default());
        }
        let mut report = ShutdownReport::default();
        let new_room = match &request.new_room_user_id {
            Some(creator) => Some(self.create_notice_room(creator, request).await?),
            None => None,
        };
        report.new_room_id = new_room.clone();
        self.remove_local_members(room_id, new_room.as_deref(), &mut report).await?;
        report.local_aliases = match &new_room {
            Some(new_room) => self.store.move_aliases(room_id.as_str(), new_room.as_str()).await?,
            None => self.store.remove_room_aliases(room_id.as_str()).await?,
        };
        self.store.set_room_published(room_id.as_str(), false).await?;
        self.lock_deletions().report(delete_id, report.clone());
        if request.purge {
            self.purge(room_id, request.force_purge).await?;
        }
        Ok(report)
    }

    /// The room that tells the members why they were moved: public, where they cannot
    /// speak, with the admin's message from `creator`.
    async fn create_notice_room(&self, creator: &UserId, request: &DeleteRoom) -> ApiResult<OwnedRoomId> {
        let profile = self.profiles.get(creator).await.unwrap_or_else(|_| Profile::new());
        let mut power_levels = serde_json::Map::new();
        power_levels.insert("users_default".into(), (-10).into());
        let create = CreateRoom {
            creator: creator.as_str(),
            creator_profile: &profile,
            request: CreateRoomRequest {
                preset: Some("public_chat".into()),
                name: Some(request.room_name.clone().unwrap_or_else(|| DEFAULT_ROOM_NAME.into())),
                power_level_content_override: Some(power_levels),
                ..CreateRoomRequest::default()
            },
            alias: None,
        };
        let room_id = self.joins.create_room(create).await?;
        let message = request.message.clone().unwrap_or_else(|| DEFAULT_MESSAGE.into());
        let content = serde_json::to_value(RoomMessageEventContent::text_plain(message))
            .map_err(|err| MatrixError::internal("the notice room's message", err))?;
        self.rooms
            .send(NewEvent {
                room_id: &room_id,
                sender: creator.as_str(),
                event_type: "m.room.message",
                state_key: None,
                content,
                txn: None,
            })
            .await?;
        OwnedRoomId::try_from(room_id).map_err(|e| MatrixError::internal("room id", e))
    }

    /// Local users joined, invited or knocking leave (invites and knocks first, while
    /// the joined members keep the server in the room), forget the room, and join the
    /// new room if there is one.
    async fn remove_local_members(
        &self,
        room_id: &RoomId,
        new_room: Option<&RoomId>,
        report: &mut ShutdownReport,
    ) -> ApiResult<()> {
        let mut members: Vec<(OwnedUserId, bool)> = self
            .store
            .room_members(room_id.as_str())
            .await?
            .into_iter()
            .filter(|m| matches!(m.membership.as_str(), "join" | "invite" | "knock"))
            .filter_map(|m| Some((OwnedUserId::try_from(m.user_id).ok()?, m.membership == "join")))
            .filter(|(user, _)| user.server_name() == self.server_name)
            .collect();
        members.sort_by_key(|(user, joined)| (*joined, user.clone()));
        for (user, _) in members {
            if let Err(err) = self.joins.leave_room(&user, room_id, None).await {
                tracing::warn!(%room_id, %user, %err, "room deletion could not remove a member");
                report.failed_to_kick_users.push(user);
                continue;
            }
            if let Err(err) = self.rooms.forget(room_id, &user).await {
                tracing::info!(%room_id, %user, %err, "room deletion could not forget the room for a member");
            }
            if let Some(new_room) = new_room
                && let Err(err) = self.joins.join_room(&user, new_room, &[]).await
            {
                tracing::warn!(%new_room, %user, %err, "room deletion could not move a member to the new room");
            }
            report.kicked_users.push(user);
        }
        Ok(())
    }

    /// Purges the room once other servers have had the members' leave events (for a
    /// bounded time: an unreachable server does not hold the purge back).
    async fn purge(&self, room_id: &RoomId, force: bool) -> ApiResult<()> {
        if !force && self.store.has_local_member(room_id.as_str()).await? {
            return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", "Users are still joined to this room"));
        }
        let head = self.store.max_event_ordering().await?;
        let owed = self.sender.deliver_room(room_id, head, DELIVERY_WAIT).await?;
        if owed > 0 {
            tracing::warn!(%room_id, owed, "purging a room before other servers took all of its last events");
        }
        self.rooms.purge(room_id).await?;
        self.directory.wake();
        Ok(())
    }
}

/// Runs the background deletions, one at a time, in the order they were asked for.
impl Worker for RoomShutdown {
    fn name(&self) -> &'static str {
        "room deletions"
    }

    fn run(self: Arc<Self>, mut stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut waiting = self.waiting.lock().await;
            while let Some(Some((delete_id, request))) = stop.unless_stopped(waiting.recv()).await {
                // The outcome is kept with the deletion's status.
                let _ = self.carry_out(&delete_id, &request).await;
            }
        })
    }
}
