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
//! A secrets update is applied once per delivery and once per token, in any number of
//! containers, through the idempotency utility over the engine's state store
//! ([`app_builder_core::idempotency`]): its keys are the signed token's `iss` + `jti` and the
//! delivery id (`X-4me-Delivery` / `X-Xurrent-Delivery`); a delivery is a duplicate when either
//! was seen, so a captured token replayed under a fresh delivery id is not applied again, nor is
//! a re-signed redelivery. A duplicate is answered 200 `Secrets stored` without any write; one
//! that arrives while the first is still being applied gets 503 (4me retries later); a delivery id
//! seen with a different payload gets 400. A failed store releases the keys, so 4me's retry
//! applies the update.
//!
//! Customer secrets written by earlier versions recorded delivery ids under the reserved key
//! [`DELIVERIES_KEY`]; it is read once (a recorded delivery is still a duplicate) and dropped by
//! the next write.
//!
//! # Logging
//!
//! One line per delivery with delivery id, event, offering and customer account (`tracing`
//! fields); never the body, the token or a secret value.

use std::time::Duration;

use app_builder_core::config::{ConfigError, EnabledOfferings, Settings};
use app_builder_core::context::{ContextConfig, ContextError, ContextLoader};
use app_builder_core::idempotency::{Begun, Claim, Idempotency};
use app_builder_core::policy::{StandardClaims, WebhookEnvelope};
use app_builder_core::response::{ApiError, ApiResponse};
use app_builder_core::secrets::{SecretDocument, SecretStore, customer_secret_name, merge};
use app_builder_core::state::StateStore;
use app_builder_core::webhook::{self, Delivery, WEBHOOK_VERIFY_EVENT};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;
use tracing::Instrument as _;

/// Legacy reserved key of customer secrets that held the ids of applied deliveries (read once,
/// dropped by the next write).
pub const DELIVERIES_KEY: &str = "_deliveries";

/// How long an applied delivery is remembered: longer than a token lives (the policies'
/// `jwtClaimExpiresIn`, one day by default) and than 4me's retries of one delivery last.
pub const DELIVERY_MEMORY: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// How long an attempt may take when the Lambda context gives no deadline (local runs, tests).
pub const DEFAULT_ATTEMPT_TIME: Duration = Duration::from_secs(30);

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
/// 503 while the same delivery is being applied by another attempt.
pub const IN_PROGRESS_MESSAGE: &str = "Delivery is being applied, retry later";
/// 400 when a delivery id comes again with another payload.
pub const PAYLOAD_MISMATCH_MESSAGE: &str = "Delivery id reused with another payload";

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
    /// The engine's state table ([`ENV_STATE_TABLE`]).
    pub state_table: String,
}

/// Required setting: the DynamoDB table of the engine's state (applied deliveries).
pub const ENV_STATE_TABLE: &str = "STATE_TABLE";

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
            state_table: settings.required(ENV_STATE_TABLE)?,
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

/// The secrets-webhook handler over a secret store and a state store.
#[derive(Debug)]
pub struct SecretsHandler<S, T> {
    loader: ContextLoader<S>,
    deliveries: Idempotency<T>,
    enabled: EnabledOfferings,
    http: reqwest::Client,
}

impl<S: SecretStore, T: StateStore> SecretsHandler<S, T> {
    /// A handler reading the provider context through `loader`, remembering applied deliveries
    /// in `state`, storing secrets of the `enabled` offerings, and giving `webhook.verify`
    /// callbacks `verify_timeout`.
    pub fn new(
        loader: ContextLoader<S>,
        state: T,
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
            deliveries: Idempotency::new(state, DELIVERY_MEMORY),
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
        let keys = delivery_keys(&token.claims, delivery.as_deref());
        let deadline = attempt_deadline(req);
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
        let attempt = Attempt {
            delivery: delivery.as_deref(),
            keys: &keys,
            deadline,
        };
        let result = self
            .dispatch(&envelope, &attempt)
            .instrument(span.clone())
            .await;
        Ok(span.in_scope(|| result.unwrap_or_else(ApiError::into_response)))
    }

