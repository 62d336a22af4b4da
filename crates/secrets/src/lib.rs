//! The shared secrets-webhook function (original spec §2, with the fixes of issue 3).
//!
//! 4me sends every app-instance secret of every offering of the provider to one provider webhook
//! (`POST /secrets`, body `{"jwt": "<JWS>"}` signed with the provider's webhook policy). The
//! handler, [`SecretsHandler::handle`]:
//!
//! 1. answers anything but `POST` with 405 `Method not allowed. Use POST instead.`;
//! 2. reads `jwt` from the JSON body; invalid JSON or no (non-empty string) `jwt` → 400
//!    `Expected jwt in body` (the original crashed on invalid JSON);
//! 3. loads the provider context ([`ContextLoader::provider`]): a store failure is our fault → 500
//!    `Unable to determine provider context` (4me retries); a missing provider secret or policy →
//!    400 with the same message (the original's answer);
//! 4. verifies the token with the provider policy: any failure → 400
//!    `Bad JWT - (<delivery>) Incorrect request: <check>\n<domain> - <provider>`, where `<check>`
//!    names the failed check (signature, `iss`, `aud`, expiry, algorithm, ...). Nothing from an
//!    unverified body is logged or stored (the original crashed with 502 here);
//! 5. `webhook.verify`: GETs `payload.callback` with a timeout ([`DEFAULT_VERIFY_TIMEOUT`],
//!    [`ENV_VERIFY_TIMEOUT_MS`]); status 200 → 200 `Webhook verified`, anything else → 500
//!    `Unable to verify webhook`;
//! 6. `app_instance.secrets-update`: offering `payload.app_offering.reference` not enabled
//!    (`PARAM_ENABLED_OFFERINGS`) → 200 `No action for app_reference: <ref>` without touching the
//!    store; otherwise the top-level keys [`SECRET_KEYS`] present (JavaScript-truthy) in the payload
//!    are merged into `<app>/<ref>/<domain>/instances/<payload.customer_account_id>` → 200
//!    `Secrets stored`; a store failure → 500 `Unable to store secrets`;
//! 7. any other event → 400 `Unsupported event: <event>` (the original stored anything).
//!
//! # Exactly-once deliveries
//!
//! The delivery id (`X-4me-Delivery`, else `X-Xurrent-Delivery`, else the JWT `jti`) is recorded
//! in the customer secret under the reserved top-level key [`DELIVERIES_KEY`] (`"_deliveries"`,
//! an array of the last [`MAX_RECORDED_DELIVERIES`] ids, oldest first) **in the same
//! [`SecretStore::update`]** that merges the secrets, so "applied" and "recorded" cannot diverge.
//! A delivery whose id is already recorded is answered 200 `Secrets stored` without any write.
//! Readers of customer secrets (contexts, integrations) only read named keys and ignore it.
//!
//! # Logging
//!
//! One line per delivery with delivery id, event, offering and customer account (`tracing`
//! fields); never the body, the token or a secret value.

use std::time::Duration;

use app_builder_core::config::{ConfigError, EnabledOfferings, Settings};
use app_builder_core::context::{ContextConfig, ContextError, ContextLoader};
use app_builder_core::policy::WebhookEnvelope;
use app_builder_core::response::{ApiError, ApiResponse};
use app_builder_core::secrets::{SecretDocument, SecretStore, customer_secret_name, merge};
use app_builder_core::webhook::{self, Delivery, WEBHOOK_VERIFY_EVENT};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use tracing::Instrument as _;

/// Reserved top-level key of customer secrets holding the ids of applied deliveries.
pub const DELIVERIES_KEY: &str = "_deliveries";

/// How many applied delivery ids a customer secret remembers.
pub const MAX_RECORDED_DELIVERIES: usize = 50;

/// The payload keys of a secrets update that are stored (each replaces the stored value).
pub const SECRET_KEYS: [&str; 4] = [
    "application",
    "authorization_application",
    "policy",
    "secrets",
];

/// The event carrying app-instance secrets.
pub const SECRETS_UPDATE_EVENT: &str = "app_instance.secrets-update";

/// Timeout of the `webhook.verify` callback request unless [`ENV_VERIFY_TIMEOUT_MS`] is set.
pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Optional setting: timeout of the `webhook.verify` callback request in milliseconds.
pub const ENV_VERIFY_TIMEOUT_MS: &str = "WEBHOOK_VERIFY_TIMEOUT_MS";

