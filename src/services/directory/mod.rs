//! The user directory: Synapse's rules for who may find whom, on an in-memory index.
//!
//! The index is derived data. It is built from the database at start-up (and on
//! demand), then kept current by following the current-state-delta and profile-change
//! streams. Applying a stream row only ever *sets* facts (this user is joined, this room
//! is public, this is the profile), so applying one twice changes nothing, and a
//! restart rebuilds from the database, which changed in the same transactions as the
//! streams. Only global profiles are indexed for local users; remote users get their
//! public profile from the remote-profile cache (what their server said), a member
//! event of a public room standing in until the first answer, and are listed by user ID
//! alone when seen only in private rooms. A private room's member event never names them.

#[cfg(test)]
mod build_tests;
pub mod index;
pub mod lexicon;
pub mod memberships;
pub mod postings;
pub mod rank;
pub mod search;
pub mod tokenize;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use ruma::UserId;
use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::appservices::AppService;
use super::workers::{Shutdown, Wakeups, Worker, follow};
use crate::config::UserDirectoryConfig;
use crate::store::{JoinedMember, LocalAccount, RemoteProfile, Store};
use index::{DirectoryIndex, UserDoc, UserProfile};
use search::{SearchOptions, SearchResults};
use tokenize::SearchTerm;

const DELTAS_CONSUMER: &str = "user_directory_state_deltas";
const PROFILES_CONSUMER: &str = "user_directory_profiles";
const REMOTE_PROFILES_CONSUMER: &str = "user_directory_remote_profiles";
const FEDERATED_CONSUMER: &str = "user_directory_federated_users";
const REBUILD_REQUEST: &str = "user_directory_rebuild_requested";
const REBUILD_HANDLED: &str = "user_directory_rebuild_handled";
const BATCH: i64 = 500;
const POLL_INTERVAL: Duration = Duration::from_secs(2);

pub struct Directory {
    store: Arc<Store>,
    server_name: String,
    config: UserDirectoryConfig,
    unlisted: Unlisted,
    index: RwLock<DirectoryIndex>,
    /// What wakes the updater: current-state changes, profile changes, rebuild requests.
    state_deltas: watch::Receiver<i64>,
    profile_changes: watch::Receiver<i64>,
    remote_profile_changes: watch::Receiver<i64>,
    wake: Arc<Notify>,
    rebuild_requested: std::sync::atomic::AtomicBool,
    /// Whether the first build since start-up is done (the updater does it, so the
    /// server answers before a big directory is built).
    built: watch::Sender<bool>,
}

/// Local users never listed because an application service holds them exclusively
/// (bridged ghosts and bots are not usually reachable, so Synapse leaves them out),
/// unless `user_directory.include_appservice_users` lists them.
#[derive(Clone, Default)]
pub struct Unlisted(Vec<Arc<AppService>>);

impl Unlisted {
    pub fn new(config: &UserDirectoryConfig, services: &[Arc<AppService>]) -> Self {
        if config.include_appservice_users { Self::default() } else { Self(services.to_vec()) }
    }

    fn contains(&self, user_id: &str) -> bool {
        !self.0.is_empty() && UserId::parse(user_id).is_ok_and(|user| self.0.iter().any(|s| s.is_exclusive_user(&user)))
    }
}

/// Progress of a build, for logs and the CLI's progress bar.
pub trait BuildProgress: Send + Sync {
    fn phase(&self, name: &str, total: u64);
    fn advance(&self, done: u64);
}

/// Reports each phase to the log, with how long the one before it took.
#[derive(Default)]
pub struct LogProgress {
    previous: std::sync::Mutex<Option<(String, Instant)>>,
}

