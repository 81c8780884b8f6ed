//! The in-memory directory index: dense user ids, per-field term postings as roaring
//! bitmaps with a sorted term map for prefix lookup (plus precomputed postings for
//! one- and two-character prefixes), and visibility as bitmaps: the users in public
//! rooms, and each tracked room's members. A searcher's visible set is
//! `public ∪ members(rooms the searcher is in)`, computed per search; there is no
//! "who shares a room with whom" table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use roaring::RoaringBitmap;

use super::tokenize::{fold_accents, index_terms};

/// Indexed fields, in ranking order of importance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Localpart = 0,
    DisplayName = 1,
    Domain = 2,
}

pub const FIELDS: [Field; 3] = [Field::Localpart, Field::DisplayName, Field::Domain];

/// Prefixes up to this many characters have precomputed postings.
const SHORT_PREFIX_CHARS: usize = 2;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserProfile {
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UserEntry {
    pub user_id: Box<str>,
    pub profile: UserProfile,
    pub local: bool,
}

/// Postings of one field: exact terms (and accent-folded terms) in sorted maps, and
/// short prefixes precomputed.
#[derive(Default)]
pub struct TermIndex {
    pub terms: BTreeMap<Box<str>, RoaringBitmap>,
    pub folded: BTreeMap<Box<str>, RoaringBitmap>,
    pub short_prefixes: HashMap<Box<str>, RoaringBitmap>,
    pub short_folded_prefixes: HashMap<Box<str>, RoaringBitmap>,
}

impl TermIndex {
    fn update(&mut self, id: u32, old: &[String], new: &[String]) {
        let old_folded = folded_terms(old);
        let new_folded = folded_terms(new);
        apply_diff(&mut self.terms, id, old.iter().cloned().collect(), new.iter().cloned().collect());
        apply_diff_hash(&mut self.short_prefixes, id, short_prefixes(old), short_prefixes(new));
        apply_diff(&mut self.folded, id, old_folded.clone(), new_folded.clone());
        let old_prefixes = short_prefixes(&old_folded.into_iter().collect::<Vec<_>>());
        let new_prefixes = short_prefixes(&new_folded.into_iter().collect::<Vec<_>>());
        apply_diff_hash(&mut self.short_folded_prefixes, id, old_prefixes, new_prefixes);
    }

    /// Users with a term equal to `word`, and users with a term starting with it.
    pub fn lookup(&self, word: &str, folded: bool) -> (RoaringBitmap, RoaringBitmap) {
        let (terms, prefixes) =
            if folded { (&self.folded, &self.short_folded_prefixes) } else { (&self.terms, &self.short_prefixes) };
        let exact = terms.get(word).cloned().unwrap_or_default();
        let prefix = if word.chars().count() <= SHORT_PREFIX_CHARS {
            prefixes.get(word).cloned().unwrap_or_default()
        } else {
            let mut union = RoaringBitmap::new();
            for (_, postings) in terms
                .range::<str, _>((Bound::Included(word), Bound::Unbounded))
                .take_while(|(term, _)| term.starts_with(word))
            {
                union |= postings;
            }
            union
        };
        (exact, prefix)
    }
}

/// Folded forms that differ from the term itself.
fn folded_terms(terms: &[String]) -> BTreeSet<String> {
    terms.iter().map(|t| fold_accents(t)).filter(|f| !terms.contains(f)).collect()
}

fn short_prefixes(terms: &[String]) -> BTreeSet<String> {
    let mut prefixes = BTreeSet::new();
    for term in terms {
        for (count, (end, c)) in term.char_indices().enumerate() {
            if count >= SHORT_PREFIX_CHARS {
                break;
            }
            prefixes.insert(term[..end + c.len_utf8()].to_owned());
        }
    }
    prefixes
}

fn apply_diff(map: &mut BTreeMap<Box<str>, RoaringBitmap>, id: u32, old: BTreeSet<String>, new: BTreeSet<String>) {
    for removed in old.difference(&new) {
        if let Some(postings) = map.get_mut(removed.as_str()) {
            postings.remove(id);
            if postings.is_empty() {
                map.remove(removed.as_str());
            }
        }
    }
    for added in new.difference(&old) {
        map.entry(added.as_str().into()).or_default().insert(id);
    }
}

fn apply_diff_hash(map: &mut HashMap<Box<str>, RoaringBitmap>, id: u32, old: BTreeSet<String>, new: BTreeSet<String>) {
    for removed in old.difference(&new) {
        if let Some(postings) = map.get_mut(removed.as_str()) {
            postings.remove(id);
            if postings.is_empty() {
                map.remove(removed.as_str());
            }
        }
    }
    for added in new.difference(&old) {
        map.entry(added.as_str().into()).or_default().insert(id);
    }
}

/// A tracked room: one with at least one local member joined.
#[derive(Default)]
pub struct RoomEntry {
    pub members: RoaringBitmap,
    pub public: bool,
}

#[derive(Default)]
pub struct DirectoryIndex {
    pub users: Vec<Option<UserEntry>>,
    pub ids: HashMap<Box<str>, u32>,
    pub fields: [TermIndex; 3],
    /// Users listed at all (present, not deactivated or excluded).
    pub listed: RoaringBitmap,
    pub locked: RoaringBitmap,
    pub local: RoaringBitmap,
    /// Users joined to at least one public tracked room.
    pub public_users: RoaringBitmap,
    pub rooms: HashMap<Box<str>, RoomEntry>,
    pub user_rooms: HashMap<u32, BTreeSet<Box<str>>>,
    /// Dense ids of removed users, reused by new ones.
    free_ids: Vec<u32>,
}

impl DirectoryIndex {
    pub fn user_count(&self) -> u64 {
        self.listed.len()
    }

    pub fn id_of(&self, user_id: &str) -> Option<u32> {
        self.ids.get(user_id).copied()
    }

    pub fn entry(&self, id: u32) -> Option<&UserEntry> {
        self.users.get(id as usize).and_then(Option::as_ref)
    }

    /// Adds or updates a user's profile; returns their dense id.
    pub fn upsert_user(&mut self, user_id: &str, profile: UserProfile, local: bool) -> u32 {
        let id = match self.ids.get(user_id) {
            Some(id) => *id,
            None => {
                let id = self.free_ids.pop().unwrap_or(self.users.len() as u32);
                if id as usize == self.users.len() {
                    self.users.push(None);
                }
                self.ids.insert(user_id.into(), id);
                id
            }
        };
        let old_terms = self.entry(id).map(|entry| field_terms(&entry.user_id, &entry.profile));
        let new_terms = field_terms(user_id, &profile);
        for field in FIELDS {
            let old: &[String] = old_terms.as_ref().map_or(&[], |t| &t[field as usize]);
            self.fields[field as usize].update(id, old, &new_terms[field as usize]);
        }
        self.users[id as usize] = Some(UserEntry { user_id: user_id.into(), profile, local });
        self.listed.insert(id);
        if local {
            self.local.insert(id);
        } else {
            self.local.remove(id);
        }
        id
    }

    /// Removes a user from the directory (and from every room).
    pub fn remove_user(&mut self, user_id: &str) {
        let Some(id) = self.ids.remove(user_id) else { return };
        if let Some(entry) = self.users.get_mut(id as usize).and_then(Option::take) {
            let old = field_terms(&entry.user_id, &entry.profile);
            for field in FIELDS {
                self.fields[field as usize].update(id, &old[field as usize], &[]);
            }
        }
        for room_id in self.user_rooms.remove(&id).unwrap_or_default() {
            if let Some(room) = self.rooms.get_mut(&room_id) {
                room.members.remove(id);
            }
        }
        for set in [&mut self.listed, &mut self.locked, &mut self.local, &mut self.public_users] {
            set.remove(id);
        }
        self.free_ids.push(id);
    }

    /// Hides (deactivated or excluded) or shows a user without forgetting them.
    pub fn set_listed(&mut self, id: u32, listed: bool) {
        if listed {
            self.listed.insert(id)
        } else {
            self.listed.remove(id)
        };
    }

    pub fn set_locked(&mut self, id: u32, locked: bool) {
        if locked {
            self.locked.insert(id)
        } else {
            self.locked.remove(id)
        };
    }

    pub fn set_member(&mut self, room_id: &str, id: u32, joined: bool) {
        let room = self.rooms.entry(room_id.into()).or_default();
        let public = room.public;
        let rooms = self.user_rooms.entry(id).or_default();
        if joined {
            room.members.insert(id);
            rooms.insert(room_id.into());
        } else {
            room.members.remove(id);
            rooms.remove(room_id);
        }
        if public || !joined {
            self.refresh_public(id);
        }
    }

    /// Marks a room public or private and updates all its members at once.
    pub fn set_room_public(&mut self, room_id: &str, public: bool) {
        let room = self.rooms.entry(room_id.into()).or_default();
        if room.public == public {
            return;
        }
        room.public = public;
        let members = room.members.clone();
        for id in &members {
            self.refresh_public(id);
        }
    }

    /// Stops tracking a room (no local member left); returns its former members.
    pub fn drop_room(&mut self, room_id: &str) -> RoaringBitmap {
        let Some(room) = self.rooms.remove(room_id) else { return RoaringBitmap::new() };
        for id in &room.members {
            if let Some(rooms) = self.user_rooms.get_mut(&id) {
                rooms.remove(room_id);
            }
            self.refresh_public(id);
        }
        room.members
    }

    pub fn room_count(&self, id: u32) -> usize {
        self.user_rooms.get(&id).map_or(0, BTreeSet::len)
    }

    fn refresh_public(&mut self, id: u32) {
        let public = self
            .user_rooms
            .get(&id)
            .is_some_and(|rooms| rooms.iter().any(|r| self.rooms.get(r).is_some_and(|room| room.public)));
        if public {
            self.public_users.insert(id)
        } else {
            self.public_users.remove(id)
        };
    }

    /// Users `searcher` may see by default: everyone in a public room, and everyone
    /// sharing a room with them.
    pub fn visible_to(&self, searcher: Option<u32>) -> RoaringBitmap {
        let mut visible = self.public_users.clone();
        if let Some(rooms) = searcher.and_then(|id| self.user_rooms.get(&id)) {
            for room_id in rooms {
                if let Some(room) = self.rooms.get(room_id) {
                    visible |= &room.members;
                }
            }
        }
        visible
    }
}

/// The terms of each field: localpart, display name, server name.
fn field_terms(user_id: &str, profile: &UserProfile) -> [Vec<String>; 3] {
    let (localpart, domain) = user_id.trim_start_matches('@').split_once(':').unwrap_or((user_id, ""));
    [index_terms(localpart), profile.display_name.as_deref().map(index_terms).unwrap_or_default(), index_terms(domain)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> UserProfile {
        UserProfile { display_name: Some(name.to_owned()), avatar_url: None }
    }

    #[test]
    fn terms_follow_profile_changes() {
        let mut index = DirectoryIndex::default();
        let id = index.upsert_user("@alice:example.org", profile("Alice Cooper"), true);
        let name = &index.fields[Field::DisplayName as usize];
        assert!(name.lookup("cooper", false).0.contains(id));
        assert!(name.lookup("co", false).1.contains(id));
        assert!(name.lookup("coo", false).1.contains(id));
        index.upsert_user("@alice:example.org", profile("Alice Smith"), true);
        let name = &index.fields[Field::DisplayName as usize];
        assert!(!name.lookup("cooper", false).0.contains(id));
        assert!(!name.lookup("co", false).1.contains(id));
        assert!(name.lookup("smi", false).1.contains(id));
        index.remove_user("@alice:example.org");
        assert!(index.fields.iter().all(|f| f.terms.is_empty() && f.short_prefixes.is_empty()));
    }

    #[test]
    fn accent_folded_terms_are_separate() {
        let mut index = DirectoryIndex::default();
        let id = index.upsert_user("@g:x", profile("González"), true);
        let name = &index.fields[Field::DisplayName as usize];
        assert!(name.lookup("gonzalez", true).0.contains(id));
        assert!(!name.lookup("gonzalez", false).0.contains(id));
        assert!(name.lookup("gonzález", false).0.contains(id));
    }

    #[test]
    fn visibility_follows_rooms() {
        let mut index = DirectoryIndex::default();
        let a = index.upsert_user("@a:x", UserProfile::default(), true);
        let b = index.upsert_user("@b:x", UserProfile::default(), true);
        let c = index.upsert_user("@c:y", UserProfile::default(), false);
        index.set_member("!private:x", a, true);
        index.set_member("!private:x", b, true);
        index.set_member("!public:x", c, true);
        index.set_room_public("!public:x", true);
        assert_eq!(index.visible_to(Some(a)).iter().collect::<Vec<_>>(), vec![a, b, c]);
        assert_eq!(index.visible_to(None).iter().collect::<Vec<_>>(), vec![c]);
        index.set_room_public("!public:x", false);
        assert!(index.visible_to(None).is_empty());
        index.set_room_public("!private:x", true);
        assert_eq!(index.visible_to(None).iter().collect::<Vec<_>>(), vec![a, b]);
        index.drop_room("!private:x");
        assert!(index.visible_to(None).is_empty());
        assert_eq!(index.room_count(a), 0);
    }
}
