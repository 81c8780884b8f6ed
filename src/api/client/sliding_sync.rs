//! Simplified sliding sync (MSC4186), the sync Element X uses.

use std::collections::BTreeMap;

use axum::extract::State;
use ruma::OwnedRoomId;
use ruma::api::client::sync::sync_events::v5;
use serde::Deserialize;

use crate::api::extract::{AppState, Requester, RumaResponse, RumaWith};
use crate::error::ApiResult;
use crate::services::sliding_sync::ListSpaces;

/// The lists' `filters.spaces`, read beside ruma's request: MSC4186 (and Synapse's
/// request model) has the filter, ruma 0.17's `v5::request::ListFilters` lacks it, and
/// ruma ignores fields it does not know.
#[derive(Deserialize, Default)]
pub struct SpacesOfLists {
    #[serde(default)]
    lists: BTreeMap<String, SpacesOfList>,
}

#[derive(Deserialize, Default)]
struct SpacesOfList {
    #[serde(default)]
    filters: Option<SpacesFilter>,
}

#[derive(Deserialize, Default)]
struct SpacesFilter {
    #[serde(default)]
    spaces: Option<Vec<OwnedRoomId>>,
}

impl SpacesOfLists {
    /// The lists that filter by space, with their spaces (an empty `spaces` filters
    /// nothing, as the sliding sync proxy read it).
    fn into_list_spaces(self) -> ListSpaces {
        let spaces = |(name, list): (String, SpacesOfList)| Some((name, list.filters?.spaces?));
        self.lists.into_iter().filter_map(spaces).filter(|(_, spaces)| !spaces.is_empty()).collect()
    }
}

pub async fn sync(
    State(state): State<AppState>,
    Requester(owner): Requester,
    RumaWith(request, spaces): RumaWith<v5::Request, SpacesOfLists>,
) -> ApiResult<RumaResponse<v5::Response>> {
    let spaces = spaces.into_list_spaces();
    Ok(state.sliding_sync.sync(&owner.user_id, &owner.device_id, request, &spaces).await?.into())
}
