//! Client endpoints whose ruma type refuses or rewrites what Synapse accepts and gives
//! back; each keeps ruma's path and answer and differs only where its comment says.

/// `POST /user/{userId}/filter`. ruma's `FilterDefinition` drops the fields it does not
/// know (unstable MSC fields clients send); Synapse stores and gives back the filter as
/// sent, so the body is kept as a JSON object (checked against ruma's type by the service).
pub mod create_filter {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};
    use ruma::{OwnedUserId, serde::JsonObject};

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/user/{user_id}/filter",
            1.1 => "/_matrix/client/v3/user/{user_id}/filter",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,

        #[ruma_api(body)]
        pub filter: JsonObject,
    }

    #[response]
    pub struct Response {
        pub filter_id: String,
    }
}

/// `GET /user/{userId}/filter/{filterId}`: the filter as it was stored (see
/// [`create_filter`]).
pub mod get_filter {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};
    use ruma::{OwnedUserId, serde::JsonObject};

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/user/{user_id}/filter/{filter_id}",
            1.1 => "/_matrix/client/v3/user/{user_id}/filter/{filter_id}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,

        #[ruma_api(path)]
        pub filter_id: String,
    }

    #[response]
    pub struct Response {
        #[ruma_api(body)]
        pub filter: JsonObject,
    }
}

