//! Application services (bridges and bots): their registration files, the `as_token`
//! acting as the service's sender or as a user of its namespaces, registration in
//! those namespaces, the namespaces kept from everyone else (`M_EXCLUSIVE`), pings,
//! queries, and the transactions pushing events to each service (`transactions.rs`).
//! `docs/appservices.md` says what differs from Synapse.

mod ephemeral;
mod interest;
pub mod outgoing;
mod queries;
pub mod registration;
mod thirdparty;
pub mod transactions;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use ruma::api::appservice::ping::send_ping;
use ruma::{OwnedTransactionId, OwnedUserId, UserId};

use crate::config::Config;
use crate::error::{ApiResult, MatrixError};
use crate::services::accounts::{Accounts, AuthenticatedUser, NewAccount, Session};
use crate::store::Store;
use outgoing::AppServiceError;
pub use registration::AppService;

/// Who a request with an `as_token` says it acts for (`?user_id=`, `?device_id=`).
#[derive(Debug, Default)]
pub struct Masquerade {
    pub user_id: Option<String>,
    pub device_id: Option<String>,
}

/// A ping waits this long for the service's answer.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AppServices {
    store: Arc<Store>,
    accounts: Arc<Accounts>,
    services: Vec<Arc<AppService>>,
    by_token: HashMap<String, Arc<AppService>>,
    http: reqwest::Client,
    /// MSC2409's to-device part (Synapse's experimental flag of the same name).
    pub(super) push_to_device: bool,
}

impl AppServices {
    /// Reads the registration files; any fault in one stops start-up.
    pub fn new(config: &Config, store: Arc<Store>, accounts: Arc<Accounts>) -> anyhow::Result<Self> {
        let services = registration::load_all(&config.app_service_config_files, &config.server_name)?;
        let services: Vec<Arc<AppService>> = services.into_iter().map(Arc::new).collect();
        let by_token = services.iter().map(|s| (s.registration.as_token.clone(), s.clone())).collect();
        let push_to_device = config.experimental_features.msc2409_to_device_messages_enabled;
        Ok(Self { store, accounts, services, by_token, http: outgoing::http_client()?, push_to_device })
    }

    /// Transactions waiting per service (every service listed, 0 when none).
    pub async fn transactions_waiting(&self) -> ApiResult<Vec<(String, i64)>> {
        let waiting: HashMap<String, i64> = self.store.appservice_transactions_waiting().await?.into_iter().collect();
        Ok(self.services.iter().map(|s| (s.id().to_owned(), waiting.get(s.id()).copied().unwrap_or(0))).collect())
    }

    /// Creates each service's sender user if it does not exist yet.
    pub async fn create_senders(&self) -> anyhow::Result<()> {
        for service in &self.services {
            if self.accounts.is_available(&service.sender).await? {
                let account = NewAccount::default();
                match self.accounts.register_user(&service.sender, None, account, None).await {
                    Ok(_) => tracing::info!(id = service.id(), sender = %service.sender, "created the sender user"),
                    Err(err) if err.errcode == "M_USER_IN_USE" => {}
                    Err(err) => anyhow::bail!("cannot create {}: {}", service.sender, err.message),
                }
            }
        }
        Ok(())
    }

    pub fn all(&self) -> &[Arc<AppService>] {
        &self.services
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<AppService>> {
        self.services.iter().find(|s| s.id() == id)
    }

    pub fn by_token(&self, token: &str) -> Option<&Arc<AppService>> {
        self.by_token.get(token)
    }

    /// The request's user when `token` is a service's `as_token`: its sender, or the
    /// user named by `?user_id=` if that user is in its namespaces and exists; and the
    /// device named by `?device_id=` if that user has it (`400 M_UNKNOWN_DEVICE`
    /// otherwise, as in Synapse). `None` for any other token.
    pub async fn authenticate(&self, token: &str, asserted: &Masquerade) -> ApiResult<Option<AuthenticatedUser>> {
        let Some(service) = self.by_token(token) else { return Ok(None) };
        let user_id = match &asserted.user_id {
            None => service.sender.clone(),
            Some(user_id) => self.masqueraded(service, user_id).await?,
        };
        let device_id = match &asserted.device_id {
            None => String::new(),
            Some(device_id) => self.masqueraded_device(&user_id, device_id).await?,
        };
        Ok(Some(AuthenticatedUser {
            user_id,
            device_id,
            admin: false,
            is_guest: false,
            appservice_id: Some(service.id().to_owned()),
            rate_limited: service.rate_limited(),
        }))
    }

    async fn masqueraded_device(&self, user_id: &UserId, device_id: &str) -> ApiResult<String> {
        let devices = self.store.devices(user_id.as_str()).await?;
        if !devices.iter().any(|d| d.device_id == device_id) {
            return Err(MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_UNKNOWN_DEVICE",
                format!("Application service trying to use a device that doesn't exist ('{device_id}' for {user_id})"),
            ));
        }
        Ok(device_id.to_owned())
    }

