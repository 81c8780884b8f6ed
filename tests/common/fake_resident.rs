//! A room that lives on a [`FakeServer`], so that kith can join it as it would a remote
//! room and the test decides, answer by answer, what the resident says and when: the
//! `make_join` template, a partial-state `send_join`, each event on `/event`, and the
//! full state on `/state_ids` only once the test serves it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::StatusCode;
use ruma::RoomVersionId;
use ruma::room_version_rules::RoomVersionRules;
use serde_json::{Value, json};

use super::fake_server::{FakeServer, now_ms};
use super::matrix::encode;

type StateKey = (String, String);

pub struct FakeRoom {
    pub room_id: String,
    pub rules: RoomVersionRules,
    /// Every event of the room, signed, by id.
    pub events: BTreeMap<String, Value>,
    /// The current state: `(type, state_key) -> event id`.
    pub state: BTreeMap<StateKey, String>,
    /// The event the next one follows, and its depth.
    pub last: String,
    pub depth: i64,
    pub creator: String,
}

impl FakeRoom {
    /// A public v10 room created by `@<creator>:<fake>` with shared history.
    pub fn create(fake: &FakeServer, creator: &str) -> Self {
        let rules = RoomVersionId::V10.rules().expect("room version 10");
        let creator = fake.user_id(creator);
        let room_id = format!("!partial{}:{}", now_ms(), fake.name);
        let mut room = Self {
            room_id,
            rules,
            events: BTreeMap::new(),
            state: BTreeMap::new(),
            last: String::new(),
            depth: 0,
            creator: creator.clone(),
        };
        room.add_state(fake, &creator, "m.room.create", "", json!({ "creator": creator, "room_version": "10" }));
        room.add_state(fake, &creator, "m.room.member", &creator, json!({ "membership": "join" }));
        let levels = json!({ "users": { creator.clone(): 100 }, "users_default": 0, "events_default": 0 });
        room.add_state(fake, &creator, "m.room.power_levels", "", levels);
        room.add_state(fake, &creator, "m.room.join_rules", "", json!({ "join_rule": "public" }));
        room.add_state(fake, &creator, "m.room.history_visibility", "", json!({ "history_visibility": "shared" }));
        room
    }

    /// Signs and appends a state event after the last one; returns its id.
    pub fn add_state(
        &mut self,
        fake: &FakeServer,
        sender: &str,
        kind: &str,
        state_key: &str,
        content: Value,
    ) -> String {
        let auth_events = self.auth_events_for(sender, kind, state_key, content["membership"].as_str());
        let prev_events: Vec<&str> = (!self.last.is_empty()).then_some(self.last.as_str()).into_iter().collect();
        self.depth += 1;
        let event = json!({
            "room_id": self.room_id, "sender": sender, "origin": fake.name, "origin_server_ts": now_ms(),
            "type": kind, "state_key": state_key, "content": content,
            "prev_events": prev_events, "auth_events": auth_events, "depth": self.depth,
        });
        let (id, signed) = fake.sign_event(&self.rules, event);
        self.events.insert(id.clone(), signed);
        self.state.insert((kind.to_owned(), state_key.to_owned()), id.clone());
        self.last = id.clone();
        id
    }

    /// What authorises an event: the create event, the power levels, the sender's
    /// membership, and for memberships the target's and (to join or be invited) the join
    /// rules; nothing more, or the event is rejected.
    pub fn auth_events_for(&self, sender: &str, kind: &str, state_key: &str, membership: Option<&str>) -> Vec<String> {
        if kind == "m.room.create" {
            return Vec::new();
        }
        let mut wanted = vec![("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", sender)];
        if kind == "m.room.member" {
            wanted.push(("m.room.member", state_key));
        }
        if matches!(membership, Some("join" | "invite" | "knock")) {
            wanted.push(("m.room.join_rules", ""));
        }
        let ids: BTreeSet<String> = wanted
            .into_iter()
            .filter_map(|(kind, key)| self.state.get(&(kind.to_owned(), key.to_owned())).cloned())
            .collect();
        ids.into_iter().collect()
    }

    /// `make_join` for `user_id` and a `send_join` that omits every member event.
    pub fn serve_partial_join(&self, fake: &FakeServer, user_id: &str) {
        self.serve_join(fake, user_id, true);
    }

    /// `make_join` for `user_id` and a `send_join` with the whole state, as a resident
    /// that does not know MSC3706 answers.
    pub fn serve_full_join(&self, fake: &FakeServer, user_id: &str) {
        self.serve_join(fake, user_id, false);
    }

