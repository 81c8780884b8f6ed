//! The in-memory directory index: dense user ids; each user's lexemes in position order
//! (localpart, server name, display name, as Synapse's tsvector has them), interned in
//! the lexicon, which maps them to users per field; and visibility as bitmaps: the
//! users in public rooms, and each tracked room's members. A searcher's visible set is
//! `public ∪ members(rooms the searcher is in)`, computed per search; there is no
//! "who shares a room with whom" table. Texts live in arenas, not in one allocation
//! each, to keep a million users within a few hundred bytes each.

use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use roaring::RoaringBitmap;

use super::lexicon::{Arena, Lexicon, Span, head, short_key, short_prefixes};
use super::memberships::UserRooms;
use super::tokenize::{fold_accents, lexemes};

/// Indexed fields. Their lexemes are positioned in the order localpart, server name,
/// display name (Synapse concatenates the vectors so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Localpart = 0,
    DisplayName = 1,
    Domain = 2,
}

pub const FIELDS: [Field; 3] = [Field::Localpart, Field::DisplayName, Field::Domain];
/// The order of fields in a user's positions.
pub const POSITION_ORDER: [Field; 3] = [Field::Localpart, Field::Domain, Field::DisplayName];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserProfile {
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

/// A listed user, borrowed from the index.
#[derive(Debug, Clone, Copy)]
pub struct UserView<'a> {
    pub user_id: &'a str,
    pub display_name: Option<&'a str>,
    pub avatar_url: Option<&'a str>,
    pub local: bool,
}

const LIVE: u8 = 1;
const LOCAL: u8 = 2;
const NAME: u8 = 4;
const AVATAR: u8 = 8;

#[derive(Debug, Clone, Copy, Default)]
struct UserSlot {
    user_id: Span,
    display_name: Span,
    avatar_url: Span,
    doc_start: u32,
    doc_len: u16,
    /// Distinct lexemes: Synapse divides a user's rank by it.
    lexemes: u16,
    flags: u8,
}

/// A user's position: lexeme id and field.
pub fn position(entry: u32) -> (u32, Field) {
    let field = match entry & 3 {
        0 => Field::Localpart,
        1 => Field::DisplayName,
        _ => Field::Domain,
    };
    (entry >> 2, field)
}

/// Users ranked alike by Synapse for any one-word query, apart from what they match:
/// same number of distinct lexemes, same display name and avatar presence.
pub fn class_key(lexemes: u16, name: bool, avatar: bool) -> u32 {
    (u32::from(lexemes) << 2) | (u32::from(name) << 1) | u32::from(avatar)
}

pub fn class_of(key: u32) -> (u16, bool, bool) {
    ((key >> 2) as u16, key & 2 != 0, key & 1 != 0)
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
    users: Vec<UserSlot>,
    /// The first bytes of each user ID, to order ties without reading the IDs.
    keys: Vec<u64>,
    strings: Arena,
    ids: HashTable<u32>,
    /// Seeded per index (as SipHash is), and several times faster on short keys.
    hasher: DefaultHashBuilder,
    pub lexicon: Lexicon,
    /// Every user's positions (see `position`), each user's a contiguous run.
    docs: Vec<u32>,
    doc_garbage: usize,
    /// Every user in the directory (deactivated and excluded users are removed).
    pub listed: RoaringBitmap,
    pub locked: RoaringBitmap,
    pub local: RoaringBitmap,
    pub with_name: RoaringBitmap,
    pub with_avatar: RoaringBitmap,
    /// Users with a lexeme twice in one field ("Anna Anna"): ranked one by one.
    pub repeats: RoaringBitmap,
    /// Users by `class_key`.
    pub classes: HashMap<u32, RoaringBitmap>,
    /// Users joined to at least one public tracked room.
    pub public_users: RoaringBitmap,
    /// Users of trusted peer servers (the federated directory): found by everyone.
    pub federated: RoaringBitmap,
    /// Tracked rooms by dense key, and the keys by room id.
    rooms: Vec<Option<RoomEntry>>,
    room_keys: HashMap<Box<str>, u32>,
    /// Each user's tracked rooms, as sorted room keys.
    user_rooms: UserRooms,
    /// Dense ids of removed users and rooms, reused by new ones.
    free_ids: Vec<u32>,
    free_room_keys: Vec<u32>,
}

