//! The server-server API (`/_matrix/federation/…`); the key API is in `keys.rs`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::routing::{get, post, put};
use ruma::OwnedServerName;
use ruma::api::federation::discovery::get_server_version;
use ruma::api::federation::query::get_profile_information;
use ruma::api::path_builder::SinglePath;
use ruma::api::{IncomingRequest, Metadata};
use serde_json::Value;

use super::extract::{AppState, RumaResponse};
use crate::endpoints::federated_directory::{get_bwi_list, get_changes, search};
use crate::endpoints::federation::{create_invite, get_missing_events, send_transaction_message};
use crate::error::{ApiResult, MatrixError};
use crate::services::inbound::rate_limit::Turn;

mod devices;
mod directory;
mod media;
mod rooms;

pub fn routes() -> Router<AppState> {
    const V1: &str = "/_matrix/federation/v1";
    const V2: &str = "/_matrix/federation/v2";
    Router::new()
        .route(&format!("{V1}/version"), get(version))
        .route(&format!("{V1}/query/profile"), get(query_profile))
        .route(&format!("{V1}/user/keys/query"), post(devices::query_keys))
        .route(&format!("{V1}/user/keys/claim"), post(devices::claim_keys))
        .route(&format!("{V1}/user/devices/{{user_id}}"), get(devices::user_devices))
        .route(&format!("{V1}/query/directory"), get(directory::query_alias))
        .route(&format!("{V1}/publicRooms"), get(directory::public_rooms).post(directory::public_rooms))
        .route(path_of::<get_changes::Request>(), get(directory::user_directory_changes))
        .route(path_of::<get_bwi_list::Request>(), get(directory::user_directory_list))
        .route(path_of::<search::Request>(), post(directory::user_directory_search))
        .route(&format!("{V1}/media/download/{{media_id}}"), get(media::download))
        .route(&format!("{V1}/media/thumbnail/{{media_id}}"), get(media::thumbnail))
        .route(&format!("{V1}/openid/userinfo"), get(super::client::openid::userinfo))
        .route(path_of::<send_transaction_message::Request>(), put(rooms::send_transaction))
        .route(&format!("{V1}/make_join/{{room_id}}/{{user_id}}"), get(rooms::make_join))
        .route(&format!("{V1}/send_join/{{room_id}}/{{event_id}}"), put(rooms::send_join_v1))
        .route(&format!("{V2}/send_join/{{room_id}}/{{event_id}}"), put(rooms::send_join))
        .route(&format!("{V1}/make_leave/{{room_id}}/{{user_id}}"), get(rooms::make_leave))
        .route(&format!("{V1}/send_leave/{{room_id}}/{{event_id}}"), put(rooms::send_leave_v1))
        .route(&format!("{V2}/send_leave/{{room_id}}/{{event_id}}"), put(rooms::send_leave))
        .route(path_of::<create_invite::Request>(), put(rooms::invite))
        .route(&format!("{V1}/event/{{event_id}}"), get(rooms::event))
        .route(&format!("{V1}/state/{{room_id}}"), get(rooms::room_state))
        .route(&format!("{V1}/state_ids/{{room_id}}"), get(rooms::room_state_ids))
        .route(&format!("{V1}/event_auth/{{room_id}}/{{event_id}}"), get(rooms::event_auth))
        .route(path_of::<get_missing_events::Request>(), post(rooms::get_missing_events))
        .route(&format!("{V1}/backfill/{{room_id}}"), get(rooms::backfill))
}

/// An inbound federation request whose `X-Matrix` signature checked out, handled in its
/// turn among its origin's requests (`rc_federation`): the turn lasts while it is kept.
pub struct Signed {
    pub origin: OwnedServerName,
    pub body: Bytes,
    _turn: Option<Turn>,
}

/// A signed `/send` transaction: it takes its turn itself, once it knows it is not a
/// retry of one being handled (as Synapse, so waiting retries do not fill the queue).
pub struct SignedTransaction {
    pub signed: Signed,
    pub request: send_transaction_message::Request,
}

impl FromRequest<AppState> for Signed {
    type Rejection = MatrixError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (origin, body) = authenticated(request, state, super::MAX_JSON_BODY_BYTES).await?;
        let turn = state.inbound.admit(&origin).await?;
        Ok(Self { origin, body, _turn: Some(turn) })
    }
}

impl FromRequest<AppState> for SignedTransaction {
    type Rejection = MatrixError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let path_args = path_args(&mut parts, state).await?;
        let request = Request::from_parts(parts.clone(), body);
        let (origin, body) = authenticated(request, state, MAX_TRANSACTION_BYTES).await?;
        let signed = Signed { origin, body, _turn: None };
        signed.json()?;
        let http = axum::http::Request::from_parts(parts, signed.body.as_ref());
        let request = super::extract::parse_ruma(http, &path_args)?;
        Ok(Self { signed, request })
    }
}

