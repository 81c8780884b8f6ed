//! Every lexeme of the directory, interned once: its text in one arena, a dense `u32`
//! id, its accent-folded form, the users having it in each field, and a sorted order
//! for prefix lookups. Prefixes of up to three characters have their users
//! precomputed, counted per field (one, two, three or more positions), so a broad
//! one-word search is answered with bitmap operations.

use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use roaring::RoaringBitmap;

use super::postings::{Layers, Pool, Slot};
use super::tokenize::fold_accents;

/// Prefixes up to this many characters have precomputed users.
pub const SHORT_PREFIX_CHARS: usize = 3;
/// New lexemes wait unsorted until there are this many (lookups scan them).
const UNSORTED_MAX: usize = 4096;

/// Users per field (localpart, display name, server name).
pub type FieldSlots = [Slot; 3];
/// Users with at least one, two, three positions per field: `[layer][field]`.
pub type ShortLayers = [[Slot; 3]; 3];

/// Text kept in one growing buffer, addressed by spans.
#[derive(Default)]
pub struct Arena {
    bytes: Vec<u8>,
    garbage: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Arena {
    pub fn push(&mut self, text: &str) -> Span {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(text.as_bytes());
        Span { start, len: text.len() as u32 }
    }

    pub fn get(&self, span: Span) -> &str {
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }

    /// The bytes of a span: what hash tables keyed by arena text hash and compare, so
    /// that a lookup does not check the UTF-8 of every text it meets.
    pub fn bytes(&self, span: Span) -> &[u8] {
        &self.bytes[span.start as usize..(span.start + span.len) as usize]
    }

    /// Text no longer referred to; `wasteful` tells when to copy the live text anew.
    pub fn release(&mut self, span: Span) {
        self.garbage += span.len as usize;
    }

    pub fn wasteful(&self) -> bool {
        self.garbage > 1 << 20 && self.garbage > self.bytes.len() / 2
    }

    pub fn shrink(&mut self) {
        self.bytes.shrink_to_fit();
    }
}

/// The first eight bytes of a text, for comparisons that rarely need the rest.
pub fn head(text: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let n = text.len().min(8);
    bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
    u64::from_be_bytes(bytes)
}

/// A short prefix as a map key: its bytes (at most 12), its length, and whether it is
/// an accented prefix (matched as typed) or a folded one.
pub fn short_key(prefix: &str, accented: bool) -> Option<u128> {
    let bytes = prefix.as_bytes();
    if bytes.len() > 12 || prefix.chars().count() > SHORT_PREFIX_CHARS {
        return None;
    }
    let mut key = [0u8; 16];
    key[..bytes.len()].copy_from_slice(bytes);
    key[12] = bytes.len() as u8;
    key[13] = u8::from(accented);
    Some(u128::from_le_bytes(key))
}

/// The one- to three-character prefixes of `text`.
pub fn short_prefixes(text: &str) -> impl Iterator<Item = &str> {
    text.char_indices().take(SHORT_PREFIX_CHARS).map(move |(at, c)| &text[..at + c.len_utf8()])
}

#[derive(Default)]
pub struct Lexicon {
    text: Arena,
    spans: Vec<Span>,
    heads: Vec<u64>,
    /// The id of each lexeme's accent-folded form (its own id when it has no accents).
    folded: Vec<u32>,
    postings: Vec<FieldSlots>,
    /// For a folded form: the users having an accented lexeme that folds to it.
    fold_postings: HashMap<u32, FieldSlots>,
    /// The folded forms `fold_postings` has, checked before a map lookup.
    fold_targets: RoaringBitmap,
    by_text: HashTable<u32>,
    /// Seeded per index (as SipHash is), and several times faster on short keys.
    hasher: DefaultHashBuilder,
    sorted: Vec<u32>,
    unsorted: Vec<u32>,
    /// While building from scratch, sorting waits for `finish_bulk`.
    bulk: bool,
    pub short: HashMap<u128, ShortLayers>,
    pub pool: Pool,
}

impl Lexicon {
    /// Lexemes interned (some may no longer be used: see `DirectoryIndex`).
    pub fn count(&self) -> usize {
        self.spans.len()
    }

    pub fn text(&self, id: u32) -> &str {
        self.text.get(self.spans[id as usize])
    }

    pub fn head(&self, id: u32) -> u64 {
        self.heads[id as usize]
    }

