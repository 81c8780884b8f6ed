//! Keys across servers: other servers' users asked live (`/user/keys/query`,
//! `/user/keys/claim`, a few servers at a time and all within the client's timeout, an
//! unreachable or late one listed in `failures`), and the same requests served for
//! ours, with `/user/devices/{userId}` for a server resyncing a user's device list.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use ruma::api::client::keys::{claim_keys, get_keys};
use ruma::api::federation::device::get_devices;
use ruma::api::federation::keys::{claim_keys as claim_remote_keys, get_keys as get_remote_keys};
use ruma::api::federation::transactions::edu::{DeviceListUpdateContent, SigningKeyUpdateContent};
use ruma::encryption::{CrossSigningKey, DeviceKeys};
use ruma::serde::Raw;
use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId, ServerName, UInt, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::{Keys, UserKeys, WantedDevices, WantedKeys, check_claim_size, check_user_count, to_raw};
use crate::error::{ApiResult, MatrixError};
use crate::services::federation::FederationError;
use crate::services::federation::edus::{EduHandlers, EduRefused, EduResult};
use crate::store::DEVICE_LIST_STREAM;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// Servers asked at once for one query or claim: a request naming thousands of servers
/// must not open thousands of connections.
const CONCURRENT_SERVERS: usize = 10;

/// The `timeout` of a query or claim, bounded.
pub fn bounded(timeout: Option<Duration>) -> Duration {
    timeout.unwrap_or(DEFAULT_TIMEOUT).min(MAX_TIMEOUT)
}

/// Requests grouped by the users' servers.
fn by_server<T>(
    wanted: impl IntoIterator<Item = (OwnedUserId, T)>,
) -> BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>> {
    let mut grouped: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>> = BTreeMap::new();
    for (user, value) in wanted {
        grouped.entry(user.server_name().to_owned()).or_default().insert(user, value);
    }
    grouped
}

/// A remote user's keys as cached (the stored JSON's shape).
#[derive(Serialize, Deserialize)]
struct CachedKeys {
    device_keys: BTreeMap<OwnedDeviceId, Raw<DeviceKeys>>,
    #[serde(default)]
    master_key: Option<Raw<CrossSigningKey>>,
    #[serde(default)]
    self_signing_key: Option<Raw<CrossSigningKey>>,
}

/// Why a server's part of a query or claim is missing, as `failures` lists it.
#[derive(Serialize)]
struct Failure {
    status: u16,
    message: String,
}

impl Keys {
    /// Answers from the cache what it holds for users who still share a room with ours,
    /// asks each server for the rest, a few at a time, and caches what comes back for
    /// users sharing a room (until their next device-list update).
    pub(super) async fn query_remote(
        &self,
        answer: &mut get_keys::v3::Response,
        wanted: Vec<(OwnedUserId, Vec<OwnedDeviceId>)>,
        timeout: Duration,
    ) {
        // Where the device-list stream stood before asking: an update received while the
        // servers answer makes their answer too old to cache.
        let asked_at = self.store.stream_head(DEVICE_LIST_STREAM).await.ok();
        let mut to_ask = Vec::new();
        for (user, devices) in wanted {
            match self.cached_keys(&user).await {
                Some(cached) => cached_user_keys(cached, &devices).add_to(&user, answer),
                None => to_ask.push((user, devices)),
            }
        }
        let deadline = Instant::now() + timeout;
        let mut answers = futures_util::stream::iter(by_server(to_ask))
            .map(|(server, users)| async move {
                let request = get_remote_keys::v1::Request::new(users.clone());
                let result = self.ask(&server, request, deadline).await;
                (server, users, result)
            })
            .buffer_unordered(CONCURRENT_SERVERS);
        while let Some((server, users, result)) = answers.next().await {
            match result {
                Ok(found) => {
                    if let Some(asked_at) = asked_at {
                        self.cache_answer(&server, &users, &found, asked_at).await;
                    }
                    add_remote_keys(answer, &server, found);
                }
                Err(err) => {
                    answer.failures.insert(server.to_string(), failure(&err));
                }
            }
        }
    }

