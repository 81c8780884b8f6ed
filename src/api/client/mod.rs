//! The client-server API (`/_matrix/client/…`).

pub mod account;
pub mod appservice;
pub mod devices;
pub mod directory;
pub mod discovery;
pub mod key_backup;
pub mod keys;
pub mod membership;
pub mod openid;
pub mod presence;
pub mod profile;
pub mod push;
pub mod register;
pub mod relations;
pub mod reports;
pub mod rooms;
pub mod session;
pub mod sliding_sync;
pub mod spaces;
pub mod sync;
pub mod tags;
pub mod thirdparty;
pub mod user_directory;

use axum::Router;
use axum::routing::{get, post, put};

use super::extract::AppState;

/// Routes under `/_matrix/client/v3` (and the legacy `r0`).
pub fn versioned_routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(session::login_flows).post(session::login))
        .route("/logout", post(session::logout))
        .route("/logout/all", post(session::logout_all))
        .route("/account/whoami", get(session::whoami))
        .route("/account/deactivate", post(account::deactivate))
        .route("/account/password", post(account::change_password))
        .route("/account/3pid", get(account::threepids))
        .route("/devices", get(devices::list))
        .route("/devices/{device_id}", get(devices::get).put(devices::rename).delete(devices::delete))
        .route("/delete_devices", post(devices::delete_many))
        .route("/register", post(register::register))
        .route("/register/available", get(register::available))
        .route("/capabilities", get(discovery::capabilities))
        .route("/thirdparty/protocols", get(thirdparty::protocols))
        .route("/thirdparty/protocol/{protocol}", get(thirdparty::protocol))
        .route("/thirdparty/user/{protocol}", get(thirdparty::users))
        .route("/thirdparty/location/{protocol}", get(thirdparty::locations))
        .route("/voip/turnServer", get(discovery::turn_server))
        .route("/presence/{user_id}/status", get(presence::get).put(presence::set))
        .route("/user/{user_id}/openid/request_token", post(openid::request_token))
        .route("/rooms/{room_id}/report/{event_id}", post(reports::report_event))
        .route("/rooms/{room_id}/report", post(reports::report_room))
        .route("/users/{user_id}/report", post(reports::report_user))
        .merge(room_routes())
        .merge(push_routes())
        .merge(key_backup_routes())
        .route("/profile/{user_id}", get(profile::get_profile))
        .route(
            "/profile/{user_id}/{key}",
            get(profile::get_field).put(profile::set_field).delete(profile::delete_field),
        )
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/versions", get(discovery::versions))
        .route("/.well-known/matrix/client", get(discovery::client_well_known))
        .route("/.well-known/matrix/server", get(discovery::server_well_known))
        .nest("/_matrix/client/v3", versioned_routes())
        .nest("/_matrix/client/r0", versioned_routes())
        .merge(v1_routes())
        .route("/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", axum::routing::post(sliding_sync::sync))
}

/// Endpoints the spec added under `/_matrix/client/v1`.
fn v1_routes() -> Router<AppState> {
    const V1: &str = "/_matrix/client/v1";
    Router::new()
        .route(&format!("{V1}/register/m.login.registration_token/validity"), get(register::token_validity))
        .route(&format!("{V1}/rooms/{{room_id}}/hierarchy"), get(spaces::hierarchy))
        .route(&format!("{V1}/rooms/{{room_id}}/relations/{{event_id}}"), get(relations::relations))
        .route(
            &format!("{V1}/rooms/{{room_id}}/relations/{{event_id}}/{{rel_type}}"),
            get(relations::relations_of_type),
        )
        .route(
            &format!("{V1}/rooms/{{room_id}}/relations/{{event_id}}/{{rel_type}}/{{event_type}}"),
            get(relations::relations_of_type_and_event_type),
        )
        .route(&format!("{V1}/rooms/{{room_id}}/threads"), get(relations::threads))
        .route(&format!("{V1}/appservice/{{appservice_id}}/ping"), axum::routing::post(appservice::ping))
}

fn key_backup_routes() -> Router<AppState> {
    Router::new()
        .route("/room_keys/version", get(key_backup::current_version).post(key_backup::create_version))
        .route(
            "/room_keys/version/{version}",
            get(key_backup::get_version).put(key_backup::update_version).delete(key_backup::delete_version),
        )
        .route(
            "/room_keys/keys",
            get(key_backup::get_all_keys).put(key_backup::put_all_keys).delete(key_backup::delete_all_keys),
        )
        .route(
            "/room_keys/keys/{room_id}",
            get(key_backup::get_room_keys).put(key_backup::put_room_keys).delete(key_backup::delete_room_keys),
        )
        .route(
            "/room_keys/keys/{room_id}/{session_id}",
            get(key_backup::get_session_key).put(key_backup::put_session_key).delete(key_backup::delete_session_key),
        )
}

