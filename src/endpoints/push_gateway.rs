//! The push gateway API, as far as kith speaks it: the notify endpoint's path, which a
//! pusher's URL must have (its body is `services::push::gateway`'s own type).

/// `POST /_matrix/push/v1/notify`, the only push gateway endpoint.
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";
