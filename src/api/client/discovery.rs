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