fn push_routes() -> Router<AppState> {
    const RULE: &str = "/pushrules/global/{kind}/{rule_id}";
    // The same paths under any other scope, which does not exist.
    const OTHER: &str = "/pushrules/{scope}/{kind}/{rule_id}";
    let other = || get(push::other_scope).put(push::other_scope);
    Router::new()
        .route("/pushrules/", get(push::all_rules))
        .route("/pushrules", get(push::all_rules))
        .route("/pushrules/global/", get(push::scope_rules))
        .route("/pushrules/global", get(push::scope_rules))
        .route("/pushrules/{scope}/", get(push::other_scope))
        .route("/pushrules/{scope}", get(push::other_scope))
        .route(RULE, get(push::get_rule).put(push::put_rule).delete(push::delete_rule))
        .route(OTHER, other().delete(push::other_scope))
        .route(&format!("{RULE}/enabled"), get(push::get_enabled).put(push::set_enabled))
        .route(&format!("{OTHER}/enabled"), other())
        .route(&format!("{RULE}/actions"), get(push::get_actions).put(push::set_actions))
        .route(&format!("{OTHER}/actions"), other())
        .route("/pushers", get(push::pushers))
        .route("/pushers/set", post(push::set_pusher))
        .route("/notifications", get(push::notifications))
}

fn room_routes() -> Router<AppState> {
    Router::new()
        .route("/createRoom", post(rooms::create_room))
        .route("/joined_rooms", get(rooms::joined_rooms))
        .route("/join/{room_id_or_alias}", post(membership::join_by_id_or_alias))
        .route("/rooms/{room_id}/join", post(membership::join_room))
        .route("/rooms/{room_id}/invite", post(membership::invite))
        .route("/rooms/{room_id}/leave", post(membership::leave))
        .route("/rooms/{room_id}/kick", post(membership::kick))
        .route("/rooms/{room_id}/ban", post(membership::ban))
        .route("/rooms/{room_id}/unban", post(membership::unban))
        .route("/rooms/{room_id}/forget", post(membership::forget))
        .route("/rooms/{room_id}/send/{event_type}/{txn_id}", put(rooms::send_message))
        .route("/rooms/{room_id}/state", get(rooms::get_state))
        .route("/rooms/{room_id}/state/{event_type}", get(rooms::get_state_event).put(rooms::put_state))
        .route("/rooms/{room_id}/state/{event_type}/{state_key}", get(rooms::get_state_event).put(rooms::put_state))
        // An empty state key may come as a trailing slash.
        .route("/rooms/{room_id}/state/{event_type}/", get(rooms::get_state_event).put(rooms::put_state))
        .route("/rooms/{room_id}/members", get(rooms::members))
        .route("/rooms/{room_id}/joined_members", get(rooms::joined_members))
        .route("/rooms/{room_id}/messages", get(rooms::messages))
        .route("/rooms/{room_id}/event/{event_id}", get(rooms::get_event))
        .route("/rooms/{room_id}/context/{event_id}", get(relations::context))
        .route("/rooms/{room_id}/upgrade", post(rooms::upgrade))
        .route("/rooms/{room_id}/redact/{event_id}/{txn_id}", put(rooms::redact))
        .route("/rooms/{room_id}/typing/{user_id}", put(sync::typing))
        .route("/rooms/{room_id}/receipt/{receipt_type}/{event_id}", post(sync::receipt))
        .route("/rooms/{room_id}/read_markers", post(sync::read_markers))
        .route(
            "/directory/room/{alias}",
            get(directory::get_alias).put(directory::put_alias).delete(directory::delete_alias),
        )
        .route("/directory/list/room/{room_id}", get(directory::room_visibility).put(directory::set_room_visibility))
        .route("/publicRooms", get(directory::public_rooms).post(directory::search_public_rooms))
        .route("/sync", get(sync::sync))
        .route("/keys/upload", post(keys::upload))
        .route("/keys/query", post(keys::query))
        .route("/keys/claim", post(keys::claim))
        .route("/keys/changes", get(keys::changes))
        .route("/keys/device_signing/upload", post(keys::upload_cross_signing))
        .route("/keys/signatures/upload", post(keys::upload_signatures))
        .route("/sendToDevice/{event_type}/{txn_id}", put(keys::send_to_device))
        .route("/user_directory/search", post(user_directory::search))
        .route("/user/{user_id}/filter", post(sync::create_filter))
        .route("/user/{user_id}/filter/{filter_id}", get(sync::get_filter))
        .route("/user/{user_id}/account_data/{data_type}", get(sync::get_account_data).put(sync::put_account_data))
        .route("/user/{user_id}/rooms/{room_id}/tags", get(tags::tags))
        .route("/user/{user_id}/rooms/{room_id}/tags/{tag}", put(tags::put_tag).delete(tags::delete_tag))
        .route(
            "/user/{user_id}/rooms/{room_id}/account_data/{data_type}",
            get(sync::get_room_account_data).put(sync::put_room_account_data),
        )
}
