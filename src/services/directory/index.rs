//! The in-memory directory index: dense user ids, per-field term postings as roaring
//! bitmaps with a sorted term map for prefix lookup (plus precomputed postings for
//! one- to three-character prefixes), and visibility as bitmaps: the users in public
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
const SHORT_PREFIX_CHARS: usize = 3;

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

/// The users having one term. Most terms (unique localparts, rare names) belong to a
/// single user, so that case is stored inline instead of as a bitmap.
#[derive(Debug, Clone)]
pub enum Postings {
    One(u32),
    Many(RoaringBitmap),
}

impl Postings {
    fn insert(&mut self, id: u32) {
        match self {
            Self::One(existing) if *existing == id => {}
            Self::One(existing) => *self = Self::Many(RoaringBitmap::from_iter([*existing, id])),
            Self::Many(bitmap) => {
                bitmap.insert(id);
            }
        }
    }

    /// Removes `id`; true when no user is left.
    fn remove(&mut self, id: u32) -> bool {
        match self {
            Self::One(existing) => *existing == id,
            Self::Many(bitmap) => {
                bitmap.remove(id);
                if bitmap.len() == 1
                    && let Some(last) = bitmap.min()
                {
                    *self = Self::One(last);
                }
                false
            }
        }
    }

    fn to_bitmap(&self) -> RoaringBitmap {
        match self {
            Self::One(id) => RoaringBitmap::from_iter([*id]),
            Self::Many(bitmap) => bitmap.clone(),
        }
    }
}

type TermMap = BTreeMap<Box<str>, Postings>;
type PrefixMap = HashMap<Box<str>, Postings>;

/// Postings of one field: exact terms (and accent-folded terms) in sorted maps, and
/// short prefixes precomputed.
#[derive(Default)]
pub struct TermIndex {
    pub terms: TermMap,
    pub folded: TermMap,
    pub short_prefixes: PrefixMap,
    pub short_folded_prefixes: PrefixMap,
    /// Words with `-`, `.` or `_` inside (`user-a1`), looked up only by query words that
    /// have one too; their parts are ordinary terms. Unique localparts live here, which
    /// keeps them out of ordinary prefix scans.
    pub glued: TermMap,
}

impl TermIndex {
    fn update(&mut self, id: u32, old: &[String], new: &[String]) {
        let (old_glued, old): (Vec<String>, Vec<String>) = old.iter().cloned().partition(|t| is_glued(t));
        let (new_glued, new): (Vec<String>, Vec<String>) = new.iter().cloned().partition(|t| is_glued(t));
        apply_diff(&mut self.glued, id, old_glued.into_iter().collect(), new_glued.into_iter().collect());
        let (old, new) = (old.as_slice(), new.as_slice());
        let old_folded = folded_terms(old);
        let new_folded = folded_terms(new);
        apply_diff(&mut self.terms, id, old.iter().cloned().collect(), new.iter().cloned().collect());
        apply_diff(&mut self.short_prefixes, id, short_prefixes(old), short_prefixes(new));
        let old_prefixes = short_prefixes(&old_folded.iter().cloned().collect::<Vec<_>>());
        let new_prefixes = short_prefixes(&new_folded.iter().cloned().collect::<Vec<_>>());
        apply_diff(&mut self.folded, id, old_folded, new_folded);
        apply_diff(&mut self.short_folded_prefixes, id, old_prefixes, new_prefixes);
    }

    /// Users with a term equal to `word`, and users with a term starting with it.
    pub fn lookup(&self, word: &str, folded: bool) -> (RoaringBitmap, RoaringBitmap) {
        let (terms, prefixes) = match (is_glued(word), folded) {
            (true, false) => (&self.glued, None),
            (true, true) => return Default::default(),
            (false, true) => (&self.folded, Some(&self.short_folded_prefixes)),
            (false, false) => (&self.terms, Some(&self.short_prefixes)),
        };
        let exact = terms.get(word).map(Postings::to_bitmap).unwrap_or_default();
        let short = prefixes.filter(|_| word.chars().count() <= SHORT_PREFIX_CHARS);
        let prefix = if let Some(prefixes) = short {
            prefixes.get(word).map(Postings::to_bitmap).unwrap_or_default()
        } else {
            // Single users are gathered and sorted once: far cheaper than thousands of
            // one-element unions.
            let mut union = RoaringBitmap::new();
            let mut singles = Vec::new();
            let range = terms.range::<str, _>((Bound::Included(word), Bound::Unbounded));
            for (_, postings) in range.take_while(|(term, _)| term.starts_with(word)) {
                match postings {
                    Postings::One(id) => singles.push(*id),
                    Postings::Many(bitmap) => union |= bitmap,
                }
            }
            singles.sort_unstable();
            singles.dedup();
            union |= RoaringBitmap::from_sorted_iter(singles).unwrap_or_default();
            union
        };
        (exact, prefix)
    }
}

