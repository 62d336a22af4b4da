//! Installation handler (docs/original.md#lansweeper): callback secret, callback URL, "Awaiting authorization"
//! suspension, and re-validation of existing credentials.

use app_builder_core::bus::{InstallationEvent, LifecycleStep};
use app_builder_core::context::AccountContext;
use app_builder_core::fourme::FourMeClient;
use app_builder_core::fourme::instances::{
    InstanceUpdate, find_app_instance_with_retry, lambda_api_url, update_app_instance,
};
use app_builder_core::response::{ApiError, ApiResponse};
use app_builder_core::secrets::{RECOVERY_WINDOW_DAYS, SecretStore, customer_secret_name};
use app_builder_core::state::{Expect, StateStore, Written};
use lambda_http::{Body, Response};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::api::ClientCredentials;
use crate::instance::{InstanceConfig, fields, status};
use crate::{
    AWAITING_AUTHORIZATION, CALLBACK_SECRET_KEY, LansweeperFunction, ROTATE_TOKEN_COMMENT,
    RefreshQueue, client_secret, credentials_fingerprint, refresh_token,
};

/// 200 after an uninstall.
pub const TOKENS_FORGOTTEN: &str = "Lansweeper tokens forgotten";
/// 500 when an uninstalled customer's secret cannot be scheduled for deletion.
pub const FORGET_FAILED: &str = "Unable to forget Lansweeper tokens";

/// Public message of a failed installation.
pub(crate) const INSTALL_FAILED: &str = "Unable to update Lansweeper callback URL";