/// The raw values of a request's path parameters, in order, as ruma parses them.
async fn path_args(parts: &mut Parts, state: &AppState) -> Result<Vec<String>, MatrixError> {
    match RawPathParams::from_request_parts(parts, state).await {
        Ok(params) => Ok(params.iter().map(|(_, value)| value.to_owned()).collect()),
        Err(_) => Err(MatrixError::invalid_param("Invalid path parameters")),
    }
}

/// A `/send` transaction may be this large: 50 PDUs of up to 64 KiB each, 100 EDUs
/// (to-device messages can be large) and the envelope.
const MAX_TRANSACTION_BYTES: usize = 16 * 1024 * 1024;

/// The origin and body of a request whose `X-Matrix` signature checks out.
async fn authenticated(
    request: Request,
    state: &AppState,
    max_bytes: usize,
) -> Result<(OwnedServerName, Bytes), MatrixError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, max_bytes).await.map_err(|_| MatrixError::body_too_large())?;
    if !body.is_empty() {
        // A body that is not JSON cannot be verified (one canonical JSON cannot
        // represent is verified as a lenient signer signs it).
        serde_json::from_slice::<serde::de::IgnoredAny>(&body)
            .map_err(|err| MatrixError::not_json(format!("Invalid JSON: {err}")))?;
    }
    let origin = state.inbound.authenticate(&parts.method, &parts.uri, &parts.headers, &body).await?;
    Ok((origin, body))
}

/// A signed request parsed into ruma's type for its endpoint (path, query and body),
/// after its signature checked out and in its turn, as [`Signed`]. A body, when there is
/// one (always with `JSON_BODY`), must be a JSON object, as [`Signed::json`] requires.
pub struct SignedRuma<T, const JSON_BODY: bool = false> {
    pub signed: Signed,
    pub request: T,
}

/// [`SignedRuma`] for endpoints whose body is required (ruma would read none as `{}`).
pub type SignedRumaJson<T> = SignedRuma<T, true>;

impl<T: IncomingRequest, const JSON_BODY: bool> FromRequest<AppState> for SignedRuma<T, JSON_BODY> {
    type Rejection = MatrixError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let path_args = path_args(&mut parts, state).await?;
        let signed = Signed::from_request(Request::from_parts(parts.clone(), body), state).await?;
        if JSON_BODY || !signed.body.is_empty() {
            signed.json()?;
        }
        let http = axum::http::Request::from_parts(parts, signed.body.as_ref());
        let request = super::extract::parse_ruma(http, &path_args)?;
        Ok(Self { signed, request })
    }
}

impl Signed {
    /// The body as a JSON object.
    pub fn json(&self) -> ApiResult<Value> {
        let value: Value =
            serde_json::from_slice(&self.body).map_err(|err| MatrixError::not_json(format!("Invalid JSON: {err}")))?;
        if !value.is_object() {
            return Err(MatrixError::bad_json("The body must be a JSON object"));
        }
        Ok(value)
    }
}

async fn version() -> RumaResponse<get_server_version::v1::Response> {
    let mut server = get_server_version::v1::Server::new();
    (server.name, server.version) = (Some("Kith".to_owned()), Some(env!("CARGO_PKG_VERSION").to_owned()));
    let mut answer = get_server_version::v1::Response::new();
    answer.server = Some(server);
    answer.into()
}

/// `GET /query/profile?user_id=…[&field=…]`: a local user's public profile.
async fn query_profile(
    State(state): State<AppState>,
    SignedRuma { signed, request }: SignedRuma<get_profile_information::v1::Request>,
) -> ApiResult<RumaResponse<get_profile_information::v1::Response>> {
    let user_id = &request.user_id;
    if !state.profiles.is_local(user_id) {
        return Err(MatrixError::invalid_param("The user is not on this server"));
    }
    tracing::debug!(origin = %signed.origin, %user_id, "profile query");
    let field = request.field.as_ref().map(|field| field.as_str());
    let profile = state.profiles.lookup(user_id, field).await?;
    if let Some(field) = field.filter(|_| profile.is_empty()) {
        return Err(MatrixError::not_found(format!("The profile has no field {field}")));
    }
    let mut answer = get_profile_information::v1::Response::new();
    answer.data = profile.into_iter().collect();
    Ok(answer.into())
}

/// The path of an endpoint defined with ruma's macros, for the router.
pub(crate) fn path_of<R: Metadata<PathBuilder = SinglePath>>() -> &'static str {
    R::PATH_BUILDER.path()
}
