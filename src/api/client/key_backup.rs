//! Server-side key backups: `/room_keys/version[/{version}]` and
//! `/room_keys/keys[/{roomId}[/{sessionId}]]`.

use std::collections::BTreeMap;

use axum::extract::State;
use ruma::api::client::backup::{
    BackupAlgorithm, KeyBackupData as RumaKeyBackupData, add_backup_keys_for_room, add_backup_keys_for_session,
    create_backup_version, delete_backup_keys, delete_backup_keys_for_room, delete_backup_keys_for_session,
    delete_backup_version, get_backup_info, get_backup_keys, get_backup_keys_for_room, get_backup_keys_for_session,
    get_latest_backup_info, update_backup_version,
};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, RoomId};
use serde::Deserialize;
use serde_json::Value;

use crate::api::extract::{AppState, Requester, Ruma, RumaJson, RumaResponse, parse_id, parse_json_object};
use crate::endpoints::client::add_backup_keys;
use crate::error::{ApiResult, MatrixError};
use crate::services::key_backup::{KeyBackupData, KeyScope, RoomKeyUpload};

/// What kith reads of ruma's `Raw<BackupAlgorithm>` (a version's whole body): the
/// algorithm, its opaque `auth_data` (some older clients send a string), and the
/// version an update may name.
#[derive(Deserialize)]
struct AlgorithmBody {
    algorithm: String,
    auth_data: Value,
    #[serde(default)]
    version: Option<String>,
}

fn algorithm_body(raw: &Raw<BackupAlgorithm>) -> ApiResult<AlgorithmBody> {
    parse_json_object(raw.json().get().as_bytes())
}

/// A session key as the service checks it, with the errors of any other body.
fn key_data(raw: &Raw<RumaKeyBackupData>) -> ApiResult<KeyBackupData> {
    parse_json_object(raw.json().get().as_bytes())
}

pub async fn create_version(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<create_backup_version::v3::Request>,
) -> ApiResult<RumaResponse<create_backup_version::v3::Response>> {
    let body = algorithm_body(&request.algorithm)?;
    let version = state.key_backup.create_version(&owner.user_id, &body.algorithm, &body.auth_data).await?;
    Ok(create_backup_version::v3::Response::new(version).into())
}

pub async fn current_version(
    State(state): State<AppState>,
    Requester(owner): Requester,
) -> ApiResult<RumaResponse<get_latest_backup_info::v3::Response>> {
    let info = state.key_backup.current_version(&owner.user_id).await?;
    Ok(get_latest_backup_info::v3::Response::new(info.algorithm, info.count, info.etag, info.version).into())
}

pub async fn get_version(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_backup_info::v3::Request>,
) -> ApiResult<RumaResponse<get_backup_info::v3::Response>> {
    let info = state.key_backup.version(&owner.user_id, &request.version).await?;
    Ok(get_backup_info::v3::Response::new(info.algorithm, info.count, info.etag, info.version).into())
}

pub async fn update_version(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<update_backup_version::v3::Request>,
) -> ApiResult<RumaResponse<update_backup_version::v3::Response>> {
    let body = algorithm_body(&request.algorithm)?;
    let (version, body_version) = (&request.version, body.version.as_deref());
    state.key_backup.update_version(&owner.user_id, version, body_version, &body.algorithm, &body.auth_data).await?;
    Ok(update_backup_version::v3::Response::new().into())
}

pub async fn delete_version(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<delete_backup_version::v3::Request>,
) -> ApiResult<RumaResponse<delete_backup_version::v3::Response>> {
    state.key_backup.delete_version(&owner.user_id, &request.version).await?;
    Ok(delete_backup_version::v3::Response::new().into())
}

pub async fn put_all_keys(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<add_backup_keys::Request>,
) -> ApiResult<RumaResponse<add_backup_keys::Response>> {
    let version =
        request.version.ok_or_else(|| MatrixError::missing_param("The version query parameter is required"))?;
    let mut uploads = Vec::new();
    for (room_id, room) in request.rooms {
        let room_id: &RoomId = parse_id(&room_id, "room ID")?;
        uploads.extend(room_uploads(room_id.to_owned(), room.sessions)?);
    }
    let done = state.key_backup.put_keys(&owner.user_id, &version, uploads).await?;
    Ok(add_backup_keys::Response { etag: done.etag, count: done.count }.into())
}