    async fn dispatch(
        &self,
        envelope: &WebhookEnvelope,
        attempt: &Attempt<'_>,
    ) -> Result<Response<Body>, ApiError> {
        match envelope.event.as_str() {
            WEBHOOK_VERIFY_EVENT => self.verify_webhook(envelope).await,
            SECRETS_UPDATE_EVENT => self.store_secrets(envelope, attempt).await,
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
        attempt: &Attempt<'_>,
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
        let payload_bytes = serde_json::to_vec(payload).unwrap_or_default();
        let claims = match self.claim(attempt, &payload_bytes).await? {
            Claimed::All(claims) => claims,
            Claimed::Duplicate => {
                tracing::info!(secret = %name, "delivery already applied, nothing stored");
                return Ok(ApiResponse::ok(SECRETS_STORED_MESSAGE));
            }
        };
        let stored = self
            .loader
            .store()
            .update(&name, |current| {
                apply_delivery(current, &update, attempt.delivery)
            })
            .await;
        let stored = match stored {
            Ok(stored) => stored,
            Err(error) => {
                self.release(claims).await;
                return Err(ApiError::upstream(STORE_FAILED_MESSAGE, error));
            }
        };
        match stored {
            Some(_) => {
                tracing::info!(keys = ?update.keys().collect::<Vec<_>>(), secret = %name, "secrets stored")
            }
            None => tracing::info!(secret = %name, "delivery already applied, nothing stored"),
        }
        let response = serde_json::json!({"message": SECRETS_STORED_MESSAGE});
        for claim in claims {
            // A claim lost to a retry (this attempt outlived its deadline) leaves the retry's
            // record; the secret was written once either way (the update is a merge).
            if let Err(error) = self.deliveries.complete(claim, &response).await {
                tracing::warn!(%error, "applied delivery not recorded; a retry will merge again");
            }
        }
        Ok(ApiResponse::ok(SECRETS_STORED_MESSAGE))
    }

    /// Claims every key of the attempt: all new, or a duplicate (the keys claimed so far are
    /// given up again); an attempt in progress or a reused delivery id is an error answer.
    async fn claim(&self, attempt: &Attempt<'_>, payload: &[u8]) -> Result<Claimed, ApiError> {
        let mut claims = Vec::new();
        for key in attempt.keys {
            let begun = match self.deliveries.begin(key, payload, attempt.deadline).await {
                Ok(begun) => begun,
                Err(error) => {
                    self.release(claims).await;
                    return Err(ApiError::upstream(STORE_FAILED_MESSAGE, error));
                }
            };
            let refusal = match begun {
                Begun::New(claim) => {
                    claims.push(claim);
                    continue;
                }
                Begun::Completed(_) => None,
                Begun::InProgress => Some(ApiError::Unavailable {
                    message: IN_PROGRESS_MESSAGE.into(),
                    detail: format!("{key} is in progress"),
                }),
                Begun::PayloadMismatch => {
                    tracing::warn!(key = %key, "delivery key reused with another payload");
                    Some(ApiError::BadRequest(PAYLOAD_MISMATCH_MESSAGE.into()))
                }
            };
            self.release(claims).await;
            return match refusal {
                None => Ok(Claimed::Duplicate),
                Some(error) => Err(error),
            };
        }
        Ok(Claimed::All(claims))
    }

    /// Gives claims up so that a retry runs at once (best effort: unreleased, they expire at the
    /// attempt's deadline).
    async fn release(&self, claims: Vec<Claim>) {
        for claim in claims {
            if let Err(error) = self.deliveries.release(claim).await {
                tracing::warn!(%error, "delivery claim not released; it expires at the deadline");
            }
        }
    }
}

/// One attempt at a delivery: its id, its idempotency keys and its deadline.
struct Attempt<'a> {
    delivery: Option<&'a str>,
    keys: &'a [String],
    deadline: i64,
}

enum Claimed {
    All(Vec<Claim>),
    Duplicate,
}

/// The idempotency keys of a delivery: the signed token (`iss` + `jti`) and the delivery id.
pub fn delivery_keys(claims: &StandardClaims, delivery: Option<&str>) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(jti) = claims.jti.as_deref().filter(|j| !j.is_empty()) {
        keys.push(format!("secrets/token/{}/{jti}", claims.iss));
    }
    if let Some(id) = delivery.filter(|d| !d.is_empty()) {
        keys.push(format!("secrets/delivery/{id}"));
    }
    keys
}

/// The attempt's deadline (seconds since the epoch): the Lambda invocation's, else
/// [`DEFAULT_ATTEMPT_TIME`] from now.
fn attempt_deadline(req: &Request) -> i64 {
    let from_context = req
        .lambda_context_ref()
        .map(|context| context.deadline / 1000)
        .filter(|deadline| *deadline > 0)
        .and_then(|deadline| i64::try_from(deadline).ok());
    from_context.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| {
                i64::try_from((d + DEFAULT_ATTEMPT_TIME).as_secs()).unwrap_or(i64::MAX)
            })
    })
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

/// The closure of the update: `update` merged into `current`, dropping the legacy
/// [`DELIVERIES_KEY`]; `None` (no write) when that legacy key records `delivery` (applied by an
/// earlier version of this function).
pub fn apply_delivery(
    current: Option<&SecretDocument>,
    update: &SecretDocument,
    delivery: Option<&str>,
) -> Option<SecretDocument> {
    let legacy = current
        .and_then(|document| document.get(DELIVERIES_KEY))
        .and_then(Value::as_array);
    if let (Some(recorded), Some(id)) = (legacy, delivery)
        && recorded.iter().any(|seen| seen.as_str() == Some(id))
    {
        return None;
    }
    let mut update = update.clone();
    if legacy.is_some() {
        update.insert(DELIVERIES_KEY, Value::Null);
    }
    Some(merge(current.cloned(), &update))
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
