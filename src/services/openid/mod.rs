//! OpenID tokens (`/user/{userId}/openid/request_token`): short-lived proofs of a user's
//! identity that a third party (an integration manager, a widget) checks with this
//! server over federation (`/openid/userinfo`). Kept in memory, bounded, for an hour.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use rand::distributions::Alphanumeric;
use ruma::{OwnedUserId, UserId};

use super::bounded::BoundedMap;
use crate::error::{ApiResult, MatrixError};
use crate::store::now_ms;

/// A token is good for this long (Synapse's default).
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Outstanding tokens, at most (the oldest are forgotten first).
const MAX_TOKENS: usize = 100_000;

pub struct OpenId {
    tokens: Mutex<BoundedMap<String, (OwnedUserId, i64)>>,
}

impl Default for OpenId {
    fn default() -> Self {
        Self { tokens: Mutex::new(BoundedMap::new(MAX_TOKENS)) }
    }
}

/// A token handed to the user it proves, for a third party to check.
#[derive(Debug, Clone)]
pub struct OpenIdToken {
    pub access_token: String,
    pub expires_in: Duration,
}

impl OpenId {
    /// A new token for `user_id` (who must be the requester).
    pub fn issue(&self, requester: &UserId, user_id: &UserId) -> ApiResult<OpenIdToken> {
        if requester != user_id {
            return Err(MatrixError::forbidden("Cannot request tokens for other users."));
        }
        let token: String = rand::thread_rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect();
        let expires = now_ms() + TOKEN_LIFETIME.as_millis() as i64;
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(token.clone(), (user_id.to_owned(), expires));
        Ok(OpenIdToken { access_token: token, expires_in: TOKEN_LIFETIME })
    }

    /// The user a live token was issued to.
    pub fn user_of(&self, token: &str) -> ApiResult<OwnedUserId> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match tokens.get(&token.to_owned()) {
            Some((user, expires)) if *expires > now_ms() => Ok(user.clone()),
            _ => Err(MatrixError::new(axum::http::StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", "Invalid access token")),
        }
    }
}
