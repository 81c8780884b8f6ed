//! The pull worker: follows each peer's directory into `federated_users`.
//!
//! Every `sync_interval` (and at start), each peer is read page by page from the token
//! kept for it; a peer without kith's endpoint (404 `M_UNRECOGNIZED`) is read through
//! BWI's full list, diffed against what is stored, so removals work there too. A page
//! is checked whole before anything is stored: a malformed one changes nothing, and
//! users of another server than the peer are dropped (and logged). A peer that cannot
//! be reached is reported to server health; while it is down it is pulled only as a
//! probe (every few seconds, growing to a minute), and at once when it comes back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use ruma::{OwnedServerName, OwnedUserId, ServerName};
use serde_json::Value;

use super::FederatedDirectory;
use super::serve::{MAX_BWI_USERS, MAX_PAGE};
use crate::endpoints::federated_directory::{get_bwi_list, get_changes};
use crate::services::federation::FederationError;
use crate::services::server_health::Contact;
use crate::services::workers::{Shutdown, Worker};
use crate::store::{DirectoryUser, PeerState, now_ms};

/// Pages read from one peer per round, at most (a big directory continues next round).
const MAX_PAGES_PER_ROUND: usize = 1_000;
/// A BWI list may be this large (its users come all at once).
const MAX_BWI_BYTES: usize = 64 * 1024 * 1024;
const MAX_NAME_CHARS: usize = 256;
const MAX_AVATAR_CHARS: usize = 1_000;

pub struct PeerSync {
    directory: Arc<FederatedDirectory>,
}

impl Worker for PeerSync {
    fn name(&self) -> &'static str {
        "federated directory sync"
    }

    fn run(self: Arc<Self>, mut stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(err) = self.purge_former_peers().await {
                tracing::error!(%err, "cannot purge former peers' users");
            }
            let peers = self.directory.peers().into_iter().map(|peer| self.follow_peer(peer, stop.clone()));
            futures_util::future::join_all(peers).await;
            // Without peers there is nothing to follow, but a worker returns only when told.
            stop.wait().await;
        })
    }
}

/// What a peer's page holds, once checked.
struct Page {
    upserts: Vec<DirectoryUser>,
    removals: Vec<String>,
    next: String,
    limited: bool,
}

impl PeerSync {
    pub fn new(directory: Arc<FederatedDirectory>) -> Self {
        Self { directory }
    }

    /// A server no longer a peer (or no longer allowed) loses its users here.
    async fn purge_former_peers(&self) -> anyhow::Result<()> {
        let peers: Vec<String> = self.directory.peers().iter().map(ToString::to_string).collect();
        let purged = self.directory.store.purge_former_peers(&peers).await?;
        if purged > 0 {
            tracing::info!(purged, "forgot the users of servers that are no longer peers");
        }
        Ok(())
    }

    /// Pulls one peer every `sync_interval`, at once when it comes back, and while it
    /// is down whenever server health lets it be probed.
    async fn follow_peer(&self, peer: OwnedServerName, mut stop: Shutdown) {
        let health = &self.directory.health;
        let mut recoveries = health.subscribe();
        let interval = self.directory.config.sync_interval.as_millis() as i64;
        let mut next_pull = 0;
        while !stop.is_stopping() {
            let now = now_ms();
            let wait_until = match health.contact_or_probe(&peer) {
                Contact::Now if now >= next_pull => None,
                Contact::Now => Some(next_pull),
                Contact::Probe => {
                    tracing::debug!(%peer, "probing a peer that is down");
                    None
                }
                Contact::NotBefore(until) => Some(until),
            };
            let Some(until) = wait_until else {
                let _ = stop.unless_stopped(self.sync_peer(&peer)).await;
                next_pull = now_ms().saturating_add(interval);
                // Coming back while being pulled is what the pull found out itself.
                recoveries.clear();
                continue;
            };
            let wait = Duration::from_millis((until - now).max(0) as u64);
            tokio::select! {
                _ = stop.wait() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = recoveries.of(&peer) => next_pull = 0,
            }
        }
    }

