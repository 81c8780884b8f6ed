//! What the fuzz targets share: the fixed servers and signing key their seeds are signed
//! with, and small helpers to cut one input into the parts a request has.

use std::sync::LazyLock;

use ruma::signatures::{Ed25519KeyPair, PublicKeyMap, PublicKeySet};

/// The server the inputs are addressed to.
pub const LOCAL: &str = "kith.test";
/// The server the inputs come from; its key is [`key_pair`].
pub const ORIGIN: &str = "origin.test";
/// A notary passing on [`ORIGIN`]'s keys, signing with the same key.
pub const NOTARY: &str = "notary.test";
/// The version of [`key_pair`], as in `ed25519:fuzz`.
pub const KEY_VERSION: &str = "fuzz";

/// A PKCS#8 v1 document for an Ed25519 key (RFC 8410) is this prefix and the 32-byte seed.
const PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// A fixed key, so that seeds signed once stay valid.
pub fn key_pair() -> &'static Ed25519KeyPair {
    static PAIR: LazyLock<Ed25519KeyPair> = LazyLock::new(|| {
        let mut document = PKCS8_PREFIX.to_vec();
        document.extend_from_slice(&[7u8; 32]);
        Ed25519KeyPair::from_der(&document, KEY_VERSION.into()).expect("a valid fixed key")
    });
    &PAIR
}

/// [`key_pair`]'s public key under its key id.
pub fn public_key_set() -> PublicKeySet {
    let mut set = PublicKeySet::new();
    set.insert(format!("ed25519:{KEY_VERSION}"), ruma::serde::Base64::new(key_pair().public_key().to_vec()));
    set
}

/// [`public_key_set`] as the keys of each of `servers`.
pub fn public_keys(servers: &[&str]) -> PublicKeyMap {
    servers.iter().map(|server| ((*server).to_owned(), public_key_set())).collect()
}

/// Splits off the first line (without its `\n`); the rest follows it.
pub fn first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (data, &[]),
    }
}