    /// A user's cached keys, if they still share a room with a local user (else the entry
    /// goes).
    async fn cached_keys(&self, user: &UserId) -> Option<CachedKeys> {
        let cached = self.store.cached_remote_keys(user.as_str()).await.ok()??;
        if self.store.is_tracked_remote_user(user.as_str()).await.unwrap_or(false) {
            return serde_json::from_value(cached).ok();
        }
        let _ = self.store.forget_remote_keys(user.as_str()).await;
        None
    }

    /// Caches the keys of the users asked for with all their devices who share a room.
    async fn cache_answer(
        &self,
        server: &ServerName,
        asked: &WantedDevices,
        found: &get_remote_keys::v1::Response,
        asked_at: i64,
    ) {
        for (user, devices) in &found.device_keys {
            let whole = asked.get(user).is_some_and(Vec::is_empty);
            if !whole || user.server_name() != server || !self.is_tracked(user).await {
                continue;
            }
            let entry = CachedKeys {
                device_keys: devices.clone(),
                master_key: found.master_keys.get(user).cloned(),
                self_signing_key: found.self_signing_keys.get(user).cloned(),
            };
            let stored = serde_json::to_value(&entry).map_err(|err| err.to_string());
            let cached = match stored {
                Ok(entry) => {
                    self.store.cache_remote_keys(user.as_str(), &entry, asked_at).await.map_err(|e| e.to_string())
                }
                Err(err) => Err(err),
            };
            if let Err(err) = cached {
                tracing::warn!(%user, %err, "could not cache a user's keys");
            }
        }
    }

    async fn is_tracked(&self, user: &UserId) -> bool {
        self.store.is_tracked_remote_user(user.as_str()).await.unwrap_or(false)
    }

    pub(super) async fn claim_remote(
        &self,
        answer: &mut claim_keys::v3::Response,
        wanted: WantedKeys,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        let mut answers = futures_util::stream::iter(by_server(wanted))
            .map(|(server, users)| async move {
                let result = self.ask(&server, claim_remote_keys::v1::Request::new(users), deadline).await;
                (server, result)
            })
            .buffer_unordered(CONCURRENT_SERVERS);
        while let Some((server, result)) = answers.next().await {
            match result {
                Ok(found) => {
                    let theirs = found.one_time_keys.into_iter().filter(|(user, _)| user.server_name() == server);
                    answer.one_time_keys.extend(theirs);
                }
                Err(err) => {
                    answer.failures.insert(server.to_string(), failure(&err));
                }
            }
        }
    }

