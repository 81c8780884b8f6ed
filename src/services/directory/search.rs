//! Answering a search: every query word must match a whole indexed word or a word
//! prefix, within the users the searcher may see; ranked as Synapse ranks on
//! PostgreSQL (exact 3x prefix; localpart 1.0, display name 0.9, server name 0.1;
//! x1.2 for a display name, x1.2 for an avatar), with deterministic ties.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use roaring::RoaringBitmap;

use super::index::{DirectoryIndex, FIELDS, Field};
use super::tokenize::{SearchTerm, fold_accents, normalize};

/// Above this many candidates, a one-word search ranks by tiers instead of scoring each.
const TIERED_ABOVE: u64 = 256;

/// Field and strength classes in decreasing base score: exact localpart (3.0), exact
/// display name (2.7), prefix localpart (1.0), prefix display name (0.9), exact server
/// name (0.3), prefix server name (0.1).
const TIER_ORDER: [(Field, bool); 6] = [
    (Field::Localpart, true),
    (Field::DisplayName, true),
    (Field::Localpart, false),
    (Field::DisplayName, false),
    (Field::Domain, true),
    (Field::Domain, false),
];

#[derive(Debug, Clone, Default)]
pub struct SearchOptions {
    pub searcher: String,
    pub limit: usize,
    pub search_all_users: bool,
    pub exclude_remote_users: bool,
    pub show_locked_users: bool,
    pub prefer_local_users: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchResults {
    pub limited: bool,
    pub results: Vec<SearchHit>,
}

fn weight(field: Field) -> f32 {
    match field {
        Field::Localpart => 1.0,
        Field::DisplayName => 0.9,
        Field::Domain => 0.1,
    }
}

/// One query word's postings per field.
struct WordMatch {
    exact: [RoaringBitmap; 3],
    prefix: [RoaringBitmap; 3],
}

impl WordMatch {
    fn new(index: &DirectoryIndex, word: &str) -> Self {
        // A word typed without accents also matches accented names; one typed with
        // accents matches only those accents.
        let accentless = fold_accents(word) == word;
        let lookup = |field: Field| {
            let terms = &index.fields[field as usize];
            let (mut exact, mut prefix) = terms.lookup(word, false);
            if accentless {
                let (folded_exact, folded_prefix) = terms.lookup(word, true);
                exact |= folded_exact;
                prefix |= folded_prefix;
            }
            (exact, prefix)
        };
        let [(e0, p0), (e1, p1), (e2, p2)] = FIELDS.map(lookup);
        Self { exact: [e0, e1, e2], prefix: [p0, p1, p2] }
    }

    fn candidates(&self) -> RoaringBitmap {
        &(&self.prefix[0] | &self.prefix[1]) | &self.prefix[2]
    }

    fn score(&self, id: u32) -> f32 {
        FIELDS
            .iter()
            .map(|field| {
                let i = *field as usize;
                let strength = if self.exact[i].contains(id) {
                    3.0
                } else if self.prefix[i].contains(id) {
                    1.0
                } else {
                    0.0
                };
                strength * weight(*field)
            })
            .fold(0.0, f32::max)
    }
}

/// Sort key: bigger is better; the user id breaks ties (smaller first).
#[derive(Debug)]
struct Ranked<'a> {
    exact_id: bool,
    local: bool,
    score: f32,
    user_id: &'a str,
    id: u32,
}

impl Ranked<'_> {
    fn cmp_rank(&self, other: &Self) -> Ordering {
        self.exact_id
            .cmp(&other.exact_id)
            .then(self.score.total_cmp(&other.score))
            .then(self.local.cmp(&other.local))
            .then_with(|| other.user_id.cmp(self.user_id))
    }
}

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp_rank(other) == Ordering::Equal
    }
}
impl Eq for Ranked<'_> {}
impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked<'_> {
    // Reversed: the heap keeps the worst of the current top-k on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.cmp_rank(self)
    }
}

impl DirectoryIndex {
    /// The users `options.searcher` may find at all.
    fn searchable(&self, options: &SearchOptions) -> RoaringBitmap {
        let mut allowed = if options.search_all_users {
            self.listed.clone()
        } else {
            &self.visible_to(self.id_of(&options.searcher)) & &self.listed
        };
        if !options.show_locked_users {
            allowed -= &self.locked;
        }
        if options.exclude_remote_users {
            allowed &= &self.local;
        }
        allowed
    }

