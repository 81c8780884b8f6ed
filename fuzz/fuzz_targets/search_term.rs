//! A user directory search term (from a client, or a peer's federated search) and a
//! display name (from any server's profile), split into words as the index does. A
//! slow input here is a hang: the fuzzer's timeout catches it.

#![no_main]

use kith::services::directory::tokenize::{MAX_TERM_WORDS, SearchTerm, words};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let term = SearchTerm::parse(text);
    assert!(term.words.len() <= MAX_TERM_WORDS);
    let _ = words(text);
});