    /// One server asked, answering by `deadline`: the client's timeout bounds the whole
    /// request, so servers still waiting for their turn when it passes are failures.
    async fn ask<R>(&self, server: &ServerName, request: R, deadline: Instant) -> ApiResult<R::IncomingResponse>
    where
        R: ruma::api::OutgoingRequest,
        for<'a> R::Authentication: ruma::api::auth_scheme::AuthScheme<
                Input<'a> = ruma::api::federation::authentication::XMatrixSigningInput<'a>,
            >,
        for<'a> R::PathBuilder: ruma::api::path_builder::PathBuilder<Input<'a> = ()>,
    {
        match tokio::time::timeout_at(deadline, self.client.send(server, request)).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(err)) => Err(FederationError::to_client_error(&err)),
            Err(_) => Err(MatrixError::new(axum::http::StatusCode::GATEWAY_TIMEOUT, "M_UNKNOWN", "Timed out")),
        }
    }

    /// `POST /user/keys/query` from another server: our users' device and
    /// cross-signing keys (without device names or user-signing keys).
    pub async fn serve_query(&self, wanted: WantedDevices) -> ApiResult<get_remote_keys::v1::Response> {
        check_user_count(wanted.len())?;
        let mut answer = get_remote_keys::v1::Response::default();
        for (user, devices) in wanted.iter().filter(|(user, _)| self.is_local(user)) {
            let keys = self.local_keys(user, devices, None).await?;
            answer.device_keys.insert(user.clone(), keys.devices);
            if let Some(master) = keys.master {
                answer.master_keys.insert(user.clone(), master);
            }
            if let Some(self_signing) = keys.self_signing {
                answer.self_signing_keys.insert(user.clone(), self_signing);
            }
        }
        Ok(answer)
    }

    /// `POST /user/keys/claim` from another server.
    pub async fn serve_claim(&self, wanted: WantedKeys) -> ApiResult<claim_remote_keys::v1::Response> {
        check_claim_size(&wanted)?;
        let local: WantedKeys = wanted.into_iter().filter(|(user, _)| self.is_local(user)).collect();
        Ok(claim_remote_keys::v1::Response::new(self.claim_local(&local).await?))
    }

    /// `GET /user/devices/{userId}`: a local user's devices with keys, with the
    /// device-list position a later `m.device_list_update` will name as `prev_id`.
    pub async fn serve_user_devices(&self, user: &UserId) -> ApiResult<get_devices::v1::Response> {
        if !self.is_local(user) {
            return Err(MatrixError::invalid_param("The user is not on this server"));
        }
        let user_id = user.as_str();
        let mut keys = self.store.device_keys(user_id, &[]).await?;
        let stream_id = self.store.previous_device_list_change(user_id, i64::MAX).await?.unwrap_or(0);
        let mut answer = get_devices::v1::Response::new(user.to_owned(), UInt::try_from(stream_id).unwrap_or_default());
        for device in self.store.devices(user_id).await? {
            // A device without keys is not one another server can encrypt for.
            let Some(key) = keys.remove(&device.device_id).as_ref().and_then(to_raw) else { continue };
            answer.devices.push(get_devices::v1::UserDevice::new(device.device_id.into(), key));
        }
        let cross_signing = self.store.cross_signing_keys(user_id).await?;
        answer.master_key = cross_signing.get("master").and_then(to_raw);
        answer.self_signing_key = cross_signing.get("self_signing").and_then(to_raw);
        Ok(answer)
    }

    /// Registers the handlers of `m.device_list_update` and `m.signing_key_update`.
    pub fn register_edus(self: &Arc<Self>, edus: &mut EduHandlers) {
        let keys = self.clone();
        edus.register("m.device_list_update", move |origin, update: DeviceListUpdateContent| {
            let keys = keys.clone();
            async move { keys.receive_remote_change(&origin, &update.user_id, Some(update.device_id.as_str())).await }
        });
        let keys = self.clone();
        edus.register("m.signing_key_update", move |origin, update: SigningKeyUpdateContent| {
            let keys = keys.clone();
            async move { keys.receive_remote_change(&origin, &update.user_id, None).await }
        });
    }

    /// An `m.device_list_update` or `m.signing_key_update` from `origin`: local users
    /// sharing a room with that user see it in `device_lists.changed` and ask again.
    pub async fn receive_remote_change(
        &self,
        origin: &ServerName,
        user_id: &UserId,
        device_id: Option<&str>,
    ) -> EduResult {
        EduRefused::unless_own_user(origin, user_id)?;
        // Only users someone here shares a room with matter (as in Synapse); this also
        // keeps a server from filling the stream with users it makes up.
        if !self.store.is_tracked_remote_user(user_id.as_str()).await? {
            return Ok(());
        }
        let position = self.store.note_device_list_change(user_id.as_str(), device_id).await?;
        self.notify(position);
        Ok(())
    }
}

/// A cached entry as a query answers it (only the devices asked for, if any).
fn cached_user_keys(cached: CachedKeys, devices: &[OwnedDeviceId]) -> UserKeys {
    let mut device_keys = cached.device_keys;
    if !devices.is_empty() {
        device_keys.retain(|device, _| devices.contains(device));
    }
    UserKeys {
        devices: device_keys,
        master: cached.master_key,
        self_signing: cached.self_signing_key,
        user_signing: None,
    }
}

/// A server's answer into a query answer: only its own users' keys.
fn add_remote_keys(answer: &mut get_keys::v3::Response, server: &ServerName, found: get_remote_keys::v1::Response) {
    let theirs = |user: &OwnedUserId| user.server_name() == server;
    answer.device_keys.extend(found.device_keys.into_iter().filter(|(user, _)| theirs(user)));
    answer.master_keys.extend(found.master_keys.into_iter().filter(|(user, _)| theirs(user)));
    answer.self_signing_keys.extend(found.self_signing_keys.into_iter().filter(|(user, _)| theirs(user)));
}

fn failure(err: &MatrixError) -> Value {
    let failure = Failure { status: err.status.as_u16(), message: err.message.clone() };
    serde_json::to_value(failure).unwrap_or_default()
}