#[derive(Debug, thiserror::Error)]
enum InstallError {
    #[error("customer context: {0}")]
    Context(#[from] app_builder_core::context::ContextError),
    #[error("Unable to store Lansweeper callback secret: {0}")]
    Store(#[from] app_builder_core::secrets::SecretStoreError),
    #[error("Unable to store Lansweeper callback secret")]
    NotStored,
    #[error("cannot generate the callback secret")]
    Random,
    #[error(transparent)]
    Instance(#[from] app_builder_core::fourme::instances::InstanceError),
    #[error("Unable to set app instance custom fields: {0}")]
    Update(app_builder_core::fourme::FourMeError),
}

/// What the credential check concluded.
enum Validation {
    Valid,
    NotAuthorized,
    FourMeFailed,
}

fn new_callback_secret() -> Result<String, InstallError> {
    crate::random_token().ok_or(InstallError::Random)
}

impl<S: SecretStore, Q: RefreshQueue, T: StateStore> LansweeperFunction<S, Q, T> {
    /// Handles an `Installation changed` event: when secrets were stored, 200 `OK` once the
    /// callback URL is set (or the credentials still work); other steps and offerings 200
    /// without action; 500 `Unable to update Lansweeper callback URL` on failures.
    pub async fn handle_installation(
        &self,
        event: &InstallationEvent,
        function_arn: &str,
    ) -> Response<Body> {
        let config = self.loader.config();
        if !event.concerns(&config.domain, self.offering()) {
            return ApiResponse::ok(&format!(
                "Not an installation of {}: {}",
                self.offering(),
                event.detail.offering
            ));
        }
        let account = &event.detail.account;
        let span = tracing::info_span!("installation", account = %account, offering = %self.offering(), step = event.detail.step.as_str());
        let handled = async {
            match event.detail.step {
                LifecycleStep::SecretsUpdated => {}
                LifecycleStep::Deleted => return self.forget(account).await,
                LifecycleStep::Enabled => return self.first_sync(account).await,
                other => return ApiResponse::ok(&format!("No action for {}", other.as_str())),
            }
            match self.install(account, function_arn).await {
                Ok(()) => ApiResponse::ok("OK"),
                Err(e) => {
                    tracing::error!(account = %account, error = %e, "installation failed");
                    ApiResponse::message(http::StatusCode::INTERNAL_SERVER_ERROR, INSTALL_FAILED)
                }
            }
        };
        handled.instrument(span).await
    }

    /// Enabled (the customer confirmed the configuration, or enabled the app again): a
    /// connected installation is synced now rather than at the next schedule. 200 `Sync queued`
    /// or `Not connected yet`; 500 when the queue fails (retried).
    async fn first_sync(&self, account: &str) -> Response<Body> {
        let connected = match self.loader.customer(account).await {
            Ok(customer) => refresh_token(customer.secrets()).is_some(),
            Err(e) => {
                tracing::info!(error = %e, "no customer context yet");
                false
            }
        };
        if !connected {
            return ApiResponse::ok("Not connected yet");
        }
        match self.queue.enqueue(account).await {
            Ok(()) => ApiResponse::ok("Sync queued"),
            Err(e) => {
                tracing::error!(error = %e, "sync not queued");
                ApiResponse::message(http::StatusCode::INTERNAL_SERVER_ERROR, INSTALL_FAILED)
            }
        }
    }

    /// Uninstalled: the customer secret (its Lansweeper refresh token, client secret and callback
    /// secret) is scheduled for deletion and the validated-credentials record deleted; the
    /// tokens are never used again. 200 `Lansweeper
    /// tokens forgotten`, 500 when the store fails (retried).
    async fn forget(&self, account: &str) -> Response<Body> {
        let config = self.loader.config();
        let name = match customer_secret_name(&config.app, self.offering(), &config.domain, account)
        {
            Ok(name) => name,
            Err(err) => return ApiError::BadRequest(err.to_string()).into_response(),
        };
        let key = validated_key(self.offering(), account);
        let record = match self.state.get(&key).await {
            Ok(record) => record,
            Err(err) => return ApiError::upstream(FORGET_FAILED, err).into_response(),
        };
        if let Some(record) = record
            && let Err(err) = self.state.delete(&key, record.version).await
        {
            return ApiError::upstream(FORGET_FAILED, err).into_response();
        }
        match self
            .loader
            .store()
            .schedule_deletion(&name, RECOVERY_WINDOW_DAYS)
            .await
        {
            Ok(()) => {
                tracing::info!(secret = %name, "customer secret scheduled for deletion");
                ApiResponse::ok(TOKENS_FORGOTTEN)
            }
            Err(err) => ApiError::upstream(FORGET_FAILED, err).into_response(),
        }
    }

    async fn install(&self, account: &str, function_arn: &str) -> Result<(), InstallError> {
        let customer = self.loader.customer(account).await?;
        let callback_secret = self.ensure_callback_secret(&customer).await?;
        let provider = self.loader.provider().await?;
        let provider_client = provider.client()?;
        let instance = find_app_instance_with_retry(
            provider_client,
            self.offering(),
            account,
            self.settings.instance_retry_wait,
        )
        .await?;
        let config = InstanceConfig::from(&instance);
        if config.connection_status.as_deref() != Some(status::PENDING_CALLBACK_URL)
            && self.credentials_unchanged(&config, &customer).await
        {
            tracing::info!("Lansweeper credentials unchanged since their validation");
            return Ok(());
        }
        let mut update = None;
        if config.connection_status.as_deref() != Some(status::PENDING_CALLBACK_URL) {
            match self.validate(&config, &customer).await {
                Validation::Valid => {
                    tracing::info!("Lansweeper credentials valid, nothing to change");
                    return Ok(());
                }
                Validation::NotAuthorized => {}
                Validation::FourMeFailed => {
                    update = Some(InstanceUpdate {
                        suspended: Some(true),
                        suspension_comment: Some(ROTATE_TOKEN_COMMENT.into()),
                        custom_fields: Vec::new(),
                    });
                }
            }
        }
        let update = match update {
            Some(u) => u,
            None => {
                let api_url = lambda_api_url(provider_client, function_arn).await?;
                InstanceUpdate {
                    suspended: Some(true),
                    suspension_comment: Some(AWAITING_AUTHORIZATION.into()),
                    custom_fields: vec![
                        (
                            fields::CALLBACK_URL.into(),
                            json!(format!("{api_url}{account}/{callback_secret}")),
                        ),
                        (
                            fields::CONNECTION_STATUS.into(),
                            json!(status::PENDING_AUTHORIZATION),
                        ),
                    ],
                }
            }
        };
        update_app_instance(provider_client, &instance.id, &update)
            .await
            .map_err(InstallError::Update)?;
        tracing::info!(
            instance = %instance.id,
            comment = update.suspension_comment.as_deref().unwrap_or_default(),
            "app instance suspended"
        );
        Ok(())
    }

    /// The stored callback secret, or a new one written atomically only if none exists yet (so
    /// concurrent installation events agree on one secret).
    async fn ensure_callback_secret(
        &self,
        customer: &AccountContext,
    ) -> Result<String, InstallError> {
        if let Some(existing) = customer.secrets().get_str(CALLBACK_SECRET_KEY) {
            tracing::info!("Lansweeper callback URI already set");
            return Ok(existing.to_owned());
        }
        let fresh = new_callback_secret()?;
        let stored = self
            .loader
            .store()
            .update(customer.secret_name(), |current| {
                let current = current?;
                if current.contains_key(CALLBACK_SECRET_KEY) {
                    return None;
                }
                let mut next = current.clone();
                next.insert(CALLBACK_SECRET_KEY, fresh.clone());
                Some(next)
            })
            .await?;
        let doc = match stored {
            Some(doc) => doc,
            None => self
                .loader
                .store()
                .get(customer.secret_name())
                .await?
                .ok_or(InstallError::NotStored)?,
        };
        doc.get_str(CALLBACK_SECRET_KEY)
            .map(str::to_owned)
            .ok_or(InstallError::NotStored)
    }

    /// Checks the stored Lansweeper authorization, then the customer's 4me credentials. A
    /// rotated refresh token is stored.
    async fn validate(&self, config: &InstanceConfig, customer: &AccountContext) -> Validation {
        let secrets = customer.secrets();
        let (Some(client_id), Some(secret), Some(refresh)) = (
            config.client_id.clone(),
            client_secret(secrets),
            refresh_token(secrets),
        ) else {
            return Validation::NotAuthorized;
        };
        let (session_client_id, session_secret) = (client_id.clone(), secret.clone());
        let mut session = self.api.session(
            ClientCredentials {
                client_id,
                client_secret: secret,
            },
            refresh,
        );
        let sites = session.sites().await;
        if let Some(rotated) = session.take_rotated_refresh_token() {
            // Store a rotated token at once: the old one no longer works.
            if let Err(e) = self
                .store_refresh_token(customer, rotated.expose_secret())
                .await
            {
                tracing::error!(error = %e, "unable to store the rotated Lansweeper refresh token");
            }
        }
        match sites {
            Ok(_) => {}
            Err(e) if e.is_authorization() => {
                tracing::info!(error = %e, "Lansweeper authorization no longer valid");
                return Validation::NotAuthorized;
            }
            Err(e) => {
                tracing::warn!(error = %e, "unable to validate Lansweeper credentials, assuming valid");
                return Validation::Valid;
            }
        }
        match customer.client() {
            Ok(client) => match check_4me(client).await {
                Ok(()) => {
                    let fingerprint = credentials_fingerprint(&session_client_id, &session_secret);
                    if let Err(e) = self.store_validated(customer.account(), &fingerprint).await {
                        tracing::error!(error = %e, "unable to store the validated credentials");
                    }
                    Validation::Valid
                }
                Err(e) if is_4me_authorization(&e) => Validation::FourMeFailed,
                Err(e) => {
                    tracing::warn!(error = %e, "unable to validate 4me credentials, assuming valid");
                    Validation::Valid
                }
            },
            Err(_) => Validation::FourMeFailed,
        }
    }

    /// Stores `token` as the customer's refresh token (atomic merge; no write when unchanged).
    /// The validated-credentials fingerprint an earlier version kept beside it goes.
    pub(crate) async fn store_refresh_token(
        &self,
        customer: &AccountContext,
        token: &str,
    ) -> Result<(), app_builder_core::secrets::SecretStoreError> {
        self.loader
            .store()
            .update(customer.secret_name(), |current| {
                let mut next = current.cloned().unwrap_or_default();
                let legacy = next.remove(crate::VALIDATED_CREDENTIALS_KEY).is_some();
                if !legacy && next.get_str(crate::REFRESH_TOKEN_KEY) == Some(token) {
                    return None;
                }
                next.insert(crate::REFRESH_TOKEN_KEY, token.to_owned());
                Some(next)
            })
            .await
            .map(drop)
    }

    /// Remembers that the Lansweeper credentials with `fingerprint` were validated (a record of
    /// the state table: a fingerprint is not a secret).
    pub(crate) async fn store_validated(
        &self,
        account: &str,
        fingerprint: &str,
    ) -> Result<(), app_builder_core::state::StateStoreError> {
        let key = validated_key(self.offering(), account);
        let data = json!({ "sha256": fingerprint });
        for _ in 0..3 {
            let expect = match self.state.get(&key).await? {
                Some(record) if record.data == data => return Ok(()),
                Some(record) => Expect::Version(record.version),
                None => Expect::Absent,
            };
            if let Written::Done(_) = self.state.put(&key, &data, None, expect).await? {
                return Ok(());
            }
        }
        tracing::warn!("validated credentials changed concurrently, not recorded");
        Ok(())
    }

    /// Whether the validated fingerprint matches the current Lansweeper credentials (and a
    /// refresh token exists): then the change left nothing to validate. The fingerprint is the
    /// state record, else the key an earlier version kept in the customer secret.
    async fn credentials_unchanged(
        &self,
        config: &InstanceConfig,
        customer: &AccountContext,
    ) -> bool {
        let secrets = customer.secrets();
        let (Some(id), Some(secret), Some(_)) = (
            &config.client_id,
            client_secret(secrets),
            refresh_token(secrets),
        ) else {
            return false;
        };
        let current = credentials_fingerprint(id, &secret);
        let key = validated_key(self.offering(), customer.account());
        match self.state.get(&key).await {
            Ok(Some(record)) => record.data["sha256"].as_str() == Some(current.as_str()),
            Ok(None) => secrets.get_str(crate::VALIDATED_CREDENTIALS_KEY) == Some(current.as_str()),
            Err(e) => {
                tracing::warn!(error = %e, "validated credentials unreadable, validating again");
                false
            }
        }
    }
}

/// Key of the record of the last validated Lansweeper credentials of `account`.
pub(crate) fn validated_key(offering: &str, account: &str) -> String {
    format!(
        "{}/{offering}/{account}/validated-credentials",
        crate::CONSUMER
    )
}

async fn check_4me(client: &FourMeClient) -> Result<(), app_builder_core::fourme::FourMeError> {
    client
        .query::<_, Value>(
            "query TokenCheck { configurationItems(first: 1) { nodes { id } } }",
            &json!({}),
        )
        .await
        .map(drop)
}

fn is_4me_authorization(e: &app_builder_core::fourme::FourMeError) -> bool {
    use app_builder_core::fourme::FourMeError;
    matches!(
        e,
        FourMeError::Authorization(_) | FourMeError::Unauthorized { .. }
    )
}