/// A user's lexemes in position order, with their field: what `upsert_user` indexes.
/// Computing it needs no index, so the start-up build does it on another thread.
pub struct UserDoc(Vec<(String, Field)>);

impl UserDoc {
    pub fn new(user_id: &str, profile: &UserProfile) -> Self {
        Self(doc_lexemes(user_id, profile))
    }
}

fn doc_lexemes(user_id: &str, profile: &UserProfile) -> Vec<(String, Field)> {
    let (localpart, domain) = user_id.trim_start_matches('@').split_once(':').unwrap_or((user_id, ""));
    let mut doc = Vec::new();
    for field in POSITION_ORDER {
        let text = match field {
            Field::Localpart => localpart,
            Field::Domain => domain,
            Field::DisplayName => profile.display_name.as_deref().unwrap_or(""),
        };
        doc.extend(lexemes(text).into_iter().map(|lexeme| (lexeme, field)));
    }
    // Positions are 14 bits in PostgreSQL; a longer display name is cut there too.
    doc.truncate(u16::MAX as usize);
    doc
}

impl DirectoryIndex {
    pub fn user_count(&self) -> u64 {
        self.listed.len()
    }

    pub fn tracked_room_count(&self) -> usize {
        self.room_keys.len()
    }

    /// Builds without keeping the lexicon sorted; `finish_bulk` sorts it once. Room for
    /// `users` is made at once rather than by growing.
    pub fn begin_bulk(&mut self, users: usize) {
        self.lexicon.begin_bulk();
        self.users.reserve(users);
        self.keys.reserve(users);
        let (slots, strings, hasher) = (&self.users, &self.strings, &self.hasher);
        self.ids.reserve(users, |id| hasher.hash_one(strings.bytes(slots[*id as usize].user_id)));
    }

    pub fn finish_bulk(&mut self) {
        self.lexicon.finish_bulk();
        self.docs.shrink_to_fit();
        self.strings.shrink();
        self.users.shrink_to_fit();
        self.keys.shrink_to_fit();
        self.user_rooms.shrink();
        for bitmap in self.classes.values_mut() {
            bitmap.optimize();
        }
    }

    pub fn id_of(&self, user_id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(user_id.as_bytes());
        self.ids.find(hash, |id| self.strings.bytes(self.users[*id as usize].user_id) == user_id.as_bytes()).copied()
    }

    fn slot(&self, id: u32) -> Option<&UserSlot> {
        self.users.get(id as usize).filter(|slot| slot.flags & LIVE != 0)
    }

