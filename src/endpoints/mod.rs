//! Endpoints ruma has no type for (unstable MSCs, other servers' extensions) or whose
//! ruma type refuses what Synapse accepts, defined with ruma's macros so that they are
//! sent through the federation client's `send` and parsed and answered as ruma's own
//! are: the path lives with the type, not in the service that calls it.

pub mod client;
pub mod federated_directory;
pub mod federation;
pub mod profile_edu;
pub mod push_gateway;
