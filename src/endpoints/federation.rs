//! Server-server endpoints whose ruma type refuses what Synapse accepts; each keeps
//! ruma's path and answer and differs only where its comment says.

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`. ruma's type takes
/// `min_depth` as unsigned and refuses a `limit` or `min_depth` that is not an unsigned
/// integer, and requires both lists; Synapse reads missing lists as empty and does not
/// refuse odd bounds (an unreadable bound is its default here).
pub mod get_missing_events {
    use ruma::api::federation::authentication::ServerSignatures;
    use ruma::api::{metadata, request};
    use ruma::{OwnedEventId, OwnedRoomId};
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    pub use ruma::api::federation::event::get_missing_events::v1::Response;

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: ServerSignatures,
        path: "/_matrix/federation/v1/get_missing_events/{room_id}",
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,

        /// At most this many events; 10 when absent or not an unsigned integer.
        #[serde(default = "default_limit", deserialize_with = "limit_or_default")]
        pub limit: u64,

        /// No events shallower than this; 0 when absent or not an integer.
        #[serde(default, deserialize_with = "depth_or_default")]
        pub min_depth: i64,

        #[serde(default)]
        pub earliest_events: Vec<OwnedEventId>,

        #[serde(default)]
        pub latest_events: Vec<OwnedEventId>,
    }

    fn default_limit() -> u64 {
        10
    }

    fn limit_or_default<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        Ok(Value::deserialize(deserializer)?.as_u64().unwrap_or_else(default_limit))
    }

    fn depth_or_default<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        Ok(Value::deserialize(deserializer)?.as_i64().unwrap_or_default())
    }
}

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`. ruma's type requires
/// `room_version`, `event` and `invite_room_state`; Synapse reads a missing or malformed
/// `invite_room_state` as none, and kith a missing `room_version` as version 1 (what
/// `/v1/invite` implied) and a missing `event` as a PDU that does not check out.
pub mod create_invite {
    use ruma::api::federation::authentication::ServerSignatures;
    use ruma::api::{metadata, request};
    use ruma::{OwnedEventId, OwnedRoomId};
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;
    use serde_json::value::RawValue;

    pub use ruma::api::federation::membership::create_invite::v2::Response;

    metadata! {
        method: PUT,
        rate_limited: false,
        authentication: ServerSignatures,
        path: "/_matrix/federation/v2/invite/{room_id}/{event_id}",
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,

        #[ruma_api(path)]
        pub event_id: OwnedEventId,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub room_version: Option<String>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub event: Option<Box<RawValue>>,

        /// Stripped state events, as sent (the service keeps those it can show).
        #[serde(default, deserialize_with = "list_or_empty")]
        pub invite_room_state: Vec<Value>,
    }

    fn list_or_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Value>, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Array(list) => Ok(list),
            _ => Ok(Vec::new()),
        }
    }
}

/// `PUT /_matrix/federation/v1/send/{txnId}`. ruma's type requires `origin`,
/// `origin_server_ts` and `pdus`; Synapse reads missing `pdus` and `edus` as none and
/// does not need the rest (the signature names the origin). kith refuses a string
/// `origin` that is not the signer's, and reads the PDUs and EDUs as sent (each is
/// checked on its own; one malformed entry does not refuse the others).
pub mod send_transaction_message {
    use ruma::OwnedTransactionId;
    use ruma::api::federation::authentication::ServerSignatures;
    use ruma::api::{metadata, request};
    use serde::{Deserialize, Deserializer, Serialize};
    use serde_json::Value;

    pub use ruma::api::federation::transactions::send_transaction_message::v1::Response;

    metadata! {
        method: PUT,
        rate_limited: false,
        authentication: ServerSignatures,
        path: "/_matrix/federation/v1/send/{transaction_id}",
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub transaction_id: OwnedTransactionId,

        #[ruma_api(body)]
        pub transaction: Transaction,
    }

    /// The body of a transaction.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Transaction {
        /// The sending server, when given as a string (anything else is not read).
        #[serde(default, deserialize_with = "string_or_none", skip_serializing_if = "Option::is_none")]
        pub origin: Option<String>,

        #[serde(default)]
        pub pdus: Vec<Value>,

        #[serde(default)]
        pub edus: Vec<Value>,
    }

    fn string_or_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(origin) => Ok(Some(origin)),
            _ => Ok(None),
        }
    }
}

/// `POST /_matrix/key/v2/query`. ruma's type takes only well-formed key ids
/// (`algorithm:version`) and server names; Synapse answers a query about any key id,
/// and kith checks server names one by one so a bad one is `M_INVALID_PARAM`.
pub mod get_remote_server_keys_batch {
    use std::collections::BTreeMap;

    use ruma::api::auth_scheme::NoAuthentication;
    use ruma::api::{metadata, request};
    use serde::{Deserialize, Serialize};

    pub use ruma::api::federation::discovery::get_remote_server_keys_batch::v2::Response;

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: NoAuthentication,
        path: "/_matrix/key/v2/query",
    }

    #[request]
    pub struct Request {
        #[ruma_api(body)]
        pub body: BatchQuery,
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct BatchQuery {
        /// Server name → key id → criteria.
        pub server_keys: BTreeMap<String, BTreeMap<String, KeyCriteria>>,
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct KeyCriteria {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub minimum_valid_until_ts: Option<u64>,
    }
}

/// `GET /_matrix/key/v2/query/{serverName}`. ruma's type refuses a server name that
/// does not parse and reads a `minimum_valid_until_ts` that does not parse as
/// `M_BAD_JSON`; kith answers `M_INVALID_PARAM` for both, as Synapse does.
pub mod get_remote_server_keys {
    use ruma::api::auth_scheme::NoAuthentication;
    use ruma::api::{metadata, request};

    pub use ruma::api::federation::discovery::get_remote_server_keys::v2::Response;

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: NoAuthentication,
        path: "/_matrix/key/v2/query/{server_name}",
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub server_name: String,

        #[ruma_api(query)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub minimum_valid_until_ts: Option<String>,
    }
}

/// `GET /_matrix/key/v2/query/{serverName}/{keyId}`: the deprecated form of
/// [`get_remote_server_keys`] for one key, which ruma has no type for.
pub mod get_remote_server_key {
    use ruma::api::auth_scheme::NoAuthentication;
    use ruma::api::{metadata, request};

    pub use ruma::api::federation::discovery::get_remote_server_keys::v2::Response;

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: NoAuthentication,
        path: "/_matrix/key/v2/query/{server_name}/{key_id}",
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub server_name: String,

        #[ruma_api(path)]
        pub key_id: String,

        #[ruma_api(query)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub minimum_valid_until_ts: Option<String>,
    }
}