    async fn sync_peer(&self, peer: &ServerName) {
        let resumed =
            matches!(self.directory.store.peer_state(peer.as_str()).await, Ok(Some(state)) if state.token.is_some());
        match self.pull_changes(peer).await {
            Ok(changed) => tracing::info!(%peer, changed, resumed, "pulled a peer's directory"),
            Err(Failure::Unreachable(err)) => {
                tracing::info!(%peer, %err, "peer unreachable");
                self.directory.health.failed(peer).await;
            }
            Err(Failure::Refused(err)) => tracing::warn!(%peer, %err, "peer directory refused; nothing changed"),
        }
    }

    /// Reads kith's endpoint until caught up (or BWI's list); returns how many users changed.
    async fn pull_changes(&self, peer: &ServerName) -> Result<usize, Failure> {
        let store = &self.directory.store;
        let mut token = store.peer_state(peer.as_str()).await.map_err(Failure::refused)?.and_then(|s| s.token);
        let mut changed = 0;
        for _ in 0..MAX_PAGES_PER_ROUND {
            let request = get_changes::Request { since: token.clone(), limit: Some(MAX_PAGE) };
            let body = match self.directory.client.send(peer, request).await {
                Ok(body) => body,
                Err(FederationError::Remote { status, body }) if is_unrecognized(status, &body) => {
                    return self.pull_bwi(peer).await;
                }
                // A token the peer no longer takes: start again from a snapshot.
                Err(FederationError::Remote { status, .. }) if status == StatusCode::BAD_REQUEST && token.is_some() => {
                    token = None;
                    continue;
                }
                Err(err) => return Err(Failure::from(err)),
            };
            let page = check_page(peer, body).map_err(Failure::refused)?;
            let state = PeerState { token: Some(page.next.clone()), mode: "kith".into(), synced_ts: now_ms() };
            changed += self.store_page(peer, &page.upserts, &page.removals, &state).await?;
            token = Some(page.next);
            if !page.limited {
                break;
            }
        }
        Ok(changed)
    }

    /// A Synapse+BWI peer: its whole list, diffed against what is stored. An empty list
    /// removes nobody (BWI's own rule: it may be a failure).
    async fn pull_bwi(&self, peer: &ServerName) -> Result<usize, Failure> {
        let request = get_bwi_list::Request {};
        let body = self.directory.client.send_with_limit(peer, request, MAX_BWI_BYTES).await;
        let listed = check_bwi_list(peer, body.map_err(Failure::from)?).map_err(Failure::refused)?;
        let stored = self.directory.store.federated_users_of(peer.as_str()).await.map_err(Failure::refused)?;
        let names: HashSet<&str> = listed.iter().map(|u| u.user_id.as_str()).collect();
        let removals: Vec<String> = match listed.is_empty() {
            true => Vec::new(),
            false => stored.keys().filter(|user| !names.contains(user.as_str())).cloned().collect(),
        };
        let upserts: Vec<DirectoryUser> = listed.into_iter().filter(|u| stored.get(&u.user_id) != Some(u)).collect();
        let state = PeerState { token: None, mode: "bwi".into(), synced_ts: now_ms() };
        self.store_page(peer, &upserts, &removals, &state).await
    }

    async fn store_page(
        &self,
        peer: &ServerName,
        upserts: &[DirectoryUser],
        removals: &[String],
        state: &PeerState,
    ) -> Result<usize, Failure> {
        let store = &self.directory.store;
        let changed =
            store.apply_peer_changes(peer.as_str(), upserts, removals, state).await.map_err(Failure::refused)?;
        if changed > 0 {
            self.directory.directory.wake();
        }
        Ok(changed)
    }
}

enum Failure {
    Unreachable(String),
    Refused(String),
}

impl Failure {
    fn refused(err: impl std::fmt::Display) -> Self {
        Self::Refused(err.to_string())
    }
}

impl From<FederationError> for Failure {
    fn from(err: FederationError) -> Self {
        match err.is_down() {
            true => Self::Unreachable(err.to_string()),
            false => Self::Refused(err.to_string()),
        }
    }
}

fn is_unrecognized(status: StatusCode, body: &Value) -> bool {
    matches!(status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) && body["errcode"] == "M_UNRECOGNIZED"
}