    pub fn folded(&self, id: u32) -> u32 {
        self.folded[id as usize]
    }

    pub fn id(&self, text: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(text.as_bytes());
        self.by_text.find(hash, |id| self.text.bytes(self.spans[*id as usize]) == text.as_bytes()).copied()
    }

    /// The id of `text`, interning it (and its folded form) if new.
    pub fn intern(&mut self, text: &str) -> u32 {
        if let Some(id) = self.id(text) {
            return id;
        }
        let folded_text = fold_accents(text);
        let folded = if folded_text == text { None } else { Some(self.intern(&folded_text)) };
        let id = self.spans.len() as u32;
        let span = self.text.push(text);
        self.spans.push(span);
        self.heads.push(head(text));
        self.folded.push(folded.unwrap_or(id));
        self.postings.push(FieldSlots::default());
        let hash = self.hasher.hash_one(text.as_bytes());
        let (spans, arena, hasher) = (&self.spans, &self.text, &self.hasher);
        self.by_text.insert_unique(hash, id, |id| hasher.hash_one(arena.bytes(spans[*id as usize])));
        self.unsorted.push(id);
        if !self.bulk && self.unsorted.len() > UNSORTED_MAX {
            self.settle();
        }
        id
    }

    pub fn begin_bulk(&mut self) {
        self.bulk = true;
    }

    pub fn finish_bulk(&mut self) {
        self.bulk = false;
        self.settle();
        self.text.shrink();
    }

    /// Merges the unsorted lexemes into the sorted order.
    fn settle(&mut self) {
        let (heads, spans, arena) = (&self.heads, &self.spans, &self.text);
        let by_text = |a: &u32, b: &u32| {
            heads[*a as usize]
                .cmp(&heads[*b as usize])
                .then_with(|| arena.get(spans[*a as usize]).cmp(arena.get(spans[*b as usize])))
        };
        self.unsorted.sort_unstable_by(by_text);
        let mut merged = Vec::with_capacity(self.sorted.len() + self.unsorted.len());
        let (old, new) = (&self.sorted, &self.unsorted);
        let (mut a, mut b) = (0, 0);
        while a < old.len() && b < new.len() {
            if by_text(&old[a], &new[b]).is_le() {
                merged.push(old[a]);
                a += 1;
            } else {
                merged.push(new[b]);
                b += 1;
            }
        }
        merged.extend_from_slice(&old[a..]);
        merged.extend_from_slice(&new[b..]);
        self.sorted = merged;
        self.unsorted.clear();
    }

    /// Lexemes starting with `prefix`.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = u32> + 'a {
        let start = self.sorted.partition_point(|id| self.text(*id) < prefix);
        let (head, mask) = prefix_head(prefix);
        // Eight bytes or fewer: the heads alone decide, without reading the texts.
        let matches = move |id: &u32| {
            self.heads[*id as usize] & mask == head && (prefix.len() <= 8 || self.text(*id).starts_with(prefix))
        };
        let sorted = self.sorted[start..].iter().take_while(move |id| matches(id));
        let unsorted = self.unsorted.iter().filter(move |id| self.text(**id).starts_with(prefix));
        sorted.chain(unsorted).copied()
    }

    pub fn add_user(&mut self, lexeme: u32, field: usize, user: u32) {
        self.pool.insert(&mut self.postings[lexeme as usize][field], user);
        let folded = self.folded(lexeme);
        if folded != lexeme {
            let slots = self.fold_postings.entry(folded).or_default();
            self.pool.insert(&mut slots[field], user);
            self.fold_targets.insert(folded);
        }
    }

    pub fn remove_user(&mut self, lexeme: u32, field: usize, user: u32) {
        self.pool.remove(&mut self.postings[lexeme as usize][field], user);
        let folded = self.folded(lexeme);
        if folded != lexeme
            && let Some(slots) = self.fold_postings.get_mut(&folded)
        {
            self.pool.remove(&mut slots[field], user);
            if slots.iter().all(|slot| slot.is_empty()) {
                self.fold_postings.remove(&folded);
                self.fold_targets.remove(folded);
            }
        }
    }

