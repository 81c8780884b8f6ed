//! Turning names and queries into words and lexemes, as Synapse does on PostgreSQL.
//!
//! Synapse splits a query into words with ICU (NFKC, lower case, split on `@` and `:`,
//! `-`, `.` and `_` kept inside words: `user-1` is one word), and PostgreSQL's default
//! parser turns each word, and each indexed localpart, server name and display name,
//! into lexemes (`lexemes`). Kith segments display names with ICU too, so a CJK name
//! written without spaces is found by the same string, and also matches accent-folded
//! forms (see `fold_accents`).

use std::collections::HashSet;
use std::sync::LazyLock;

use icu_segmenter::WordSegmenter;
use icu_segmenter::options::WordBreakInvariantOptions;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

static SEGMENTER: LazyLock<icu_segmenter::WordSegmenterBorrowed<'static>> =
    LazyLock::new(|| WordSegmenter::new_auto(WordBreakInvariantOptions::default()));

/// Lower case and NFKC, the normal form both the index and queries use.
pub fn normalize(text: &str) -> String {
    text.nfkc().collect::<String>().to_lowercase()
}

/// Only this much of a search term is read: more cannot narrow a search further
/// (display names are at most 256 characters, user IDs 255), and every word costs a
/// lookup in each field.
pub const MAX_TERM_CHARS: usize = 512;
/// Only a search term's first words are matched; all of them must match, so more
/// words could only drop users that the first ones found.
pub const MAX_TERM_WORDS: usize = 16;

/// A search term as the index matches it: bounded in characters and words.
#[derive(Debug, Clone, Default)]
pub struct SearchTerm {
    /// The term's first `MAX_TERM_CHARS` characters, trimmed.
    pub text: String,
    /// Its first `MAX_TERM_WORDS` distinct words.
    pub words: Vec<String>,
    /// Each word's lexemes: one, or several that must be adjacent (a phrase: Synapse
    /// turns `noah_williams` into `noah <-> williams`). Words without any are left out.
    pub operands: Vec<Vec<String>>,
}

impl SearchTerm {
    pub fn parse(term: &str) -> Self {
        let text: String = term.chars().take(MAX_TERM_CHARS).collect();
        let text = text.trim().to_owned();
        let mut words = words(&text);
        words.truncate(MAX_TERM_WORDS);
        let operands = words
            .iter()
            .map(|word| {
                let mut parts = Vec::new();
                word_lexemes(word, &mut parts);
                parts
            })
            .filter(|parts| !parts.is_empty())
            .collect();
        Self { text, words, operands }
    }
}

/// The words of `text`, normalised, in order, without duplicates.
pub fn words(text: &str) -> Vec<String> {
    let mut unique = Words::default();
    for word in runs(text) {
        unique.push(&word);
    }
    unique.words
}

/// The words of `text`, normalised, in order, repeats included.
fn runs(text: &str) -> Vec<String> {
    let text = normalize(text);
    let mut pieces: Vec<(&str, bool)> = Vec::new();
    let mut start = 0;
    let mut segments = SEGMENTER.segment_str(&text);
    while let Some(end) = segments.next() {
        let word_like = segments.is_word_like();
        let segment = &text[start..end];
        start = end;
        if segment.is_empty() {
            continue;
        }
        // `@` and `:` separate the parts of a user ID.
        let mut parts = segment.split(['@', ':']).peekable();
        while let Some(part) = parts.next() {
            if !part.is_empty() {
                pieces.push((part, word_like || is_glue(part)));
            }
            if parts.peek().is_some() {
                pieces.push(("", false));
            }
        }
    }
    glue(&pieces)
}

fn is_glue(piece: &str) -> bool {
    matches!(piece, "-" | "." | "_")
}

/// Joins `word (- . _) word` runs into one word, drops other punctuation and spaces.
fn glue(pieces: &[(&str, bool)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut pending_glue: Option<&str> = None;
    for &(piece, word_like) in pieces {
        if is_glue(piece) {
            if !current.is_empty() && pending_glue.is_none() {
                pending_glue = Some(piece);
            } else {
                flush(&mut out, &mut current);
                pending_glue = None;
            }
            continue;
        }
        if word_like && !piece.trim().is_empty() {
            match pending_glue.take() {
                Some(glue) => {
                    current.push_str(glue);
                    current.push_str(piece);
                }
                None => {
                    flush(&mut out, &mut current);
                    current.push_str(piece);
                }
            }
        } else {
            flush(&mut out, &mut current);
            pending_glue = None;
        }
    }
    flush(&mut out, &mut current);
    out
}

/// Words in order without duplicates, de-duplicated in linear time.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    seen: HashSet<String>,
}

