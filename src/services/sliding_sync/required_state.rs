//! `required_state`: which state events of a room a list or subscription asks for.
//!
//! Entries are `(event type, state key)`; `*` stands for any type or any key,
//! `$ME` for the requester's user ID, and `("m.room.member", "$LAZY")` for the members
//! who sent an event of the timeline sent with it (as lazy-loading `/sync` gives them).

use std::collections::{BTreeSet, HashSet};

const WILDCARD: &str = "*";
const LAZY: &str = "$LAZY";
const ME: &str = "$ME";
const MEMBER: &str = "m.room.member";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequiredState {
    entries: BTreeSet<(String, String)>,
}

impl RequiredState {
    pub fn new(entries: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { entries: entries.into_iter().collect() }
    }

    /// What two lists or subscriptions of the same room ask for together.
    pub fn merge(&mut self, other: &RequiredState) {
        self.entries.extend(other.entries.iter().cloned());
    }

    pub fn lazy_members(&self) -> bool {
        self.entries.contains(&(MEMBER.to_owned(), LAZY.to_owned()))
    }

    /// Whether the state event `(kind, key)` is asked for; `lazy_members` are the
    /// timeline's senders (and the requester).
    pub fn wants(&self, kind: &str, key: &str, me: &str, lazy_members: &HashSet<String>) -> bool {
        if kind == MEMBER && self.lazy_members() && lazy_members.contains(key) {
            return true;
        }
        self.entries.iter().any(|(wanted_kind, wanted_key)| {
            let kind_matches = wanted_kind == WILDCARD || wanted_kind == kind;
            let key_matches = wanted_key == WILDCARD || wanted_key == key || (wanted_key == ME && key == me);
            kind_matches && key_matches
        })
    }

    /// Whether this asks for something `before` did not (the room's state is then sent
    /// again, for what was added).
    pub fn grew_from(&self, before: &RequiredState) -> bool {
        !self.entries.is_subset(&before.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(entries: &[(&str, &str)]) -> RequiredState {
        RequiredState::new(entries.iter().map(|(k, s)| ((*k).to_owned(), (*s).to_owned())))
    }

    #[test]
    fn wildcards_me_and_lazy_members_match() {
        let none = HashSet::new();
        let senders: HashSet<String> = ["@b:x".to_owned()].into();
        let asked = state(&[("m.room.name", ""), ("m.room.member", "$ME"), ("m.space.child", "*")]);
        assert!(asked.wants("m.room.name", "", "@a:x", &none));
        assert!(!asked.wants("m.room.name", "other", "@a:x", &none));
        assert!(asked.wants("m.room.member", "@a:x", "@a:x", &none));
        assert!(!asked.wants("m.room.member", "@b:x", "@a:x", &senders), "no $LAZY asked");
        assert!(asked.wants("m.space.child", "!r:x", "@a:x", &none));
        let lazy = state(&[("m.room.member", "$LAZY")]);
        assert!(lazy.wants("m.room.member", "@b:x", "@a:x", &senders));
        assert!(!lazy.wants("m.room.member", "@c:x", "@a:x", &senders));
        let everything = state(&[("*", "*")]);
        assert!(everything.wants("m.room.topic", "", "@a:x", &none));
        let empty_keys = state(&[("*", "")]);
        assert!(empty_keys.wants("m.room.topic", "", "@a:x", &none));
        assert!(!empty_keys.wants("m.room.member", "@b:x", "@a:x", &none));
    }

    #[test]
    fn a_request_grows_when_it_asks_for_more() {
        let small = state(&[("m.room.name", "")]);
        let mut large = small.clone();
        large.merge(&state(&[("m.room.topic", "")]));
        assert!(large.grew_from(&small));
        assert!(!small.grew_from(&large));
        assert!(!small.grew_from(&small));
    }
}
