//! What peers may read of this server's directory.
//!
//! Kith's endpoint (`GET /_matrix/federation/unstable/io.kith.user_directory/changes`,
//! `since` and `limit` in the query) pages through exported users: without a token, a
//! snapshot in user-id order taken at the head of the profile-change stream; from then
//! on, the users whose profile, account or visibility changed since the token, each as
//! an upsert `{user_id, displayname, avatar_url}` or a tombstone `{user_id, deleted:
//! true}` (absent fields left out). The answer is `{"users": […], "next_batch": token,
//! "limited": more follow}`.
//! Tokens are `f<position>:<last user>` (snapshot) and `s<position>` (changes).

use ruma::serde::Raw;
use ruma::{OwnedUserId, ServerName};
use serde::Deserialize;

use super::FederatedDirectory;
use crate::endpoints::federated_directory::get_bwi_list::{self, BwiUser};
use crate::endpoints::federated_directory::get_changes::{self, ChangedUser};
use crate::endpoints::federated_directory::search::{self as live_search, SearchHit};
use crate::error::{ApiResult, MatrixError};
use crate::services::directory::tokenize::SearchTerm;
use crate::store::DirectoryUser;

/// Users per page of kith's endpoint, at most (and by default).
pub const MAX_PAGE: usize = 1_000;
/// Users in a BWI list, at most.
pub const MAX_BWI_USERS: usize = 50_000;
/// MSC4258: shorter terms get nothing, results are capped.
pub const MIN_TERM_CHARS: usize = 4;
pub const MAX_SEARCH_LIMIT: usize = 50;
/// Right after start-up a peer's search waits this long for the directory's first build.
const BUILD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where a peer's reading stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerToken {
    /// A snapshot taken at stream `position`, past user `after`.
    Snapshot { position: i64, after: String },
    /// Changes after stream `position`.
    Changes { position: i64 },
}

impl PeerToken {
    pub fn parse(token: &str) -> Option<Self> {
        if let Some(rest) = token.strip_prefix('f') {
            let (position, after) = rest.split_once(':')?;
            return Some(Self::Snapshot { position: position.parse().ok()?, after: after.to_owned() });
        }
        let position = token.strip_prefix('s')?.parse().ok()?;
        Some(Self::Changes { position })
    }

    pub fn format(&self) -> String {
        match self {
            Self::Snapshot { position, after } => format!("f{position}:{after}"),
            Self::Changes { position } => format!("s{position}"),
        }
    }
}

/// An MSC4258 search from a peer.
#[derive(Debug, Deserialize)]
pub struct PeerSearch {
    pub requester: OwnedUserId,
    pub search_term: String,
    #[serde(default)]
    pub limit: Option<u64>,
}

impl FederatedDirectory {
    /// Kith's incremental endpoint.
    pub async fn serve_changes(
        &self,
        origin: &ServerName,
        since: Option<&str>,
        limit: Option<usize>,
    ) -> ApiResult<get_changes::Response> {
        self.require_peer(origin)?;
        let limit = limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        let head = self.store.stream_head("profile_changes").await?;
        let token = match since {
            None => PeerToken::Snapshot { position: head, after: String::new() },
            Some(token) => PeerToken::parse(token).ok_or_else(|| MatrixError::invalid_param("Invalid since token"))?,
        };
        let (users, next, limited) = match token {
            PeerToken::Snapshot { position, .. } | PeerToken::Changes { position } if position > head => {
                return Err(MatrixError::invalid_param("The since token is ahead of this server"));
            }
            PeerToken::Snapshot { position, after } => self.snapshot_page(position, &after, limit).await?,
            PeerToken::Changes { position } => self.changes_page(position, limit).await?,
        };
        Ok(get_changes::Response { users, next_batch: next.format(), limited })
    }

    async fn snapshot_page(
        &self,
        position: i64,
        after: &str,
        limit: usize,
    ) -> ApiResult<(Vec<ChangedUser>, PeerToken, bool)> {
        let mut users = self.store.exported_users(after, limit as i64 + 1).await?;
        let limited = users.len() > limit;
        users.truncate(limit);
        let next = match (limited, users.last()) {
            (true, Some(last)) => PeerToken::Snapshot { position, after: last.user_id.clone() },
            _ => PeerToken::Changes { position },
        };
        Ok((users.iter().map(upsert).collect(), next, limited))
    }

