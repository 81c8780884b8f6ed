//! Federation's bottom layer: outbound requests ([`client`]) and server discovery. It
//! depends on nothing above it (this server's key, server health); what other servers
//! send is `services::inbound`, what we send them `services::sender`.
//!
//! Server discovery ([`discovery`]) follows the spec: IP literals and explicit ports,
//! `/.well-known/matrix/server`, SRV records, port 8448. Outbound connections go only to
//! addresses checked against the blacklist (unless whitelisted) as they are made.

pub mod client;
pub mod discovery;
pub mod edus;

pub use client::{FederationClient, FederationError};

/// Percent-encodes a path segment or query value.
pub fn encode(text: &str) -> String {
    crate::config::percent_encode(text)
}
