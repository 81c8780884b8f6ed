//! Federation: outbound requests ([`client`]), the inbound pipeline for what other
//! servers send ([`inbound`]), what they may read of a room's DAG ([`history`]) and the
//! sender that gets our events and EDUs to them ([`sender`]).
//!
//! Server discovery ([`discovery`]) follows the spec: IP literals and explicit ports,
//! `/.well-known/matrix/server`, SRV records, port 8448. Outbound connections go only to
//! addresses checked against the blacklist (unless whitelisted) as they are made.

pub mod client;
pub mod discovery;
pub mod history;
pub mod inbound;
pub mod sender;

pub use client::{FederationClient, FederationError};

/// Percent-encodes a path segment or query value.
pub fn encode(text: &str) -> String {
    crate::config::percent_encode(text)
}
