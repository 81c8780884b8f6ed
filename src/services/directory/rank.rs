//! Synapse's ranking on PostgreSQL, computed as PostgreSQL computes it:
//!
//! ```text
//! 4.0 × (display name ? 1.2 : 1) × (avatar ? 1.2 : 1)
//!     × (3 × ts_rank_cd('{0.1,0.1,0.9,1.0}', vector, exact_query, 8)
//!          + ts_rank_cd('{0.1,0.1,0.9,1.0}', vector, prefix_query, 8))
//! ```
//!
//! `ts_rank_cd` is cover density: the positions matching a query item, in order,
//! are cut into covers (the shortest runs holding every query word, each cover starting
//! after the previous one's start); each cover adds its length over the sum of its
//! positions' inverse weights, divided by one plus the unmatched positions inside it.
//! Normalisation 8 divides the sum by the number of distinct lexemes. For a one-word
//! query every matching position is its own cover, so a user scores the sum of the
//! weights of their matching positions over their distinct lexemes.

use std::collections::HashMap;

use super::index::{DirectoryIndex, Field, position};
use super::lexicon::prefix_head;
use super::tokenize::fold_accents;

/// Synapse's weights: localpart (A) 1.0, display name (B) 0.9, server name (D) 0.1,
/// stored as PostgreSQL stores them (`float4`).
pub fn weight(field: Field) -> f32 {
    match field {
        Field::Localpart => 1.0,
        Field::DisplayName => 0.9,
        Field::Domain => 0.1,
    }
}

fn inverse_weight(field: Field) -> f64 {
    1.0 / f64::from(weight(field))
}

/// What a one-position cover adds: PostgreSQL's `1 / (1 / weight)`.
pub fn single_cover(field: Field) -> f64 {
    1.0 / inverse_weight(field)
}

/// The profile factor: 4.0, x1.2 with a display name, x1.2 with an avatar (numeric in
/// PostgreSQL, then a double).
pub fn profile_factor(name: bool, avatar: bool) -> f64 {
    match (name, avatar) {
        (true, true) => 5.76,
        (true, false) | (false, true) => 4.8,
        (false, false) => 4.0,
    }
}

/// The final score from the two ranks (`float4` each, as `ts_rank_cd` returns them).
pub fn score(name: bool, avatar: bool, exact: f32, prefix: f32) -> f64 {
    profile_factor(name, avatar) * (3.0 * f64::from(exact) + f64::from(prefix))
}

/// `ts_rank_cd` with normalisation 8: the covers' sum over the distinct lexemes.
pub fn normalised(covers: f64, lexemes: u16) -> f32 {
    if lexemes == 0 { covers as f32 } else { (covers / f64::from(lexemes)) as f32 }
}

/// One lexeme of a query word, looked up once per search.
#[derive(Debug, Clone)]
pub struct Item {
    pub text: String,
    pub id: Option<u32>,
    pub accented: bool,
    head: u64,
    mask: u64,
}

/// A query word: one lexeme, or several that must follow each other (a phrase).
#[derive(Debug, Clone)]
pub struct Operand {
    pub parts: Vec<Item>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Exact,
    Prefix,
}

/// Query items beyond this many are not ranked (they still filter); 16 words rarely
/// have more than 64 lexemes.
const MAX_ITEMS: usize = 64;

/// A matching position: its number, field, and the query items it matches (bits).
#[derive(Debug, Clone, Copy)]
struct Hit {
    pos: u32,
    field: Field,
    items: u64,
}

impl Operand {
    pub fn new(index: &DirectoryIndex, parts: &[String]) -> Self {
        let parts = parts
            .iter()
            .map(|text| {
                let (head, mask) = prefix_head(text);
                Item {
                    text: text.clone(),
                    id: index.lexicon.id(text),
                    accented: fold_accents(text) != *text,
                    head,
                    mask,
                }
            })
            .collect();
        Self { parts }
    }
}

/// The query: every operand must match.
pub struct Query {
    pub operands: Vec<Operand>,
    /// Each operand's first item bit.
    first_bit: Vec<usize>,
}

impl Query {
    pub fn new(operands: Vec<Operand>) -> Self {
        let mut first_bit = Vec::with_capacity(operands.len());
        let mut next = 0;
        for operand in &operands {
            first_bit.push(next);
            next += operand.parts.len();
        }
        Self { operands, first_bit }
    }

    fn items(&self) -> impl Iterator<Item = (usize, &Item)> {
        self.operands.iter().flat_map(|operand| &operand.parts).enumerate().take(MAX_ITEMS)
    }

    /// Synapse's `ts_rank_cd(weights, vector, query, 8)` of user `id`.
    pub fn rank(&self, index: &DirectoryIndex, id: u32, mode: Mode) -> f32 {
        let hits = self.hits(index, id, mode);
        normalised(self.covers(&hits), index.lexeme_count(id))
    }

    /// The exact and prefix hits of `positions` in one pass: a lexeme equal to an item
    /// also starts with it, so only prefix matches are checked for equality.
    fn hits_both(&self, index: &DirectoryIndex, positions: &[u32], exact: &mut Vec<Hit>, prefix: &mut Vec<Hit>) {
        let lexicon = &index.lexicon;
        exact.clear();
        prefix.clear();
        for (at, entry) in positions.iter().enumerate() {
            let (lexeme, field) = position(*entry);
            let (mut exact_items, mut prefix_items) = (0u64, 0u64);
            for (bit, item) in self.items() {
                if lexicon.starts_with(lexeme, &item.text, item.head, item.mask, item.accented) {
                    prefix_items |= 1 << bit;
                    if lexicon.is(lexeme, item.id, item.accented) {
                        exact_items |= 1 << bit;
                    }
                }
            }
            let pos = at as u32 + 1;
            if prefix_items != 0 {
                prefix.push(Hit { pos, field, items: prefix_items });
            }
            if exact_items != 0 {
                exact.push(Hit { pos, field, items: exact_items });
            }
        }
    }

