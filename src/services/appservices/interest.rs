//! What a service is interested in, by Synapse's rules: an event whose sender or (for
//! a member event) subject is in its user namespaces, or any event, receipt or typing
//! notification of a room it is interested in: the room ID matches its room
//! namespaces, one of the room's aliases its alias namespaces, or a local member of the
//! room is in its user namespaces.

use std::collections::HashMap;

use ruma::UserId;

use super::AppService;
use crate::store::{Store, StoredEvent};

/// Answers for one service while one transaction is built; each room is looked at once.
pub(super) struct Interest<'a> {
    store: &'a Store,
    service: &'a AppService,
    rooms: HashMap<String, bool>,
}

impl<'a> Interest<'a> {
    pub(super) fn new(store: &'a Store, service: &'a AppService) -> Self {
        Self { store, service, rooms: HashMap::new() }
    }

    pub(super) async fn in_event(&mut self, event: &StoredEvent) -> anyhow::Result<bool> {
        let sender = event.json["sender"].as_str().unwrap_or_default();
        if self.in_user(sender) {
            return Ok(true);
        }
        if event.json["type"] == "m.room.member" && event.json["state_key"].as_str().is_some_and(|u| self.in_user(u)) {
            return Ok(true);
        }
        self.in_room(&event.room_id).await
    }

    pub(super) async fn in_room(&mut self, room_id: &str) -> anyhow::Result<bool> {
        if let Some(known) = self.rooms.get(room_id) {
            return Ok(*known);
        }
        let interested = self.look_at_room(room_id).await?;
        self.rooms.insert(room_id.to_owned(), interested);
        Ok(interested)
    }

    async fn look_at_room(&self, room_id: &str) -> anyhow::Result<bool> {
        if self.service.is_interested_in_room(room_id) {
            return Ok(true);
        }
        if !self.service.registration.namespaces.aliases.is_empty() {
            let aliases = self.store.aliases_of_room(room_id).await?;
            if aliases.iter().any(|alias| self.service.is_interested_in_alias(alias)) {
                return Ok(true);
            }
        }
        let server = format!(":{}", self.service.sender.server_name());
        let joined = self.store.joined_user_ids(room_id).await?;
        Ok(joined.iter().any(|user| user.ends_with(&server) && self.in_user(user)))
    }

    /// Whether `user` is joined to a room the service is interested in: whose presence
    /// its users see.
    pub(super) async fn shares_a_room(&mut self, user: &str) -> anyhow::Result<bool> {
        for membership in self.store.memberships_of_user(user).await? {
            if membership.membership == "join" && self.in_room(&membership.room_id).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) fn in_user(&self, user: &str) -> bool {
        UserId::parse(user).is_ok_and(|user| self.service.is_interested_in_user(&user))
    }
}