fn is_glued(term: &str) -> bool {
    term.contains(['-', '.', '_'])
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

/// A map from term (or prefix) to postings; both kinds of map are updated alike.
trait PostingsMap {
    fn get_mut(&mut self, key: &str) -> Option<&mut Postings>;
    fn remove(&mut self, key: &str);
    fn insert_id(&mut self, key: &str, id: u32);
}

impl PostingsMap for TermMap {
    fn get_mut(&mut self, key: &str) -> Option<&mut Postings> {
        BTreeMap::get_mut(self, key)
    }
    fn remove(&mut self, key: &str) {
        BTreeMap::remove(self, key);
    }
    fn insert_id(&mut self, key: &str, id: u32) {
        match BTreeMap::get_mut(self, key) {
            Some(postings) => postings.insert(id),
            None => {
                self.insert(key.into(), Postings::One(id));
            }
        }
    }
}

impl PostingsMap for PrefixMap {
    fn get_mut(&mut self, key: &str) -> Option<&mut Postings> {
        HashMap::get_mut(self, key)
    }
    fn remove(&mut self, key: &str) {
        HashMap::remove(self, key);
    }
    fn insert_id(&mut self, key: &str, id: u32) {
        match HashMap::get_mut(self, key) {
            Some(postings) => postings.insert(id),
            None => {
                self.insert(key.into(), Postings::One(id));
            }
        }
    }
}

fn apply_diff(map: &mut impl PostingsMap, id: u32, old: BTreeSet<String>, new: BTreeSet<String>) {
    for removed in old.difference(&new) {
        if map.get_mut(removed).is_some_and(|postings| postings.remove(id)) {
            map.remove(removed);
        }
    }
    for added in new.difference(&old) {
        map.insert_id(added, id);
    }
}

/// A tracked room: one with at least one local member joined.
#[derive(Default)]
pub struct RoomEntry {
    pub room_id: Box<str>,
    pub members: RoaringBitmap,
    pub public: bool,
}

#[derive(Default)]
pub struct DirectoryIndex {
    pub users: Vec<Option<UserEntry>>,
    pub ids: HashMap<Box<str>, u32>,
    pub fields: [TermIndex; 3],
    /// Every user in the directory (deactivated and excluded users are removed).
    pub listed: RoaringBitmap,
    pub locked: RoaringBitmap,
    pub local: RoaringBitmap,
    /// Profile completeness, which ranking rewards.
    pub with_name: RoaringBitmap,
    pub with_avatar: RoaringBitmap,
    /// Users joined to at least one public tracked room.
    pub public_users: RoaringBitmap,
    /// Users of trusted peer servers (the federated directory): found by everyone.
    pub federated: RoaringBitmap,
    /// Tracked rooms by dense key, and the keys by room id.
    rooms: Vec<Option<RoomEntry>>,
    room_keys: HashMap<Box<str>, u32>,
    /// Each user's tracked rooms, as sorted room keys.
    user_rooms: HashMap<u32, Vec<u32>>,
    /// Dense ids of removed users and rooms, reused by new ones.
    free_ids: Vec<u32>,
    free_room_keys: Vec<u32>,
}

impl DirectoryIndex {
    pub fn user_count(&self) -> u64 {
        self.listed.len()
    }

    pub fn tracked_room_count(&self) -> usize {
        self.room_keys.len()
    }

    pub fn is_tracked(&self, room_id: &str) -> bool {
        self.room_keys.contains_key(room_id)
    }

    pub fn room_is_public(&self, room_id: &str) -> bool {
        self.room_keys.get(room_id).and_then(|key| self.room(*key)).is_some_and(|room| room.public)
    }

    fn room(&self, key: u32) -> Option<&RoomEntry> {
        self.rooms.get(key as usize).and_then(Option::as_ref)
    }

    fn room_key(&mut self, room_id: &str) -> u32 {
        if let Some(key) = self.room_keys.get(room_id) {
            return *key;
        }
        let key = self.free_room_keys.pop().unwrap_or(self.rooms.len() as u32);
        if key as usize == self.rooms.len() {
            self.rooms.push(None);
        }
        self.rooms[key as usize] = Some(RoomEntry { room_id: room_id.into(), ..Default::default() });
        self.room_keys.insert(room_id.into(), key);
        key
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
        let entry = self.users[id as usize].as_ref().map(|e| &e.profile);
        let (has_name, has_avatar) =
            entry.map_or((false, false), |p| (p.display_name.is_some(), p.avatar_url.is_some()));
        if has_name {
            self.with_name.insert(id)
        } else {
            self.with_name.remove(id)
        };
        if has_avatar {
            self.with_avatar.insert(id)
        } else {
            self.with_avatar.remove(id)
        };
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
        for key in self.user_rooms.remove(&id).unwrap_or_default() {
            if let Some(room) = self.rooms.get_mut(key as usize).and_then(Option::as_mut) {
                room.members.remove(id);
            }
        }
        let sets = [
            &mut self.listed,
            &mut self.locked,
            &mut self.local,
            &mut self.public_users,
            &mut self.federated,
            &mut self.with_name,
            &mut self.with_avatar,
        ];
        for set in sets {
            set.remove(id);
        }
        self.free_ids.push(id);
    }

    pub fn set_locked(&mut self, id: u32, locked: bool) {
        if locked {
            self.locked.insert(id)
        } else {
            self.locked.remove(id)
        };
    }

    pub fn set_member(&mut self, room_id: &str, id: u32, joined: bool) {
        let key = self.room_key(room_id);
        let Some(room) = self.rooms[key as usize].as_mut() else { return };
        let public = room.public;
        let rooms = self.user_rooms.entry(id).or_default();
        let position = rooms.binary_search(&key);
        match (joined, position) {
            (true, Err(at)) => rooms.insert(at, key),
            (false, Ok(at)) => {
                rooms.remove(at);
            }
            _ => {}
        }
        if rooms.is_empty() {
            self.user_rooms.remove(&id);
        }
        if joined {
            room.members.insert(id)
        } else {
            room.members.remove(id)
        };
        if public || !joined {
            self.refresh_public(id);
        }
    }

    /// Marks a room public or private and updates all its members at once.
    pub fn set_room_public(&mut self, room_id: &str, public: bool) {
        let key = self.room_key(room_id);
        let Some(room) = self.rooms[key as usize].as_mut() else { return };
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
        let Some(key) = self.room_keys.remove(room_id) else { return RoaringBitmap::new() };
        let Some(room) = self.rooms.get_mut(key as usize).and_then(Option::take) else { return RoaringBitmap::new() };
        self.free_room_keys.push(key);
        for id in &room.members {
            if let Some(rooms) = self.user_rooms.get_mut(&id) {
                rooms.retain(|k| *k != key);
                if rooms.is_empty() {
                    self.user_rooms.remove(&id);
                }
            }
            self.refresh_public(id);
        }
        room.members
    }

    pub fn room_count(&self, id: u32) -> usize {
        self.user_rooms.get(&id).map_or(0, Vec::len)
    }

    pub fn set_federated(&mut self, id: u32, federated: bool) {
        if federated {
            self.federated.insert(id)
        } else {
            self.federated.remove(id)
        };
    }

    /// Whether a remote user is still listed for a reason: a tracked room or a peer.
    pub fn keeps_remote_user(&self, id: u32) -> bool {
        self.room_count(id) > 0 || self.federated.contains(id)
    }

    fn refresh_public(&mut self, id: u32) {
        let public = self
            .user_rooms
            .get(&id)
            .is_some_and(|keys| keys.iter().any(|key| self.room(*key).is_some_and(|room| room.public)));
        if public {
            self.public_users.insert(id)
        } else {
            self.public_users.remove(id)
        };
    }

    /// Users `searcher` may see by default: everyone in a public room, every user of a
    /// peer server, and everyone sharing a room with them.
    pub fn visible_to(&self, searcher: Option<u32>) -> RoaringBitmap {
        let mut visible = &self.public_users | &self.federated;
        if let Some(keys) = searcher.and_then(|id| self.user_rooms.get(&id)) {
            for key in keys {
                if let Some(room) = self.room(*key) {
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
        assert!(index.fields.iter().all(|f| f.terms.is_empty() && f.short_prefixes.is_empty() && f.glued.is_empty()));
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
