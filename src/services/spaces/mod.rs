//! Spaces: `GET /rooms/{roomId}/hierarchy` walks a space's `m.space.child` events
//! breadth first and lists each room the requester may see (joined, or public, or
//! world-readable) with its public summary, `room_type` and the `m.space.child` events
//! it holds. Rooms this server is not in are left out (their servers are not asked).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use ruma::api::client::space::SpaceHierarchyRoomsChunk;
use ruma::events::space::child::HierarchySpaceChildEvent;
use ruma::serde::Raw;
use ruma::{OwnedRoomId, RoomId, UserId};
use serde::Serialize;
use serde_json::Value;

use super::rooms::Rooms;
use crate::error::{ApiResult, MatrixError};
use crate::store::Store;

/// Rooms one walk visits, at most.
const MAX_ROOMS: usize = 1_000;
/// Children of one room followed, at most (as Synapse).
const MAX_CHILDREN: usize = 50;
/// Rooms a page lists when the client names no limit.
const DEFAULT_LIMIT: usize = 50;

/// What a client asks of a hierarchy.
#[derive(Debug, Clone)]
pub struct HierarchyQuery {
    /// Where the previous page ended: an index into the walk.
    pub from: usize,
    pub limit: Option<usize>,
    /// How deep to walk; the root is at depth 0.
    pub max_depth: Option<usize>,
    pub suggested_only: bool,
}

pub struct Spaces {
    store: Arc<Store>,
    rooms: Arc<Rooms>,
}

/// One page of a hierarchy, and where the next starts.
pub struct HierarchyPage {
    pub rooms: Vec<SpaceHierarchyRoomsChunk>,
    pub next_batch: Option<String>,
}

/// One valid `m.space.child` event of a room.
struct Child {
    room_id: OwnedRoomId,
    order: Option<String>,
    suggested: bool,
    origin_server_ts: i64,
    stripped: Raw<HierarchySpaceChildEvent>,
}

/// An `m.space.child` event as `children_state` lists it: its content as sent.
#[derive(Serialize)]
struct StrippedChild<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    state_key: &'a Value,
    content: &'a Value,
    sender: &'a Value,
    origin_server_ts: &'a Value,
}

impl Spaces {
    pub fn new(store: Arc<Store>, rooms: Arc<Rooms>) -> Self {
        Self { store, rooms }
    }

