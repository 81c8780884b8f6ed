//! Registration tokens (MSC3231, Synapse's admin API): which tokens exist, whether one
//! may still be used, and how registrations use them. A registration session that
//! passes the token stage holds a `pending` use until it registers (`completed`) or
//! expires, so a token with `uses_allowed` is never handed out more often than that.

use std::sync::Arc;

use axum::http::StatusCode;
use rand::Rng;

use super::accounts::UIA_SESSION_LIFETIME_SECS;
use crate::error::{ApiResult, MatrixError};
use crate::store::{RegistrationTokenRow, Store, TokenChanges, now_ms};

/// The characters a token may use (Synapse's `[A-Za-z0-9._~-]`).
const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";
pub const MAX_TOKEN_LENGTH: usize = 64;
/// A generated token's length when the admin names none, as in Synapse.
const DEFAULT_TOKEN_LENGTH: i64 = 16;

/// What an admin asks for when creating a token.
#[derive(Debug, Default)]
pub struct NewToken {
    /// Generated (of `length` characters) when absent.
    pub token: Option<String>,
    pub length: Option<i64>,
    pub uses_allowed: Option<i64>,
    pub expiry_time: Option<i64>,
}

pub struct RegistrationTokens {
    store: Arc<Store>,
}

/// Whether `token` may start another registration at `now`.
pub fn is_usable(token: &RegistrationTokenRow, now: i64) -> bool {
    let uses_left = token.uses_allowed.is_none_or(|allowed| token.pending + token.completed < allowed);
    let unexpired = token.expiry_time.is_none_or(|expiry| expiry > now);
    uses_left && unexpired
}

/// A token is 1 to 64 of [`TOKEN_CHARS`].
pub fn is_well_formed(token: &str) -> bool {
    (1..=MAX_TOKEN_LENGTH).contains(&token.len()) && token.bytes().all(|b| TOKEN_CHARS.contains(&b))
}

fn invalid_token() -> MatrixError {
    MatrixError::new(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", "Invalid registration token")
}

fn no_such_token(token: &str) -> MatrixError {
    MatrixError::not_found(format!("No such registration token: {token}"))
}

fn check_uses_allowed(uses_allowed: Option<i64>) -> ApiResult<()> {
    if uses_allowed.is_some_and(|uses| uses < 0) {
        return Err(MatrixError::invalid_param("uses_allowed must be a non-negative integer or null"));
    }
    Ok(())
}

fn check_expiry_time(expiry_time: Option<i64>, now: i64) -> ApiResult<()> {
    if expiry_time.is_some_and(|expiry| expiry < now) {
        return Err(MatrixError::invalid_param("expiry_time must not be in the past"));
    }
    Ok(())
}

fn random_token(length: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..length).map(|_| TOKEN_CHARS[rng.gen_range(0..TOKEN_CHARS.len())] as char).collect()
}

impl RegistrationTokens {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Every token; `valid` keeps only those that may (`true`) or may not (`false`)
    /// still be used.
    pub async fn list(&self, valid: Option<bool>) -> ApiResult<Vec<RegistrationTokenRow>> {
        let now = now_ms();
        let mut tokens = self.store.registration_tokens(now).await?;
        if let Some(valid) = valid {
            tokens.retain(|token| is_usable(token, now) == valid);
        }
        Ok(tokens)
    }

    pub async fn get(&self, token: &str) -> ApiResult<RegistrationTokenRow> {
        self.store.registration_token(token, now_ms()).await?.ok_or_else(|| no_such_token(token))
    }

    pub async fn create(&self, new: NewToken) -> ApiResult<RegistrationTokenRow> {
        check_uses_allowed(new.uses_allowed)?;
        check_expiry_time(new.expiry_time, now_ms())?;
        let token = match new.token {
            Some(token) => {
                if !is_well_formed(&token) {
                    return Err(MatrixError::invalid_param(format!(
                        "token must be 1 to {MAX_TOKEN_LENGTH} characters of [A-Za-z0-9._~-]"
                    )));
                }
                if !self.store.create_registration_token(&token, new.uses_allowed, new.expiry_time).await? {
                    return Err(MatrixError::invalid_param(format!("Token already exists: {token}")));
                }
                token
            }
            None => {
                let length = new.length.unwrap_or(DEFAULT_TOKEN_LENGTH);
                let length = usize::try_from(length)
                    .ok()
                    .filter(|length| (1..=MAX_TOKEN_LENGTH).contains(length))
                    .ok_or_else(|| {
                        MatrixError::invalid_param(format!("length must be an integer > 0 and <= {MAX_TOKEN_LENGTH}"))
                    })?;
                self.create_random(length, new.uses_allowed, new.expiry_time).await?
            }
        };
        self.get(&token).await
    }

