//! Per-user data a client keeps on the server: account data (global and per room) and
//! sync filters. Account data changes go on the account-data stream `/sync` follows.

use std::sync::Arc;

use axum::http::StatusCode;
use ruma::api::client::filter::FilterDefinition;
use ruma::events::tag::{TagInfo, TagName, Tags};
use ruma::{RoomId, UserId};
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::locks::KeyedLocks;
use super::rooms::Rooms;
use super::rooms::filter::EventFilter;
use crate::error::{ApiResult, MatrixError};
use crate::store::{Store, VISIBILITY_TYPES};

/// Account data types set through their own endpoints only.
const SERVER_MANAGED: &[(&str, &str)] =
    &[("m.fully_read", "/rooms/{roomId}/read_markers"), ("m.push_rules", "/pushrules")];
/// Room account data holding a user's tags on the room.
const TAGS: &str = "m.tag";
/// Account data types are bounded like event types.
const MAX_TYPE_BYTES: usize = 255;
/// A stored filter may not exceed this, serialized.
const MAX_FILTER_BYTES: usize = 64 * 1024;

pub struct AccountData {
    store: Arc<Store>,
    rooms: Arc<Rooms>,
    /// Bumped on every change, to wake long-polling `/sync`s.
    changed: watch::Sender<u64>,
    /// Tag changes read and rewrite one entry; a user's are made one at a time.
    tag_locks: KeyedLocks<String>,
}

/// One account-data entry as `/sync` reports it: (room id or "" for global, type, content).
pub type AccountDataEntry = (String, String, Value);

impl AccountData {
    pub fn new(store: Arc<Store>, rooms: Arc<Rooms>) -> Self {
        Self { store, rooms, changed: watch::channel(0).0, tag_locks: KeyedLocks::new(1024) }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Sets an entry for a client: the types the server manages through their own
    /// endpoints are refused, as in Synapse.
    pub async fn put_from_client(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
        content: &Value,
    ) -> ApiResult<()> {
        if let Some(endpoint) = SERVER_MANAGED.iter().find(|(managed, _)| *managed == kind).map(|(_, e)| e) {
            return Err(MatrixError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "M_BAD_JSON",
                format!("Cannot set {kind} through this API; use {endpoint}"),
            ));
        }
        if kind.is_empty() || kind.len() > MAX_TYPE_BYTES {
            return Err(MatrixError::invalid_param(format!("The type must be 1 to {MAX_TYPE_BYTES} bytes")));
        }
        self.put(user_id, room_id, kind, content).await
    }

    /// Sets an entry, global (`room_id` None) or for a room this server knows. A
    /// directory visibility (MSC4258) also goes on the profile-change stream, which the
    /// directory and the federated peers follow.
    pub async fn put(&self, user_id: &UserId, room_id: Option<&RoomId>, kind: &str, content: &Value) -> ApiResult<()> {
        if let Some(room_id) = room_id {
            self.rooms.room_version(room_id.as_str()).await?;
        }
        let room = room_id.map_or("", |r| r.as_str());
        if room.is_empty() && VISIBILITY_TYPES.contains(&kind) {
            check_visibility(content)?;
            self.store.set_directory_visibility(user_id.as_str(), kind, content).await?;
        } else {
            self.store.put_account_data(user_id.as_str(), room, kind, content).await?;
        }
        self.changed.send_modify(|serial| *serial += 1);
        Ok(())
    }

    /// A user's tags on a room (`m.tag` room account data). A tag whose content does not
    /// fit (set as account data, say, with an `order` that is no number) is listed
    /// without it.
    pub async fn tags(&self, user_id: &UserId, room_id: &RoomId) -> ApiResult<Tags> {
        let stored = self.stored_tags(user_id, room_id).await?;
        let tag =
            |(name, info): (String, Value)| (TagName::from(name), serde_json::from_value(info).unwrap_or_default());
        Ok(stored.into_iter().map(tag).collect())
    }

    /// The `tags` of the stored `m.tag` content, as stored: rewriting one tag leaves the
    /// others as they are.
    async fn stored_tags(&self, user_id: &UserId, room_id: &RoomId) -> ApiResult<Map<String, Value>> {
        let content = self.store.get_account_data(user_id.as_str(), room_id.as_str(), TAGS).await?;
        match content.and_then(|mut content| content.get_mut("tags").map(Value::take)) {
            Some(Value::Object(tags)) => Ok(tags),
            _ => Ok(Map::new()),
        }
    }

    /// Adds or replaces a tag, or with `None` removes it.
    pub async fn set_tag(&self, user_id: &UserId, room_id: &RoomId, tag: &str, info: Option<TagInfo>) -> ApiResult<()> {
        if tag.is_empty() || tag.len() > MAX_TYPE_BYTES {
            return Err(MatrixError::invalid_param(format!("A tag must be 1 to {MAX_TYPE_BYTES} bytes")));
        }
        let _one_writer = self.tag_locks.lock(&user_id.to_string()).await;
        let mut tags = self.stored_tags(user_id, room_id).await?;
        match info {
            Some(info) => {
                let info = serde_json::to_value(info).map_err(|err| MatrixError::internal("a tag's content", err))?;
                tags.insert(tag.to_owned(), info);
            }
            None => {
                tags.remove(tag);
            }
        }
        let content = Map::from_iter([("tags".to_owned(), Value::Object(tags))]);
        self.put(user_id, Some(room_id), TAGS, &Value::Object(content)).await
    }

