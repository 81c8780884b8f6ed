//! Removing a room from the database, for the admin API's room deletion.

use ruma::RoomId;

use super::Rooms;
use crate::error::ApiResult;

impl Rooms {
    /// Removes every trace of a room; returns how many rows went. Taken under the room's
    /// lock, so no event of it is being persisted (nor a resync completed) meanwhile.
    pub async fn purge(&self, room_id: &RoomId) -> ApiResult<u64> {
        let _guard = self.lock_room(room_id.as_str()).await;
        let removed = self.store.purge_room(room_id.as_str()).await?;
        // Followers of the state-delta stream (the user directory among them) wait on
        // the event stream: the members' departure is news for them.
        self.events_written.send_modify(|_| {});
        tracing::info!(%room_id, removed, "purged a room");
        Ok(removed)
    }
}