pub async fn put_room_keys(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<add_backup_keys_for_room::v3::Request>,
) -> ApiResult<RumaResponse<add_backup_keys_for_room::v3::Response>> {
    let uploads = room_uploads(request.room_id, request.sessions)?;
    let done = state.key_backup.put_keys(&owner.user_id, &request.version, uploads).await?;
    Ok(add_backup_keys_for_room::v3::Response::new(done.etag, done.count).into())
}

pub async fn put_session_key(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<add_backup_keys_for_session::v3::Request>,
) -> ApiResult<RumaResponse<add_backup_keys_for_session::v3::Response>> {
    let key = key_data(&request.session_data)?;
    let upload = RoomKeyUpload { room_id: request.room_id, session_id: request.session_id, key };
    let done = state.key_backup.put_keys(&owner.user_id, &request.version, vec![upload]).await?;
    Ok(add_backup_keys_for_session::v3::Response::new(done.etag, done.count).into())
}

pub async fn get_all_keys(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_backup_keys::v3::Request>,
) -> ApiResult<RumaResponse<get_backup_keys::v3::Response>> {
    let rooms = state.key_backup.all_keys(&owner.user_id, &request.version).await?;
    Ok(get_backup_keys::v3::Response::new(rooms).into())
}

pub async fn get_room_keys(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_backup_keys_for_room::v3::Request>,
) -> ApiResult<RumaResponse<get_backup_keys_for_room::v3::Response>> {
    let sessions = state.key_backup.room_keys(&owner.user_id, &request.version, &request.room_id).await?;
    Ok(get_backup_keys_for_room::v3::Response::new(sessions).into())
}

pub async fn get_session_key(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_backup_keys_for_session::v3::Request>,
) -> ApiResult<RumaResponse<get_backup_keys_for_session::v3::Response>> {
    let (user_id, version) = (&owner.user_id, &request.version);
    let key = state.key_backup.session_key(user_id, version, &request.room_id, &request.session_id).await?;
    Ok(get_backup_keys_for_session::v3::Response::new(key).into())
}

pub async fn delete_all_keys(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<delete_backup_keys::v3::Request>,
) -> ApiResult<RumaResponse<delete_backup_keys::v3::Response>> {
    let done = state.key_backup.delete_keys(&owner.user_id, &request.version, KeyScope::All).await?;
    Ok(delete_backup_keys::v3::Response::new(done.etag, done.count).into())
}

pub async fn delete_room_keys(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<delete_backup_keys_for_room::v3::Request>,
) -> ApiResult<RumaResponse<delete_backup_keys_for_room::v3::Response>> {
    let scope = KeyScope::Room(request.room_id.as_str());
    let done = state.key_backup.delete_keys(&owner.user_id, &request.version, scope).await?;
    Ok(delete_backup_keys_for_room::v3::Response::new(done.etag, done.count).into())
}

pub async fn delete_session_key(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<delete_backup_keys_for_session::v3::Request>,
) -> ApiResult<RumaResponse<delete_backup_keys_for_session::v3::Response>> {
    let scope = KeyScope::Session(request.room_id.as_str(), &request.session_id);
    let done = state.key_backup.delete_keys(&owner.user_id, &request.version, scope).await?;
    Ok(delete_backup_keys_for_session::v3::Response::new(done.etag, done.count).into())
}

/// A room's sessions as uploads, each key read.
fn room_uploads(
    room_id: OwnedRoomId,
    sessions: BTreeMap<String, Raw<RumaKeyBackupData>>,
) -> ApiResult<Vec<RoomKeyUpload>> {
    sessions
        .into_iter()
        .map(|(session_id, key)| Ok(RoomKeyUpload { room_id: room_id.clone(), session_id, key: key_data(&key)? }))
        .collect()
}
