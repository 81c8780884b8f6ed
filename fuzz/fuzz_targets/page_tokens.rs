//! Page tokens and paging parameters other servers and clients hand back: a peer's
//! federated-directory `since` (and what is written back out for it), the admin room
//! list's `order_by`, and pagination and report ids as the admin and client APIs read
//! them.

#![no_main]

use kith::services::admin::RoomOrder;
use kith::services::federated_directory::serve::PeerToken;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(token) = PeerToken::parse(text) {
        assert_eq!(PeerToken::parse(&token.format()), Some(token));
    }
    let _ = RoomOrder::parse(text);
});
