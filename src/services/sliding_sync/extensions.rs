//! The extensions: to-device messages, encryption (device lists and key counts), account
//! data, receipts and typing, from the same streams as `/sync`.

use std::collections::{BTreeMap, HashSet};

use ruma::api::client::sync::sync_events::DeviceLists;
use ruma::api::client::sync::sync_events::v5::request::{self, ExtensionRoomConfig};
use ruma::api::client::sync::sync_events::v5::response;
use ruma::events::push_rules::PushRulesEventContent;
use ruma::{OneTimeKeyAlgorithm, OwnedRoomId, OwnedUserId, UserId};

use super::SlidingSync;
use super::lists::ListWindow;
use super::room::{raw, uint};
use crate::error::{ApiResult, MatrixError};
use crate::services::sync::{SyncToken, raw_type_and_content};
use crate::services::to_device::SYNC_BATCH;

/// Where an answer's extensions start from and end.
pub struct ExtensionSpan<'a> {
    pub since: Option<SyncToken>,
    pub head: SyncToken,
    pub windows: &'a BTreeMap<String, ListWindow>,
    pub subscriptions: &'a [OwnedRoomId],
    /// Rooms this connection is sent for the first time in this answer.
    pub new_rooms: &'a HashSet<OwnedRoomId>,
}

impl SlidingSync {
    /// The device's to-device messages after `since` (those before it were received and
    /// go now).
    pub(super) async fn to_device_extension(
        &self,
        user: &UserId,
        device: &str,
        config: &request::ToDevice,
        head: i64,
    ) -> ApiResult<Option<response::ToDevice>> {
        if config.enabled != Some(true) {
            return Ok(None);
        }
        let since = match config.since.as_deref() {
            Some(since) => since
                .parse::<i64>()
                .ok()
                .filter(|n| (0..=head).contains(n))
                .ok_or_else(|| MatrixError::invalid_param("Invalid to_device since token"))?,
            None => 0,
        };
        let messages = self.to_device.inbox(user, device, since, head).await?;
        let next = match messages.last() {
            Some((last, _)) if messages.len() as i64 == SYNC_BATCH => *last,
            _ => head,
        };
        let mut answer = response::ToDevice::default();
        answer.next_batch = next.to_string();
        answer.events = messages.iter().map(|(_, message)| raw(message)).collect::<ApiResult<_>>()?;
        Ok(Some(answer))
    }

    /// Users whose devices changed or who now share or no longer share a room (after the
    /// connection's position only), and the device's key counts.
    pub(super) async fn e2ee_extension(
        &self,
        user: &UserId,
        device: &str,
        span: &ExtensionSpan<'_>,
    ) -> ApiResult<(response::E2EE, BTreeMap<String, i64>)> {
        let mut answer = response::E2EE::default();
        if let Some(since) = span.since {
            let mut changed = self.keys.changes(user, since.device_lists, span.head.device_lists).await?;
            let mut left = Vec::new();
            if since.events < span.head.events {
                changed.extend(self.keys.joined_since(user, since.events).await?);
                left = self.keys.left_since(user, since.events).await?;
            }
            changed.sort_unstable();
            changed.dedup();
            let mut lists = DeviceLists::new();
            lists.changed = user_ids(changed);
            lists.left = user_ids(left);
            answer.device_lists = lists;
        }
        let (counts, fallback) = self.keys.key_counts(user, device).await?;
        answer.device_one_time_keys_count =
            counts.iter().map(|(algorithm, n)| (OneTimeKeyAlgorithm::from(algorithm.as_str()), uint(*n))).collect();
        answer.device_unused_fallback_key_types =
            Some(fallback.iter().map(|algorithm| OneTimeKeyAlgorithm::from(algorithm.as_str())).collect());
        Ok((answer, counts))
    }

