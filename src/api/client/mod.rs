//! The client-server API (`/_matrix/client/…`).

pub mod account;
pub mod discovery;
pub mod profile;
pub mod register;
pub mod session;

use axum::Router;
use axum::routing::{get, post};

use super::extract::AppState;

/// Routes under `/_matrix/client/v3` (and the legacy `r0`).
pub fn versioned_routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(session::login_flows).post(session::login))
        .route("/logout", post(session::logout))
        .route("/logout/all", post(session::logout_all))
        .route("/account/whoami", get(session::whoami))
        .route("/account/deactivate", post(account::deactivate))
        .route("/register", post(register::register))
        .route("/register/available", get(register::available))
        .route("/capabilities", get(discovery::capabilities))
        .route("/profile/{user_id}", get(profile::get_profile))
        .route(
            "/profile/{user_id}/{key}",
            get(profile::get_field)
                .put(profile::set_field)
                .delete(profile::delete_field),
        )
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/versions", get(discovery::versions))
        .nest("/_matrix/client/v3", versioned_routes())
        .nest("/_matrix/client/r0", versioned_routes())
}
