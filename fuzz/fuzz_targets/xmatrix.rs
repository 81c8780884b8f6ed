//! An inbound federation request's `Authorization: X-Matrix …` headers, parsed and
//! checked for this server, then the signature verified over the method, URI and body
//! against the fixed key (every origin has it here). The input is the method on the
//! first line, the URI on the second, one `Authorization` value per line up to an
//! empty line, then the body.

#![no_main]

use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use kith::services::inbound::authenticate::{parse_authorization, verify_signature};
use kith_fuzz::{LOCAL, first_line, public_key_set};
use libfuzzer_sys::fuzz_target;
use ruma::ServerName;
use ruma::signatures::PublicKeyMap;

fuzz_target!(|data: &[u8]| {
    let (method, rest) = first_line(data);
    let (uri, mut rest) = first_line(rest);
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method), Uri::try_from(uri)) else { return };
    let mut headers = HeaderMap::new();
    loop {
        let (line, after) = first_line(rest);
        rest = after;
        if line.is_empty() {
            break;
        }
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(header::AUTHORIZATION, value);
        }
    }
    let Ok(local) = <&ServerName>::try_from(LOCAL) else { return };
    let Ok(xmatrix) = parse_authorization(&headers, local) else { return };
    let mut keys = PublicKeyMap::new();
    keys.insert(xmatrix.origin.to_string(), public_key_set());
    let _ = verify_signature(&xmatrix, &keys, local, &method, &uri, rest);
});