    async fn changes_page(&self, position: i64, limit: usize) -> ApiResult<(Vec<ChangedUser>, PeerToken, bool)> {
        let changes = self.store.profile_changes_since(position, limit as i64 + 1).await?;
        let limited = changes.len() > limit;
        let changes = &changes[..changes.len().min(limit)];
        let mut seen = std::collections::HashSet::new();
        let mut users = Vec::new();
        for change in changes.iter().filter(|c| seen.insert(c.user_id.clone())) {
            users.push(match self.store.exported_user(&change.user_id).await? {
                Some(user) => upsert(&user),
                None => {
                    ChangedUser { user_id: change.user_id.clone(), displayname: None, avatar_url: None, deleted: true }
                }
            });
        }
        let next = PeerToken::Changes { position: changes.last().map_or(position, |c| c.stream_id) };
        Ok((users, next, limited))
    }

    /// BWI's endpoint: every exported user at once (capped), as Synapse+BWI serves it.
    pub async fn serve_bwi_list(&self, origin: &ServerName) -> ApiResult<get_bwi_list::Response> {
        self.require_peer(origin)?;
        let mut results = Vec::new();
        let mut after = String::new();
        while results.len() < MAX_BWI_USERS {
            let page = self.store.exported_users(&after, MAX_PAGE as i64).await?;
            let Some(last) = page.last() else { break };
            after = last.user_id.clone();
            results.extend(page.iter().map(bwi_entry));
        }
        results.truncate(MAX_BWI_USERS);
        Ok(get_bwi_list::Response { results })
    }

    /// MSC4258's live search, answered from exported users only.
    pub async fn serve_search(&self, origin: &ServerName, search: PeerSearch) -> ApiResult<live_search::Response> {
        self.require_peer(origin)?;
        if search.requester.server_name() != origin {
            return Err(MatrixError::forbidden("The requester is not a user of the requesting server"));
        }
        self.searches.check(origin.as_str())?;
        let limit = search.limit.unwrap_or(10).min(MAX_SEARCH_LIMIT as u64) as usize;
        let term = SearchTerm::parse(&search.search_term);
        if term.text.chars().count() < MIN_TERM_CHARS || limit == 0 {
            return Ok(live_search::Response::default());
        }
        if !self.directory.wait_until_built(BUILD_WAIT).await {
            tracing::warn!(%origin, "user directory still being built; a peer's search sees what is indexed so far");
        }
        let found = self.directory.search_local_users(&term, limit + 10).await;
        let mut results = Vec::new();
        for hit in found.results {
            if results.len() == limit {
                break;
            }
            if let Some(user) = self.store.exported_user(&hit.user_id).await? {
                let DirectoryUser { user_id, displayname, avatar_url } = user;
                let hit = Raw::new(&SearchHit { user_id, display_name: displayname, avatar_url });
                results.push(hit.map_err(|err| MatrixError::internal("serializing a search hit", err))?);
            }
        }
        let limited = found.limited || results.len() == limit;
        Ok(live_search::Response { limited, results })
    }
}

/// An upsert of kith's endpoint; absent fields are left out.
fn upsert(user: &DirectoryUser) -> ChangedUser {
    let DirectoryUser { user_id, displayname, avatar_url } = user.clone();
    ChangedUser { user_id, displayname, avatar_url, deleted: false }
}

fn bwi_entry(user: &DirectoryUser) -> BwiUser {
    let DirectoryUser { user_id, displayname, avatar_url } = user.clone();
    BwiUser { user_id, display_name: displayname, avatar_url }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        for token in [
            PeerToken::Snapshot { position: 5, after: String::new() },
            PeerToken::Snapshot { position: 5, after: "@a:b.c:8448".into() },
            PeerToken::Changes { position: 0 },
        ] {
            assert_eq!(PeerToken::parse(&token.format()), Some(token));
        }
        for garbage in ["", "x", "s", "s-x", "f5", "fx:@a"] {
            assert_eq!(PeerToken::parse(garbage), None, "{garbage}");
        }
    }
}