    /// Users having `word` in `field` (as typed, or folding to it when typed without
    /// accents).
    pub fn exact(&self, word: &str, field: usize, accented: bool) -> RoaringBitmap {
        let Some(id) = self.id(word) else { return RoaringBitmap::new() };
        let literal = Some(self.postings[id as usize][field]);
        let folded = if accented { None } else { self.fold_postings.get(&id).map(|slots| slots[field]) };
        let mut users = RoaringBitmap::new();
        for slot in [literal, folded].into_iter().flatten() {
            if let Some(bitmap) = self.pool.bitmap(slot) {
                users |= bitmap;
            } else if let Some(user) = self.pool.single(slot) {
                users.insert(user);
            }
        }
        users
    }

    /// Per field, users with one, two, three or more positions whose lexeme starts with
    /// `prefix` (for lexemes repeated within a field, see `DirectoryIndex::repeats`).
    /// The range of lexemes is read once for the three fields.
    pub fn prefix_layers(&self, prefix: &str, accented: bool) -> [[RoaringBitmap; 3]; 3] {
        if let Some(key) = short_key(prefix, accented) {
            let Some(layers) = self.short.get(&key) else { return Default::default() };
            return [0, 1, 2].map(|field| layers.map(|layer| self.pool.to_bitmap(layer[field])));
        }
        let mut layers: [Layers; 3] = Default::default();
        for lexeme in self.with_prefix(prefix) {
            // Without accents typed, an accented lexeme counts through its folded form.
            if !accented && self.folded(lexeme) != lexeme {
                continue;
            }
            let has_sources = !accented && self.fold_targets.contains(lexeme);
            let folded = if has_sources { self.fold_postings.get(&lexeme) } else { None };
            for (field, layer) in layers.iter_mut().enumerate() {
                layer.add(&self.pool, self.postings[lexeme as usize][field]);
                if let Some(slots) = folded {
                    layer.add(&self.pool, slots[field]);
                }
            }
        }
        layers.map(Layers::finish)
    }

    /// Whether lexeme `id` equals `word`'s id (as typed) or folds to it.
    pub fn is(&self, id: u32, word: Option<u32>, accented: bool) -> bool {
        let Some(word) = word else { return false };
        id == word || (!accented && self.folded(id) == word)
    }

    /// Whether lexeme `id` starts with `prefix` (as typed, or folded when typed without
    /// accents).
    pub fn starts_with(&self, id: u32, prefix: &str, prefix_head: u64, mask: u64, accented: bool) -> bool {
        let id = if accented { id } else { self.folded(id) };
        self.head(id) & mask == prefix_head && (prefix.len() <= 8 || self.text(id).starts_with(prefix))
    }

    pub fn update_short(&mut self, key: u128, layer: usize, field: usize, user: u32, member: bool) {
        let layers = self.short.entry(key).or_default();
        if member {
            self.pool.insert(&mut layers[layer][field], user);
        } else {
            self.pool.remove(&mut layers[layer][field], user);
            if layers.iter().flatten().all(|slot| slot.is_empty()) {
                self.short.remove(&key);
            }
        }
    }
}

/// The mask and head `Lexicon::starts_with` compares a lexeme's head with.
pub fn prefix_head(prefix: &str) -> (u64, u64) {
    let n = prefix.len().min(8);
    let mask = if n == 0 { 0 } else { u64::MAX << (8 * (8 - n)) };
    (head(prefix) & mask, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_folds_and_sorts() {
        let mut lexicon = Lexicon::default();
        let accented = lexicon.intern("gonzález");
        let folded = lexicon.id("gonzalez").unwrap();
        assert_eq!(lexicon.folded(accented), folded);
        assert_eq!(lexicon.intern("gonzález"), accented);
        for word in ["alpha", "alps", "beta", "al"] {
            lexicon.intern(word);
        }
        let mut found: Vec<&str> = lexicon.with_prefix("al").map(|id| lexicon.text(id)).collect();
        found.sort_unstable();
        assert_eq!(found, ["al", "alpha", "alps"]);
        lexicon.settle();
        let found: Vec<&str> = lexicon.with_prefix("al").map(|id| lexicon.text(id)).collect();
        assert_eq!(found, ["al", "alpha", "alps"]);
        let (head, mask) = prefix_head("gonz");
        assert!(lexicon.starts_with(accented, "gonz", head, mask, false));
        let (head, mask) = prefix_head("gonzá");
        assert!(lexicon.starts_with(accented, "gonzá", head, mask, true));
        assert!(!lexicon.starts_with(folded, "gonzá", head, mask, true));
    }
}