impl LogProgress {
    fn end_previous(&self) -> Option<(String, Instant)> {
        self.previous.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}

impl BuildProgress for LogProgress {
    fn phase(&self, name: &str, total: u64) {
        if let Some((previous, started)) = self.end_previous() {
            tracing::info!(
                phase = previous,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "directory build phase done"
            );
        }
        tracing::info!(phase = name, total, "building the user directory");
        *self.previous.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((name.to_owned(), Instant::now()));
    }
    fn advance(&self, _done: u64) {}
}

impl Drop for LogProgress {
    fn drop(&mut self) {
        if let Some((previous, started)) = self.end_previous() {
            tracing::info!(
                phase = previous,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "directory build phase done"
            );
        }
    }
}

impl Directory {
    /// `state_deltas`, `profile_changes` and `remote_profile_changes` announce new rows on the
    /// streams the index follows.
    pub fn new(
        store: Arc<Store>,
        server_name: String,
        config: UserDirectoryConfig,
        unlisted: Unlisted,
        state_deltas: watch::Receiver<i64>,
        profile_changes: watch::Receiver<i64>,
        remote_profile_changes: watch::Receiver<i64>,
    ) -> Self {
        Self {
            store,
            server_name,
            config,
            unlisted,
            index: RwLock::new(DirectoryIndex::default()),
            state_deltas,
            profile_changes,
            remote_profile_changes,
            wake: Arc::default(),
            rebuild_requested: Default::default(),
            built: watch::channel(false).0,
        }
    }

    /// Waits (at most `limit`) for the first build; false if it is still going on.
    pub async fn wait_until_built(&self, limit: Duration) -> bool {
        let mut built = self.built.subscribe();
        matches!(tokio::time::timeout(limit, built.wait_for(|built| *built)).await, Ok(Ok(_)))
    }

    /// Users in the index.
    pub fn user_count(&self) -> u64 {
        self.index.read().unwrap_or_else(|poisoned| poisoned.into_inner()).user_count()
    }

    fn is_local(&self, user_id: &str) -> bool {
        is_local_user(user_id, &self.server_name)
    }

    /// A local user's search. The term is parsed (and bounded) before the index is
    /// locked, and the search runs on a blocking thread, so a costly one holds up
    /// neither the async workers nor, for longer than it must, the index's writer.
    pub async fn search(self: &Arc<Self>, searcher: &str, term: &SearchTerm, limit: usize) -> SearchResults {
        if !self.config.enabled {
            return SearchResults::default();
        }
        let options = self.search_options(searcher, limit);
        self.search_blocking(term, options).await
    }

    /// The options of a local user's search, from the `user_directory` config.
    pub fn search_options(&self, searcher: &str, limit: usize) -> SearchOptions {
        SearchOptions {
            searcher: searcher.to_owned(),
            limit,
            search_all_users: self.config.search_all_users,
            exclude_remote_users: self.config.exclude_remote_users,
            show_locked_users: self.config.show_locked_users,
            prefer_local_users: self.config.prefer_local_users,
        }
    }

    /// Local users only, whoever asks (a peer's live search).
    pub async fn search_local_users(self: &Arc<Self>, term: &SearchTerm, limit: usize) -> SearchResults {
        let options = SearchOptions {
            limit,
            search_all_users: true,
            exclude_remote_users: true,
            show_locked_users: false,
            ..SearchOptions::default()
        };
        self.search_blocking(term, options).await
    }

    async fn search_blocking(self: &Arc<Self>, term: &SearchTerm, options: SearchOptions) -> SearchResults {
        let directory = self.clone();
        let term = term.clone();
        let search = move || {
            let index = directory.index.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            index.search_term(&term, &options)
        };
        tokio::task::spawn_blocking(search).await.unwrap_or_else(|err| {
            tracing::error!(%err, "a directory search failed");
            SearchResults::default()
        })
    }