    /// The dense id of the user a full MXID query (`@user:server` or `user:server`) names.
    fn named_user(&self, term: &str) -> Option<u32> {
        if !term.contains(':') || term.contains(char::is_whitespace) {
            return None;
        }
        let with_sigil = if term.starts_with('@') { term.to_owned() } else { format!("@{term}") };
        self.id_of(&with_sigil).or_else(|| self.id_of(&normalize(&with_sigil)))
    }

    pub fn search(&self, term: &str, options: &SearchOptions) -> SearchResults {
        self.search_term(&SearchTerm::parse(term), options)
    }

    /// A search of a term parsed beforehand (outside any lock on the index).
    pub fn search_term(&self, term: &SearchTerm, options: &SearchOptions) -> SearchResults {
        let allowed = self.searchable(options);
        let named = self.named_user(&term.text).filter(|id| allowed.contains(*id));
        let matches: Vec<WordMatch> = term.words.iter().map(|word| WordMatch::new(self, word)).collect();
        let mut candidates = if matches.is_empty() { RoaringBitmap::new() } else { allowed };
        for word in &matches {
            candidates &= word.candidates();
        }
        if let Some(id) = named {
            candidates.insert(id);
        }
        let limited = candidates.len() > options.limit as u64;
        let top = match matches.as_slice() {
            [word] if candidates.len() > TIERED_ABOVE => self.top_by_tiers(word, &candidates, named, options),
            _ => self.top_by_scoring(&candidates, named, &matches, options),
        };
        let results = top.into_iter().filter_map(|id| self.hit(id)).collect();
        SearchResults { limited, results }
    }

    /// Top-k by scoring every candidate.
    fn top_by_scoring(
        &self,
        candidates: &RoaringBitmap,
        named: Option<u32>,
        matches: &[WordMatch],
        options: &SearchOptions,
    ) -> Vec<u32> {
        let mut heap: BinaryHeap<Ranked<'_>> = BinaryHeap::with_capacity(options.limit + 1);
        if options.limit == 0 {
            return Vec::new();
        }
        for id in candidates {
            let ranked = self.rank(id, named, matches, options);
            if heap.len() < options.limit {
                heap.push(ranked);
            } else if heap.peek().is_some_and(|worst| ranked.cmp_rank(worst) == Ordering::Greater) {
                heap.pop();
                heap.push(ranked);
            }
        }
        let mut top = heap.into_vec();
        top.sort_by(|a, b| b.cmp_rank(a));
        top.into_iter().map(|ranked| ranked.id).collect()
    }

    /// Top-k for one query word over many candidates without scoring each one: with one
    /// word, a user's score is fixed by the best field and strength they match and by
    /// their profile completeness, so candidates fall into a few score tiers computed
    /// with bitmap operations; only the tiers needed to fill `limit` are ordered.
    fn top_by_tiers(
        &self,
        word: &WordMatch,
        candidates: &RoaringBitmap,
        named: Option<u32>,
        options: &SearchOptions,
    ) -> Vec<u32> {
        let mut remaining = candidates.clone();
        let mut top: Vec<u32> = Vec::with_capacity(options.limit);
        if let Some(id) = named {
            remaining.remove(id);
            top.push(id);
        }
        let both = &self.with_name & &self.with_avatar;
        let either = &(&self.with_name | &self.with_avatar) - &both;
        let mut tiers: Vec<(f32, RoaringBitmap)> = Vec::new();
        for (field, exact) in TIER_ORDER {
            let postings = if exact { &word.exact[field as usize] } else { &word.prefix[field as usize] };
            let class = postings & &remaining;
            remaining -= &class;
            let base = weight(field) * if exact { 3.0 } else { 1.0 };
            tiers.push((base * 1.44, &class & &both));
            tiers.push((base * 1.2, &class & &either));
            tiers.push((base, class - &both - &either));
        }
        tiers.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut merged: Vec<(f32, RoaringBitmap)> = Vec::new();
        for (score, set) in tiers {
            match merged.last_mut() {
                Some((last, union)) if (*last - score).abs() < 1e-4 => *union |= set,
                _ => merged.push((score, set)),
            }
        }
        for (_, tier) in merged {
            let groups =
                if options.prefer_local_users { vec![&tier & &self.local, tier - &self.local] } else { vec![tier] };
            for group in groups {
                if top.len() >= options.limit {
                    return top;
                }
                top.extend(self.smallest_user_ids(&group, options.limit - top.len()));
            }
        }
        top.truncate(options.limit);
        top
    }

