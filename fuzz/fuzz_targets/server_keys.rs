//! Another server's `/_matrix/key/v2/server` answer, as fetched from it (self-signed by
//! `origin.test`) and as a notary passes it on (also signed by `notary.test`), checked
//! before its keys verify anything.

#![no_main]

use kith::services::remote_keys::{verify_key_response, verify_notary_response};
use kith_fuzz::{NOTARY, ORIGIN, public_key_set};
use libfuzzer_sys::fuzz_target;
use ruma::ServerName;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    let (Ok(origin), Ok(notary)) = (<&ServerName>::try_from(ORIGIN), <&ServerName>::try_from(NOTARY)) else { return };
    if let Ok((keys, _)) = verify_key_response(origin, &body) {
        assert!(!keys.is_empty());
    }
    let _ = verify_notary_response(origin, notary, &public_key_set(), &body);
});
