//! `POST /user_directory/search`.

use axum::extract::State;
use axum::http::StatusCode;
use ruma::api::client::user_directory::search_users::v3::User;

use crate::api::extract::{AppState, Requester, Ruma, RumaJson, RumaResponse};
use crate::endpoints::client::search_users;
use crate::error::{ApiResult, MatrixError};
use crate::services::directory::search::SearchHit;

/// Synapse clamps `limit` to this.
const MAX_LIMIT: i64 = 50;
/// Right after start-up a search waits this long for the directory's first build.
const BUILD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const DEFAULT_LIMIT: i64 = 10;

pub async fn search(
    State(state): State<AppState>,
    Requester(owner): Requester,
    Ruma(request): RumaJson<search_users::Request>,
) -> ApiResult<RumaResponse<search_users::Response>> {
    if owner.is_guest {
        return Err(MatrixError::new(StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN", "Guests cannot search users"));
    }
    state.limits.user_directory.check_requester(&owner)?;
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT).clamp(0, MAX_LIMIT) as usize;
    if !state.directory.wait_until_built(BUILD_WAIT).await {
        tracing::warn!(user_id = %owner.user_id, "user directory still being built; searching what is indexed so far");
    }
    let found = state.federated_directory.search(&owner.user_id, &request.search_term, limit).await;
    let results = found.results.into_iter().filter_map(search_user).collect();
    Ok(search_users::Response { results, limited: found.limited }.into())
}

/// A hit as ruma's type; the index holds only valid user IDs, but a hit whose ID does
/// not parse is left out rather than failing the search.
fn search_user(hit: SearchHit) -> Option<User> {
    let user_id = ruma::OwnedUserId::try_from(hit.user_id).ok()?;
    let mut user = User::new(user_id);
    user.display_name = hit.display_name;
    user.avatar_url = hit.avatar_url.map(Into::into);
    Some(user)
}
