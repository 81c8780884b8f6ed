//! Queries (`GET /_matrix/app/v1/users/{userId}` and `/rooms/{alias}`): before kith
//! says a local user or alias in a service's namespaces does not exist, it asks the
//! service, which may create it then (bridges make their "ghosts" and channel rooms on
//! demand); the caller looks again if the service says it did.

use std::time::Duration;

use axum::http::StatusCode;
use ruma::api::appservice::query::{query_room_alias, query_user_id};
use ruma::{RoomAliasId, UserId};

use super::outgoing::{self, AppServiceError};
use super::{AppService, AppServices};

/// A query waits this long for the service's answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

impl AppServices {
    /// Whether a service interested in `user_id` says it exists (it created it, then).
    pub async fn query_user(&self, user_id: &UserId) -> bool {
        for service in self.with_url().filter(|s| s.is_interested_in_user(user_id)) {
            let request = query_user_id::v1::Request::new(user_id.to_owned());
            let answer = outgoing::send(&self.http, service, request, QUERY_TIMEOUT).await;
            if found(service, "user", user_id.as_str(), answer) {
                return true;
            }
        }
        false
    }

    /// Whether a service interested in `alias` says it exists (it created it, then).
    pub async fn query_alias(&self, alias: &RoomAliasId) -> bool {
        for service in self.with_url().filter(|s| s.is_interested_in_alias(alias.as_str())) {
            let request = query_room_alias::v1::Request::new(alias.to_owned());
            let answer = outgoing::send(&self.http, service, request, QUERY_TIMEOUT).await;
            if found(service, "alias", alias.as_str(), answer) {
                return true;
            }
        }
        false
    }

    pub(super) fn with_url(&self) -> impl Iterator<Item = &AppService> {
        self.services.iter().filter(|s| s.registration.url.is_some()).map(|s| s.as_ref())
    }
}

/// A 2xx answer is a yes, a 404 a no; anything else a no that is logged.
fn found<T>(service: &AppService, what: &str, id: &str, answer: Result<T, AppServiceError>) -> bool {
    match answer {
        Ok(_) => true,
        Err(AppServiceError::BadStatus { status: StatusCode::NOT_FOUND, .. }) => false,
        Err(err) => {
            tracing::warn!(appservice = service.id(), what, id, %err, "application service query failed");
            false
        }
    }
}
