//! Kith: a Matrix homeserver built for finding people across a federation.

pub mod api;
pub mod config;
pub mod directory_cli;
pub mod endpoints;
pub mod error;
pub mod generate;
pub mod server;
pub mod services;
pub mod store;
pub mod validation;
