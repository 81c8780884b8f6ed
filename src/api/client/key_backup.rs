//! Server-side key backups: `/room_keys/version[/{version}]` and
//! `/room_keys/keys[/{roomId}[/{sessionId}]]`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use ruma::RoomId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::{AppState, MatrixJson, Requester, parse_id};
use crate::error::{ApiResult, MatrixError};
use crate::services::key_backup::{KeyBackupData, KeyScope, KeysState, RoomKeyUpload, VersionInfo};

#[derive(Deserialize)]
pub struct NewVersion {
    algorithm: String,
    auth_data: Value,
}

#[derive(Deserialize)]
pub struct VersionUpdate {
    algorithm: String,
    auth_data: Value,
    #[serde(default)]
    version: Option<String>,
}

/// The `version` query parameter every `/room_keys/keys` request names.
#[derive(Deserialize)]
pub struct VersionQuery {
    #[serde(default)]
    version: Option<String>,
}

impl VersionQuery {
    fn required(self) -> ApiResult<String> {
        self.version.ok_or_else(|| MatrixError::missing_param("The version query parameter is required"))
    }
}

#[derive(Deserialize)]
pub struct RoomSessions {
    sessions: BTreeMap<String, KeyBackupData>,
}

#[derive(Deserialize)]
pub struct AllRooms {
    rooms: BTreeMap<String, RoomSessions>,
}

pub async fn create_version(
    State(state): State<AppState>,
    Requester(owner): Requester,
    MatrixJson(body): MatrixJson<NewVersion>,
) -> ApiResult<Json<Value>> {
    let version = state.key_backup.create_version(&owner.user_id, &body.algorithm, &body.auth_data).await?;
    Ok(Json(json!({ "version": version })))
}

pub async fn current_version(
    State(state): State<AppState>,
    Requester(owner): Requester,
) -> ApiResult<Json<VersionInfo>> {
    Ok(Json(state.key_backup.current_version(&owner.user_id).await?))
}

pub async fn get_version(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(version): Path<String>,
) -> ApiResult<Json<VersionInfo>> {
    Ok(Json(state.key_backup.version(&owner.user_id, &version).await?))
}

pub async fn update_version(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(version): Path<String>,
    MatrixJson(body): MatrixJson<VersionUpdate>,
) -> ApiResult<Json<Value>> {
    let body_version = body.version.as_deref();
    state.key_backup.update_version(&owner.user_id, &version, body_version, &body.algorithm, &body.auth_data).await?;
    Ok(Json(json!({})))
}

pub async fn delete_version(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(version): Path<String>,
) -> ApiResult<Json<Value>> {
    state.key_backup.delete_version(&owner.user_id, &version).await?;
    Ok(Json(json!({})))
}

pub async fn put_all_keys(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Query(query): Query<VersionQuery>,
    MatrixJson(body): MatrixJson<AllRooms>,
) -> ApiResult<Json<KeysState>> {
    let version = query.required()?;
    let mut uploads = Vec::new();
    for (room_id, room) in body.rooms {
        uploads.extend(room_uploads(&room_id, room)?);
    }
    Ok(Json(state.key_backup.put_keys(&owner.user_id, &version, uploads).await?))
}

pub async fn put_room_keys(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
    Query(query): Query<VersionQuery>,
    MatrixJson(body): MatrixJson<RoomSessions>,
) -> ApiResult<Json<KeysState>> {
    let version = query.required()?;
    let uploads = room_uploads(&room_id, body)?;
    Ok(Json(state.key_backup.put_keys(&owner.user_id, &version, uploads).await?))
}

pub async fn put_session_key(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
    MatrixJson(key): MatrixJson<KeyBackupData>,
) -> ApiResult<Json<KeysState>> {
    let version = query.required()?;
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    let upload = RoomKeyUpload { room_id: room_id.to_owned(), session_id, key };
    Ok(Json(state.key_backup.put_keys(&owner.user_id, &version, vec![upload]).await?))
}

pub async fn get_all_keys(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<Value>> {
    let version = query.required()?;
    Ok(Json(state.key_backup.keys(&owner.user_id, &version, KeyScope::All).await?))
}

pub async fn get_room_keys(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<Value>> {
    let version = query.required()?;
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    Ok(Json(state.key_backup.keys(&owner.user_id, &version, KeyScope::Room(room_id.as_str())).await?))
}

pub async fn get_session_key(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<Value>> {
    let version = query.required()?;
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    let scope = KeyScope::Session(room_id.as_str(), &session_id);
    Ok(Json(state.key_backup.keys(&owner.user_id, &version, scope).await?))
}

pub async fn delete_all_keys(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<KeysState>> {
    let version = query.required()?;
    Ok(Json(state.key_backup.delete_keys(&owner.user_id, &version, KeyScope::All).await?))
}

pub async fn delete_room_keys(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path(room_id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<KeysState>> {
    let version = query.required()?;
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    Ok(Json(state.key_backup.delete_keys(&owner.user_id, &version, KeyScope::Room(room_id.as_str())).await?))
}

pub async fn delete_session_key(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<KeysState>> {
    let version = query.required()?;
    let room_id: &RoomId = parse_id(&room_id, "room ID")?;
    let scope = KeyScope::Session(room_id.as_str(), &session_id);
    Ok(Json(state.key_backup.delete_keys(&owner.user_id, &version, scope).await?))
}

/// A room's sessions as uploads, its ID parsed.
fn room_uploads(room_id: &str, room: RoomSessions) -> ApiResult<Vec<RoomKeyUpload>> {
    let room_id: &RoomId = parse_id(room_id, "room ID")?;
    Ok(room
        .sessions
        .into_iter()
        .map(|(session_id, key)| RoomKeyUpload { room_id: room_id.to_owned(), session_id, key })
        .collect())
}