/// 400/500: the provider secret or its policy cannot be loaded.
pub const PROVIDER_CONTEXT_MESSAGE: &str = "Unable to determine provider context";
/// 200 after storing (or having already stored) a secrets update.
pub const SECRETS_STORED_MESSAGE: &str = "Secrets stored";
/// 500 when the store fails.
pub const STORE_FAILED_MESSAGE: &str = "Unable to store secrets";

/// The function's configuration, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionConfig {
    /// Domain, bootstrap application and provider account (no offering reference: the secrets
    /// function serves every offering).
    pub context: ContextConfig,
    /// `PARAM_ENABLED_OFFERINGS` (unset: all).
    pub enabled: EnabledOfferings,
    /// Timeout of `webhook.verify` callbacks ([`ENV_VERIFY_TIMEOUT_MS`]).
    pub verify_timeout: Duration,
}

impl FunctionConfig {
    /// Reads the configuration; a missing or malformed setting is an error naming it.
    pub fn from_settings<L: Fn(&str) -> Option<String>>(
        settings: &Settings<L>,
    ) -> Result<Self, ConfigError> {
        let context = settings.context_config(false)?;
        let verify_timeout = settings
            .millis(ENV_VERIFY_TIMEOUT_MS)?
            .unwrap_or(DEFAULT_VERIFY_TIMEOUT);
        Ok(Self {
            context,
            enabled: settings.enabled_offerings(),
            verify_timeout,
        })
    }
}

/// Why the handler could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The HTTP client for `webhook.verify` callbacks could not be built.
    #[error("cannot build the HTTP client for webhook verification: {0}")]
    HttpClient(String),
}

/// The secrets-webhook handler over a secret store.
#[derive(Debug)]
pub struct SecretsHandler<S> {
    loader: ContextLoader<S>,
    enabled: EnabledOfferings,
    http: reqwest::Client,
}

impl<S: SecretStore> SecretsHandler<S> {
    /// A handler reading the provider context through `loader`, storing secrets of the `enabled`
    /// offerings, and giving `webhook.verify` callbacks `verify_timeout`.
    pub fn new(
        loader: ContextLoader<S>,
        enabled: EnabledOfferings,
        verify_timeout: Duration,
    ) -> Result<Self, SetupError> {
        let http = reqwest::Client::builder()
            .timeout(verify_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| SetupError::HttpClient(e.to_string()))?;
        Ok(Self {
            loader,
            enabled,
            http,
        })
    }

    /// The context loader (and through it the store).
    pub fn loader(&self) -> &ContextLoader<S> {
        &self.loader
    }

    /// Handles one API Gateway request (see the crate docs for the responses).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        match self.process(&req).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }

    async fn process(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let received = webhook::receive(req)?;
        let provider = self
            .loader
            .provider()
            .await
            .map_err(provider_context_error)?;
        let verifier = provider.verifier().map_err(provider_context_error)?;
        let config = self.loader.config();
        let Delivery {
            id: delivery,
            token,
        } = received.verify::<WebhookEnvelope>(
            verifier,
            &config.domain,
            &config.provider_account,
        )?;
        let envelope = token.data;
        // Every line about this delivery (including the error line) carries these fields;
        // `offering` and `account` are recorded once known.
        let span = tracing::info_span!(
            "delivery",
            delivery = delivery.as_deref().unwrap_or_default(),
            event = envelope.event.as_str(),
            offering = tracing::field::Empty,
            account = tracing::field::Empty,
        );
        let result = self
            .dispatch(&envelope, delivery.as_deref())
            .instrument(span.clone())
            .await;
        Ok(span.in_scope(|| result.unwrap_or_else(ApiError::into_response)))
    }

    async fn dispatch(
        &self,
        envelope: &WebhookEnvelope,
        delivery: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        match envelope.event.as_str() {
            WEBHOOK_VERIFY_EVENT => self.verify_webhook(envelope).await,
            SECRETS_UPDATE_EVENT => self.store_secrets(envelope, delivery).await,
            other => {
                tracing::info!("unsupported event");
                Err(ApiError::BadRequest(format!("Unsupported event: {other}")))
            }
        }
    }