    /// The `count` users of `group` with the smallest user ids, in order.
    fn smallest_user_ids(&self, group: &RoaringBitmap, count: usize) -> Vec<u32> {
        let mut heap: BinaryHeap<(&str, u32)> = BinaryHeap::with_capacity(count + 1);
        for id in group {
            let Some(entry) = self.entry(id) else { continue };
            if heap.len() < count {
                heap.push((&entry.user_id, id));
            } else if heap.peek().is_some_and(|(worst, _)| *entry.user_id < **worst) {
                heap.pop();
                heap.push((&entry.user_id, id));
            }
        }
        heap.into_sorted_vec().into_iter().map(|(_, id)| id).collect()
    }

    fn rank(&self, id: u32, named: Option<u32>, matches: &[WordMatch], options: &SearchOptions) -> Ranked<'_> {
        let entry = self.entry(id);
        let profile = entry.map(|e| &e.profile);
        let mut score: f32 = matches.iter().map(|m| m.score(id)).sum();
        if profile.is_some_and(|p| p.display_name.is_some()) {
            score *= 1.2;
        }
        if profile.is_some_and(|p| p.avatar_url.is_some()) {
            score *= 1.2;
        }
        Ranked {
            exact_id: named == Some(id),
            local: options.prefer_local_users && self.local.contains(id),
            score,
            user_id: entry.map_or("", |e| &e.user_id),
            id,
        }
    }

    fn hit(&self, id: u32) -> Option<SearchHit> {
        let entry = self.entry(id)?;
        Some(SearchHit {
            user_id: entry.user_id.to_string(),
            display_name: entry.profile.display_name.clone(),
            avatar_url: entry.profile.avatar_url.clone(),
        })
    }

    /// The baseline other Rust homeservers use: scan every user and match substrings.
    /// Kept for the benchmark's comparison.
    #[cfg(feature = "bench-fixtures")]
    pub fn linear_scan(&self, term: &str, options: &SearchOptions) -> SearchResults {
        let allowed = self.searchable(options);
        let needle = normalize(term);
        let mut results = Vec::new();
        let mut found = 0usize;
        for (id, entry) in self.users.iter().enumerate() {
            let Some(entry) = entry else { continue };
            if !allowed.contains(id as u32) {
                continue;
            }
            let name = entry.profile.display_name.as_deref().map(normalize).unwrap_or_default();
            if normalize(&entry.user_id).contains(&needle) || name.contains(&needle) {
                found += 1;
                if results.len() < options.limit {
                    results.push(SearchHit {
                        user_id: entry.user_id.to_string(),
                        display_name: entry.profile.display_name.clone(),
                        avatar_url: entry.profile.avatar_url.clone(),
                    });
                }
            }
        }
        SearchResults { limited: found > options.limit, results }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::directory::index::UserProfile;

    fn index_with(users: &[(&str, Option<&str>, bool)]) -> DirectoryIndex {
        let mut index = DirectoryIndex::default();
        for (user_id, name, local) in users {
            let profile = UserProfile { display_name: name.map(str::to_owned), avatar_url: None };
            let id = index.upsert_user(user_id, profile, *local);
            index.set_member("!public:x", id, true);
        }
        index.set_room_public("!public:x", true);
        index
    }

    fn options(limit: usize) -> SearchOptions {
        SearchOptions { searcher: "@searcher:x".into(), limit, ..Default::default() }
    }

    fn ids(results: &SearchResults) -> Vec<&str> {
        results.results.iter().map(|hit| hit.user_id.as_str()).collect()
    }

    #[test]
    fn exact_beats_prefix_and_localpart_beats_name() {
        let index = index_with(&[
            ("@johnny:x", Some("J"), true),
            ("@john:x", Some("J"), true),
            ("@someone:x", Some("John"), true),
        ]);
        let results = index.search("john", &options(10));
        assert_eq!(ids(&results), vec!["@john:x", "@someone:x", "@johnny:x"]);
    }

    #[test]
    fn every_word_must_match_and_limited_is_exact() {
        let index = index_with(
            &[("@a:x", Some("Alice Cooper")), ("@b:x", Some("Alice Smith")), ("@c:x", Some("Bob Cooper"))]
                .map(|(u, n)| (u, n, true)),
        );
        assert_eq!(ids(&index.search("alice coo", &options(10))), vec!["@a:x"]);
        let two = index.search("alice", &options(2));
        assert_eq!((two.results.len(), two.limited), (2, false));
        let one = index.search("alice", &options(1));
        assert_eq!((one.results.len(), one.limited), (1, true));
        assert!(index.search("zzz", &options(10)).results.is_empty());
        assert!(index.search("   ", &options(10)).results.is_empty());
    }

    #[test]
    fn full_user_ids_come_first() {
        let index = index_with(&[("@bob:example.org", None, true), ("@bobby:example.org", Some("bob"), true)]);
        for query in ["@bob:example.org", "bob:example.org"] {
            assert_eq!(ids(&index.search(query, &options(10)))[0], "@bob:example.org", "{query}");
        }
    }

    #[test]
    fn remote_and_locked_users_follow_the_options() {
        let mut index = index_with(&[("@lee:x", Some("Lee"), true), ("@lee:remote", Some("Lee"), false)]);
        let local_lee = index.id_of("@lee:x").unwrap();
        assert_eq!(ids(&index.search("lee", &options(10))), vec!["@lee:remote", "@lee:x"]);
        let local_only = SearchOptions { exclude_remote_users: true, ..options(10) };
        assert_eq!(ids(&index.search("lee", &local_only)), vec!["@lee:x"]);
        index.set_locked(local_lee, true);
        assert_eq!(ids(&index.search("lee", &options(10))), vec!["@lee:remote"]);
        let show_locked = SearchOptions { show_locked_users: true, ..options(10) };
        assert_eq!(ids(&index.search("lee", &show_locked)), vec!["@lee:remote", "@lee:x"]);
    }

    /// The tiered top-k gives exactly what scoring every candidate gives.
    #[test]
    fn tiers_agree_with_full_scoring() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let names = ["Anna Smith", "Andrew", "Maria", "Marek Novak", "Amélie", "Иван", "An"];
        let mut index = DirectoryIndex::default();
        for i in 0..3000 {
            let local = rng.gen_bool(0.7);
            let server = if local { "x" } else { "remote.example" };
            let localpart = ["an", "anna", "mar", "user", "amy"][rng.gen_range(0..5)];
            let profile = UserProfile {
                display_name: rng.gen_bool(0.8).then(|| names[rng.gen_range(0..names.len())].to_owned()),
                avatar_url: rng.gen_bool(0.5).then(|| "mxc://a/b".to_owned()),
            };
            let id = index.upsert_user(&format!("@{localpart}{i}:{server}"), profile, local);
            index.set_member("!public:x", id, true);
        }
        index.set_room_public("!public:x", true);
        for prefer_local_users in [false, true] {
            let options = SearchOptions { prefer_local_users, ..options(10) };
            for term in ["a", "an", "anna", "mar", "x", "remote", "u", "ив", "amelie"] {
                let matches: Vec<WordMatch> =
                    SearchTerm::parse(term).words.iter().map(|w| WordMatch::new(&index, w)).collect();
                let mut candidates = index.searchable(&options);
                candidates &= matches[0].candidates();
                let tiers = index.top_by_tiers(&matches[0], &candidates, None, &options);
                let scored = index.top_by_scoring(&candidates, None, &matches, &options);
                assert_eq!(tiers, scored, "{term} (prefer local: {prefer_local_users})");
            }
        }
    }

    #[test]
    fn local_users_rank_first_among_equals_when_preferred() {
        let index = index_with(&[
            ("@anna:remote", Some("Anna"), false),
            ("@anna:x", Some("Anna"), true),
            ("@annabel:x", None, true),
        ]);
        assert_eq!(ids(&index.search("anna", &options(10))), vec!["@anna:remote", "@anna:x", "@annabel:x"]);
        let prefer = SearchOptions { prefer_local_users: true, ..options(10) };
        assert_eq!(
            ids(&index.search("anna", &prefer)),
            vec!["@anna:x", "@anna:remote", "@annabel:x"],
            "local first among equals only"
        );
    }
}
