//! Other servers' users: their public profile, asked for with
//! `GET /_matrix/federation/v1/query/profile`.

use axum::http::StatusCode;
use ruma::UserId;

use super::{Profile, Profiles};
use crate::error::{ApiResult, MatrixError};
use crate::services::federation::encode;

impl Profiles {
    /// Asks `user_id`'s server for their profile (or one field of it).
    pub(super) async fn fetch_remote(&self, user_id: &UserId, field: Option<&str>) -> ApiResult<Profile> {
        let mut path = format!("/_matrix/federation/v1/query/profile?user_id={}", encode(user_id.as_str()));
        if let Some(field) = field {
            path.push_str(&format!("&field={}", encode(field)));
        }
        let profile = self.client.get(user_id.server_name(), &path).await.map_err(|e| e.to_client_error())?;
        serde_json::from_value(profile).map_err(|_| {
            MatrixError::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", "Invalid profile from the remote server")
        })
    }
}
