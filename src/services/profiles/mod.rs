//! Global profiles (spec v1.16 / MSC4133): `displayname`, `avatar_url` and custom fields.
//! This is the user's public profile; per-room nicknames live in member events only.
//! Local users' profiles are kept here; other servers' users are asked for
//! ([`remote`]); changes reach the rooms of local users in the background
//! ([`propagation`]).

pub mod propagation;
mod remote;

use std::sync::Arc;

use axum::http::StatusCode;
use ruma::{OwnedServerName, UserId};
use serde_json::Value;
use tokio::sync::watch;

use super::appservices::AppServices;
use super::federation::FederationClient;
use crate::error::{ApiResult, MatrixError};
use crate::store::Store;

/// The whole profile, as canonical-ish JSON, may not exceed this (spec: 64 KiB).
pub const MAX_PROFILE_BYTES: usize = 64 * 1024;
/// Longest field name (spec: 255 bytes).
pub const MAX_KEY_BYTES: usize = 255;
// Synapse's limits on the two historic fields.
const MAX_DISPLAYNAME_CHARS: usize = 256;
const MAX_AVATAR_URL_CHARS: usize = 1000;

pub use crate::services::rooms::membership::Profile;

pub struct Profiles {
    store: Arc<Store>,
    server_name: OwnedServerName,
    client: Arc<FederationClient>,
    /// Asked about unknown local users in their namespaces.
    appservices: Arc<AppServices>,
    /// Bumped after each change, to wake the followers of the profile-change stream.
    changed: watch::Sender<i64>,
}

impl Profiles {
    pub fn new(
        store: Arc<Store>,
        server_name: OwnedServerName,
        client: Arc<FederationClient>,
        appservices: Arc<AppServices>,
    ) -> Self {
        Self { store, server_name, client, appservices, changed: watch::channel(0).0 }
    }

    /// Wakes on every local profile change.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.changed.subscribe()
    }

    pub fn is_local(&self, user_id: &UserId) -> bool {
        user_id.server_name() == self.server_name
    }

    /// A local user's profile; `M_NOT_FOUND` for unknown or deactivated users.
    pub async fn get(&self, user_id: &UserId) -> ApiResult<Profile> {
        let mut user = self.store.get_user(user_id.as_str()).await?;
        if user.is_none() && self.appservices.query_user(user_id).await {
            user = self.store.get_user(user_id.as_str()).await?;
        }
        match user {
            Some(user) if !user.deactivated => Ok(self.store.get_profile(user_id.as_str()).await?),
            _ => Err(MatrixError::not_found("Profile was not found")),
        }
    }

    /// Anyone's public profile, or one field of it: ours from the database, other
    /// servers' users by asking their server.
    pub async fn lookup(&self, user_id: &UserId, field: Option<&str>) -> ApiResult<Profile> {
        let mut profile = match self.is_local(user_id) {
            true => self.get(user_id).await?,
            false => self.fetch_remote(user_id, field).await?,
        };
        if let Some(field) = field {
            profile.retain(|key, _| key == field);
        }
        Ok(profile)
    }

    /// Sets (`Some`) or deletes (`None`) one field of a local user's profile.
    pub async fn set_field(&self, user_id: &UserId, key: &str, value: Option<Value>) -> ApiResult<()> {
        let user_id = user_id.as_str();
        validate_key(key)?;
        if let Some(value) = &value {
            validate_value(key, value)?;
        }
        let accepted = self
            .store
            .update_profile_field(user_id, key, value.as_ref(), |profile| profile_size(profile) <= MAX_PROFILE_BYTES)
            .await?;
        if !accepted {
            return Err(MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_PROFILE_TOO_LARGE",
                format!("The profile would exceed {MAX_PROFILE_BYTES} bytes"),
            ));
        }
        self.changed.send_modify(|serial| *serial += 1);
        Ok(())
    }
}

/// Whether another server's account of a profile (an answer or an EDU) is one kith keeps:
/// field names and the whole within the local limits, the historic fields strings of
/// bounded length, no U+0000.
pub fn check_remote_profile(profile: &Profile) -> ApiResult<()> {
    for (key, value) in profile {
        validate_key(key)?;
        if matches!(key.as_str(), "displayname" | "avatar_url") {
            validate_value(key, value)?;
        }
    }
    let profile_json = serde_json::to_value(profile).map_err(|e| MatrixError::bad_json(e.to_string()))?;
    crate::validation::check_json_text(&profile_json)?;
    if profile_size(profile) > MAX_PROFILE_BYTES {
        return Err(MatrixError::bad_json(format!("the profile exceeds {MAX_PROFILE_BYTES} bytes")));
    }
    Ok(())
}

fn profile_size(profile: &Profile) -> usize {
    serde_json::to_vec(profile).map(|bytes| bytes.len()).unwrap_or(usize::MAX)
}

fn validate_key(key: &str) -> ApiResult<()> {
    if key.is_empty() {
        return Err(MatrixError::invalid_param("The field name may not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(MatrixError::new(
            StatusCode::BAD_REQUEST,
            "M_KEY_TOO_LARGE",
            format!("Field names may be at most {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Fields the spec defines are type-checked; the rest of `m.*` is reserved.
fn validate_value(key: &str, value: &Value) -> ApiResult<()> {
    match key {
        "displayname" => {
            let name = value.as_str().ok_or_else(|| MatrixError::bad_json("displayname must be a string"))?;
            if name.chars().count() > MAX_DISPLAYNAME_CHARS {
                return Err(MatrixError::bad_json(format!("Displayname is too long (max {MAX_DISPLAYNAME_CHARS})")));
            }
        }
        "avatar_url" => {
            let url = value.as_str().ok_or_else(|| MatrixError::bad_json("avatar_url must be a string"))?;
            if url.chars().count() > MAX_AVATAR_URL_CHARS {
                return Err(MatrixError::bad_json(format!("Avatar URL is too long (max {MAX_AVATAR_URL_CHARS})")));
            }
            if !url.is_empty() && !url.starts_with("mxc://") {
                return Err(MatrixError::bad_json("avatar_url must be an mxc:// URI"));
            }
        }
        "m.tz" if !value.is_string() => {
            return Err(MatrixError::bad_json("m.tz must be a string"));
        }
        "m.tz" => {}
        other if other.starts_with("m.") => {
            return Err(MatrixError::bad_json(format!(
                "{other} is in the reserved m.* namespace and not a known field"
            )));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::rooms::pdu::fixture::json_text;

    #[test]
    fn known_fields_are_type_checked() {
        assert!(validate_value("displayname", &Value::from("Alice")).is_ok());
        assert!(validate_value("displayname", &Value::from(5)).is_err());
        assert!(validate_value("displayname", &Value::from("x".repeat(257))).is_err());
        assert!(validate_value("avatar_url", &Value::from("mxc://a/b")).is_ok());
        assert!(validate_value("avatar_url", &Value::from("https://a/b")).is_err());
        assert!(validate_value("m.tz", &Value::from("Europe/Paris")).is_ok());
        assert!(validate_value("m.unknown", &Value::from("x")).is_err());
        assert!(validate_value("org.example.pronouns", &json_text(r#"{"any": ["json"]}"#)).is_ok());
    }

    #[test]
    fn key_length_is_limited() {
        assert!(validate_key(&"k".repeat(255)).is_ok());
        assert_eq!(validate_key(&"k".repeat(256)).unwrap_err().errcode, "M_KEY_TOO_LARGE");
    }
}
