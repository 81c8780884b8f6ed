//! Rooms' current state as last written, kept so that persisting a state event diffs the
//! new state against a copy in memory instead of reading every row of a big room again.
//!
//! Each copy records the position of the room's last current-state delta it reflects.
//! A writer reads that position from the database inside its transaction and uses the
//! copy only when they agree, so a copy left stale (a transaction rolled back, a purge,
//! another process) is never used; copies are replaced only after a commit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use sqlx::Row;

use super::WriteTxn;
use super::rooms::StateMap;

/// State entries kept, summed over the kept rooms, at most (about 200 bytes each).
const MAX_KEPT_ENTRIES: usize = 300_000;
/// Rooms kept at most (a look-up scans them).
const MAX_KEPT_ROOMS: usize = 1_024;

#[derive(Default)]
pub(super) struct CurrentStates {
    /// Most recently written last: `(room, last delta position, state)`.
    kept: Mutex<VecDeque<(String, i64, Arc<StateMap>)>>,
}

impl CurrentStates {
    /// Takes out the kept state of `room_id` if it reflects the delta at `position`, for
    /// a writer to change in place (and put back once committed).
    pub(super) fn take(&self, room_id: &str, position: i64) -> Option<Arc<StateMap>> {
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = kept.iter().position(|(room, at, _)| room == room_id && *at == position)?;
        kept.remove(at).map(|(_, _, state)| state)
    }

    /// Keeps `state` as the room's current state at the delta at `position`.
    pub(super) fn put(&self, room_id: &str, position: i64, state: Arc<StateMap>) {
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.retain(|(room, _, _)| room != room_id);
        kept.push_back((room_id.to_owned(), position, state));
        let mut total: usize = kept.iter().map(|(_, _, state)| state.len()).sum();
        // The newest room stays even when it alone is over the bound.
        while (total > MAX_KEPT_ENTRIES || kept.len() > MAX_KEPT_ROOMS) && kept.len() > 1 {
            if let Some((_, _, state)) = kept.pop_front() {
                total -= state.len();
            }
        }
    }
}

/// The position of the room's last current-state delta, read in the writer's
/// transaction.
pub(super) async fn last_delta(txn: &mut WriteTxn<'_>, room_id: &str) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query("SELECT MAX(stream_id) FROM current_state_deltas WHERE room_id = $1")
        .bind(room_id)
        .fetch_one(&mut *txn.tx)
        .await?;
    row.try_get(0)
}