impl Words {
    fn push(&mut self, word: &str) {
        if !self.seen.contains(word) {
            self.seen.insert(word.to_owned());
            self.words.push(word.to_owned());
        }
    }
}

fn flush(out: &mut Vec<String>, current: &mut String) {
    if !current.is_empty() {
        out.push(std::mem::take(current));
    }
}

/// The lexemes of `text` in position order, repeats included: what
/// `to_tsvector('simple', text)` gives for the shapes user IDs and names take.
pub fn lexemes(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in runs(text) {
        word_lexemes(&word, &mut out);
    }
    out
}

/// The lexemes PostgreSQL's default parser makes of one glued word:
/// - `_` separates words (`mary_martin` is `mary`, `martin`);
/// - ASCII words joined by `.`: the longest host name at the start is one lexeme and
///   the rest is read again (`mary.martin.14` is `mary.martin`, `14`); without a host
///   name the whole is one file-name lexeme (`smith.5`, `a.b.5`); with other letters
///   `.` separates them (`josé.pérez`);
/// - a hyphenated word is itself and its parts (`user-a1`, `user`, `a1`), except a
///   number after the hyphen, which is a signed number (`user-71`: `user`, `-71`).
///
/// Rarer shapes the parser treats otherwise (file paths such as `a.b_c`) are split as
/// above.
pub fn word_lexemes(word: &str, out: &mut Vec<String>) {
    for chunk in word.split('_').filter(|c| !c.is_empty()) {
        if !chunk.contains('.') {
            hyphenated(chunk, out);
        } else if is_dotted_ascii(chunk) {
            dotted_ascii(chunk.trim_matches(['.', '-']), out);
        } else {
            for piece in chunk.split('.').filter(|p| !p.is_empty()) {
                hyphenated(piece, out);
            }
        }
    }
}

fn is_dotted_ascii(chunk: &str) -> bool {
    let chunk = chunk.trim_matches(['.', '-']);
    chunk.contains('.')
        && chunk.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && chunk.split('.').all(|label| !label.is_empty())
}

/// A host name at the start of `chunk` and what follows it read again, or the whole
/// chunk as one lexeme when it starts with no host name.
fn dotted_ascii(chunk: &str, out: &mut Vec<String>) {
    match host_name_len(chunk) {
        Some(len) if len < chunk.len() => {
            out.push(chunk[..len].to_owned());
            // The `.` or `-` after the host name separates; what follows is a new word.
            let rest = chunk[len + 1..].trim_matches(['.', '-']);
            if rest.contains('.') {
                dotted_ascii(rest, out);
            } else {
                hyphenated(rest, out);
            }
        }
        _ => out.push(chunk.to_owned()),
    }
}

/// The length of the longest host name `chunk` starts with: two or more labels joined
/// by `.`, the last made of two or more letters, ending before a `.`, a `-` or the end.
fn host_name_len(chunk: &str) -> Option<usize> {
    let ends = chunk.match_indices(['.', '-']).map(|(at, _)| at).chain([chunk.len()]);
    ends.rev().find(|&end| is_host_name(&chunk[..end]))
}

fn is_host_name(text: &str) -> bool {
    let mut labels = text.split('.');
    let last = labels.next_back().unwrap_or_default();
    text.contains('.')
        && last.len() >= 2
        && last.bytes().all(|b| b.is_ascii_alphabetic())
        && labels.all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
}

fn hyphenated(piece: &str, out: &mut Vec<String>) {
    let parts: Vec<&str> = piece.split('-').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [] => {}
        [one] => out.push((*one).to_owned()),
        [first, number] if number.bytes().all(|b| b.is_ascii_digit()) => {
            out.push((*first).to_owned());
            out.push(format!("-{number}"));
        }
        _ => {
            out.push(parts.join("-"));
            out.extend(parts.iter().map(|part| (*part).to_owned()));
        }
    }
}