    async fn masqueraded(&self, service: &AppService, user_id: &str) -> ApiResult<OwnedUserId> {
        let user_id =
            UserId::parse(user_id).map_err(|_| MatrixError::invalid_param(format!("Invalid user_id: {user_id}")))?;
        if !service.is_interested_in_user(&user_id) || user_id.server_name().as_str() != self.accounts.server_name() {
            return Err(MatrixError::forbidden(format!(
                "Application service cannot masquerade as this user ({user_id})."
            )));
        }
        if self.accounts.is_available(&user_id).await? {
            return Err(MatrixError::forbidden(format!(
                "Application service has not registered this user ({user_id})."
            )));
        }
        Ok(user_id)
    }

    /// The service owning `user_id` exclusively, if any.
    pub fn exclusive_owner_of_user(&self, user_id: &UserId) -> Option<&Arc<AppService>> {
        self.services.iter().find(|s| s.is_exclusive_user(user_id))
    }

    /// `M_EXCLUSIVE` if a service other than `allowed` holds `user_id` exclusively.
    pub fn check_user_not_reserved(&self, user_id: &UserId, allowed: Option<&str>) -> ApiResult<()> {
        match self.exclusive_owner_of_user(user_id) {
            Some(owner) if Some(owner.id()) != allowed => {
                Err(exclusive("This user ID is reserved by an application service."))
            }
            _ => Ok(()),
        }
    }

    /// `M_EXCLUSIVE` if a service holds `alias` exclusively and the requester is not
    /// acting for a service interested in it.
    pub fn check_alias_not_reserved(&self, alias: &str, requester: &AuthenticatedUser) -> ApiResult<()> {
        if !self.services.iter().any(|s| s.is_exclusive_alias(alias)) {
            return Ok(());
        }
        let acting_for = requester.appservice_id.as_deref().and_then(|id| self.by_id(id));
        if acting_for.is_some_and(|s| s.is_interested_in_alias(alias)) {
            return Ok(());
        }
        Err(exclusive("This alias is reserved by an application service."))
    }

    /// `POST /register` with `m.login.application_service`: a user of the service's
    /// namespaces, created without a password; a session unless `device` is `None`.
    pub async fn register_user(
        &self,
        token: &str,
        username: &str,
        device: Option<(Option<&ruma::DeviceId>, Option<&str>)>,
    ) -> ApiResult<(OwnedUserId, Option<Session>)> {
        let service = self.by_token(token).ok_or_else(|| {
            MatrixError::new(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", "Invalid application service token.")
        })?;
        let user_id = match username.strip_prefix('@') {
            Some(_) => UserId::parse(username),
            None => UserId::parse(format!("@{username}:{}", self.accounts.server_name())),
        }
        .map_err(|_| MatrixError::new(StatusCode::BAD_REQUEST, "M_INVALID_USERNAME", "Invalid user ID"))?;
        if user_id.server_name().as_str() != self.accounts.server_name() || !service.is_interested_in_user(&user_id) {
            return Err(exclusive("Invalid user localpart for this application service."));
        }
        self.check_user_not_reserved(&user_id, Some(service.id()))?;
        let session = self.accounts.register_user(&user_id, None, NewAccount::default(), device).await?;
        Ok((user_id, session))
    }

    /// `POST /_matrix/client/v1/appservice/{id}/ping`, asked by the service itself:
    /// how long its `POST /_matrix/app/v1/ping` took.
    pub async fn ping(
        &self,
        requester: &AuthenticatedUser,
        id: &str,
        transaction_id: Option<OwnedTransactionId>,
    ) -> ApiResult<Duration> {
        let service =
            self.by_id(id).filter(|s| requester.appservice_id.as_deref() == Some(s.id())).ok_or_else(|| {
                MatrixError::forbidden("Provided access token is not a token of this application service.")
            })?;
        let mut request = send_ping::v1::Request::new();
        request.transaction_id = transaction_id;
        let started = Instant::now();
        outgoing::send(&self.http, service, request, PING_TIMEOUT).await.map_err(ping_error)?;
        Ok(started.elapsed())
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

fn exclusive(message: &str) -> MatrixError {
    MatrixError::new(StatusCode::BAD_REQUEST, "M_EXCLUSIVE", message)
}

/// The spec's errors for a failed ping.
fn ping_error(err: AppServiceError) -> MatrixError {
    match err {
        AppServiceError::UrlNotSet => {
            MatrixError::new(StatusCode::BAD_REQUEST, "M_URL_NOT_SET", "Application service URL is not set.")
        }
        AppServiceError::Timeout => MatrixError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "M_CONNECTION_TIMEOUT",
            "Connection to application service timed out",
        ),
        AppServiceError::ConnectionFailed(reason) => MatrixError::new(
            StatusCode::BAD_GATEWAY,
            "M_CONNECTION_FAILED",
            format!("Failed to connect to application service: {reason}"),
        ),
        AppServiceError::BadStatus { status, body } => {
            MatrixError::new(StatusCode::BAD_GATEWAY, "M_BAD_STATUS", "Ping returned error status")
                .with("status", status.as_u16().into())
                .with("body", body.into())
        }
        AppServiceError::InvalidResponse(reason) => MatrixError::new(
            StatusCode::BAD_GATEWAY,
            "M_BAD_STATUS",
            format!("The application service's answer does not fit: {reason}"),
        ),
    }
}
