//! A `/sync` `since` token (also the `from` of `/messages`): parsed, and every token
//! that parses means the same once written back out.

#![no_main]

use kith::api::client::rooms::parse_token;
use kith::services::sync::SyncToken;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = SyncToken::parse(text);
    if let Ok(token) = &parsed {
        assert_eq!(SyncToken::parse(&token.format()).ok().as_ref(), Some(token));
    }
    if let Ok(position) = parse_token(text) {
        assert!(position >= 0);
        if text.starts_with('s') {
            assert_eq!(Some(position), parsed.ok().map(|token| token.events));
        }
    }
});
