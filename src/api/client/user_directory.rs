//! `POST /user_directory/search`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::extract::{AppState, MatrixJson, Requester};
use crate::error::{ApiResult, MatrixError};

/// Synapse clamps `limit` to this.
const MAX_LIMIT: i64 = 50;
/// Right after start-up a search waits this long for the directory's first build.
const BUILD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const DEFAULT_LIMIT: i64 = 10;

#[derive(Deserialize)]
pub struct SearchRequest {
    search_term: String,
    #[serde(default)]
    limit: Option<i64>,
}

pub async fn search(
    State(state): State<AppState>,
    Requester(owner): Requester,
    MatrixJson(request): MatrixJson<SearchRequest>,
) -> ApiResult<Json<Value>> {
    if owner.is_guest {
        return Err(MatrixError::new(StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN", "Guests cannot search users"));
    }
    state.limits.user_directory.check(owner.user_id.as_str())?;
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT).clamp(0, MAX_LIMIT) as usize;
    if !state.directory.wait_until_built(BUILD_WAIT).await {
        tracing::warn!(user_id = %owner.user_id, "user directory still being built; searching what is indexed so far");
    }
    let found = state.federated_directory.search(&owner.user_id, &request.search_term, limit).await;
    let results: Vec<Value> = found
        .results
        .iter()
        .map(|hit| json!({ "user_id": hit.user_id, "display_name": hit.display_name, "avatar_url": hit.avatar_url }))
        .collect();
    Ok(Json(json!({ "limited": found.limited, "results": results })))
}