/// `PUT /rooms/{roomId}/typing/{userId}`. ruma's type requires `timeout` with
/// `typing: true`; Synapse defaults it to 30 seconds, and clients leave it out.
pub mod create_typing_event {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};
    use ruma::{OwnedRoomId, OwnedUserId};

    metadata! {
        method: PUT,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/rooms/{room_id}/typing/{user_id}",
            1.1 => "/_matrix/client/v3/rooms/{room_id}/typing/{user_id}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,

        #[ruma_api(path)]
        pub user_id: OwnedUserId,

        pub typing: bool,

        /// Milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub timeout: Option<u64>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `POST /rooms/{roomId}/read_markers`. ruma's type parses the event IDs, so an ID that
/// is not one would be `M_BAD_JSON`; kith answers `M_INVALID_PARAM` for it and
/// `M_NOT_FOUND` for an ID of no event of the room, checked by the service.
pub mod set_read_marker {
    use ruma::OwnedRoomId;
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/rooms/{room_id}/read_markers",
            1.1 => "/_matrix/client/v3/rooms/{room_id}/read_markers",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,

        #[serde(rename = "m.fully_read", default, skip_serializing_if = "Option::is_none")]
        pub fully_read: Option<String>,

        #[serde(rename = "m.read", default, skip_serializing_if = "Option::is_none")]
        pub read_receipt: Option<String>,

        #[serde(rename = "m.read.private", default, skip_serializing_if = "Option::is_none")]
        pub private_read_receipt: Option<String>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `PUT /directory/room/{roomAlias}`. ruma's type parses the room ID of the body, so one
/// that is not would be `M_BAD_JSON`; Synapse answers `M_INVALID_PARAM`.
pub mod create_alias {
    use ruma::OwnedRoomAliasId;
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};

    metadata! {
        method: PUT,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/directory/room/{room_alias}",
            1.1 => "/_matrix/client/v3/directory/room/{room_alias}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_alias: OwnedRoomAliasId,

        pub room_id: String,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `PUT /directory/list/room/{roomId}`. ruma's type requires `visibility`; Synapse
/// takes a body without it (or no body) as `public`.
pub mod set_room_visibility {
    use ruma::OwnedRoomId;
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::client::room::Visibility;
    use ruma::api::{metadata, request, response};

    metadata! {
        method: PUT,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/directory/list/room/{room_id}",
            1.1 => "/_matrix/client/v3/directory/list/room/{room_id}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub visibility: Option<Visibility>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `PUT /profile/{userId}/{keyName}`. ruma's `ProfileFieldValue` refuses
/// `{"displayname": null}`, which older clients send to clear their name and Synapse
/// accepts; the body is kept as an object holding the one field the path names.
pub mod set_profile_field {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};
    use ruma::{OwnedUserId, serde::JsonObject};

    metadata! {
        method: PUT,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/profile/{user_id}/{field}",
            1.1 => "/_matrix/client/v3/profile/{user_id}/{field}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,

        #[ruma_api(path)]
        pub field: String,

        #[ruma_api(body)]
        pub body: JsonObject,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `GET /rooms/{roomId}/messages`. ruma's type requires `dir` and refuses a negative
/// `limit`; kith reads a request without `dir` as backwards and a negative limit as an
/// empty page, as it always has. The filter stays text, read by the rooms' event filter
/// with its own errors. The answer is ruma's.
pub mod get_message_events {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{Direction, metadata, request, response};
    use ruma::events::{AnyStateEvent, AnyTimelineEvent};
    use ruma::{OwnedRoomId, serde::Raw};

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/rooms/{room_id}/messages",
            1.1 => "/_matrix/client/v3/rooms/{room_id}/messages",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,

        #[ruma_api(query)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub from: Option<String>,

        #[ruma_api(query)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub to: Option<String>,

        #[ruma_api(query)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub dir: Option<Direction>,

        #[ruma_api(query)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub limit: Option<i64>,

        #[ruma_api(query)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub filter: Option<String>,
    }

    /// ruma's answer, field for field (its type is only an answer on the client side).
    #[response]
    #[derive(Default)]
    pub struct Response {
        pub start: String,

        #[serde(skip_serializing_if = "Option::is_none")]
        pub end: Option<String>,

        #[serde(default)]
        pub chunk: Vec<Raw<AnyTimelineEvent>>,

        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub state: Vec<Raw<AnyStateEvent>>,
    }
}

/// `PUT /pushrules/global/{kind}/{ruleId}`. ruma's type requires `conditions` on
/// override and underride rules and reads the body before the rule ID; kith takes a rule
/// without conditions (it matches every event) and refuses a reserved or unknown rule
/// ID or kind first, with `M_INVALID_PARAM`. The body is the service's rule update.
pub mod set_pushrule {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};
    use ruma::push::{Action, PushCondition};

    metadata! {
        method: PUT,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/pushrules/global/{kind}/{rule_id}",
            1.1 => "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub kind: String,

        #[ruma_api(path)]
        pub rule_id: String,

        #[ruma_api(query)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub before: Option<String>,

        #[ruma_api(query)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub after: Option<String>,

        pub actions: Vec<Action>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub conditions: Option<Vec<PushCondition>>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pattern: Option<String>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `POST /pushers/set`. ruma's type reads the pusher into its own shape (dropping
/// what it does not know of `data`, with its own errors); the service checks the fields
/// as Synapse does (lengths, `M_MISSING_PARAM` for what is required) and keeps the
/// pusher as it was sent, so the body stays a JSON object.
pub mod set_pusher {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};
    use ruma::serde::JsonObject;

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/pushers/set",
            1.1 => "/_matrix/client/v3/pushers/set",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(body)]
        pub pusher: JsonObject,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `POST /rooms/{roomId}/invite`. ruma's type reads the invitee as one of two shapes
/// (a user, or a third-party identifier), so a missing or malformed `user_id` would be
/// `M_BAD_JSON`; kith answers `M_MISSING_PARAM` and `M_INVALID_PARAM` for them, as
/// Synapse does, and has no third-party invites.
pub mod invite_user {
    use ruma::OwnedRoomId;
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/rooms/{room_id}/invite",
            1.1 => "/_matrix/client/v3/rooms/{room_id}/invite",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub user_id: Option<String>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `POST /user_directory/search`. ruma's type refuses a negative `limit`; Synapse takes
/// it (as 0). The answer is ruma's, field for field (its type is only an answer on the
/// client side).
pub mod search_users {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::client::user_directory::search_users::v3::User;
    use ruma::api::{metadata, request, response};

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/user_directory/search",
            1.1 => "/_matrix/client/v3/user_directory/search",
        }
    }

    #[request]
    pub struct Request {
        pub search_term: String,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub limit: Option<i64>,
    }

    #[response]
    pub struct Response {
        pub results: Vec<User>,

        pub limited: bool,
    }
}

/// `POST /rooms/{roomId}/report/{eventId}`. An event's report may carry a `score` (-100
/// to 0), which the spec dropped and ruma's type leaves out but Synapse still takes and
/// keeps; the event ID is looked up as sent (one that is no event is `M_NOT_FOUND`).
pub mod report_content {
    use ruma::OwnedRoomId;
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/rooms/{room_id}/report/{event_id}",
            1.1 => "/_matrix/client/v3/rooms/{room_id}/report/{event_id}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomId,

        #[ruma_api(path)]
        pub event_id: String,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub score: Option<i64>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `POST /users/{userId}/report`. ruma's type requires a `reason`; Synapse takes a
/// report without one.
pub mod report_user {
    use ruma::OwnedUserId;
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.14 => "/_matrix/client/v3/users/{user_id}/report",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub user_id: OwnedUserId,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `POST /keys/upload`. Older clients send their fallback keys as
/// `org.matrix.msc2732.fallback_keys`, which Synapse still takes and ruma's type does
/// not. The answer is ruma's, field for field (its type is only an answer on the client
/// side).
pub mod upload_keys {
    use std::collections::BTreeMap;

    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};
    use ruma::encryption::{DeviceKeys, OneTimeKey};
    use ruma::serde::Raw;
    use ruma::{OneTimeKeyAlgorithm, OwnedOneTimeKeyId, UInt};

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/keys/upload",
            1.1 => "/_matrix/client/v3/keys/upload",
        }
    }

    #[request]
    pub struct Request {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub device_keys: Option<Raw<DeviceKeys>>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub one_time_keys: Option<BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub fallback_keys: Option<BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>>,

        #[serde(default, rename = "org.matrix.msc2732.fallback_keys", skip_serializing_if = "Option::is_none")]
        pub unstable_fallback_keys: Option<BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>>,
    }

    #[response]
    pub struct Response {
        pub one_time_key_counts: BTreeMap<OneTimeKeyAlgorithm, UInt>,
    }
}

/// `PUT /room_keys/keys?version=…`. A room ID that does not parse is `M_INVALID_PARAM`,
/// as in a path, where ruma's type refuses the whole body as `M_BAD_JSON`; a missing
/// `version` is `M_MISSING_PARAM` once the body was read, as before. The answer is
/// ruma's, field for field (its type is only an answer on the client side).
pub mod add_backup_keys {
    use std::collections::BTreeMap;

    use ruma::UInt;
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::client::backup::RoomKeyBackup;
    use ruma::api::{metadata, request, response};

    metadata! {
        method: PUT,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            unstable => "/_matrix/client/unstable/room_keys/keys",
            1.1 => "/_matrix/client/v3/room_keys/keys",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(query)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub version: Option<String>,

        pub rooms: BTreeMap<String, RoomKeyBackup>,
    }

    #[response]
    pub struct Response {
        pub etag: String,

        pub count: UInt,
    }
}

/// `POST /join/{roomIdOrAlias}?via=…&server_name=…`. ruma's type refuses a server name
/// that does not parse and reads `server_name` only without `via`; kith tries the
/// servers of both in the order given and skips a name that does not parse (clients
/// send an empty `server_name`). The answer is ruma's, field for field.
pub mod join_room_by_id_or_alias {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};
    use ruma::{OwnedRoomId, OwnedRoomOrAliasId};

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/join/{room_id_or_alias}",
            1.1 => "/_matrix/client/v3/join/{room_id_or_alias}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id_or_alias: OwnedRoomOrAliasId,

        /// The whole query, in order (the service reads `via` and `server_name`).
        #[ruma_api(query_all)]
        pub query: Vec<(String, String)>,

        /// Checked for its shape; kith keeps no reason for joins.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
    }

    #[response]
    pub struct Response {
        pub room_id: OwnedRoomId,
    }
}

/// `POST /rooms/{roomId}/join`. ruma's type takes only a room ID in the path; kith also
/// takes an alias there (resolved as `/join/{roomIdOrAlias}` resolves it), as it always
/// has. The answer is ruma's, field for field.
pub mod join_room_by_id {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};
    use ruma::{OwnedRoomId, OwnedRoomOrAliasId};

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/rooms/{room_id}/join",
            1.1 => "/_matrix/client/v3/rooms/{room_id}/join",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub room_id: OwnedRoomOrAliasId,

        /// Checked for its shape; kith keeps no reason for joins.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
    }

    #[response]
    pub struct Response {
        pub room_id: OwnedRoomId,
    }
}

