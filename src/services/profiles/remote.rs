//! Other servers' users: their public profile, asked for with
//! `GET /_matrix/federation/v1/query/profile`.

use ruma::UserId;
use ruma::api::federation::query::get_profile_information::v1 as profile_query;
use ruma::profile::ProfileFieldName;

use super::{Profile, Profiles};
use crate::error::ApiResult;

impl Profiles {
    /// Asks `user_id`'s server for their profile (or one field of it).
    pub(super) async fn fetch_remote(&self, user_id: &UserId, field: Option<&str>) -> ApiResult<Profile> {
        let mut request = profile_query::Request::new(user_id.to_owned());
        request.field = field.map(ProfileFieldName::from);
        let answer = self.client.send(user_id.server_name(), request).await.map_err(|e| e.to_client_error())?;
        Ok(answer.data.into_iter().collect())
    }
}
