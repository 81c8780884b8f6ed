//! The check every request's path segments and query parts pass before a handler runs:
//! it must accept exactly what decodes (as the router decodes it) to UTF-8 text without
//! U+0000.

#![no_main]

use kith::validation::decodes_to_text;
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let plus_is_space = text.len() % 2 == 0;
    let spaced = if plus_is_space { text.replace('+', " ") } else { text.to_owned() };
    // Malformed escapes are refused; well-formed ones must decode to text.
    let malformed = text
        .split('%')
        .skip(1)
        .any(|after| after.len() < 2 || !after.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit));
    let decoded = percent_decode(spaced.as_bytes()).decode_utf8();
    let expected = !malformed && decoded.is_ok_and(|text| !text.contains('\0'));
    assert_eq!(decodes_to_text(text, plus_is_space), expected, "{text:?}");
});