    /// New rows on a stream the updater follows, written by this process.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Asks the updater to rebuild the index from the database.
    pub fn request_rebuild(&self) {
        self.rebuild_requested.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// `kith directory rebuild` runs in another process; it leaves a request in the
    /// database, which the running server picks up here.
    async fn take_external_rebuild_request(&self) -> anyhow::Result<bool> {
        let requested = self.store.stored_consumer_position(REBUILD_REQUEST).await?;
        let handled = self.store.consumer_position(REBUILD_HANDLED).await?;
        if requested > handled {
            self.store.set_consumer_position(REBUILD_HANDLED, requested).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Builds a fresh index from the database and swaps it in; stream positions are
    /// moved to where the build started, so nothing is missed.
    pub async fn rebuild(&self, progress: &dyn BuildProgress) -> anyhow::Result<()> {
        let started = Instant::now();
        let (deltas_head, profiles_head, remote_head) = self.store.stream_heads_for_directory().await?;
        let federated_head = self.store.stream_head("federated_user_changes").await?;
        let index = build_index(&self.store, &self.server_name, &self.unlisted, progress).await?;
        let users = index.user_count();
        *self.index.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = index;
        self.store.set_consumer_position(DELTAS_CONSUMER, deltas_head).await?;
        self.store.set_consumer_position(PROFILES_CONSUMER, profiles_head).await?;
        self.store.set_consumer_position(REMOTE_PROFILES_CONSUMER, remote_head).await?;
        self.store.set_consumer_position(FEDERATED_CONSUMER, federated_head).await?;
        tracing::info!(users, elapsed_ms = started.elapsed().as_millis() as u64, "user directory built");
        self.built.send_replace(true);
        Ok(())
    }

    /// One pass of the updater: a rebuild if one was asked for, then a batch of each
    /// stream; true if there may be more.
    async fn update(&self) -> anyhow::Result<bool> {
        let requested_here = self.rebuild_requested.swap(false, std::sync::atomic::Ordering::SeqCst);
        let requested_elsewhere = self.take_external_rebuild_request().await.unwrap_or(false);
        if (requested_here || requested_elsewhere)
            && let Err(err) = self.rebuild(&LogProgress::default()).await
        {
            tracing::error!(%err, "user directory rebuild failed");
        }
        self.apply_pending().await
    }

    /// Applies one batch of each stream; true if there may be more.
    pub async fn apply_pending(&self) -> anyhow::Result<bool> {
        let position = self.store.consumer_position(DELTAS_CONSUMER).await?;
        let deltas = self.store.current_state_deltas_since(position, BATCH).await?;
        for delta in &deltas {
            match delta.event_type.as_str() {
                "m.room.member" => {
                    self.apply_membership(&delta.room_id, &delta.state_key, delta.event_id.as_deref()).await?
                }
                "m.room.join_rules" | "m.room.history_visibility" => {
                    self.refresh_room_publicness(&delta.room_id).await?
                }
                _ => {}
            }
            self.store.set_consumer_position(DELTAS_CONSUMER, delta.stream_id).await?;
        }
        let position = self.store.consumer_position(PROFILES_CONSUMER).await?;
        let changes = self.store.profile_changes_since(position, BATCH).await?;
        for change in &changes {
            self.refresh_local_user(&change.user_id).await?;
            self.store.set_consumer_position(PROFILES_CONSUMER, change.stream_id).await?;
        }
        let position = self.store.consumer_position(REMOTE_PROFILES_CONSUMER).await?;
        let remote = self.store.remote_profile_changes_since(position, BATCH).await?;
        for (stream_id, user_id) in &remote {
            self.refresh_remote_user(user_id).await?;
            self.store.set_consumer_position(REMOTE_PROFILES_CONSUMER, *stream_id).await?;
        }
        let position = self.store.consumer_position(FEDERATED_CONSUMER).await?;
        let federated = self.store.federated_changes_since(position, BATCH).await?;
        for (stream_id, user_id) in &federated {
            self.refresh_federated_user(user_id).await?;
            self.store.set_consumer_position(FEDERATED_CONSUMER, *stream_id).await?;
        }
        let full = |n: usize| n as i64 == BATCH;
        Ok(full(deltas.len()) || full(changes.len()) || full(remote.len()) || full(federated.len()))
    }

    /// A peer's user was added, changed or removed: listed (for everyone) while the peer
    /// exports them, and kept afterwards only while they share a tracked room.
    async fn refresh_federated_user(&self, user_id: &str) -> anyhow::Result<()> {
        let exported = self.store.federated_user(user_id).await?;
        self.with_index(|index| match exported {
            Some(user) => {
                let profile = UserProfile { display_name: user.displayname, avatar_url: user.avatar_url };
                let id = index.upsert_user(user_id, profile, false);
                index.set_federated(id, true);
            }
            None => {
                if let Some(id) = index.id_of(user_id) {
                    index.set_federated(id, false);
                    if !index.keeps_remote_user(id) {
                        index.remove_user(user_id);
                    }
                }
            }
        });
        Ok(())
    }

    /// A remote user's cached profile changed: shown from now on if they are listed.
    async fn refresh_remote_user(&self, user_id: &str) -> anyhow::Result<()> {
        let listed = self.with_index(|index| index.id_of(user_id).map(|id| index.federated.contains(id)));
        // A peer's user shows the profile the peer exports (profile EDUs update it too).
        if self.is_local(user_id) || listed.is_none_or(|federated| federated) {
            return Ok(());
        }
        if let Some(cached) = self.store.remote_profile(user_id).await? {
            let profile = profile_from_cache(&cached);
            self.with_index(|index| {
                if index.id_of(user_id).is_some() {
                    index.upsert_user(user_id, profile, false);
                }
            });
        }
        Ok(())
    }

    fn with_index<T>(&self, change: impl FnOnce(&mut DirectoryIndex) -> T) -> T {
        let mut index = self.index.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut index)
    }

    async fn apply_membership(&self, room_id: &str, user_id: &str, event_id: Option<&str>) -> anyhow::Result<()> {
        let event = match event_id {
            Some(id) => self.store.get_event(id).await?,
            None => None,
        };
        let content = event.as_ref().map(|e| e.json["content"].clone()).unwrap_or(Value::Null);
        let joined = content["membership"] == "join";
        let local = self.is_local(user_id);
        let tracked = self.with_index(|index| index.is_tracked(room_id));
        if local {
            // The membership may come before the account's own profile-change row is
            // applied (both streams are read in one pass): index the account first.
            if joined && self.with_index(|index| index.id_of(user_id)).is_none() {
                self.refresh_local_user(user_id).await?;
            }
            if joined && !tracked {
                return self.start_tracking(room_id).await;
            }
            let id = self.with_index(|index| index.id_of(user_id));
            if let Some(id) = id {
                self.with_index(|index| index.set_member(room_id, id, joined));
            }
            if !joined && tracked && !self.store.has_local_member(room_id).await? {
                self.stop_tracking(room_id);
            }
            return Ok(());
        }
        if !tracked {
            return Ok(());
        }
        let cached = match joined {
            true => self.store.remote_profile(user_id).await?.map(|c| profile_from_cache(&c)),
            false => None,
        };
        self.with_index(|index| {
            if joined {
                let public = index.room_is_public(room_id);
                let member = JoinedMember {
                    room_id: room_id.to_owned(),
                    user_id: user_id.to_owned(),
                    displayname: content["displayname"].as_str().map(str::to_owned),
                    avatar_url: content["avatar_url"].as_str().map(str::to_owned),
                    stream_ordering: 0,
                };
                add_member(index, &member, false, public, cached.as_ref());
            } else if let Some(id) = index.id_of(user_id) {
                index.set_member(room_id, id, false);
                if !index.keeps_remote_user(id) {
                    index.remove_user(user_id);
                }
            }
        });
        Ok(())
    }

    /// A local user joined a room the index did not track: load all its members.
    async fn start_tracking(&self, room_id: &str) -> anyhow::Result<()> {
        let members = self.store.tracked_joined_members(room_id).await?;
        for member in members.iter().filter(|m| self.is_local(&m.user_id)) {
            if self.with_index(|index| index.id_of(&member.user_id)).is_none() {
                self.refresh_local_user(&member.user_id).await?;
            }
        }
        let public = !self.store.public_room_ids(Some(room_id)).await?.is_empty();
        let cached = self.cached_profiles(&members).await?;
        self.with_index(|index| {
            index.set_room_public(room_id, public);
            for member in &members {
                add_member(index, member, self.is_local(&member.user_id), public, cached.get(&member.user_id));
            }
        });
        Ok(())
    }

    /// No local user is left in a room: forget it, and remote users with no other room.
    fn stop_tracking(&self, room_id: &str) {
        self.with_index(|index| {
            let former = index.drop_room(room_id);
            for id in &former {
                let remote_user = index.entry(id).filter(|e| !e.local).map(|e| e.user_id.to_string());
                if let Some(user_id) = remote_user
                    && !index.keeps_remote_user(id)
                {
                    index.remove_user(&user_id);
                }
            }
        });
    }

    async fn refresh_room_publicness(&self, room_id: &str) -> anyhow::Result<()> {
        if !self.with_index(|index| index.is_tracked(room_id)) {
            return Ok(());
        }
        let public = !self.store.public_room_ids(Some(room_id)).await?.is_empty();
        let members = if public { self.store.tracked_joined_members(room_id).await? } else { Vec::new() };
        let cached = self.cached_profiles(&members).await?;
        self.with_index(|index| {
            index.set_room_public(room_id, public);
            // Remote members without a cached profile now show their member event's.
            for member in members.iter().filter(|m| !self.is_local(&m.user_id)) {
                add_member(index, member, false, true, cached.get(&member.user_id));
            }
        });
        Ok(())
    }

    /// The cached profiles of a room's remote members.
    async fn cached_profiles(&self, members: &[JoinedMember]) -> anyhow::Result<HashMap<String, UserProfile>> {
        let remote: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).filter(|u| !self.is_local(u)).collect();
        let found = self.store.remote_profiles_of(&remote).await?;
        Ok(found.iter().map(|cached| (cached.user_id.clone(), profile_from_cache(cached))).collect())
    }

    /// Re-reads a local user's account and global profile.
    async fn refresh_local_user(&self, user_id: &str) -> anyhow::Result<()> {
        let Some(account) = self.store.local_account(user_id).await? else { return Ok(()) };
        let profile = self.store.get_profile(user_id).await?;
        let display_name = profile.get("displayname").and_then(Value::as_str).map(str::to_owned);
        let avatar_url = profile.get("avatar_url").and_then(Value::as_str).map(str::to_owned);
        let hidden = self.store.directory_visibility(user_id).await?.as_deref() == Some("hidden")
            || self.unlisted.contains(user_id);
        let (account, profile, doc) = prepare_account(account, display_name, avatar_url);
        self.with_index(|index| apply_account(index, &account, profile, doc, hidden));
        Ok(())
    }
}

/// The updater: follows the current-state-delta and profile-change streams.
impl Worker for Directory {
    fn name(&self) -> &'static str {
        "user directory updater"
    }

