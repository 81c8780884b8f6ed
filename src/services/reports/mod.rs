//! Reports of events, rooms and users (`/rooms/{roomId}/report[/{eventId}]`,
//! `/users/{userId}/report`), kept for the server's admins. A user can only report
//! what they can see, and learns nothing about what they cannot.

use std::sync::Arc;

use ruma::{RoomId, UserId};

use super::rooms::Rooms;
use crate::error::{ApiResult, MatrixError};
use crate::store::{NewReport, Store};

/// Reasons are bounded like other free texts.
const MAX_REASON_BYTES: usize = 1000;

pub struct Reports {
    store: Arc<Store>,
    rooms: Arc<Rooms>,
}

impl Reports {
    pub fn new(store: Arc<Store>, rooms: Arc<Rooms>) -> Self {
        Self { store, rooms }
    }

    /// A report of an event (with `score`, -100 most offensive to 0) or of a room.
    pub async fn report_room(
        &self,
        reporter: &UserId,
        room_id: &RoomId,
        event_id: Option<&str>,
        reason: Option<&str>,
        score: Option<i64>,
    ) -> ApiResult<()> {
        check_reason(reason)?;
        if score.is_some_and(|score| !(-100..=0).contains(&score)) {
            return Err(MatrixError::invalid_param("score must be between -100 and 0"));
        }
        match event_id {
            Some(event_id) => {
                self.rooms.event_for_user(room_id, reporter, event_id).await?;
            }
            None if self.rooms.room_version(room_id.as_str()).await.is_err() => {
                return Err(MatrixError::not_found("Room does not exist"));
            }
            None => {}
        }
        let report = NewReport {
            reporter: reporter.as_str(),
            room_id: Some(room_id.as_str()),
            event_id,
            reported_user: None,
            reason,
            score,
        };
        let id = self.store.add_report(&report).await?;
        tracing::info!(report = id, %reporter, %room_id, event_id, "content reported");
        Ok(())
    }

    /// A report of a user of this server.
    pub async fn report_user(&self, reporter: &UserId, user_id: &UserId, reason: Option<&str>) -> ApiResult<()> {
        check_reason(reason)?;
        let report = NewReport {
            reporter: reporter.as_str(),
            room_id: None,
            event_id: None,
            reported_user: Some(user_id.as_str()),
            reason,
            score: None,
        };
        let id = self.store.add_report(&report).await?;
        tracing::info!(report = id, %reporter, reported = %user_id, "user reported");
        Ok(())
    }

    pub async fn count(&self) -> ApiResult<i64> {
        Ok(self.store.report_count().await?)
    }
}

fn check_reason(reason: Option<&str>) -> ApiResult<()> {
    if reason.is_some_and(|reason| reason.len() > MAX_REASON_BYTES) {
        return Err(MatrixError::invalid_param(format!("reason must be at most {MAX_REASON_BYTES} bytes")));
    }
    Ok(())
}