    async fn verify_webhook(&self, envelope: &WebhookEnvelope) -> Result<Response<Body>, ApiError> {
        tracing::info!("verifying webhook");
        let url = webhook::callback_url(&envelope.payload)?;
        webhook::confirm_callback(&self.http, url).await
    }

    async fn store_secrets(
        &self,
        envelope: &WebhookEnvelope,
        delivery: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let payload = &envelope.payload;
        let reference = payload
            .pointer("/app_offering/reference")
            .and_then(Value::as_str)
            .filter(|reference| !reference.is_empty())
            .ok_or_else(|| ApiError::BadRequest("Missing app_offering.reference".into()))?;
        let customer = payload
            .get("customer_account_id")
            .and_then(Value::as_str)
            .filter(|account| !account.is_empty())
            .ok_or_else(|| ApiError::BadRequest("Missing customer_account_id".into()))?;
        let span = tracing::Span::current();
        span.record("offering", reference);
        span.record("account", customer);
        if !self.enabled.contains(reference) {
            tracing::info!(enabled = ?self.enabled, "offering not enabled, no action");
            return Ok(ApiResponse::ok(&format!(
                "No action for app_reference: {reference}"
            )));
        }
        let update = secrets_update(payload);
        if update.is_empty() {
            tracing::info!("delivery carries no secrets, nothing stored");
            return Ok(ApiResponse::ok(SECRETS_STORED_MESSAGE));
        }
        let config = self.loader.config();
        let name = customer_secret_name(&config.app, reference, &config.domain, customer).map_err(
            |error| {
                ApiError::BadRequest(format!(
                    "Invalid app_offering.reference or customer_account_id: {error}"
                ))
            },
        )?;
        let stored = self
            .loader
            .store()
            .update(&name, |current| apply_delivery(current, &update, delivery))
            .await
            .map_err(|error| ApiError::upstream(STORE_FAILED_MESSAGE, error))?;
        match stored {
            Some(_) => {
                tracing::info!(keys = ?update.keys().collect::<Vec<_>>(), secret = %name, "secrets stored")
            }
            None => tracing::info!(secret = %name, "delivery already applied, nothing stored"),
        }
        Ok(ApiResponse::ok(SECRETS_STORED_MESSAGE))
    }
}

/// The part of a secrets-update payload that is stored: the [`SECRET_KEYS`] whose values are
/// JavaScript-truthy (the original's `if (payload.x)`: `null`, `false`, `0` and `""` are skipped).
pub fn secrets_update(payload: &Value) -> SecretDocument {
    SECRET_KEYS
        .iter()
        .filter_map(|key| {
            payload
                .get(*key)
                .filter(|value| is_truthy(value))
                .map(|value| ((*key).to_owned(), value.clone()))
        })
        .collect()
}

fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// The closure of the exactly-once update: `None` (no write) when `delivery` is already recorded
/// in `current`; otherwise `update` merged into `current` with `delivery` appended to
/// [`DELIVERIES_KEY`] (keeping the last [`MAX_RECORDED_DELIVERIES`]). Without a delivery id the
/// update is simply merged.
pub fn apply_delivery(
    current: Option<&SecretDocument>,
    update: &SecretDocument,
    delivery: Option<&str>,
) -> Option<SecretDocument> {
    let mut recorded: Vec<Value> = current
        .and_then(|document| document.get(DELIVERIES_KEY))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(id) = delivery
        && recorded.iter().any(|seen| seen.as_str() == Some(id))
    {
        return None;
    }
    let mut next = merge(current.cloned(), update);
    if let Some(id) = delivery {
        recorded.push(Value::String(id.to_owned()));
        let excess = recorded.len().saturating_sub(MAX_RECORDED_DELIVERIES);
        recorded.drain(..excess);
        next.insert(DELIVERIES_KEY, Value::Array(recorded));
    }
    Some(next)
}

/// Maps a provider-context failure: the store failing is ours (500, 4me retries); a missing or
/// unusable provider secret keeps the original's 400.
fn provider_context_error(error: ContextError) -> ApiError {
    match error {
        ContextError::Store(error) => ApiError::upstream(PROVIDER_CONTEXT_MESSAGE, error),
        other => {
            tracing::warn!(error = %other, "provider context unavailable");
            ApiError::BadRequest(PROVIDER_CONTEXT_MESSAGE.into())
        }
    }
}
