//! What the server supports: `/versions` and `/capabilities`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ruma::api::client::discovery::get_capabilities::v3::{
    Capabilities, ProfileFieldsCapability, RoomVersionStability, RoomVersionsCapability, ThirdPartyIdChangesCapability,
};
use ruma::api::client::discovery::{discover_homeserver, get_capabilities, get_supported_versions};
use ruma::api::client::voip::get_turn_server_info;
use ruma::api::federation::discovery::discover_homeserver as discover_server;
use ruma::{OwnedServerName, RoomVersionId};
use serde::Serialize;

use crate::api::extract::{AppState, Requester, RumaResponse};
use crate::config::SUPPORTED_ROOM_VERSIONS;
use crate::error::{ApiResult, MatrixError};

const SPEC_VERSIONS: &[&str] = &[
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12",
    "v1.13", "v1.14", "v1.15", "v1.16",
];

/// Unstable features served: simplified sliding sync (MSC4186), which Element X needs.
const UNSTABLE_FEATURES: &[&str] = &["org.matrix.simplified_msc3575"];

pub async fn versions() -> RumaResponse<get_supported_versions::Response> {
    let mut response = get_supported_versions::Response::new(SPEC_VERSIONS.iter().map(|v| (*v).to_owned()).collect());
    response.unstable_features = UNSTABLE_FEATURES.iter().map(|f| ((*f).to_owned(), true)).collect();
    response.into()
}

pub async fn capabilities(
    State(state): State<AppState>,
    Requester(_): Requester,
) -> ApiResult<RumaResponse<get_capabilities::v3::Response>> {
    let room_version = |version: &str| {
        RoomVersionId::try_from(version).map_err(|err| MatrixError::internal("configured room version", err))
    };
    let available: BTreeMap<RoomVersionId, RoomVersionStability> = SUPPORTED_ROOM_VERSIONS
        .iter()
        .map(|version| Ok((room_version(version)?, RoomVersionStability::Stable)))
        .collect::<ApiResult<_>>()?;
    let default = room_version(&state.config.default_room_version)?;
    // Changing passwords, names and avatars is allowed, ruma's defaults.
    let mut capabilities = Capabilities::new();
    capabilities.room_versions = RoomVersionsCapability::new(default, available);
    capabilities.thirdparty_id_changes = ThirdPartyIdChangesCapability::new(false);
    capabilities.profile_fields = Some(ProfileFieldsCapability::new(true));
    Ok(get_capabilities::v3::Response::new(capabilities).into())
}

/// Not ruma's response: with no TURN server configured Synapse answers `{}`, which
/// ruma's (every field required) cannot say.
pub enum TurnServerAnswer {
    Credentials(RumaResponse<get_turn_server_info::v3::Response>),
    NotConfigured,
}

#[derive(Serialize)]
struct NoTurnServer {}

impl IntoResponse for TurnServerAnswer {
    fn into_response(self) -> Response {
        match self {
            Self::Credentials(credentials) => credentials.into_response(),
            Self::NotConfigured => Json(NoTurnServer {}).into_response(),
        }
    }
}

/// `GET /voip/turnServer`.
pub async fn turn_server(State(state): State<AppState>, Requester(owner): Requester) -> ApiResult<TurnServerAnswer> {
    let Some(turn) = state.voip.turn_server(&owner)? else { return Ok(TurnServerAnswer::NotConfigured) };
    let answer = get_turn_server_info::v3::Response::new(turn.username, turn.password, turn.uris, turn.ttl);
    Ok(TurnServerAnswer::Credentials(answer.into()))
}

/// `GET /.well-known/matrix/client`: where clients find this server.
pub async fn client_well_known(State(state): State<AppState>) -> RumaResponse<discover_homeserver::Response> {
    let base_url = match &state.config.public_baseurl {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("https://{}", state.config.server_name),
    };
    discover_homeserver::Response::new(discover_homeserver::HomeserverInfo::new(base_url)).into()
}

/// `GET /.well-known/matrix/server` (with `serve_server_wellknown`): federation goes to
/// port 443 of the public base URL's host (or the server name's), as Synapse says.
pub async fn server_well_known(State(state): State<AppState>) -> ApiResult<RumaResponse<discover_server::Response>> {
    if !state.config.serve_server_wellknown {
        return Err(MatrixError::not_found("No well-known server delegation here"));
    }
    let host = state
        .config
        .public_baseurl
        .as_deref()
        .and_then(|url| url.split("://").nth(1))
        .map(|rest| rest.split(['/', ':']).next().unwrap_or(rest).to_owned())
        .unwrap_or_else(|| state.config.server_name.host().to_owned());
    let server = OwnedServerName::try_from(format!("{host}:443"))
        .map_err(|err| MatrixError::internal("the public base URL's host", err))?;
    Ok(discover_server::Response::new(server).into())
}