/// `González` -> `gonzalez`: canonical decomposition without combining marks. Queries
/// typed without accents match the folded forms; queries with accents match exactly, so
/// accents still narrow a search when the user types them.
pub fn fold_accents(word: &str) -> String {
    word.nfd().filter(|c| !is_combining_mark(*c)).nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_are_bounded_in_characters_and_words() {
        let many: String = (0..150_000).map(|i| format!("w{i} ")).collect();
        let term = SearchTerm::parse(&many);
        assert_eq!(term.words.len(), MAX_TERM_WORDS);
        assert_eq!(term.words[..3], ["w0", "w1", "w2"]);
        assert!(term.text.chars().count() <= MAX_TERM_CHARS);
        let repeated = SearchTerm::parse("anna anna ANNA smith");
        assert_eq!(repeated.words, ["anna", "smith"]);
        assert_eq!(SearchTerm::parse("  @bob:x  ").text, "@bob:x");
    }

    #[test]
    fn many_distinct_words_are_deduplicated_in_linear_time() {
        let many: String = (0..50_000).map(|i| format!("w{i} w{i} ")).collect();
        assert_eq!(words(&many).len(), 50_000);
        assert_eq!(lexemes(&many).len(), 100_000);
    }

    #[test]
    fn user_ids_split_on_at_and_colon_and_keep_punctuation() {
        assert_eq!(words("@user-a1:example.org"), vec!["user-a1", "example.org"]);
        assert_eq!(words("user.1:server"), vec!["user.1", "server"]);
        assert_eq!(words("@user_1:server"), vec!["user_1", "server"]);
        assert_eq!(words("Alice Cooper"), vec!["alice", "cooper"]);
        assert_eq!(words("  Bob,  the builder! "), vec!["bob", "the", "builder"]);
        assert_eq!(words("-71"), vec!["71"]);
        assert_eq!(words("trailing- dash"), vec!["trailing", "dash"]);
    }

    #[test]
    fn unicode_is_normalised_and_case_folded() {
        assert_eq!(words("иВАН"), words("Иван"));
        // Composed and decomposed é are one word.
        assert_eq!(words("Ren\u{e9}"), words("Rene\u{301}"));
        assert_eq!(words("ＡＢＣ"), vec!["abc"]);
        assert_eq!(fold_accents("gonzález"), "gonzalez");
        assert_eq!(fold_accents("zoë"), "zoe");
        assert_eq!(fold_accents("иван"), "иван");
    }

    #[test]
    fn cjk_names_segment_the_same_way_as_queries() {
        let name = words("陈晓明");
        assert!(!name.is_empty());
        assert_eq!(words("陈晓明"), name, "deterministic");
    }

    /// Each expected list is what PostgreSQL 15's `to_tsvector('simple', …)` gives, in
    /// position order.
    #[test]
    fn lexemes_follow_postgres_default_parser() {
        let cases: &[(&str, &[&str])] = &[
            ("alice.johnson", &["alice.johnson"]),
            ("mary.martin.14", &["mary.martin", "14"]),
            ("ab.cd.ef.gh.1", &["ab.cd.ef.gh", "1"]),
            ("abc.de.f.5", &["abc.de", "f.5"]),
            ("ab.cd-e.5", &["ab.cd", "e.5"]),
            ("ab.cd-ef.gh", &["ab.cd-ef.gh"]),
            ("x.yz.123abc", &["x.yz", "123abc"]),
            ("ab.cd.12.34", &["ab.cd", "12.34"]),
            ("a.b.5", &["a.b.5"]),
            ("user.1", &["user.1"]),
            ("a.b-c.d", &["a.b-c.d"]),
            ("helen.schmidt3", &["helen.schmidt3"]),
            ("mary_martin", &["mary", "martin"]),
            ("anna_smith.5", &["anna", "smith.5"]),
            ("user-a1", &["user-a1", "user", "a1"]),
            ("user-71", &["user", "-71"]),
            ("ab-cd-ef", &["ab-cd-ef", "ab", "cd", "ef"]),
            ("user80", &["user80"]),
            ("bench.local", &["bench.local"]),
            ("josé.pérez", &["josé", "pérez"]),
            ("иван.петров", &["иван", "петров"]),
            ("noah_williams", &["noah", "williams"]),
            ("john.", &["john"]),
            ("Anna Anna", &["anna", "anna"]),
            ("Φωτεινή Παπανικολάου", &["φωτεινή", "παπανικολάου"]),
        ];
        for (text, expected) in cases {
            assert_eq!(lexemes(text), *expected, "{text}");
        }
    }
}