    fn run(self: Arc<Self>, stop: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut stop = stop;
            while !*self.built.borrow() && !stop.is_stopping() {
                let progress = LogProgress::default();
                let build = self.rebuild(&progress);
                if let Some(Err(err)) = stop.unless_stopped(build).await {
                    tracing::error!(%err, "user directory build failed; trying again");
                    let _ = stop.unless_stopped(tokio::time::sleep(POLL_INTERVAL)).await;
                }
            }
            let wakeups = Wakeups::default()
                .on_position(self.state_deltas.clone())
                .on_position(self.profile_changes.clone())
                .on_position(self.remote_profile_changes.clone())
                .on_notify(self.wake.clone());
            follow(self.name(), wakeups, POLL_INTERVAL, stop, || self.update()).await;
        })
    }
}

fn profile_from_cache(cached: &RemoteProfile) -> UserProfile {
    UserProfile {
        display_name: cached.displayname().map(str::to_owned),
        avatar_url: cached.avatar_url().map(str::to_owned),
    }
}

fn is_local_user(user_id: &str, server_name: &str) -> bool {
    user_id.split_once(':').is_some_and(|(_, server)| server == server_name)
}

/// Adds a joined member of a tracked room. Local users are indexed from their accounts
/// (and keep their global profile). A remote user takes their cached public profile;
/// without one, the profile of their member event in a public room stands in, and a user
/// seen only in private rooms is listed by user ID alone.
fn add_member(
    index: &mut DirectoryIndex,
    member: &JoinedMember,
    local: bool,
    room_public: bool,
    cached: Option<&UserProfile>,
) {
    let known = index.id_of(&member.user_id);
    let id = match (known, local, cached, room_public) {
        (None, true, ..) => return,
        (Some(id), true, ..) => id,
        // A listed remote user already shows their cached profile (the remote-profile
        // stream keeps it current).
        (Some(id), false, Some(_), _) => id,
        (None, false, Some(profile), _) => index.upsert_user(&member.user_id, profile.clone(), false),
        (_, false, None, true) => {
            let profile =
                UserProfile { display_name: member.displayname.clone(), avatar_url: member.avatar_url.clone() };
            index.upsert_user(&member.user_id, profile, false)
        }
        (Some(id), false, None, false) => id,
        (None, false, None, false) => index.upsert_user(&member.user_id, UserProfile::default(), false),
    };
    index.set_member(&member.room_id, id, true);
}