/// User-interactive auth with the account's password, as clients send it.
pub mod uiaa {
    use ruma::api::client::uiaa::UserIdentifier;
    use serde::{Deserialize, Serialize};

    /// ruma's `uiaa::Password` requires `identifier` and `password`, but clients still
    /// send the legacy `user`, which Synapse accepts, and a stage without a password is
    /// a failed stage (401 with the flow), not a bad request.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct PasswordAuth {
        #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
        pub kind: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub session: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub identifier: Option<UserIdentifier>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub user: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub password: Option<String>,
    }
}

/// `DELETE /devices/{deviceId}`. ruma's type reads `auth` as its `AuthData`, which
/// refuses the password auth clients send ([`uiaa::PasswordAuth`]). The answer is
/// ruma's (empty).
pub mod delete_device {
    use ruma::OwnedDeviceId;
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};

    use super::uiaa::PasswordAuth;

    metadata! {
        method: DELETE,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/devices/{device_id}",
            1.1 => "/_matrix/client/v3/devices/{device_id}",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(path)]
        pub device_id: OwnedDeviceId,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub auth: Option<PasswordAuth>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `POST /delete_devices`: the password auth of [`delete_device`]; a missing `devices`
/// is `M_MISSING_PARAM` once the body is read, as Synapse answers it.
pub mod delete_devices {
    use ruma::OwnedDeviceId;
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};

    use super::uiaa::PasswordAuth;

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/delete_devices",
            1.1 => "/_matrix/client/v3/delete_devices",
        }
    }

    #[request]
    pub struct Request {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub auth: Option<PasswordAuth>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub devices: Option<Vec<OwnedDeviceId>>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `POST /account/deactivate`: the password auth of [`delete_device`]. The answer is
/// ruma's, field for field.
pub mod deactivate {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::client::account::ThirdPartyIdRemovalStatus;
    use ruma::api::{metadata, request, response};

    use super::uiaa::PasswordAuth;

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/account/deactivate",
            1.1 => "/_matrix/client/v3/account/deactivate",
        }
    }

    #[request]
    pub struct Request {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub auth: Option<PasswordAuth>,

        #[serde(default, skip_serializing_if = "ruma::serde::is_default")]
        pub erase: bool,
    }

    #[response]
    pub struct Response {
        pub id_server_unbind_result: ThirdPartyIdRemovalStatus,
    }
}

