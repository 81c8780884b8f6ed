//! `/sync` and what feeds it: filters, account data, typing, receipts, read markers.

use std::time::Duration;

use axum::extract::{Query, State};
use ruma::UserId;
use ruma::api::client::config::{
    get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
};
use ruma::api::client::receipt::create_receipt;
use ruma::api::client::sync::sync_events;
use ruma::serde::Raw;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::{RawValue, to_raw_value};

use crate::api::extract::{AppState, Requester, Ruma, RumaResponse, parse_id};
use crate::endpoints::client::{create_filter, create_typing_event, get_filter, set_read_marker};
use crate::error::{ApiResult, MatrixError};
use crate::services::ephemeral::ReadMarkers;
use crate::services::sync::{SyncParams, SyncToken};

#[derive(Deserialize)]
pub struct SyncQuery {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    full_state: Option<String>,
    #[serde(default)]
    filter: Option<String>,
}

pub async fn sync(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Query(query): Query<SyncQuery>,
) -> ApiResult<RumaResponse<sync_events::v3::Response>> {
    let since = query.since.as_deref().map(SyncToken::parse).transpose()?;
    let timeout = match &query.timeout {
        Some(ms) => {
            ms.parse::<u64>().map_err(|_| MatrixError::invalid_param("timeout must be a number of milliseconds"))?
        }
        None => 0,
    };
    let full_state = match query.full_state.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(MatrixError::invalid_param("full_state must be true or false")),
    };
    let filter = state.account_data.sync_filter(&owner.user_id, query.filter.as_deref()).await?;
    let params = SyncParams {
        device_id: owner.device_id.clone(),
        since,
        full_state,
        timeout: Duration::from_millis(timeout),
        filter,
    };
    Ok(state.sync.sync(&owner.user_id, params).await?.into())
}

/// Users read and write their own data only.
pub fn own_user<'a>(owner: &UserId, user_id: &'a str) -> ApiResult<&'a UserId> {
    if owner.as_str() != user_id {
        return Err(MatrixError::forbidden("Cannot access another user's data"));
    }
    parse_id(user_id, "user ID")
}

pub async fn create_filter(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<create_filter::Request>,
) -> ApiResult<RumaResponse<create_filter::Response>> {
    let user_id = own_user(&owner.user_id, request.user_id.as_str())?;
    let id = state.account_data.create_filter(user_id, &Value::Object(request.filter)).await?;
    Ok(create_filter::Response { filter_id: id.to_string() }.into())
}

pub async fn get_filter(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_filter::Request>,
) -> ApiResult<RumaResponse<get_filter::Response>> {
    let user_id = own_user(&owner.user_id, request.user_id.as_str())?;
    match state.account_data.filter(user_id, &request.filter_id).await? {
        Value::Object(filter) => Ok(get_filter::Response { filter }.into()),
        _ => Err(MatrixError::not_found("No such filter")),
    }
}

pub async fn put_account_data(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<set_global_account_data::v3::Request>,
) -> ApiResult<RumaResponse<set_global_account_data::v3::Response>> {
    let user_id = own_user(&owner.user_id, request.user_id.as_str())?;
    let content = raw_content(request.data.json())?;
    state.account_data.put_from_client(user_id, None, &request.event_type.to_string(), &content).await?;
    Ok(set_global_account_data::v3::Response::new().into())
}

pub async fn get_account_data(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_global_account_data::v3::Request>,
) -> ApiResult<RumaResponse<get_global_account_data::v3::Response>> {
    let user_id = own_user(&owner.user_id, request.user_id.as_str())?;
    let content = state.account_data.get(user_id, None, &request.event_type.to_string()).await?;
    Ok(get_global_account_data::v3::Response::new(raw_answer(&content)?).into())
}

pub async fn put_room_account_data(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<set_room_account_data::v3::Request>,
) -> ApiResult<RumaResponse<set_room_account_data::v3::Response>> {
    let user_id = own_user(&owner.user_id, request.user_id.as_str())?;
    let content = raw_content(request.data.json())?;
    let kind = request.event_type.to_string();
    state.account_data.put_from_client(user_id, Some(&request.room_id), &kind, &content).await?;
    Ok(set_room_account_data::v3::Response::new().into())
}

pub async fn get_room_account_data(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<get_room_account_data::v3::Request>,
) -> ApiResult<RumaResponse<get_room_account_data::v3::Response>> {
    let user_id = own_user(&owner.user_id, request.user_id.as_str())?;
    let kind = request.event_type.to_string();
    let content = state.account_data.get(user_id, Some(&request.room_id), &kind).await?;
    Ok(get_room_account_data::v3::Response::new(raw_answer(&content)?).into())
}

/// Account data content as the client sent it (the extractor checked it is an object).
fn raw_content(json: &RawValue) -> ApiResult<Value> {
    serde_json::from_str(json.get()).map_err(|err| MatrixError::bad_json(err.to_string()))
}

/// Stored content as ruma's raw content of any account data type, serialized as stored.
fn raw_answer<T>(content: &Value) -> ApiResult<Raw<T>> {
    let json = to_raw_value(content).map_err(|err| MatrixError::internal("account data content", err))?;
    Ok(Raw::from_json(json))
}

pub async fn typing(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<create_typing_event::Request>,
) -> ApiResult<RumaResponse<create_typing_event::Response>> {
    let user_id = own_user(&owner.user_id, request.user_id.as_str())?;
    let timeout = Duration::from_millis(request.timeout.unwrap_or(30_000));
    state.ephemeral.set_typing(&request.room_id, user_id, request.typing, timeout).await?;
    Ok(create_typing_event::Response {}.into())
}

pub async fn receipt(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<create_receipt::v3::Request>,
) -> ApiResult<RumaResponse<create_receipt::v3::Response>> {
    let kind = request.receipt_type.to_string();
    state.ephemeral.set_receipt(&request.room_id, &owner.user_id, &kind, request.event_id.as_str()).await?;
    Ok(create_receipt::v3::Response::new().into())
}

pub async fn read_markers(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): Ruma<set_read_marker::Request>,
) -> ApiResult<RumaResponse<set_read_marker::Response>> {
    let markers = ReadMarkers {
        fully_read: request.fully_read,
        read: request.read_receipt,
        read_private: request.private_read_receipt,
    };
    state.ephemeral.set_read_markers(&request.room_id, &owner.user_id, &markers).await?;
    Ok(set_read_marker::Response {}.into())
}