/// Lists or hides a local account: deactivated and support users, and users who chose
/// to be hidden or are held by an application service (`hidden`), are never listed.
fn apply_account(
    index: &mut DirectoryIndex,
    account: &LocalAccount,
    profile: UserProfile,
    doc: Option<UserDoc>,
    hidden: bool,
) {
    let doc = match doc {
        Some(doc) if !hidden => doc,
        _ => return index.remove_user(&account.user_id),
    };
    let id = index.upsert_user_doc(&account.user_id, profile, doc, true);
    index.set_locked(id, account.locked);
}

/// An account's lexemes, unless it is never listed whatever its settings.
fn prepare_account(
    account: LocalAccount,
    display_name: Option<String>,
    avatar_url: Option<String>,
) -> (LocalAccount, UserProfile, Option<UserDoc>) {
    let profile = UserProfile { display_name, avatar_url };
    let listable = !account.deactivated && account.user_type.as_deref() != Some("support");
    let doc = listable.then(|| UserDoc::new(&account.user_id, &profile));
    (account, profile, doc)
}

/// Builds the index from the database.
pub async fn build_index(
    store: &Store,
    server_name: &str,
    unlisted: &Unlisted,
    progress: &dyn BuildProgress,
) -> anyhow::Result<DirectoryIndex> {
    let mut index = DirectoryIndex::default();
    let accounts = store.local_account_count().await?.max(0) as u64;
    index.begin_bulk(accounts as usize);
    progress.phase("local users", accounts);
    add_local_accounts(&mut index, store, unlisted, progress).await?;
    progress.phase("remote profiles", 0);
    let cached = add_remote_profiles(&mut index, store).await?;
    progress.phase("room memberships", store.tracked_membership_count().await?.max(0) as u64);
    add_memberships(&mut index, store, server_name, &cached, progress).await?;
    progress.phase("settling", 0);
    index.finish_bulk();
    Ok(index)
}