    pub async fn get(&self, user_id: &UserId, room_id: Option<&RoomId>, kind: &str) -> ApiResult<Value> {
        let room = room_id.map_or("", |r| r.as_str());
        let content = self.store.get_account_data(user_id.as_str(), room, kind).await?;
        content.ok_or_else(|| MatrixError::not_found("Account data not found"))
    }

    /// One entry, or None when the user has none of that type.
    pub async fn find(&self, user_id: &UserId, room_id: Option<&RoomId>, kind: &str) -> ApiResult<Option<Value>> {
        let room = room_id.map_or("", |r| r.as_str());
        Ok(self.store.get_account_data(user_id.as_str(), room, kind).await?)
    }

    /// Every entry changed after stream position `since`.
    pub async fn since(&self, user_id: &UserId, since: i64) -> ApiResult<Vec<AccountDataEntry>> {
        Ok(self.store.account_data_since(user_id.as_str(), since).await?)
    }

    pub async fn stream_head(&self) -> ApiResult<i64> {
        Ok(self.store.stream_head("account_data").await?)
    }

    /// Stores a filter once it is a valid filter definition; returns its id.
    pub async fn create_filter(&self, user_id: &UserId, filter: &Value) -> ApiResult<i64> {
        check_filter(filter)?;
        Ok(self.store.save_filter(user_id.as_str(), filter).await?)
    }

    pub async fn filter(&self, user_id: &UserId, filter_id: &str) -> ApiResult<Value> {
        let id = filter_id.parse::<i64>().map_err(|_| MatrixError::not_found("No such filter"))?;
        let filter = self.store.get_filter(user_id.as_str(), id).await?;
        filter.ok_or_else(|| MatrixError::not_found("No such filter"))
    }
}

impl AccountData {
    /// The filter of a `/sync`: given inline as JSON or by the id `POST /filter` returned.
    pub async fn sync_filter(&self, user_id: &UserId, filter: Option<&str>) -> ApiResult<Value> {
        let Some(filter) = filter else { return Ok(Value::Object(serde_json::Map::new())) };
        match parse_sync_filter(filter)? {
            SyncFilter::Inline(filter) => Ok(filter),
            SyncFilter::Stored(id) => {
                let filter = self.store.get_filter(user_id.as_str(), id).await?;
                filter.ok_or_else(|| MatrixError::not_found("No such filter"))
            }
        }
    }
}

/// The `filter` parameter of a `/sync`.
#[derive(Debug)]
pub enum SyncFilter {
    /// A filter definition given inline, checked.
    Inline(Value),
    /// The id of a filter `POST /filter` stored.
    Stored(i64),
}

/// Reads a `/sync` filter parameter: inline JSON (checked as a stored one is) or an id.
pub fn parse_sync_filter(filter: &str) -> ApiResult<SyncFilter> {
    if filter.trim_start().starts_with('{') {
        let filter: Value =
            serde_json::from_str(filter).map_err(|err| MatrixError::bad_json(format!("Invalid filter: {err}")))?;
        check_filter(&filter)?;
        return Ok(SyncFilter::Inline(filter));
    }
    let id = filter.parse::<i64>().map_err(|_| MatrixError::invalid_param("Invalid filter ID"))?;
    Ok(SyncFilter::Stored(id))
}

/// MSC4258's visibilities: `remote` (the default: found here and by peers), `local`
/// (found here only), `hidden` (found nowhere), `restricted` (treated as `local`).
fn check_visibility(content: &Value) -> ApiResult<()> {
    match content.get("visibility").and_then(Value::as_str) {
        Some("remote" | "local" | "hidden" | "restricted") | None => Ok(()),
        Some(other) => Err(MatrixError::bad_json(format!("Unknown directory visibility {other}"))),
    }
}

/// A filter must be a filter definition as the spec gives it (ruma's type), with a
/// timeline filter kith can apply, and of a bounded size.
pub fn check_filter(filter: &Value) -> ApiResult<()> {
    if filter.to_string().len() > MAX_FILTER_BYTES {
        return Err(MatrixError::field_too_large("The filter is too large"));
    }
    crate::validation::check_json_text(filter)?;
    serde_json::from_value::<FilterDefinition>(filter.clone())
        .map_err(|err| MatrixError::bad_json(format!("Invalid filter: {err}")))?;
    if let Some(timeline) = filter.pointer("/room/timeline")
        && serde_json::from_value::<EventFilter>(timeline.clone()).is_err()
    {
        return Err(MatrixError::bad_json("Invalid room.timeline filter"));
    }
    Ok(())
}
