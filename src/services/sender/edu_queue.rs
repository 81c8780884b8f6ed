//! A destination's EDUs waiting to go: keyed ones replace older ones with the same key
//! (typing per room and user, a receipt per room and user), profile EDUs of one user
//! merge their fields (the newer value of a field wins), and the queue is bounded.

use std::collections::HashMap;

use serde_json::Value;

/// EDUs waiting for one destination at most; past it the oldest go.
pub const MAX_QUEUED_EDUS: usize = 1_000;

#[derive(Default)]
pub struct EduQueue {
    next: u64,
    by_key: HashMap<String, (u64, Value)>,
}

impl EduQueue {
    pub fn push(&mut self, key: String, edu: Value) {
        self.next += 1;
        let edu = match self.by_key.get(&key) {
            Some((_, older)) => merge_fields(older, edu),
            None => edu,
        };
        self.by_key.insert(key, (self.next, edu));
        if self.by_key.len() > MAX_QUEUED_EDUS
            && let Some(oldest) = self.by_key.iter().min_by_key(|(_, (seq, _))| *seq).map(|(k, _)| k.clone())
        {
            self.by_key.remove(&oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The oldest EDUs, up to `limit`, with their keys (to put back on failure).
    pub fn take(&mut self, limit: usize) -> Vec<(String, u64, Value)> {
        let mut all: Vec<(String, u64, Value)> = self.by_key.drain().map(|(key, (seq, edu))| (key, seq, edu)).collect();
        all.sort_by_key(|(_, seq, _)| *seq);
        for (key, seq, edu) in all.drain(limit.min(all.len())..) {
            self.by_key.insert(key, (seq, edu));
        }
        all
    }

    /// Puts EDUs back after a failed send; where a newer one took the key, it keeps it
    /// (with the older one's fields it does not override).
    pub fn restore(&mut self, edus: Vec<(String, u64, Value)>) {
        for (key, seq, edu) in edus {
            match self.by_key.get_mut(&key) {
                Some((_, newer)) => *newer = merge_fields(&edu, newer.take()),
                None => {
                    self.by_key.insert(key, (seq, edu));
                }
            }
        }
    }
}

/// A newer EDU with a `content.fields` object (a profile EDU) takes the older one's fields
/// it does not set itself; any other EDU simply replaces the older.
fn merge_fields(older: &Value, mut newer: Value) -> Value {
    let new_fields = newer.pointer_mut("/content/fields").and_then(Value::as_object_mut);
    if let (Some(old_fields), Some(new_fields)) =
        (older.pointer("/content/fields").and_then(Value::as_object), new_fields)
    {
        for (field, value) in old_fields {
            new_fields.entry(field.clone()).or_insert_with(|| value.clone());
        }
    }
    newer
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ruma::api::federation::transactions::edu::{Edu, TypingContent};
    use ruma::{owned_room_id, owned_user_id};

    use super::*;
    use crate::endpoints::profile_edu::{ProfileEdu, ProfileUpdate};

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(field, value)| ((*field).to_owned(), Value::from(*value))).collect()
    }

    #[test]
    fn profile_edus_of_one_user_merge_their_fields() {
        let mut queue = EduQueue::default();
        let edu = |fields: BTreeMap<String, Value>| {
            let update = ProfileUpdate { user_id: owned_user_id!("@a:x"), fields };
            serde_json::to_value(ProfileEdu::new(update)).unwrap()
        };
        queue.push("p @a:x".into(), edu(fields(&[("displayname", "A"), ("avatar_url", "mxc://x/1")])));
        queue.push("p @a:x".into(), edu(fields(&[("displayname", "B")])));
        let taken = queue.take(10);
        assert_eq!(taken.len(), 1);
        let merged = serde_json::to_value(fields(&[("displayname", "B"), ("avatar_url", "mxc://x/1")])).unwrap();
        assert_eq!(taken[0].2["content"]["fields"], merged);
        let typing = Edu::Typing(TypingContent::new(owned_room_id!("!r:x"), owned_user_id!("@a:x"), true));
        let typing = serde_json::to_value(typing).unwrap();
        queue.push("t".into(), typing.clone());
        assert_eq!(queue.take(10)[0].2, typing, "others unchanged");
    }
}
