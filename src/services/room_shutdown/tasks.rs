//! The deletions started or finished lately, as the status endpoints show them. Kept in
//! memory, as Synapse does: for a day after they end, or until a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use rand::Rng;
use rand::distributions::Alphanumeric;
use ruma::{OwnedRoomId, RoomId};
use serde::Serialize;

use super::ShutdownReport;
use crate::error::{ApiResult, MatrixError};

/// Finished deletions are shown this long.
const KEPT_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// At most this many deletions are remembered; the oldest finished ones go first.
const MAX_KEPT: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletionStatus {
    Scheduled,
    Active,
    Complete,
    Failed,
}

/// One deletion, in the shape of Synapse's status endpoints.
#[derive(Debug, Clone, Serialize)]
pub struct Deletion {
    pub delete_id: String,
    pub room_id: OwnedRoomId,
    pub status: DeletionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub shutdown_room: ShutdownReport,
    #[serde(skip)]
    started: Instant,
    #[serde(skip)]
    finished: Option<Instant>,
}

#[derive(Default)]
pub struct Deletions {
    by_id: HashMap<String, Deletion>,
}

impl Deletions {
    /// Records a new deletion of `room_id`; refused while another one of it runs.
    pub fn begin(&mut self, room_id: &RoomId) -> ApiResult<String> {
        self.forget_old();
        let running = self.by_id.values().any(|d| d.room_id == room_id && d.finished.is_none());
        if running {
            let message = format!("Purge already in progress for {room_id}");
            return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", message));
        }
        let delete_id: String = rand::thread_rng().sample_iter(&Alphanumeric).take(16).map(char::from).collect();
        let deletion = Deletion {
            delete_id: delete_id.clone(),
            room_id: room_id.to_owned(),
            status: DeletionStatus::Scheduled,
            error: None,
            shutdown_room: ShutdownReport::default(),
            started: Instant::now(),
            finished: None,
        };
        self.by_id.insert(delete_id.clone(), deletion);
        Ok(delete_id)
    }

    pub fn set_active(&mut self, delete_id: &str) {
        self.update(delete_id, |d| d.status = DeletionStatus::Active);
    }

    /// The members are out: what happened to them shows while the purge goes on.
    pub fn report(&mut self, delete_id: &str, report: ShutdownReport) {
        self.update(delete_id, |d| d.shutdown_room = report);
    }

    pub fn complete(&mut self, delete_id: &str, report: ShutdownReport) {
        self.update(delete_id, |d| {
            d.status = DeletionStatus::Complete;
            d.shutdown_room = report;
            d.finished = Some(Instant::now());
        });
    }

    pub fn fail(&mut self, delete_id: &str, error: String) {
        self.update(delete_id, |d| {
            d.status = DeletionStatus::Failed;
            d.error = Some(error);
            d.finished = Some(Instant::now());
        });
    }

    pub fn get(&mut self, delete_id: &str) -> Option<Deletion> {
        self.forget_old();
        self.by_id.get(delete_id).cloned()
    }

    /// A room's deletions, oldest first.
    pub fn of_room(&mut self, room_id: &RoomId) -> Vec<Deletion> {
        self.forget_old();
        let mut found: Vec<Deletion> = self.by_id.values().filter(|d| d.room_id == room_id).cloned().collect();
        found.sort_by_key(|d| d.started);
        found
    }

    fn update(&mut self, delete_id: &str, change: impl FnOnce(&mut Deletion)) {
        if let Some(deletion) = self.by_id.get_mut(delete_id) {
            change(deletion);
        }
    }

    /// Drops deletions finished over a day ago, then the oldest finished ones past the
    /// bound (running ones are few: one per room at a time).
    fn forget_old(&mut self) {
        self.by_id.retain(|_, d| d.finished.is_none_or(|finished| finished.elapsed() < KEPT_FOR));
        if self.by_id.len() < MAX_KEPT {
            return;
        }
        let mut finished: Vec<(Instant, String)> =
            self.by_id.values().filter_map(|d| Some((d.finished?, d.delete_id.clone()))).collect();
        finished.sort();
        let excess = self.by_id.len() + 1 - MAX_KEPT;
        for (_, delete_id) in finished.into_iter().take(excess) {
            self.by_id.remove(&delete_id);
        }
    }
}