    /// Global account data (with the push rules on a first answer, as `/sync` gives
    /// them) and the account data of the extension's rooms; all of it for a room the
    /// connection sees for the first time.
    pub(super) async fn account_data_extension(
        &self,
        user: &UserId,
        config: &request::AccountData,
        span: &ExtensionSpan<'_>,
    ) -> ApiResult<response::AccountData> {
        let mut answer = response::AccountData::default();
        if config.enabled != Some(true) {
            return Ok(answer);
        }
        let rooms = relevant_rooms(config.lists.as_deref(), config.rooms.as_deref(), span);
        let since = span.since.map_or(0, |s| s.account_data);
        let changed = self.account_data.since(user, since).await?;
        // Rooms new to the connection get all their account data, not only the changes.
        let everything = if since > 0 && rooms.iter().any(|room| span.new_rooms.contains(room)) {
            self.account_data.since(user, 0).await?
        } else {
            Vec::new()
        };
        let mut has_push_rules = false;
        for (room, kind, content) in &changed {
            if room.is_empty() {
                has_push_rules |= kind == "m.push_rules";
                answer.global.push(raw_type_and_content(kind, content)?);
            } else if let Some(room_id) = rooms.iter().find(|r| r.as_str() == room)
                && (since == 0 || !span.new_rooms.contains(room_id))
            {
                answer.rooms.entry(room_id.clone()).or_default().push(raw_type_and_content(kind, content)?);
            }
        }
        for (room, kind, content) in &everything {
            if let Some(room_id) = rooms.iter().find(|r| r.as_str() == room && span.new_rooms.contains(*r)) {
                answer.rooms.entry(room_id.clone()).or_default().push(raw_type_and_content(kind, content)?);
            }
        }
        if span.since.is_none() && !has_push_rules {
            let rules = PushRulesEventContent::new(self.push.ruleset(user).await?);
            answer.global.push(raw_type_and_content("m.push_rules", rules)?);
        }
        Ok(answer)
    }

    /// Receipts of the extension's rooms after the connection's position (all of a room's
    /// for a room the connection sees for the first time).
    pub(super) async fn receipts_extension(
        &self,
        config: &request::Receipts,
        span: &ExtensionSpan<'_>,
    ) -> ApiResult<response::Receipts> {
        let mut answer = response::Receipts::default();
        if config.enabled != Some(true) {
            return Ok(answer);
        }
        for room_id in relevant_rooms(config.lists.as_deref(), config.rooms.as_deref(), span) {
            let since = if span.new_rooms.contains(&room_id) { 0 } else { span.since.map_or(0, |s| s.receipts) };
            if let Some(event) = self.client_sync.receipt_event(room_id.as_str(), since).await? {
                answer.rooms.insert(room_id, event);
            }
        }
        Ok(answer)
    }

    /// Who types in the extension's rooms, where it changed after the connection's
    /// position.
    pub(super) fn typing_extension(
        &self,
        config: &request::Typing,
        span: &ExtensionSpan<'_>,
    ) -> ApiResult<response::Typing> {
        let mut answer = response::Typing::default();
        if config.enabled != Some(true) {
            return Ok(answer);
        }
        for room_id in relevant_rooms(config.lists.as_deref(), config.rooms.as_deref(), span) {
            let first = span.since.is_none() || span.new_rooms.contains(&room_id);
            let since = if first { 0 } else { span.since.map_or(0, |s| s.typing) };
            if let Some(event) = self.client_sync.typing_event(room_id.as_str(), since, first)? {
                answer.rooms.insert(room_id, event);
            }
        }
        Ok(answer)
    }
}

/// The rooms an extension covers: those in the windows of the named lists and the named
/// subscriptions, `*` (the default for both) meaning all of them.
fn relevant_rooms(
    lists: Option<&[String]>,
    rooms: Option<&[ExtensionRoomConfig]>,
    span: &ExtensionSpan<'_>,
) -> Vec<OwnedRoomId> {
    let mut relevant: Vec<OwnedRoomId> = Vec::new();
    let all_lists = lists.is_none_or(|lists| lists.iter().any(|l| l == "*"));
    for (name, window) in span.windows {
        if all_lists || lists.is_some_and(|lists| lists.contains(name)) {
            relevant.extend(window.room_ids.iter().cloned());
        }
    }
    let all_rooms = rooms.is_none_or(|rooms| rooms.contains(&ExtensionRoomConfig::AllSubscribed));
    for room_id in span.subscriptions {
        if all_rooms || rooms.is_some_and(|rooms| rooms.contains(&ExtensionRoomConfig::Room(room_id.clone()))) {
            relevant.push(room_id.clone());
        }
    }
    relevant.sort_unstable();
    relevant.dedup();
    relevant
}

fn user_ids(users: Vec<String>) -> Vec<OwnedUserId> {
    users.into_iter().filter_map(|u| OwnedUserId::try_from(u).ok()).collect()
}
