//! Live search across peers (MSC4258): a local search whose term has at least four
//! characters also asks every peer, each within `live_search_timeout`, and the answers
//! are merged with the local ones, de-duplicated and ranked with the same scoring.
//! A peer that fails or times out is reported to server health and skipped while it
//! is down; answers are kept a short while, so repeating a search (or
//! typing on past a term the peers had nothing for) stays local and fast.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ruma::{OwnedServerName, ServerName, UserId};

use super::FederatedDirectory;
use super::serve::{MAX_SEARCH_LIMIT, MIN_TERM_CHARS};
use crate::endpoints::federated_directory::search;
use crate::services::bounded::BoundedMap;
use crate::services::directory::index::{DirectoryIndex, UserProfile};
use crate::services::directory::search::{SearchHit, SearchOptions, SearchResults};
use crate::services::directory::tokenize::SearchTerm;
use crate::services::federation::FederationError;
use crate::services::server_health::Contact;

/// Peer answers are kept this long, and this many at most.
const CACHE_FOR: Duration = Duration::from_secs(30);
const CACHE_ENTRIES: usize = 1_000;
/// A peer without the live-search endpoint (a BWI peer) is not asked again for this long.
const WITHOUT_LIVE_SEARCH_FOR: Duration = Duration::from_secs(60 * 60);

/// One peer's answer to a term.
#[derive(Debug, Clone, Default)]
struct PeerAnswer {
    limited: bool,
    hits: Vec<SearchHit>,
}

type CacheKey = (OwnedServerName, String, usize);

/// Recent peer answers, oldest forgotten first, and the peers found without MSC4258.
pub struct AnswerCache(Mutex<BoundedMap<CacheKey, (Instant, PeerAnswer)>>, Mutex<BoundedMap<OwnedServerName, Instant>>);

impl Default for AnswerCache {
    fn default() -> Self {
        Self(Mutex::new(BoundedMap::new(CACHE_ENTRIES)), Mutex::new(BoundedMap::new(CACHE_ENTRIES)))
    }
}

impl AnswerCache {
    fn lacks_live_search(&self, peer: &ServerName) -> bool {
        let peers = self.1.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        peers.get(&peer.to_owned()).is_some_and(|at| at.elapsed() < WITHOUT_LIVE_SEARCH_FOR)
    }

    fn mark_without_live_search(&self, peer: &ServerName) {
        self.1.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(peer.to_owned(), Instant::now());
    }

    fn get(&self, key: &CacheKey) -> Option<PeerAnswer> {
        let cache = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.get(key).filter(|(at, _)| at.elapsed() < CACHE_FOR).map(|(_, answer)| answer.clone())
    }

    fn put(&self, key: CacheKey, answer: PeerAnswer) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key, (Instant::now(), answer));
    }
}

impl FederatedDirectory {
    /// `POST /user_directory/search`: the local directory, and with `live_search` the
    /// peers' answers merged in.
    /// Peers are sent the term as bounded for the local search (its first characters).
    pub async fn search(&self, searcher: &UserId, term: &str, limit: usize) -> SearchResults {
        let term = SearchTerm::parse(term);
        let local = self.directory.search(searcher.as_str(), &term, limit).await;
        let live = self.config.enabled && self.config.live_search && term.text.chars().count() >= MIN_TERM_CHARS;
        let peers = if live { self.peers() } else { Vec::new() };
        if peers.is_empty() || limit == 0 {
            return local;
        }
        let asks = peers.iter().map(|peer| self.ask_peer(peer, searcher, &term.text, limit));
        let answers = futures_util::future::join_all(asks).await;
        let options = self.directory.search_options(searcher.as_str(), limit);
        merge(&term, &self.server_name, local, answers.into_iter().flatten(), &options)
    }

    /// One peer's answer, from the cache or asked within the timeout; `None` when it
    /// is down, slow or answered nonsense.
    async fn ask_peer(&self, peer: &ServerName, searcher: &UserId, term: &str, limit: usize) -> Option<PeerAnswer> {
        let key = (peer.to_owned(), term.trim().to_lowercase(), limit);
        if let Some(answer) = self.cache.get(&key) {
            return Some(answer);
        }
        if self.cache.lacks_live_search(peer) || self.health.contact(peer) != Contact::Now {
            return None;
        }
        let limit = Some(limit.min(MAX_SEARCH_LIMIT) as u64);
        let request = search::Request { requester: searcher.to_owned(), search_term: term.to_owned(), limit };
        let request = self.client.send(peer, request);
        let (answer, unreachable) = match tokio::time::timeout(self.config.live_search_timeout, request).await {
            Ok(Ok(body)) => (Some(own_hits(peer, body)), false),
            Ok(Err(FederationError::Remote { status, body })) if body["errcode"] == "M_UNRECOGNIZED" => {
                tracing::info!(%peer, %status, "peer has no live directory search");
                self.cache.mark_without_live_search(peer);
                (None, false)
            }
            Ok(Err(err)) => {
                tracing::info!(%peer, %err, "live directory search failed");
                (None, err.is_down())
            }
            Err(_) => {
                tracing::info!(%peer, "live directory search timed out");
                (None, true)
            }
        };
        if let Some(answer) = &answer {
            self.cache.put(key, answer.clone());
        }
        // A peer that does not answer is skipped for a while rather than waited on at
        // every keystroke.
        if unreachable {
            self.health.failed(peer).await;
        }
        answer
    }
}

/// A peer's answer, keeping only its own users (a hit that does not parse is left out).
fn own_hits(peer: &ServerName, body: search::Response) -> PeerAnswer {
    let hits = body
        .results
        .iter()
        .take(MAX_SEARCH_LIMIT)
        .filter_map(|hit| {
            let hit = hit.deserialize().ok()?;
            let user_id = <&UserId>::try_from(hit.user_id.as_str()).ok()?;
            (user_id.server_name() == peer).then(|| SearchHit {
                user_id: user_id.to_string(),
                display_name: hit.display_name.map(|n| n.chars().take(256).collect()),
                avatar_url: hit.avatar_url.map(|a| a.chars().take(1000).collect()),
            })
        })
        .collect();
    PeerAnswer { limited: body.limited, hits }
}

/// Local and peer hits in one ranking: indexed together in a small index and searched
/// with the local options, so every hit is scored the same way.
fn merge(
    term: &SearchTerm,
    server_name: &ServerName,
    local: SearchResults,
    answers: impl Iterator<Item = PeerAnswer>,
    options: &SearchOptions,
) -> SearchResults {
    let mut index = DirectoryIndex::default();
    let mut limited = local.limited;
    let mut add = |hit: &SearchHit| {
        if index.id_of(&hit.user_id).is_none() {
            let profile = UserProfile { display_name: hit.display_name.clone(), avatar_url: hit.avatar_url.clone() };
            let ours = <&UserId>::try_from(hit.user_id.as_str()).is_ok_and(|u| u.server_name() == server_name);
            index.upsert_user(&hit.user_id, profile, ours);
        }
    };
    local.results.iter().for_each(&mut add);
    for answer in answers {
        limited |= answer.limited;
        answer.hits.iter().for_each(&mut add);
    }
    let options = SearchOptions { search_all_users: true, show_locked_users: true, ..options.clone() };
    let merged = index.search_term(term, &options);
    SearchResults { limited: limited || merged.limited, results: merged.results }
}
