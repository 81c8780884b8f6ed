//! The key API (`/_matrix/key/v2/…`): this server's keys, and other servers' keys as a
//! notary (each response counter-signed by this server).

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use futures_util::StreamExt;
use ruma::api::federation::discovery::get_server_keys;
use ruma::{OwnedServerName, ServerName};

use super::extract::{AppState, Ruma, RumaJson, RumaResponse};
use super::federation::path_of;
use crate::endpoints::federation::get_remote_server_keys_batch::{self, BatchQuery};
use crate::endpoints::federation::{get_remote_server_key, get_remote_server_keys};
use crate::error::{ApiResult, MatrixError};

/// Servers one `POST /_matrix/key/v2/query` may ask about.
pub const MAX_NOTARY_QUERY_SERVERS: usize = 100;
/// Servers looked up at once for one batch query.
const CONCURRENCY: usize = 8;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/key/v2/server", get(server_keys))
        .route("/_matrix/key/v2/server/{key_id}", get(server_keys))
        .route(path_of::<get_remote_server_keys_batch::Request>(), axum::routing::post(query_keys_batch))
        .route(path_of::<get_remote_server_keys::Request>(), get(query_keys))
        .route(path_of::<get_remote_server_key::Request>(), get(query_keys_by_id))
}

async fn server_keys(State(state): State<AppState>) -> ApiResult<RumaResponse<get_server_keys::v2::Response>> {
    let body =
        state.server_keys.signed_key_response().map_err(|err| MatrixError::internal("signing key response", err))?;
    Ok(get_server_keys::v2::Response::new(body).into())
}

/// What one server is asked about: key ids (none means all) and the latest
/// `minimum_valid_until_ts` among them.
#[derive(Debug, Default, PartialEq)]
struct Criteria {
    key_ids: Vec<String>,
    minimum_valid_until_ts: Option<u64>,
}

/// `POST /query` body: `{"server_keys": {server: {key_id: {"minimum_valid_until_ts": n}}}}`.
fn parse_batch(body: BatchQuery) -> Result<BTreeMap<OwnedServerName, Criteria>, MatrixError> {
    let servers = body.server_keys;
    if servers.len() > MAX_NOTARY_QUERY_SERVERS {
        return Err(MatrixError::invalid_param(format!("At most {MAX_NOTARY_QUERY_SERVERS} servers per query")));
    }
    let mut parsed = BTreeMap::new();
    for (server, keys) in servers {
        let server = OwnedServerName::try_from(server.as_str())
            .map_err(|_| MatrixError::invalid_param(format!("Invalid server name: {server}")))?;
        let mut criteria = Criteria::default();
        for (key_id, key_criteria) in keys {
            if let Some(minimum) = key_criteria.minimum_valid_until_ts {
                criteria.minimum_valid_until_ts = Some(criteria.minimum_valid_until_ts.unwrap_or(0).max(minimum));
            }
            criteria.key_ids.push(key_id);
        }
        parsed.insert(server, criteria);
    }
    Ok(parsed)
}

/// `POST /_matrix/key/v2/query`: several servers' keys at once (the local type's
/// comment says why not ruma's request).
async fn query_keys_batch(
    State(state): State<AppState>,
    Ruma(request): RumaJson<get_remote_server_keys_batch::Request>,
) -> ApiResult<RumaResponse<get_remote_server_keys_batch::Response>> {
    let servers = parse_batch(request.body)?;
    let federation = &state.remote_keys;
    let responses: Vec<Vec<_>> = futures_util::stream::iter(servers)
        .map(|(server, criteria)| async move {
            let key_ids: Vec<&str> = criteria.key_ids.iter().map(String::as_str).collect();
            federation.notary_query(&server, &key_ids, criteria.minimum_valid_until_ts).await
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    Ok(get_remote_server_keys_batch::Response::new(responses.into_iter().flatten().collect()).into())
}

/// `GET /query/{server}/{keyId}` (deprecated, still served).
async fn query_keys_by_id(
    State(state): State<AppState>,
    Ruma(request): Ruma<get_remote_server_key::Request>,
) -> ApiResult<RumaResponse<get_remote_server_keys::Response>> {
    let minimum = request.minimum_valid_until_ts.as_deref();
    notary_answer(&state, &request.server_name, &[request.key_id.as_str()], minimum).await
}

/// `GET /query/{server}`: our own keys, or another server's as it published them
/// (verified before they are passed on).
async fn query_keys(
    State(state): State<AppState>,
    Ruma(request): Ruma<get_remote_server_keys::Request>,
) -> ApiResult<RumaResponse<get_remote_server_keys::Response>> {
    notary_answer(&state, &request.server_name, &[], request.minimum_valid_until_ts.as_deref()).await
}

/// A server's keys as a notary answers them; the server name and the minimum validity
/// are checked here, so that either one malformed is `M_INVALID_PARAM`.
async fn notary_answer(
    state: &AppState,
    server_name: &str,
    key_ids: &[&str],
    minimum_valid_until_ts: Option<&str>,
) -> ApiResult<RumaResponse<get_remote_server_keys::Response>> {
    let server = <&ServerName>::try_from(server_name)
        .map_err(|_| MatrixError::invalid_param(format!("Invalid server name: {server_name}")))?;
    let minimum = match minimum_valid_until_ts {
        Some(value) => Some(
            value
                .parse::<u64>()
                .map_err(|_| MatrixError::invalid_param("minimum_valid_until_ts must be an integer"))?,
        ),
        None => None,
    };
    let responses = state.remote_keys.notary_query(server, key_ids, minimum).await;
    Ok(get_remote_server_keys::Response::new(responses).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(body: Value) -> Result<BTreeMap<OwnedServerName, Criteria>, MatrixError> {
        let body = serde_json::to_vec(&body).unwrap();
        parse_batch(crate::api::extract::parse_json_object(&body)?)
    }

    #[test]
    fn batch_queries_are_parsed_and_bounded() {
        let parsed = parse(json!({ "server_keys": {
            "a.org": {},
            "b.org:8448": { "ed25519:1": {}, "ed25519:2": { "minimum_valid_until_ts": 5 } },
        }}))
        .unwrap();
        assert_eq!(parsed[<&ServerName>::try_from("a.org").unwrap()], Criteria::default());
        let b = &parsed[<&ServerName>::try_from("b.org:8448").unwrap()];
        assert_eq!((b.key_ids.len(), b.minimum_valid_until_ts), (2, Some(5)));

        let errcode = |body: Value| parse(body).unwrap_err().errcode;
        assert_eq!(errcode(json!({})), "M_MISSING_PARAM");
        assert_eq!(errcode(json!({ "server_keys": [] })), "M_BAD_JSON");
        assert_eq!(errcode(json!({ "server_keys": { "not a server": {} } })), "M_INVALID_PARAM");
        assert_eq!(errcode(json!({ "server_keys": { "a.org": [] } })), "M_BAD_JSON");
        assert_eq!(errcode(json!({ "server_keys": { "a.org": { "k": 1 } } })), "M_BAD_JSON");
        assert_eq!(
            errcode(json!({ "server_keys": { "a.org": { "k": { "minimum_valid_until_ts": -1 } } } })),
            "M_BAD_JSON"
        );
        let many: serde_json::Map<String, Value> =
            (0..=MAX_NOTARY_QUERY_SERVERS).map(|i| (format!("s{i}.org"), json!({}))).collect();
        assert_eq!(errcode(json!({ "server_keys": many })), "M_INVALID_PARAM");
    }
}