    fn hits(&self, index: &DirectoryIndex, id: u32, mode: Mode) -> Vec<Hit> {
        let lexicon = &index.lexicon;
        let mut hits = Vec::new();
        for (at, entry) in index.doc(id).iter().enumerate() {
            let (lexeme, field) = position(*entry);
            let mut items = 0u64;
            for (bit, item) in self.items() {
                let matched = match mode {
                    Mode::Exact => lexicon.is(lexeme, item.id, item.accented),
                    Mode::Prefix => lexicon.starts_with(lexeme, &item.text, item.head, item.mask, item.accented),
                };
                if matched {
                    items |= 1 << bit;
                }
            }
            if items != 0 {
                hits.push(Hit { pos: at as u32 + 1, field, items });
            }
        }
        hits
    }

    /// Whether the hits hold every operand (a phrase's lexemes at consecutive positions).
    fn satisfied(&self, hits: &[Hit]) -> bool {
        self.operands.iter().zip(&self.first_bit).all(|(operand, first)| {
            let bit = |part: usize| 1u64.checked_shl((first + part) as u32).unwrap_or(0);
            if *first + operand.parts.len() > MAX_ITEMS {
                return true;
            }
            hits.iter().filter(|hit| hit.items & bit(0) != 0).any(|start| {
                (1..operand.parts.len())
                    .all(|part| hits.iter().any(|hit| hit.pos == start.pos + part as u32 && hit.items & bit(part) != 0))
            })
        })
    }

    /// PostgreSQL's cover loop (`calc_rank_cd` and `Cover` in tsrank.c): from each
    /// start, the first end where the query holds, then the latest begin before it
    /// where it still holds; the next cover starts after that begin.
    fn covers(&self, hits: &[Hit]) -> f64 {
        let mut total = 0.0;
        let mut start = 0;
        while start < hits.len() {
            let Some(end) = (start..hits.len()).find(|end| self.satisfied(&hits[start..=*end])) else { break };
            let Some(begin) = (start..=end).rev().find(|begin| self.satisfied(&hits[*begin..=end])) else { break };
            let cover = &hits[begin..=end];
            let inverse_sum: f64 = cover.iter().map(|hit| inverse_weight(hit.field)).sum();
            let density = cover.len() as f64 / inverse_sum;
            let span = (hits[end].pos - hits[begin].pos) as i64;
            let mut noise = span - (end - begin) as i64;
            if noise < 0 {
                noise = (end - begin) as i64 / 2;
            }
            total += density / (1 + noise) as f64;
            start = begin + 1;
        }
        total
    }

    /// Synapse's full score of user `id`.
    pub fn score(&self, index: &DirectoryIndex, id: u32) -> f64 {
        let Some(user) = index.entry(id) else { return 0.0 };
        let exact = self.rank(index, id, Mode::Exact);
        let prefix = self.rank(index, id, Mode::Prefix);
        score(user.display_name.is_some(), user.avatar_url.is_some(), exact, prefix)
    }
}

/// At most this many distinct display names are remembered per search.
const NAME_MEMO_MAX: usize = 4096;

/// Scores the candidates of one search, reusing its buffers. A user matching no query
/// item in their localpart or server name scores by their display name alone (covers
/// depend only on the distances between matching positions), so each distinct name is
/// scored once: 10,000 users named "张敏" are one computation and a lookup each.
pub struct Scorer<'a> {
    index: &'a DirectoryIndex,
    query: &'a Query,
    exact: Vec<Hit>,
    prefix: Vec<Hit>,
    names: HashMap<&'a [u32], (f64, f64)>,
}

impl<'a> Scorer<'a> {
    pub fn new(index: &'a DirectoryIndex, query: &'a Query) -> Self {
        Self { index, query, exact: Vec::new(), prefix: Vec::new(), names: HashMap::new() }
    }

    /// User `id`'s `ts_rank_cd` for the exact and the prefix query (normalised).
    /// `name_only`: the caller knows no localpart or server name lexeme matches.
    pub fn ranks(&mut self, id: u32, name_only: bool) -> (f32, f32) {
        let doc = self.index.doc(id);
        let (exact, prefix) = if name_only {
            let start = doc.iter().position(|entry| position(*entry).1 == Field::DisplayName).unwrap_or(doc.len());
            let name = &doc[start..];
            match self.names.get(name) {
                Some(covers) => *covers,
                None => {
                    let covers = self.covers(name);
                    if self.names.len() < NAME_MEMO_MAX {
                        self.names.insert(name, covers);
                    }
                    covers
                }
            }
        } else {
            self.covers(doc)
        };
        let lexemes = self.index.lexeme_count(id);
        (normalised(exact, lexemes), normalised(prefix, lexemes))
    }

    fn covers(&mut self, positions: &[u32]) -> (f64, f64) {
        self.query.hits_both(self.index, positions, &mut self.exact, &mut self.prefix);
        (self.query.covers(&self.exact), self.query.covers(&self.prefix))
    }
}