    fn serve_join(&self, fake: &FakeServer, user_id: &str, omit_members: bool) {
        let template = json!({
            "room_version": "10",
            "event": {
                "room_id": self.room_id, "sender": user_id, "state_key": user_id, "type": "m.room.member",
                "content": { "membership": "join" }, "origin_server_ts": now_ms(), "depth": self.depth + 1,
                "prev_events": [self.last], "auth_events": self.auth_events_for(user_id, "m.room.member", user_id, Some("join")),
            },
        });
        let make_join = format!("/_matrix/federation/v1/make_join/{}/{}", encode(&self.room_id), encode(user_id));
        fake.answer(&make_join, StatusCode::OK, template, Duration::ZERO);

        let sent: BTreeSet<&str> = self
            .state
            .iter()
            .filter(|((kind, _), _)| !omit_members || kind != "m.room.member")
            .map(|(_, id)| id.as_str())
            .collect();
        let state: Vec<&Value> = sent.iter().map(|id| &self.events[*id]).collect();
        let chain: Vec<&Value> = self
            .auth_chain(sent.iter().copied())
            .iter()
            .filter(|id| !sent.contains(id.as_str()))
            .map(|id| &self.events[id])
            .collect();
        let mut answer =
            json!({ "origin": fake.name, "state": state, "auth_chain": chain, "members_omitted": omit_members });
        if omit_members {
            answer["servers_in_room"] = json!(self.joined_servers());
        }
        let send_join = format!("/_matrix/federation/v2/send_join/{}/*", encode(&self.room_id));
        fake.answer(&send_join, StatusCode::OK, answer, Duration::ZERO);
    }

    /// The servers of the joined members, as a resident names them in `servers_in_room`.
    pub fn joined_servers(&self) -> BTreeSet<String> {
        self.state
            .iter()
            .filter(|((kind, _), id)| kind == "m.room.member" && self.events[*id]["content"]["membership"] == "join")
            .filter_map(|((_, user), _)| user.split_once(':').map(|(_, server)| server.to_owned()))
            .collect()
    }

    /// `/state` with every state event and their auth chain.
    pub fn serve_whole_state(&self, fake: &FakeServer) {
        let state: Vec<&Value> = self.state.values().map(|id| &self.events[id]).collect();
        let chain: Vec<&Value> =
            self.auth_chain(self.state.values().map(String::as_str)).iter().map(|id| &self.events[id]).collect();
        let path = format!("/_matrix/federation/v1/state/{}", encode(&self.room_id));
        fake.answer(&path, StatusCode::OK, json!({ "pdus": state, "auth_chain": chain }), Duration::ZERO);
    }

    /// Every event on `/event/{id}`, and the auth chain of each on `/event_auth`.
    pub fn serve_events(&self, fake: &FakeServer) {
        for (id, event) in &self.events {
            let answer = json!({ "origin": fake.name, "origin_server_ts": now_ms(), "pdus": [event] });
            fake.answer(
                &format!("/_matrix/federation/v1/event/{}", encode(id)),
                StatusCode::OK,
                answer,
                Duration::ZERO,
            );
            self.serve_event_auth(fake, id, event);
        }
    }

    /// `/event_auth` for an event of the room (or about to be sent to it).
    pub fn serve_event_auth(&self, fake: &FakeServer, id: &str, event: &Value) {
        let auth: Vec<&str> = event["auth_events"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let mut ids = self.auth_chain(auth.iter().copied());
        ids.extend(auth.iter().map(|id| (*id).to_owned()));
        let chain: Vec<&Value> = ids.iter().filter_map(|id| self.events.get(id)).collect();
        let path = format!("/_matrix/federation/v1/event_auth/{}/{}", encode(&self.room_id), encode(id));
        fake.answer(&path, StatusCode::OK, json!({ "auth_chain": chain }), Duration::ZERO);
    }

    /// `/state_ids` answers with the current state (the state before a join made from
    /// the last template) and the auth chain of everything in the room.
    pub fn serve_state_ids(&self, fake: &FakeServer) {
        let pdu_ids: Vec<&String> = self.state.values().collect();
        let chain = self.auth_chain(self.state.values().map(String::as_str));
        let answer = json!({ "pdu_ids": pdu_ids, "auth_chain_ids": chain });
        let path = format!("/_matrix/federation/v1/state_ids/{}", encode(&self.room_id));
        fake.answer(&path, StatusCode::OK, answer, Duration::ZERO);
    }

    /// `/state_ids` fails, as a resident that cannot answer yet.
    pub fn refuse_state_ids(&self, fake: &FakeServer) {
        let path = format!("/_matrix/federation/v1/state_ids/{}", encode(&self.room_id));
        let body = json!({ "errcode": "M_UNKNOWN", "error": "Not yet" });
        fake.answer(&path, StatusCode::SERVICE_UNAVAILABLE, body, Duration::ZERO);
    }

    /// The ids of the auth events of `ids`, transitively (without `ids` themselves unless
    /// one authorises another).
    fn auth_chain<'a>(&self, ids: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
        let mut chain = BTreeSet::new();
        let mut todo: Vec<String> = ids
            .filter_map(|id| self.events.get(id))
            .flat_map(|event| event["auth_events"].as_array().cloned().unwrap_or_default())
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect();
        while let Some(id) = todo.pop() {
            if let Some(event) = self.events.get(&id)
                && chain.insert(id.clone())
            {
                todo.extend(
                    event["auth_events"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_owned)),
                );
            }
        }
        chain
    }
}