async fn add_local_accounts(
    index: &mut DirectoryIndex,
    store: &Store,
    unlisted: &Unlisted,
    progress: &dyn BuildProgress,
) -> anyhow::Result<()> {
    let hidden: HashSet<String> = store.hidden_users().await?.into_iter().collect();
    let mut done = 0u64;
    store
        .for_each_local_account(prepare_account, |(account, profile, doc)| {
            let hidden = hidden.contains(&account.user_id) || unlisted.contains(&account.user_id);
            apply_account(index, &account, profile, doc, hidden);
            done += 1;
            if done.is_multiple_of(10_000) {
                progress.advance(done);
            }
        })
        .await?;
    Ok(())
}

/// Lists the users of federated-directory peers; returns every remote user's public
/// profile as known (a peer's export over the fetched cache).
async fn add_remote_profiles(
    index: &mut DirectoryIndex,
    store: &Store,
) -> anyhow::Result<HashMap<String, UserProfile>> {
    let mut cached: HashMap<String, UserProfile> =
        store.remote_profiles().await?.iter().map(|c| (c.user_id.clone(), profile_from_cache(c))).collect();
    for user in store.federated_users().await? {
        let profile = UserProfile { display_name: user.displayname, avatar_url: user.avatar_url };
        let id = index.upsert_user(&user.user_id, profile.clone(), false);
        index.set_federated(id, true);
        cached.insert(user.user_id, profile);
    }
    Ok(cached)
}