    pub fn entry(&self, id: u32) -> Option<UserView<'_>> {
        let slot = self.slot(id)?;
        let text = |flag: u8, span: Span| (slot.flags & flag != 0).then(|| self.strings.get(span));
        Some(UserView {
            user_id: self.strings.get(slot.user_id),
            display_name: text(NAME, slot.display_name),
            avatar_url: text(AVATAR, slot.avatar_url),
            local: slot.flags & LOCAL != 0,
        })
    }

    /// A user's positions (see `position`).
    pub fn doc(&self, id: u32) -> &[u32] {
        match self.slot(id) {
            Some(slot) => &self.docs[slot.doc_start as usize..slot.doc_start as usize + slot.doc_len as usize],
            None => &[],
        }
    }

    /// A user's number of distinct lexemes.
    pub fn lexeme_count(&self, id: u32) -> u16 {
        self.slot(id).map_or(0, |slot| slot.lexemes)
    }

    /// The first bytes of a user's ID, which order users as their IDs do.
    pub fn sort_key(&self, id: u32) -> u64 {
        self.keys.get(id as usize).copied().unwrap_or(u64::MAX)
    }

    /// Adds or updates a user's profile; returns their dense id.
    pub fn upsert_user(&mut self, user_id: &str, profile: UserProfile, local: bool) -> u32 {
        let doc = UserDoc::new(user_id, &profile);
        self.upsert_user_doc(user_id, profile, doc, local)
    }

    /// `upsert_user` with the user's lexemes already computed (`doc` must be
    /// `UserDoc::new(user_id, &profile)`).
    pub fn upsert_user_doc(&mut self, user_id: &str, profile: UserProfile, doc: UserDoc, local: bool) -> u32 {
        let id = match self.id_of(user_id) {
            Some(id) => {
                self.unindex(id);
                id
            }
            None => self.allocate_id(user_id),
        };
        let doc: Vec<u32> =
            doc.0.iter().map(|(lexeme, field)| (self.lexicon.intern(lexeme) << 2) | *field as u32).collect();
        let mut slot = self.users[id as usize];
        slot.doc_start = self.docs.len() as u32;
        slot.doc_len = doc.len() as u16;
        let mut distinct: Vec<u32> = doc.iter().map(|entry| entry >> 2).collect();
        distinct.sort_unstable();
        distinct.dedup();
        slot.lexemes = distinct.len() as u16;
        self.docs.extend_from_slice(&doc);
        slot.flags = LIVE | if local { LOCAL } else { 0 };
        if let Some(name) = &profile.display_name {
            slot.display_name = self.strings.push(name);
            slot.flags |= NAME;
        }
        if let Some(avatar) = &profile.avatar_url {
            slot.avatar_url = self.strings.push(avatar);
            slot.flags |= AVATAR;
        }
        self.users[id as usize] = slot;
        self.index_doc(id, true);
        self.compact_if_wasteful();
        id
    }

    fn allocate_id(&mut self, user_id: &str) -> u32 {
        let id = self.free_ids.pop().unwrap_or(self.users.len() as u32);
        if id as usize == self.users.len() {
            self.users.push(UserSlot::default());
            self.keys.push(u64::MAX);
        }
        self.users[id as usize] = UserSlot { user_id: self.strings.push(user_id), ..UserSlot::default() };
        self.keys[id as usize] = head(user_id);
        let hash = self.hasher.hash_one(user_id.as_bytes());
        let (users, strings, hasher) = (&self.users, &self.strings, &self.hasher);
        self.ids.insert_unique(hash, id, |id| hasher.hash_one(strings.bytes(users[*id as usize].user_id)));
        id
    }

    /// Adds (or removes) a user's postings, short prefixes, class and profile bits.
    fn index_doc(&mut self, id: u32, add: bool) {
        let Some(slot) = self.slot(id).copied() else { return };
        let doc = self.doc(id).to_vec();
        let mut pairs = doc.clone();
        pairs.sort_unstable();
        let repeated = pairs.windows(2).any(|w| w[0] == w[1]);
        pairs.dedup();
        for entry in &pairs {
            let (lexeme, field) = position(*entry);
            if add {
                self.lexicon.add_user(lexeme, field as usize, id);
            } else {
                self.lexicon.remove_user(lexeme, field as usize, id);
            }
        }
        for ((key, field), count) in self.short_counts(&doc) {
            for layer in 0..count.min(3) as usize {
                self.lexicon.update_short(key, layer, field, id, add);
            }
        }
        let name = slot.flags & NAME != 0;
        let avatar = slot.flags & AVATAR != 0;
        let class = class_key(slot.lexemes, name, avatar);
        let sets = [
            (&mut self.listed, true),
            (&mut self.local, slot.flags & LOCAL != 0),
            (&mut self.with_name, name),
            (&mut self.with_avatar, avatar),
            (&mut self.repeats, repeated),
        ];
        for (set, member) in sets {
            if add && member {
                set.insert(id);
            } else {
                set.remove(id);
            }
        }
        if add {
            self.classes.entry(class).or_default().insert(id);
        } else if let Some(users) = self.classes.get_mut(&class) {
            users.remove(id);
            if users.is_empty() {
                self.classes.remove(&class);
            }
        }
    }

    /// How many positions of each field start with each short prefix: folded prefixes,
    /// and, for accented lexemes, the prefixes as typed.
    fn short_counts(&self, doc: &[u32]) -> Vec<((u128, usize), u32)> {
        let mut keys: Vec<(u128, usize)> = Vec::with_capacity(doc.len() * 3);
        for entry in doc {
            let (lexeme, field) = position(*entry);
            let folded = self.lexicon.text(self.lexicon.folded(lexeme));
            keys.extend(
                short_prefixes(folded).filter_map(|prefix| short_key(prefix, false)).map(|k| (k, field as usize)),
            );
            if self.lexicon.folded(lexeme) != lexeme {
                for prefix in short_prefixes(self.lexicon.text(lexeme)) {
                    if fold_accents(prefix) != prefix
                        && let Some(key) = short_key(prefix, true)
                    {
                        keys.push((key, field as usize));
                    }
                }
            }
        }
        keys.sort_unstable();
        let mut counts: Vec<((u128, usize), u32)> = Vec::with_capacity(keys.len());
        for key in keys {
            match counts.last_mut() {
                Some((last, count)) if *last == key => *count += 1,
                _ => counts.push((key, 1)),
            }
        }
        counts
    }

    /// Drops a user's postings and texts, keeping their id and user ID.
    fn unindex(&mut self, id: u32) {
        self.index_doc(id, false);
        let Some(slot) = self.users.get_mut(id as usize) else { return };
        self.doc_garbage += slot.doc_len as usize;
        slot.doc_len = 0;
        if slot.flags & NAME != 0 {
            self.strings.release(slot.display_name);
        }
        if slot.flags & AVATAR != 0 {
            self.strings.release(slot.avatar_url);
        }
        slot.flags &= LIVE | LOCAL;
    }

    /// Copies the live texts and positions anew once more than half is garbage.
    fn compact_if_wasteful(&mut self) {
        if self.doc_garbage > 1 << 16 && self.doc_garbage > self.docs.len() / 2 {
            let mut docs = Vec::with_capacity(self.docs.len() - self.doc_garbage);
            for slot in self.users.iter_mut() {
                let start = slot.doc_start as usize;
                let run = &self.docs[start..start + slot.doc_len as usize];
                slot.doc_start = docs.len() as u32;
                docs.extend_from_slice(run);
            }
            self.docs = docs;
            self.doc_garbage = 0;
        }
        if self.strings.wasteful() {
            let mut strings = Arena::default();
            for slot in self.users.iter_mut().filter(|slot| slot.flags & LIVE != 0) {
                slot.user_id = strings.push(self.strings.get(slot.user_id));
                if slot.flags & NAME != 0 {
                    slot.display_name = strings.push(self.strings.get(slot.display_name));
                }
                if slot.flags & AVATAR != 0 {
                    slot.avatar_url = strings.push(self.strings.get(slot.avatar_url));
                }
            }
            self.strings = strings;
        }
    }

    /// Removes a user from the directory (and from every room).
    pub fn remove_user(&mut self, user_id: &str) {
        let Some(id) = self.id_of(user_id) else { return };
        self.unindex(id);
        let hash = self.hasher.hash_one(user_id.as_bytes());
        if let Ok(entry) = self.ids.find_entry(hash, |other| *other == id) {
            entry.remove();
        }
        if let Some(slot) = self.users.get_mut(id as usize) {
            self.strings.release(slot.user_id);
            *slot = UserSlot::default();
        }
        for key in self.user_rooms.take(id) {
            if let Some(room) = self.rooms.get_mut(key as usize).and_then(Option::as_mut) {
                room.members.remove(id);
            }
        }
        for set in [&mut self.locked, &mut self.public_users, &mut self.federated] {
            set.remove(id);
        }
        self.free_ids.push(id);
        self.compact_if_wasteful();
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
        if joined {
            self.user_rooms.insert(id, key);
        } else {
            self.user_rooms.remove(id, key);
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
            self.user_rooms.remove(id, key);
            self.refresh_public(id);
        }
        room.members
    }

    pub fn room_count(&self, id: u32) -> usize {
        self.user_rooms.get(id).len()
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
        let public = self.user_rooms.get(id).iter().any(|key| self.room(*key).is_some_and(|room| room.public));
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
        for key in searcher.map_or(&[][..], |id| self.user_rooms.get(id)) {
            if let Some(room) = self.room(*key) {
                visible |= &room.members;
            }
        }
        visible
    }

    /// The members of the rooms `searcher` is in (themselves included).
    pub fn shared_with(&self, searcher: Option<u32>) -> RoaringBitmap {
        let mut shared = RoaringBitmap::new();
        for key in searcher.map_or(&[][..], |id| self.user_rooms.get(id)) {
            if let Some(room) = self.room(*key) {
                shared |= &room.members;
            }
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> UserProfile {
        UserProfile { display_name: Some(name.to_owned()), avatar_url: None }
    }

    fn users_with_prefix(index: &DirectoryIndex, prefix: &str, field: Field) -> Vec<u32> {
        index.lexicon.prefix_layers(prefix, false)[field as usize][0].iter().collect()
    }

    #[test]
    fn postings_follow_profile_changes() {
        let mut index = DirectoryIndex::default();
        let id = index.upsert_user("@alice:example.org", profile("Alice Cooper"), true);
        let name = Field::DisplayName as usize;
        assert!(index.lexicon.exact("cooper", name, false).contains(id));
        assert_eq!(users_with_prefix(&index, "co", Field::DisplayName), [id]);
        assert_eq!(users_with_prefix(&index, "coop", Field::DisplayName), [id]);
        assert_eq!(index.lexeme_count(id), 3, "alice, example.org, alice, cooper");
        index.upsert_user("@alice:example.org", profile("Alice Smith"), true);
        assert!(!index.lexicon.exact("cooper", name, false).contains(id));
        assert!(users_with_prefix(&index, "co", Field::DisplayName).is_empty());
        assert_eq!(users_with_prefix(&index, "smi", Field::DisplayName), [id]);
        assert_eq!(index.entry(id).and_then(|e| e.display_name), Some("Alice Smith"));
        index.remove_user("@alice:example.org");
        assert!(index.lexicon.short.is_empty());
        assert!(index.classes.is_empty() && index.listed.is_empty());
        assert!(index.entry(id).is_none() && index.id_of("@alice:example.org").is_none());
    }

    #[test]
    fn positions_count_per_field_and_repeats_are_noted() {
        let mut index = DirectoryIndex::default();
        let id = index.upsert_user("@mary_martin:x", profile("Mary Martin"), true);
        let [one, two, three] = index.lexicon.prefix_layers("mar", false)[Field::DisplayName as usize].clone();
        assert!(one.contains(id) && two.contains(id) && !three.contains(id));
        let [one, two, _] = index.lexicon.prefix_layers("mart", false)[Field::Localpart as usize].clone();
        assert!(one.contains(id) && !two.contains(id));
        assert!(!index.repeats.contains(id));
        let anna = index.upsert_user("@a:x", profile("Anna Anna"), true);
        assert!(index.repeats.contains(anna));
        assert_eq!(index.lexeme_count(anna), 3);
    }

    #[test]
    fn accent_folded_lexemes_match_unaccented_words() {
        let mut index = DirectoryIndex::default();
        let id = index.upsert_user("@g:x", profile("González"), true);
        let name = Field::DisplayName as usize;
        assert!(index.lexicon.exact("gonzalez", name, false).contains(id));
        assert!(index.lexicon.exact("gonzalez", name, true).is_empty());
        assert!(index.lexicon.exact("gonzález", name, true).contains(id));
        assert!(index.lexicon.prefix_layers("gonzá", true)[name][0].contains(id));
        assert!(index.lexicon.prefix_layers("gon", false)[name][0].contains(id));
        assert!(index.lexicon.prefix_layers("gonza", false)[name][0].contains(id));
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
