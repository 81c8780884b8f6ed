//! TURN server credentials for calls (`/voip/turnServer`), from Synapse's `turn_*`
//! settings: time-limited credentials from `turn_shared_secret` (the TURN REST API
//! scheme coturn implements), or a fixed `turn_username`/`turn_password`.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::config::Config;
use crate::error::{ApiResult, MatrixError};
use crate::services::accounts::AuthenticatedUser;
use crate::store::now_ms;

/// Credentials for the configured TURN servers.
#[derive(Debug, Clone)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
    pub uris: Vec<String>,
    /// How long the credentials are good for.
    pub ttl: Duration,
}

pub struct Voip {
    uris: Vec<String>,
    shared_secret: Option<String>,
    fixed: Option<(String, String)>,
    lifetime: Duration,
    allow_guests: bool,
}

impl Voip {
    pub fn from_config(config: &Config) -> Self {
        Self {
            uris: config.turn_uris.clone(),
            shared_secret: config.turn_shared_secret.clone(),
            fixed: config.turn_username.clone().zip(config.turn_password.clone()),
            lifetime: config.turn_user_lifetime,
            allow_guests: config.turn_allow_guests,
        }
    }

    /// Credentials for a user; none when no TURN server is configured.
    pub fn turn_server(&self, requester: &AuthenticatedUser) -> ApiResult<Option<TurnCredentials>> {
        if requester.is_guest && !self.allow_guests {
            return Err(MatrixError::forbidden("Guest access to TURN is disabled"));
        }
        if self.uris.is_empty() {
            return Ok(None);
        }
        let (username, password) = match (&self.shared_secret, &self.fixed) {
            (Some(secret), _) => {
                let expiry = (now_ms() / 1000) + self.lifetime.as_secs() as i64;
                let username = format!("{expiry}:{}", requester.user_id);
                let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes())
                    .map_err(|e| MatrixError::internal("turn secret", e))?;
                mac.update(username.as_bytes());
                (username, base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
            }
            (None, Some((username, password))) => (username.clone(), password.clone()),
            (None, None) => return Ok(None),
        };
        Ok(Some(TurnCredentials { username, password, uris: self.uris.clone(), ttl: self.lifetime }))
    }
}
