//! What the server supports: `/versions` and `/capabilities`.

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use crate::api::extract::{AppState, Requester};
use crate::config::SUPPORTED_ROOM_VERSIONS;

pub async fn versions() -> Json<Value> {
    Json(json!({
        "versions": ["r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16"],
        "unstable_features": {},
    }))
}

pub async fn capabilities(State(state): State<AppState>, Requester(_): Requester) -> Json<Value> {
    let available: Map<String, Value> =
        SUPPORTED_ROOM_VERSIONS.iter().map(|version| ((*version).to_owned(), json!("stable"))).collect();
    Json(json!({
        "capabilities": {
            "m.change_password": { "enabled": true },
            "m.room_versions": { "default": state.config.default_room_version, "available": available },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
            "m.get_login_token": { "enabled": false },
            "m.profile_fields": { "enabled": true },
        }
    }))
}

/// `GET /thirdparty/protocols`: kith bridges to no third-party networks.
pub async fn thirdparty_protocols(Requester(_): Requester) -> Json<Value> {
    Json(json!({}))
}

/// `GET /voip/turnServer`.
pub async fn turn_server(
    State(state): State<AppState>,
    Requester(owner): Requester,
) -> crate::error::ApiResult<Json<Value>> {
    Ok(Json(state.voip.turn_server(&owner)?))
}

/// `GET /.well-known/matrix/client`: where clients find this server.
pub async fn client_well_known(State(state): State<AppState>) -> Json<Value> {
    let base_url = match &state.config.public_baseurl {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("https://{}", state.config.server_name),
    };
    Json(json!({ "m.homeserver": { "base_url": base_url } }))
}

/// `GET /.well-known/matrix/server` (with `serve_server_wellknown`): federation goes to
/// port 443 of the public base URL's host (or the server name's), as Synapse says.
pub async fn server_well_known(State(state): State<AppState>) -> crate::error::ApiResult<Json<Value>> {
    if !state.config.serve_server_wellknown {
        return Err(crate::error::MatrixError::not_found("No well-known server delegation here"));
    }
    let host = state
        .config
        .public_baseurl
        .as_deref()
        .and_then(|url| url.split("://").nth(1))
        .map(|rest| rest.split(['/', ':']).next().unwrap_or(rest).to_owned())
        .unwrap_or_else(|| state.config.server_name.host().to_owned());
    Ok(Json(json!({ "m.server": format!("{host}:443") })))
}