/// Adds the joined members of every tracked room. The rows come unsorted; a remote user
/// without a public profile is shown as their earliest membership shows them (see
/// `add_member`), as the updater, which sees memberships in order, would.
async fn add_memberships(
    index: &mut DirectoryIndex,
    store: &Store,
    server_name: &str,
    cached: &HashMap<String, UserProfile>,
    progress: &dyn BuildProgress,
) -> anyhow::Result<()> {
    let tracked = store.rooms_joined_by_server(server_name).await?;
    let public: HashSet<String> = store.public_room_ids(None).await?.into_iter().collect();
    let mut earliest: HashMap<String, i64> = HashMap::new();
    // Rows of one room often come together: its flags are looked up once per run.
    let mut room: (String, bool, bool) = Default::default();
    let mut done = 0u64;
    store
        .for_each_joined_member(server_name, |member| {
            done += 1;
            if done.is_multiple_of(10_000) {
                progress.advance(done);
            }
            if room.0 != member.room_id {
                let (is_tracked, is_public) = (tracked.contains(&member.room_id), public.contains(&member.room_id));
                room = (member.room_id.clone(), is_tracked, is_public);
                if is_tracked && !index.is_tracked(&member.room_id) {
                    index.set_room_public(&member.room_id, is_public);
                }
            }
            let (_, room_tracked, room_public) = room;
            if !room_tracked {
                return;
            }
            let local = is_local_user(&member.user_id, server_name);
            // A local member is listed from their account, whatever is cached.
            let cached = if local { None } else { cached.get(&member.user_id) };
            if !local && cached.is_none() && is_earliest_seen(&mut earliest, &member) {
                // An earlier membership than the one the user was listed from decides.
                let profile = match room_public {
                    true => {
                        UserProfile { display_name: member.displayname.clone(), avatar_url: member.avatar_url.clone() }
                    }
                    false => UserProfile::default(),
                };
                index.upsert_user(&member.user_id, profile, false);
            }
            add_member(index, &member, local, room_public, cached);
        })
        .await?;
    Ok(())
}

/// Whether `member` is the earliest membership of a remote user seen so far, after an
/// earlier-seen later one.
fn is_earliest_seen(earliest: &mut HashMap<String, i64>, member: &JoinedMember) -> bool {
    match earliest.get_mut(&member.user_id) {
        Some(seen) if *seen > member.stream_ordering => {
            *seen = member.stream_ordering;
            true
        }
        Some(_) => false,
        None => {
            earliest.insert(member.user_id.clone(), member.stream_ordering);
            false
        }
    }
}

/// Asks a running server (through the database) to rebuild its directory index.
pub async fn request_rebuild_in_database(store: &Store) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    store.set_consumer_position(REBUILD_REQUEST, now).await?;
    Ok(())
}