    /// Short tokens can collide; a few tries, then a failure rather than a loop.
    async fn create_random(
        &self,
        length: usize,
        uses_allowed: Option<i64>,
        expiry_time: Option<i64>,
    ) -> ApiResult<String> {
        for _ in 0..10 {
            let token = random_token(length);
            if self.store.create_registration_token(&token, uses_allowed, expiry_time).await? {
                return Ok(token);
            }
        }
        Err(MatrixError::new(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            "Could not generate an unused token of that length; ask for a longer one",
        ))
    }

    pub async fn update(&self, token: &str, changes: TokenChanges) -> ApiResult<RegistrationTokenRow> {
        check_uses_allowed(changes.uses_allowed.flatten())?;
        check_expiry_time(changes.expiry_time.flatten(), now_ms())?;
        if !self.store.update_registration_token(token, &changes).await? {
            return Err(no_such_token(token));
        }
        self.get(token).await
    }

    pub async fn delete(&self, token: &str) -> ApiResult<()> {
        if !self.store.delete_registration_token(token).await? {
            return Err(no_such_token(token));
        }
        Ok(())
    }

    /// The validity check clients make before registering; a malformed token is
    /// `M_INVALID_PARAM`.
    pub async fn is_valid(&self, token: &str) -> ApiResult<bool> {
        if !is_well_formed(token) {
            return Err(MatrixError::invalid_param(format!(
                "token must be 1 to {MAX_TOKEN_LENGTH} characters of [A-Za-z0-9._~-]"
            )));
        }
        let now = now_ms();
        Ok(self.store.registration_token(token, now).await?.is_some_and(|row| is_usable(&row, now)))
    }

    /// Whether a registration session has passed the token stage.
    pub async fn session_holds_token(&self, session: &str) -> ApiResult<bool> {
        Ok(self.store.session_registration_token(session, now_ms()).await?.is_some())
    }

    /// The token stage: a usable token gives the session a pending use. A session
    /// that passed already passes again with the same token (its use is not counted
    /// twice); another token is refused.
    pub async fn use_in_session(&self, session: &str, token: &str) -> ApiResult<()> {
        let now = now_ms();
        if let Some(held) = self.store.session_registration_token(session, now).await? {
            if held == token {
                return Ok(());
            }
            return Err(MatrixError::invalid_param("Registration token has changed"));
        }
        if !is_well_formed(token) {
            return Err(invalid_token());
        }
        let expires_ts = now + UIA_SESSION_LIFETIME_SECS as i64 * 1000;
        if self.store.reserve_registration_token(session, token, now, expires_ts, |row| is_usable(row, now)).await? {
            Ok(())
        } else {
            Err(invalid_token())
        }
    }

    /// A registration finished: the session's pending use becomes a completed one.
    pub async fn complete(&self, session: &str) -> ApiResult<()> {
        Ok(self.store.complete_registration_token(session).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(
        uses_allowed: Option<i64>,
        pending: i64,
        completed: i64,
        expiry_time: Option<i64>,
    ) -> RegistrationTokenRow {
        RegistrationTokenRow { token: "t".into(), uses_allowed, pending, completed, expiry_time }
    }

    #[test]
    fn usable_while_uses_remain_and_unexpired() {
        assert!(is_usable(&token(None, 5, 5, None), 1000));
        assert!(is_usable(&token(Some(2), 1, 0, Some(1001)), 1000));
        assert!(!is_usable(&token(Some(2), 1, 1, None), 1000));
        assert!(!is_usable(&token(Some(0), 0, 0, None), 1000));
        assert!(!is_usable(&token(None, 0, 0, Some(1000)), 1000));
    }

    #[test]
    fn tokens_are_short_and_plain() {
        assert!(is_well_formed("abc-._~XYZ09"));
        assert!(!is_well_formed(""));
        assert!(!is_well_formed("has space"));
        assert!(!is_well_formed("é"));
        assert!(!is_well_formed(&"a".repeat(65)));
        let generated = random_token(64);
        assert!(is_well_formed(&generated));
    }
}