/// `POST /account/password`: the password auth of [`delete_device`]; a missing
/// `new_password` is `M_MISSING_PARAM` once the body is read, as Synapse answers it.
pub mod change_password {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};

    use super::uiaa::PasswordAuth;

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/account/password",
            1.1 => "/_matrix/client/v3/account/password",
        }
    }

    #[request]
    pub struct Request {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub auth: Option<PasswordAuth>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub new_password: Option<String>,

        #[serde(default = "ruma::serde::default_true", skip_serializing_if = "ruma::serde::is_true")]
        pub logout_devices: bool,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `POST /keys/device_signing/upload`. ruma's type reads `auth` as its `AuthData`, which
/// refuses the password auth clients send ([`uiaa::PasswordAuth`]); `auth` is read only
/// when replacing a master key needs it. The answer is ruma's (empty).
pub mod upload_signing_keys {
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};
    use ruma::encryption::CrossSigningKey;
    use ruma::serde::Raw;

    use super::uiaa::PasswordAuth;

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            unstable => "/_matrix/client/unstable/keys/device_signing/upload",
            1.1 => "/_matrix/client/v3/keys/device_signing/upload",
        }
    }

    #[request]
    pub struct Request {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub auth: Option<Raw<PasswordAuth>>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub master_key: Option<Raw<CrossSigningKey>>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub self_signing_key: Option<Raw<CrossSigningKey>>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub user_signing_key: Option<Raw<CrossSigningKey>>,
    }

    #[response]
    #[derive(Default)]
    pub struct Response {}
}