    /// One page of the hierarchy under `root`, as the spec's `/hierarchy` answers.
    pub async fn hierarchy(
        &self,
        requester: &UserId,
        root: &RoomId,
        query: &HierarchyQuery,
    ) -> ApiResult<HierarchyPage> {
        if !self.may_see(requester, root).await? {
            return Err(MatrixError::forbidden("You cannot view this room's hierarchy"));
        }
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_ROOMS);
        let walk = self.walk(requester, root, query, query.from.saturating_add(limit)).await?;
        let mut rooms: Vec<SpaceHierarchyRoomsChunk> = walk.into_iter().skip(query.from).collect();
        let next_batch = (rooms.len() > limit).then(|| (query.from + limit).to_string());
        rooms.truncate(limit);
        Ok(HierarchyPage { rooms, next_batch })
    }

    /// The visible rooms breadth first, up to `wanted` of them (and one more, to tell
    /// whether another page follows).
    async fn walk(
        &self,
        requester: &UserId,
        root: &RoomId,
        query: &HierarchyQuery,
        wanted: usize,
    ) -> ApiResult<Vec<SpaceHierarchyRoomsChunk>> {
        let mut listed = Vec::new();
        let mut seen: HashSet<OwnedRoomId> = HashSet::from([root.to_owned()]);
        let mut queue: VecDeque<(OwnedRoomId, usize)> = VecDeque::from([(root.to_owned(), 0)]);
        while let Some((room_id, depth)) = queue.pop_front() {
            if listed.len() > wanted || seen.len() > MAX_ROOMS {
                break;
            }
            if !self.is_known(&room_id).await? || !self.may_see(requester, &room_id).await? {
                continue;
            }
            let children = self.children(&room_id).await?;
            if query.max_depth.is_none_or(|max| depth < max) {
                let followed = children.iter().filter(|c| !query.suggested_only || c.suggested);
                for child in followed.take(MAX_CHILDREN) {
                    if seen.insert(child.room_id.clone()) {
                        queue.push_back((child.room_id.clone(), depth + 1));
                    }
                }
            }
            let summary = self.rooms.summary(&room_id).await?;
            let children_state = children.into_iter().map(|child| child.stripped).collect();
            listed.push(SpaceHierarchyRoomsChunk::new(summary, children_state));
        }
        Ok(listed)
    }

    async fn is_known(&self, room_id: &RoomId) -> ApiResult<bool> {
        Ok(self.store.room_version(room_id.as_str()).await?.is_some()
            && self.store.has_local_member(room_id.as_str()).await?)
    }

    /// A member sees a room; anyone sees one that is public (or knockable) or
    /// world-readable.
    async fn may_see(&self, requester: &UserId, room_id: &RoomId) -> ApiResult<bool> {
        let membership = self.store.membership(room_id.as_str(), requester.as_str()).await?;
        if membership.is_some_and(|m| m.membership == "join" || m.membership == "invite") {
            return Ok(true);
        }
        let content = |event_type: &'static str| async move {
            let event = self.store.current_state_event(room_id.as_str(), event_type, "").await?;
            Ok::<Value, MatrixError>(event.map(|e| e.json["content"].clone()).unwrap_or(Value::Null))
        };
        let join_rule = content("m.room.join_rules").await?;
        let history = content("m.room.history_visibility").await?;
        Ok(matches!(join_rule["join_rule"].as_str(), Some("public" | "knock"))
            || history["history_visibility"] == "world_readable")
    }

    /// The rooms a space names as its children now (valid `m.space.child` events).
    pub async fn child_room_ids(&self, space: &RoomId) -> ApiResult<Vec<OwnedRoomId>> {
        Ok(self.children(space).await?.into_iter().map(|child| child.room_id).collect())
    }

    /// The room's valid `m.space.child` events, in the spec's order.
    async fn children(&self, room_id: &RoomId) -> ApiResult<Vec<Child>> {
        let state = self.store.current_state(room_id.as_str()).await?;
        let ids: Vec<String> =
            state.iter().filter(|((kind, _), _)| kind == "m.space.child").map(|(_, id)| id.clone()).collect();
        let mut children: Vec<Child> =
            self.store.events_by_id(&ids).await?.into_iter().filter_map(|event| child_of(&event.json)).collect();
        children.sort_by(|a, b| {
            let order = |c: &Child| (c.order.is_none(), c.order.clone());
            order(a).cmp(&order(b)).then(a.origin_server_ts.cmp(&b.origin_server_ts)).then(a.room_id.cmp(&b.room_id))
        });
        Ok(children)
    }
}

/// A child from an `m.space.child` event, unless it is not a valid one.
fn child_of(event: &Value) -> Option<Child> {
    let content = &event["content"];
    // A child without servers to join it through is no child (how clients remove one).
    content["via"].as_array().filter(|via| !via.is_empty())?;
    let room_id = OwnedRoomId::try_from(event["state_key"].as_str()?).ok()?;
    // The spec's `order`: at most 50 characters between U+0020 and U+007E.
    let order = content["order"]
        .as_str()
        .filter(|o| o.len() <= 50 && o.chars().all(|c| (' '..='~').contains(&c)))
        .map(str::to_owned);
    Some(Child {
        room_id,
        order,
        suggested: content["suggested"] == true,
        origin_server_ts: event["origin_server_ts"].as_i64().unwrap_or_default(),
        stripped: Raw::new(&StrippedChild {
            kind: "m.space.child",
            state_key: &event["state_key"],
            content,
            sender: &event["sender"],
            origin_server_ts: &event["origin_server_ts"],
        })
        .ok()?
        .cast_unchecked(),
    })
}
