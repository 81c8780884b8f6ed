//! Turning names and queries into words, as Synapse's user directory does: NFKC and
//! lower case, ICU word segmentation, split on `@` and `:`, and `-`, `.`, `_` kept
//! inside words (`user-1` is one word). Kith also indexes the parts of such a word and
//! an accent-folded form of every word (see `fold_accents`).

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

/// The words of `text`, normalised, in order, without duplicates.
pub fn words(text: &str) -> Vec<String> {
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
    let mut out: Vec<String> = Vec::new();
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

fn flush(out: &mut Vec<String>, current: &mut String) {
    if !current.is_empty() {
        let word = std::mem::take(current);
        if !out.contains(&word) {
            out.push(word);
        }
    }
}

/// The words to index for `text`: its words, the parts of glued words
/// (`user-a1` also gives `user` and `a1`), without duplicates.
pub fn index_terms(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    for word in words(text) {
        if word.contains(['-', '.', '_']) {
            for part in word.split(['-', '.', '_']).filter(|p| !p.is_empty()) {
                if !terms.iter().any(|t| t == part) {
                    terms.push(part.to_owned());
                }
            }
        }
        if !terms.contains(&word) {
            terms.push(word);
        }
    }
    terms
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

    #[test]
    fn glued_words_index_their_parts() {
        assert_eq!(index_terms("user-a1"), vec!["user", "a1", "user-a1"]);
    }
}
