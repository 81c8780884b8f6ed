//! Answering a search: every query word must prefix-match a lexeme, within the users the
//! searcher may see, ranked as Synapse ranks on PostgreSQL (`rank.rs`); exact ties go to
//! users with a display name, then with an avatar (Synapse's own last keys), then to
//! users sharing a room with the searcher, then to local users when
//! `prefer_local_users` is on, then to the smaller user ID.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use roaring::RoaringBitmap;

use super::index::{DirectoryIndex, Field, POSITION_ORDER, class_of};
use super::rank::{Item, Operand, Query, Scorer, normalised, score, single_cover};
use super::tokenize::{SearchTerm, normalize};

/// Above this many candidates, a one-word search ranks by tiers instead of scoring each.
const TIERED_ABOVE: u64 = 256;

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

/// What orders users beyond their score, computed once per search.
struct TieBreaks {
    shared: RoaringBitmap,
    prefer_local: bool,
}

/// Sort key: bigger is better.
#[derive(Debug)]
struct Ranked<'a> {
    named: bool,
    score: f64,
    name: bool,
    avatar: bool,
    shared: bool,
    local: bool,
    key: u64,
    user_id: &'a str,
    id: u32,
}

impl Ranked<'_> {
    fn cmp_rank(&self, other: &Self) -> Ordering {
        self.named
            .cmp(&other.named)
            .then(self.score.total_cmp(&other.score))
            .then(self.name.cmp(&other.name))
            .then(self.avatar.cmp(&other.avatar))
            .then(self.shared.cmp(&other.shared))
            .then(self.local.cmp(&other.local))
            .then(other.key.cmp(&self.key))
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

/// One query lexeme's users per field: exact, and with 1, 2, 3+ prefix-matching
/// positions.
struct ItemUsers {
    exact: [RoaringBitmap; 3],
    prefix: [[RoaringBitmap; 3]; 3],
}

impl ItemUsers {
    fn new(index: &DirectoryIndex, item: &Item) -> Self {
        let exact = [0, 1, 2].map(|field| index.lexicon.exact(&item.text, field, item.accented));
        let prefix = index.lexicon.prefix_layers(&item.text, item.accented);
        Self { exact, prefix }
    }

    fn any_field(&self) -> RoaringBitmap {
        &(&self.prefix[0][0] | &self.prefix[1][0]) | &self.prefix[2][0]
    }

    /// The users it matches in their localpart or server name.
    fn outside_name(&self) -> RoaringBitmap {
        &self.prefix[Field::Localpart as usize][0] | &self.prefix[Field::Domain as usize][0]
    }
}

/// Users matching alike in every field: how many positions and whether one is exact,
/// in position order (localpart, server name, display name).
struct Leaf {
    users: RoaringBitmap,
    states: Vec<(Field, u8, bool)>,
}

impl Leaf {
    /// The covers' sums for the exact and prefix queries, added in position order as
    /// PostgreSQL adds them.
    fn covers(&self) -> (f64, f64) {
        let (mut exact, mut prefix) = (0.0, 0.0);
        for (field, count, is_exact) in &self.states {
            if *is_exact {
                exact += single_cover(*field);
            }
            for _ in 0..*count {
                prefix += single_cover(*field);
            }
        }
        (exact, prefix)
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
        let query = Query::new(term.operands.iter().map(|parts| Operand::new(self, parts)).collect());
        let items: Vec<Vec<ItemUsers>> = query
            .operands
            .iter()
            .map(|operand| operand.parts.iter().map(|item| ItemUsers::new(self, item)).collect())
            .collect();
        let mut candidates = if items.is_empty() { RoaringBitmap::new() } else { allowed };
        let mut outside_name = RoaringBitmap::new();
        for item in items.iter().flatten() {
            candidates &= item.any_field();
            outside_name |= item.outside_name();
        }
        let ties = TieBreaks {
            shared: self.shared_with(self.id_of(&options.searcher)),
            prefer_local: options.prefer_local_users,
        };
        match items.as_slice() {
            [single] if single.len() == 1 && candidates.len() > TIERED_ABOVE => {
                let limited = candidates.len() + u64::from(named.is_some_and(|id| !candidates.contains(id)))
                    > options.limit as u64;
                let top = self.top_by_tiers(&query, &single[0], &candidates, named, &ties, options.limit);
                SearchResults { limited, results: top.into_iter().filter_map(|id| self.hit(id)).collect() }
            }
            _ => {
                if let Some(id) = named {
                    candidates.insert(id);
                }
                self.top_by_scoring(&query, &candidates, &outside_name, named, &ties, options.limit)
            }
        }
    }

    fn ranked(&self, id: u32, score: f64, named: Option<u32>, ties: &TieBreaks) -> Ranked<'_> {
        let user = self.entry(id);
        Ranked {
            named: named == Some(id),
            score,
            name: user.is_some_and(|u| u.display_name.is_some()),
            avatar: user.is_some_and(|u| u.avatar_url.is_some()),
            shared: ties.shared.contains(id),
            local: ties.prefer_local && self.local.contains(id),
            key: self.sort_key(id),
            user_id: user.map_or("", |u| u.user_id),
            id,
        }
    }

    /// Top-k by scoring every candidate; users the query does not match (a phrase
    /// whose words are not adjacent) are left out. `outside_name`: the users some query
    /// item matches in their localpart or server name; the others are scored by their
    /// display name alone (see `Scorer`).
    fn top_by_scoring(
        &self,
        query: &Query,
        candidates: &RoaringBitmap,
        outside_name: &RoaringBitmap,
        named: Option<u32>,
        ties: &TieBreaks,
        limit: usize,
    ) -> SearchResults {
        let mut heap: BinaryHeap<Ranked<'_>> = BinaryHeap::with_capacity(limit + 1);
        let mut found = 0usize;
        let mut scorer = Scorer::new(self, query);
        let name_only = candidates - outside_name;
        let elsewhere = candidates & outside_name;
        for (id, name_only) in name_only.iter().map(|id| (id, true)).chain(elsewhere.iter().map(|id| (id, false))) {
            let (exact, prefix) = scorer.ranks(id, name_only);
            if prefix <= 0.0 && named != Some(id) {
                continue;
            }
            found += 1;
            let user = self.entry(id);
            let name = user.is_some_and(|u| u.display_name.is_some());
            let avatar = user.is_some_and(|u| u.avatar_url.is_some());
            let value = score(name, avatar, exact, prefix);
            // Worse than the page's last already: skip the tie-break keys.
            let full = heap.len() >= limit;
            if full && named != Some(id) && heap.peek().is_some_and(|worst| worst.named || value < worst.score) {
                continue;
            }
            let ranked = self.ranked(id, value, named, ties);
            if heap.len() < limit {
                heap.push(ranked);
            } else if heap.peek().is_some_and(|worst| ranked.cmp_rank(worst) == Ordering::Greater) {
                heap.pop();
                heap.push(ranked);
            }
        }
        let mut top = heap.into_vec();
        top.sort_by(|a, b| b.cmp_rank(a));
        SearchResults { limited: found > limit, results: top.into_iter().filter_map(|r| self.hit(r.id)).collect() }
    }

    /// Top-k for a one-lexeme query over many candidates without scoring each one. A
    /// user's score then depends only on how many positions match in each field and
    /// whether one is exact, on their number of distinct lexemes and on their profile:
    /// candidates split into leaves by the first (bitmap operations), leaves into
    /// classes by the others, and only the best few (leaf, class) groups are read.
    /// Users whose counts the bitmaps cannot tell (three or more positions in a field,
    /// a lexeme repeated in a field) are scored one by one.
    fn top_by_tiers(
        &self,
        query: &Query,
        item: &ItemUsers,
        candidates: &RoaringBitmap,
        named: Option<u32>,
        ties: &TieBreaks,
        limit: usize,
    ) -> Vec<u32> {
        let mut top: Vec<u32> = named.into_iter().collect();
        let mut unusual = &self.repeats | &(&(&item.prefix[0][2] | &item.prefix[1][2]) | &item.prefix[2][2]);
        unusual &= candidates;
        let mut rest = candidates - &unusual;
        if let Some(id) = named {
            rest.remove(id);
            unusual.remove(id);
        }
        let leaves = split_into_leaves(item, rest);
        enum Group<'a> {
            Combo(&'a RoaringBitmap, &'a RoaringBitmap),
            One(u32),
        }
        let mut groups: Vec<(f64, Group<'_>)> = Vec::new();
        for leaf in &leaves {
            let (exact, prefix) = leaf.covers();
            for (key, users) in &self.classes {
                let (lexemes, name, avatar) = class_of(*key);
                let value = score(name, avatar, normalised(exact, lexemes), normalised(prefix, lexemes));
                groups.push((value, Group::Combo(&leaf.users, users)));
            }
        }
        groups.extend(unusual.iter().map(|id| (query.score(self, id), Group::One(id))));
        groups.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut at = 0;
        while at < groups.len() && top.len() < limit {
            let value = groups[at].0;
            let mut tied = RoaringBitmap::new();
            while at < groups.len() && groups[at].0 == value {
                match groups[at].1 {
                    Group::Combo(leaf, class) => tied |= leaf & class,
                    Group::One(id) => {
                        tied.insert(id);
                    }
                }
                at += 1;
            }
            let need = limit - top.len();
            top.extend(self.order_ties(&tied, need, ties));
        }
        top.truncate(limit);
        top
    }

    /// The first `count` users of a group of equal scores, in tie-break order.
    fn order_ties(&self, tied: &RoaringBitmap, count: usize, ties: &TieBreaks) -> Vec<u32> {
        let mut parts = vec![tied.clone()];
        let splits: [(&RoaringBitmap, bool); 4] = [
            (&self.with_name, true),
            (&self.with_avatar, true),
            (&ties.shared, true),
            (&self.local, ties.prefer_local),
        ];
        for (set, applies) in splits {
            if applies {
                parts =
                    parts.into_iter().flat_map(|part| [&part & set, part - set]).filter(|p| !p.is_empty()).collect();
            }
        }
        let mut ordered = Vec::with_capacity(count);
        for part in parts {
            if ordered.len() >= count {
                break;
            }
            ordered.extend(self.smallest_user_ids(&part, count - ordered.len()));
        }
        ordered
    }

    /// The `count` users of `group` with the smallest user IDs, in order.
    fn smallest_user_ids(&self, group: &RoaringBitmap, count: usize) -> Vec<u32> {
        let mut heap: BinaryHeap<(u64, &str, u32)> = BinaryHeap::with_capacity(count + 1);
        for id in group {
            let key = self.sort_key(id);
            if heap.len() >= count && heap.peek().is_some_and(|(worst, _, _)| key > *worst) {
                continue;
            }
            let Some(user) = self.entry(id) else { continue };
            heap.push((key, user.user_id, id));
            if heap.len() > count {
                heap.pop();
            }
        }
        heap.into_sorted_vec().into_iter().map(|(_, _, id)| id).collect()
    }

    fn hit(&self, id: u32) -> Option<SearchHit> {
        let user = self.entry(id)?;
        Some(SearchHit {
            user_id: user.user_id.to_owned(),
            display_name: user.display_name.map(str::to_owned),
            avatar_url: user.avatar_url.map(str::to_owned),
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
        for id in &allowed {
            let Some(user) = self.entry(id) else { continue };
            let name = user.display_name.map(normalize).unwrap_or_default();
            if normalize(user.user_id).contains(&needle) || name.contains(&needle) {
                found += 1;
                if results.len() < options.limit {
                    results.extend(self.hit(id));
                }
            }
        }
        SearchResults { limited: found > options.limit, results }
    }
}

/// Splits users by how many positions match in each field (one or two; three or more
/// are left to scoring) and whether one matches exactly.
fn split_into_leaves(item: &ItemUsers, users: RoaringBitmap) -> Vec<Leaf> {
    let mut leaves = vec![Leaf { users, states: Vec::new() }];
    for field in POSITION_ORDER {
        let f = field as usize;
        let (one, two, exact) = (&item.prefix[f][0], &item.prefix[f][1], &item.exact[f]);
        let mut next = Vec::new();
        for leaf in leaves {
            let twice = &leaf.users & two;
            let once = (&leaf.users & one) - two;
            let none = leaf.users - one;
            for (users, count) in [(twice, 2u8), (once, 1), (none, 0)] {
                let split = if count == 0 {
                    vec![(users, false)]
                } else {
                    vec![(&users & exact, true), (users - exact, false)]
                };
                for (users, is_exact) in split.into_iter().filter(|(users, _)| !users.is_empty()) {
                    let mut states = leaf.states.clone();
                    states.push((field, count, is_exact));
                    next.push(Leaf { users, states });
                }
            }
        }
        leaves = next;
    }
    leaves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::directory::index::UserProfile;
    use crate::services::directory::rank::Mode;

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

    /// Synapse-PG, by hand: `@john:x` "J" has 3 lexemes and an exact localpart match,
    /// 4.8 x (3 x 1/3 + 1/3) = 6.4; `@someone:x` "John" an exact display name match,
    /// 4.8 x (3 x 0.3 + 0.3) = 5.76; `@johnny:x` a prefix only, 4.8 x 1/3 = 1.6.
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

    /// Synapse-PG, by hand: `@anna:remote` and `@anna:x` "Anna" score alike
    /// (4.8 x 4 x 1.9 / 2), `@annabel:x` 4.0 x 1/2.
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

    #[test]
    fn users_sharing_a_room_win_ties() {
        let mut index = index_with(&[("@kim:a", Some("Kim"), true), ("@kim:b", Some("Kim"), true)]);
        let searcher = index.upsert_user("@searcher:x", UserProfile::default(), true);
        let kim_b = index.id_of("@kim:b").unwrap();
        assert_eq!(ids(&index.search("kim", &options(10))), vec!["@kim:a", "@kim:b"]);
        index.set_member("!dm:x", searcher, true);
        index.set_member("!dm:x", kim_b, true);
        assert_eq!(ids(&index.search("kim", &options(10))), vec!["@kim:b", "@kim:a"]);
    }

    /// Scores every candidate and ranks by tiers, for one term.
    fn both_ways(index: &DirectoryIndex, term: &str, options: &SearchOptions) -> (Vec<u32>, Vec<u32>) {
        let term = SearchTerm::parse(term);
        let query = Query::new(term.operands.iter().map(|parts| Operand::new(index, parts)).collect());
        let item = ItemUsers::new(index, &query.operands[0].parts[0]);
        let candidates = &index.searchable(options) & &item.any_field();
        let ties = TieBreaks { shared: RoaringBitmap::new(), prefer_local: options.prefer_local_users };
        let tiers = index.top_by_tiers(&query, &item, &candidates, None, &ties, options.limit);
        let scored = index.top_by_scoring(&query, &candidates, &item.outside_name(), None, &ties, options.limit);
        let scored = scored.results.iter().filter_map(|hit| index.id_of(&hit.user_id)).collect();
        (tiers, scored)
    }

    /// The tiered top-k gives exactly what scoring every candidate gives.
    /// `count` users in one public room, 70% local (on `x`), 80% with a display name
    /// and half with an avatar, names and localparts drawn from the lists given.
    fn random_public_directory(
        rng: &mut impl rand::Rng,
        count: usize,
        names: &[&str],
        localparts: &[&str],
        remote_servers: &[&str],
    ) -> DirectoryIndex {
        let mut index = DirectoryIndex::default();
        for i in 0..count {
            let local = rng.gen_bool(0.7);
            let server = if local { "x" } else { remote_servers[rng.gen_range(0..remote_servers.len())] };
            let localpart = localparts[rng.gen_range(0..localparts.len())];
            let profile = UserProfile {
                display_name: rng.gen_bool(0.8).then(|| names[rng.gen_range(0..names.len())].to_owned()),
                avatar_url: rng.gen_bool(0.5).then(|| "mxc://a/b".to_owned()),
            };
            let id = index.upsert_user(&format!("@{localpart}{i}:{server}"), profile, local);
            index.set_member("!public:x", id, true);
        }
        index.set_room_public("!public:x", true);
        index
    }

    #[test]
    fn tiers_agree_with_full_scoring() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let names = [
            "Anna Smith",
            "Andrew",
            "Maria",
            "Marek Novak",
            "Amélie",
            "Иван",
            "An",
            "Mary Martin",
            "Anna Anna",
            "Ann An Anya",
            "Mar-Ann Marsh",
        ];
        let localparts = ["an", "anna", "mar", "user", "amy", "mary_martin", "anna.smith", "an_an"];
        let index = random_public_directory(&mut rng, 3000, &names, &localparts, &["remote.example", "mars.example"]);
        for prefer_local_users in [false, true] {
            let options = SearchOptions { prefer_local_users, ..options(10) };
            for term in ["a", "an", "anna", "mar", "x", "remote", "u", "ив", "amelie", "ma", "mars", "anna.s"] {
                let (tiers, scored) = both_ways(&index, term, &options);
                assert_eq!(tiers, scored, "{term} (prefer local: {prefer_local_users})");
            }
        }
    }

    /// Several-word searches (scored with the display-name shortcut) give what scoring
    /// every visible user in full and sorting gives.
    #[test]
    fn scoring_by_name_agrees_with_full_scoring() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let names =
            ["张敏", "张 敏", "Noah Williams", "Williams Noah", "Anna Smith", "Mary Ann Martin", "Ann Ann", "Zoë"];
        let localparts = ["user", "noah_williams", "anna", "mary_martin", "ann.smith", "zoe"];
        let index = random_public_directory(&mut rng, 2000, &names, &localparts, &["anna.example"]);
        let options = options(10);
        let ties = TieBreaks { shared: RoaringBitmap::new(), prefer_local: false };
        let terms =
            ["张敏", "noah williams", "noah_williams", "williams noah", "ann smith", "mar an", "ann martin", "zoe an"];
        for text in terms {
            let term = SearchTerm::parse(text);
            let query = Query::new(term.operands.iter().map(|parts| Operand::new(&index, parts)).collect());
            assert!(query.operands.len() > 1 || query.operands[0].parts.len() > 1, "{text} is scored");
            let mut all: Vec<Ranked<'_>> = index
                .searchable(&options)
                .iter()
                .filter(|id| query.rank(&index, *id, Mode::Prefix) > 0.0)
                .map(|id| index.ranked(id, query.score(&index, id), None, &ties))
                .collect();
            all.sort_by(|a, b| b.cmp_rank(a));
            let expected: Vec<&str> = all.iter().take(10).map(|r| r.user_id).collect();
            let results = index.search_term(&term, &options);
            assert_eq!(ids(&results), expected, "{text}");
            assert_eq!(results.limited, all.len() > 10, "{text}");
        }
    }
}
