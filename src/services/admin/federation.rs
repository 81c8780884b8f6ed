//! The federation destinations: `GET /_synapse/admin/v1/federation/destinations` and
//! `reset_connection`, in Synapse's shapes, from server health and the outboxes.

use std::collections::BTreeMap;

use ruma::ServerName;
use serde::Serialize;

use super::{Admin, Page};
use crate::error::{ApiResult, MatrixError};
use crate::store::Retry;

/// A page of destinations.
#[derive(Debug, Serialize)]
pub struct Destinations {
    pub destinations: Vec<Destination>,
    pub total: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// A destination in Synapse's shape. Kith keeps no record of when failures began, so
/// `failure_ts` is the latest failed attempt.
#[derive(Debug, Serialize)]
pub struct Destination {
    pub destination: String,
    pub retry_last_ts: i64,
    pub retry_interval: i64,
    pub failure_ts: Option<i64>,
    pub last_successful_stream_ordering: Option<i64>,
}

impl Destination {
    fn new(destination: String, retry: Option<Retry>) -> Self {
        Self {
            destination,
            retry_last_ts: retry.map_or(0, |r| r.retry_last_ts),
            retry_interval: retry.map_or(0, |r| r.retry_interval_ms),
            failure_ts: retry.filter(|r| r.failures > 0).map(|r| r.retry_last_ts),
            last_successful_stream_ordering: None,
        }
    }
}

impl Admin {
    /// The destinations kith owes events or is backing off from (destinations that
    /// answer are not recorded), by name; `filter` keeps names containing it.
    pub async fn destinations(&self, page: Page, filter: Option<&str>) -> ApiResult<Destinations> {
        let mut retries: BTreeMap<String, Option<Retry>> =
            self.store.outbox_destinations().await?.into_iter().map(|name| (name, None)).collect();
        for (server, retry) in self.health.backing_off() {
            retries.insert(server.to_string(), Some(retry));
        }
        let matching: Vec<(String, Option<Retry>)> =
            retries.into_iter().filter(|(name, _)| filter.is_none_or(|filter| name.contains(filter))).collect();
        let total = matching.len() as i64;
        let Page { from, limit } = page;
        let destinations = matching
            .into_iter()
            .skip(from as usize)
            .take(limit as usize)
            .map(|(name, retry)| Destination::new(name, retry))
            .collect();
        let next_token = (from.saturating_add(limit) < total).then(|| (from + limit).to_string());
        Ok(Destinations { destinations, total, next_token })
    }

    /// `reset_connection`: the backoff from `server` ends now, for every caller, and
    /// what it is owed goes. 400 if it is not backing off, 404 if kith does not know it.
    pub async fn reset_connection(&self, server: &ServerName) -> ApiResult<()> {
        if self.health.alive(server).await {
            tracing::info!(%server, "backoff reset by an admin");
            return Ok(());
        }
        if self.store.outbox_destinations().await?.iter().any(|name| name == server.as_str()) {
            return Err(MatrixError::invalid_param("The retry timing does not need to be reset for this destination"));
        }
        Err(MatrixError::not_found("Unknown destination"))
    }
}
