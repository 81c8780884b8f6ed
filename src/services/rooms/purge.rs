//! Removing a room from the database, for the admin API's room deletion.

use ruma::RoomId;

use super::Rooms;
use crate::error::ApiResult;

/// Events whose notifications one transaction removes.
const NOTIFICATION_BATCH: i64 = 500;

impl Rooms {
    /// Removes every trace of a room; returns how many rows went. Taken under the room's
    /// lock, so no event of it is being persisted (nor a resync completed) meanwhile.
    pub async fn purge(&self, room_id: &RoomId) -> ApiResult<u64> {
        // Most of a busy room's rows, cleared in small transactions first so the one
        // that removes the room holds the database's writers back less long.
        let mut removed = 0;
        loop {
            let batch = self.store.delete_room_notifications(room_id.as_str(), NOTIFICATION_BATCH).await?;
            removed += batch;
            if batch == 0 {
                break;
            }
        }
        let _guard = self.lock_room(room_id.as_str()).await;
        let started = std::time::Instant::now();
        removed += self.store.purge_room(room_id.as_str()).await?;
        let last_transaction_ms = started.elapsed().as_millis() as u64;
        // Followers of the state-delta stream (the user directory among them) wait on
        // the event stream: the members' departure is news for them.
        self.events_written.send_modify(|_| {});
        tracing::info!(%room_id, removed, last_transaction_ms, "purged a room");
        Ok(removed)
    }
}