/// Why a peer's page or list is refused whole.
#[derive(Debug, thiserror::Error)]
enum BadDirectory {
    #[error("{0} users in one answer, more than kith takes")]
    TooManyUsers(usize),
    #[error("bad `next_batch`")]
    BadNextBatch,
    #[error("invalid user id {0}")]
    InvalidUserId(String),
    #[error("{what} of {user_id} is not a string of at most {max} characters")]
    BadText { what: &'static str, user_id: String, max: usize },
}

/// Checks a page of kith's endpoint whole.
fn check_page(peer: &ServerName, body: get_changes::Response) -> Result<Page, BadDirectory> {
    if body.users.len() > MAX_PAGE * 2 {
        return Err(BadDirectory::TooManyUsers(body.users.len()));
    }
    let next = Some(body.next_batch).filter(|t| !t.is_empty() && t.len() <= 1024).ok_or(BadDirectory::BadNextBatch)?;
    let mut page = Page { upserts: Vec::new(), removals: Vec::new(), next, limited: body.limited };
    for entry in body.users {
        let Some(user_id) = own_user(peer, &entry.user_id)? else { continue };
        if entry.deleted {
            page.removals.push(user_id);
        } else {
            page.upserts.push(checked_user(user_id, entry.displayname, entry.avatar_url)?);
        }
    }
    Ok(page)
}

/// Checks a BWI list whole.
fn check_bwi_list(peer: &ServerName, body: get_bwi_list::Response) -> Result<Vec<DirectoryUser>, BadDirectory> {
    if body.results.len() > MAX_BWI_USERS {
        return Err(BadDirectory::TooManyUsers(body.results.len()));
    }
    let mut users = Vec::with_capacity(body.results.len());
    for entry in body.results {
        if let Some(user_id) = own_user(peer, &entry.user_id)? {
            users.push(checked_user(user_id, entry.display_name, entry.avatar_url)?);
        }
    }
    Ok(users)
}

/// The user id of an entry, if it is one of the peer's own users (others are dropped).
fn own_user(peer: &ServerName, user_id: &str) -> Result<Option<String>, BadDirectory> {
    let user_id = OwnedUserId::try_from(user_id).map_err(|_| BadDirectory::InvalidUserId(user_id.to_owned()))?;
    if user_id.server_name() != peer {
        tracing::info!(%peer, %user_id, "dropping a user of another server from a peer's directory");
        return Ok(None);
    }
    Ok(Some(user_id.to_string()))
}

fn checked_user(user_id: String, name: Option<String>, avatar: Option<String>) -> Result<DirectoryUser, BadDirectory> {
    let text = |value: Option<String>, max: usize, what: &'static str| match value {
        Some(text) if text.chars().count() > max || text.contains('\0') => {
            Err(BadDirectory::BadText { what, user_id: user_id.clone(), max })
        }
        value => Ok(value),
    };
    Ok(DirectoryUser {
        displayname: text(name, MAX_NAME_CHARS, "the display name")?,
        avatar_url: text(avatar, MAX_AVATAR_CHARS, "the avatar")?,
        user_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::api::IncomingResponseExt;
    use serde_json::json;

    /// A page as the federation client would decode it, then checked.
    fn check(peer: &ServerName, body: &Value) -> Result<Page, Box<dyn std::error::Error>> {
        let bytes = serde_json::to_vec(body).unwrap();
        let answer = axum::http::Response::new(bytes.as_slice());
        Ok(check_page(peer, get_changes::Response::try_from_http_response(answer)?)?)
    }

    #[test]
    fn pages_are_checked_whole_and_foreign_users_dropped() {
        let peer: OwnedServerName = "peer.example".try_into().unwrap();
        let page = json!({ "users": [
            { "user_id": "@a:peer.example", "displayname": "A" },
            { "user_id": "@b:peer.example", "deleted": true },
            { "user_id": "@c:elsewhere.example", "displayname": "Spoof" },
        ], "next_batch": "s5", "limited": false });
        let checked = check(&peer, &page).unwrap();
        assert_eq!(checked.upserts.len(), 1);
        assert_eq!(checked.removals, vec!["@b:peer.example".to_owned()]);
        for bad in [
            json!({ "users": {}, "next_batch": "s1", "limited": false }),
            json!({ "users": [], "next_batch": 5, "limited": false }),
            json!({ "users": [{ "user_id": "@a:peer.example", "displayname": 5 }], "next_batch": "s1", "limited": false }),
            json!({ "users": [{ "user_id": "not an id" }], "next_batch": "s1", "limited": false }),
        ] {
            assert!(check(&peer, &bad).is_err(), "{bad}");
        }
    }
}