/// `POST /login`. ruma's `LoginInfo` deserializer panics on a body without `type` (it
/// indexes the map), and a login must answer hostile bodies with `M_MISSING_PARAM` /
/// `M_BAD_JSON`; only password logins are read. The answer is ruma's.
pub mod login {
    use ruma::api::client::uiaa::UserIdentifier;
    use ruma::api::{auth_scheme::NoAuthentication, metadata, request, response};
    use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId};

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: NoAuthentication,
        history: {
            1.0 => "/_matrix/client/r0/login",
            1.1 => "/_matrix/client/v3/login",
        }
    }

    #[request]
    pub struct Request {
        #[serde(rename = "type")]
        pub kind: String,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub identifier: Option<UserIdentifier>,

        /// Deprecated top-level user name, still sent by older clients.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub user: Option<String>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub password: Option<String>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub device_id: Option<OwnedDeviceId>,

        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub initial_device_display_name: Option<String>,
    }

    #[response]
    pub struct Response {
        pub user_id: OwnedUserId,
        pub access_token: String,
        pub device_id: OwnedDeviceId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub home_server: Option<OwnedServerName>,
    }
}

/// `POST /createRoom`. ruma's type parses `preset`, `visibility`, `invite` and each
/// `initial_state` event into its own types, so an odd value would be `M_BAD_JSON`;
/// the rooms service checks them itself, with the answers kith has always given (an
/// unknown preset is `M_INVALID_PARAM`). The answer is ruma's.
pub mod create_room {
    use ruma::OwnedRoomId;
    use ruma::api::auth_scheme::AccessToken;
    use ruma::api::{metadata, request, response};
    use serde::{Deserialize, Serialize};
    use serde_json::{Map, Value};

    metadata! {
        method: POST,
        rate_limited: false,
        authentication: AccessToken,
        history: {
            1.0 => "/_matrix/client/r0/createRoom",
            1.1 => "/_matrix/client/v3/createRoom",
        }
    }

    #[request]
    pub struct Request {
        #[ruma_api(body)]
        pub room: CreateRoomRequest,
    }

    #[response]
    pub struct Response {
        pub room_id: OwnedRoomId,
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct CreateRoomRequest {
        #[serde(default)]
        pub preset: Option<String>,
        #[serde(default)]
        pub visibility: Option<String>,
        #[serde(default)]
        pub name: Option<String>,
        #[serde(default)]
        pub topic: Option<String>,
        #[serde(default)]
        pub invite: Vec<String>,
        #[serde(default)]
        pub initial_state: Vec<InitialState>,
        #[serde(default)]
        pub power_level_content_override: Option<Map<String, Value>>,
        #[serde(default)]
        pub room_version: Option<String>,
        #[serde(default)]
        pub is_direct: bool,
        #[serde(default)]
        pub room_alias_name: Option<String>,
        #[serde(default)]
        pub creation_content: Option<Map<String, Value>>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct InitialState {
        #[serde(rename = "type")]
        pub event_type: String,
        #[serde(default)]
        pub state_key: String,
        pub content: Value,
    }
}
