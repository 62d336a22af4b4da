//! The webhook handler (docs/original.md#note-dispatcher on top of the generic receiver of docs/original.md#webhook-receiver).

use std::time::Duration;

use app_builder_core::context::{AccountContext, ContextError, ContextLoader};
use app_builder_core::events;
use app_builder_core::idempotency::{Idempotency, Once};
use app_builder_core::metrics;
use app_builder_core::response::{ApiError, ApiResponse};
use app_builder_core::secrets::{SecretStore, SecretStoreError, offering_settings_secret_name};
use app_builder_core::state::StateStore;
use app_builder_core::webhook::{self, Delivery, WEBHOOK_VERIFY_EVENT};
use lambda_http::{Body, Request, Response};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use crate::config::DispatcherConfig;
use crate::guard::{UrlGuard, UrlRefused};
use crate::translate::{FunTranslationsClient, Translation, random_translation};

/// 400 when the request has no `?account=`.
pub const MISSING_ACCOUNT_MESSAGE: &str = "Missing account parameter";
/// 400 when the account has no usable customer secret.
pub const NO_CUSTOMER_CONTEXT_MESSAGE: &str = "Unable to determine customer context";
/// 500 when the customer secret cannot be read (store failure, broken policy).
pub const CUSTOMER_CONTEXT_FAILED_MESSAGE: &str = "Unable to gather customer context";
/// 200 after the note was dispatched.
pub const COMPLETE_MESSAGE: &str = "note-dispatcher event handling complete";
/// 500 when translating or posting failed (also 400-free payload problems, as the original).
pub const FAILED_MESSAGE: &str = "Unable to process note-dispatcher event";

/// 503 while a copy of the same delivery is being dispatched.
pub const IN_PROGRESS_MESSAGE: &str = "Delivery is being dispatched, retry later";
/// 400 when a delivery id comes again with another payload.
pub const PAYLOAD_MISMATCH_MESSAGE: &str = "Delivery id reused with another payload";

/// How long a dispatched delivery is remembered: longer than 4me retries one delivery and than
/// a token lives.
pub const DELIVERY_MEMORY: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// How long a dispatch may take when the Lambda context gives no deadline.
pub const DEFAULT_ATTEMPT_TIME: Duration = Duration::from_secs(30);

/// The key of the provider's Fun Translations API secret in the offering settings secret.
pub const API_SECRET_KEY: &str = "funtranslationsApiSecret";

/// The event an automation rule's `call webhook` action sends.
pub const AUTOMATION_RULE_EVENT: &str = "automation_rule";

/// What is POSTed to the customer's URL.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dispatch<'a> {
    /// The verified webhook envelope (`data` claim) as received.
    pub input: &'a Value,
    /// The translation (or the soft 429 result).
    pub translation_response: &'a Translation,
}

/// The note-dispatcher: verifies 4me automation-rule webhooks of a customer, translates the
/// note and POSTs it to the customer's target URL.
#[derive(Debug)]
pub struct NoteDispatcher<S, T> {
    loader: ContextLoader<S>,
    translator: FunTranslationsClient,
    /// The provider's Fun Translations API secret, read once from the offering settings secret.
    api_secret: tokio::sync::OnceCell<Option<SecretString>>,
    guard: UrlGuard,
    timeout: Duration,
    deliveries: Idempotency<T>,
}

/// Why the dispatcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The HTTP client of the translation API could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

impl<S: SecretStore, T: StateStore> NoteDispatcher<S, T> {
    /// A dispatcher loading customer contexts through `loader` (which must have an offering
    /// reference), remembering dispatched deliveries in `state`, with `config`.
    pub fn new(
        loader: ContextLoader<S>,
        state: T,
        config: DispatcherConfig,
    ) -> Result<Self, SetupError> {
        let translator = FunTranslationsClient::new(config.funtranslations_url, config.timeout)?;
        Ok(Self {
            loader,
            translator,
            api_secret: tokio::sync::OnceCell::new(),
            guard: config.guard,
            timeout: config.timeout,
            deliveries: Idempotency::new(state, DELIVERY_MEMORY),
        })
    }

    /// Handles one API Gateway request; every outcome is a `{"message": ...}` response.
    pub async fn handle(&self, req: &Request) -> Response<Body> {
        let delivery = events::delivery_id(req)
            .unwrap_or(webhook::UNKNOWN_DELIVERY)
            .to_owned();
        let account = events::account_param(req);
        let span = tracing::info_span!(
            "note_dispatcher",
            delivery = %delivery,
            account = account.as_deref().unwrap_or("-"),
            offering = self.loader.config().offering_reference.as_deref().unwrap_or("-"),
            event = tracing::field::Empty,
        );
        let handled = async {
            match self.process(req, account.as_deref(), &span).await {
                Ok(response) => {
                    tracing::info!(status = response.status().as_u16(), "request handled");
                    response
                }
                Err(error) => error.into_response(),
            }
        };
        handled.instrument(span.clone()).await
    }

    /// The context loader in use.
    pub fn loader(&self) -> &ContextLoader<S> {
        &self.loader
    }

    /// The idempotency records of deliveries.
    pub(crate) fn deliveries(&self) -> &Idempotency<T> {
        &self.deliveries
    }

    async fn process(
        &self,
        req: &Request,
        account: Option<&str>,
        span: &tracing::Span,
    ) -> Result<Response<Body>, ApiError> {
        // The original's order: method, account, customer context, then the body.
        webhook::require_post(req)?;
        let account =
            account.ok_or_else(|| ApiError::BadRequest(MISSING_ACCOUNT_MESSAGE.into()))?;
        let context = self.customer(account).await?;
        let verifier = context.verifier().map_err(|e| bad_context(&e))?;
        let Delivery { id, token } = webhook::receive(req)?.verify::<Value>(
            verifier,
            &self.loader.config().domain,
            account,
        )?;
        // Either key seen means the delivery was seen: the token (a captured token replayed
        // under a fresh delivery id) or the delivery (4me re-signing a retry).
        let mut keys = Vec::new();
        if let Some(jti) = token.claims.jti.as_deref().filter(|j| !j.is_empty()) {
            keys.push(format!("note-dispatcher/token/{}/{jti}", token.claims.iss));
        }
        if let Some(delivery) = id.as_deref().filter(|d| !d.is_empty()) {
            keys.push(format!("note-dispatcher/delivery/{account}/{delivery}"));
        }
        let data = token.data;
        let envelope = webhook::envelope(&data)?;
        span.record("event", envelope.event.as_str());
        match envelope.event.as_str() {
            WEBHOOK_VERIFY_EVENT => self.verify_webhook(&envelope.payload).await,
            AUTOMATION_RULE_EVENT => {
                let payload = serde_json::to_vec(&data).unwrap_or_default();
                let deadline = events::attempt_deadline(req, DEFAULT_ATTEMPT_TIME);
                let dispatched = self
                    .deliveries
                    .once(
                        &keys,
                        &payload,
                        deadline,
                        self.dispatch(&data, &envelope.payload),
                        |_| serde_json::json!({ "message": COMPLETE_MESSAGE }),
                    )
                    .await
                    .map_err(|error| {
                        error.into_api_error(
                            FAILED_MESSAGE,
                            IN_PROGRESS_MESSAGE,
                            PAYLOAD_MISMATCH_MESSAGE,
                        )
                    })?;
                Ok(match dispatched {
                    Once::Ran(response) => response,
                    Once::Duplicate(_) => {
                        tracing::info!(
                            "delivery already dispatched: acknowledged, not dispatched again"
                        );
                        ApiResponse::ok(COMPLETE_MESSAGE)
                    }
                })
            }
            other => Err(ApiError::BadRequest(format!("Unsupported event: {other}"))),
        }
    }

    async fn customer(&self, account: &str) -> Result<AccountContext, ApiError> {
        self.loader.customer(account).await.map_err(|e| match e {
            ContextError::InvalidName(_)
            | ContextError::NotFound(_)
            | ContextError::Empty(_)
            | ContextError::MissingPolicy(_)
            | ContextError::MissingCredentials { .. } => bad_context(&e),
            ContextError::Store(_)
            | ContextError::InvalidPolicy { .. }
            | ContextError::NoOfferingReference
            | ContextError::Client { .. } => ApiError::upstream(CUSTOMER_CONTEXT_FAILED_MESSAGE, e),
        })
    }

    /// The provider's Fun Translations API secret: `funtranslationsApiSecret` of the offering
    /// settings secret (`<app>/<ref>/<domain>/settings`), `None` when there is none (the public
    /// plan). Read once per container; a failed read is not cached.
    async fn api_secret(&self) -> Result<Option<&SecretString>, SecretStoreError> {
        self.api_secret
            .get_or_try_init(|| async {
                let config = self.loader.config();
                let Ok(name) = offering_settings_secret_name(
                    &config.app,
                    config.offering_reference.as_deref().unwrap_or_default(),
                    &config.domain,
                ) else {
                    return Ok(None);
                };
                let settings = self.loader.store().get(&name).await?;
                Ok(settings
                    .as_ref()
                    .and_then(|s| s.get_str(API_SECRET_KEY))
                    .filter(|s| !s.is_empty())
                    .map(|s| SecretString::from(s.to_owned())))
            })
            .await
            .map(Option::as_ref)
    }

    /// `webhook.verify`: GET the callback (through the guard, with the timeout).
    async fn verify_webhook(&self, payload: &Value) -> Result<Response<Body>, ApiError> {
        let failed = |detail: String| ApiError::upstream(webhook::VERIFY_FAILED_MESSAGE, detail);
        let callback = webhook::callback_url(payload)?;
        let checked = self
            .guard
            .check(callback.as_str())
            .await
            .map_err(|e| failed(format!("callback refused: {e}")))?;
        let client = checked
            .client(self.timeout)
            .map_err(|e| failed(e.to_string()))?;
        webhook::confirm_callback(&client, checked.url().clone()).await
    }

    /// `automation_rule`: check the URL, translate, POST `{input, translationResponse}`.
    async fn dispatch(&self, data: &Value, payload: &Value) -> Result<Response<Body>, ApiError> {
        let failed = |detail: String| ApiError::upstream(FAILED_MESSAGE, detail);
        let text = non_empty_str(payload, "text")
            .ok_or_else(|| failed("payload.text missing or empty".into()))?;
        let url = non_empty_str(payload, "url")
            .ok_or_else(|| failed("payload.url missing or empty".into()))?;
        // Checked before translating: a refused URL must not use up the translation quota.
        let target = self.guard.check(url).await.map_err(refused)?;
        let style = random_translation();
        let api_secret = self
            .api_secret()
            .await
            .map_err(|e| failed(format!("offering settings: {e}")))?;
        let translation = self
            .translator
            .translate(style, text, api_secret)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if let Translation::RateLimited { .. } = translation {
            tracing::warn!(
                style,
                "Fun Translations rate limit reached: passing the error on"
            );
        }
        let client = target
            .client(self.timeout)
            .map_err(|e| failed(e.to_string()))?;
        let response = client
            .post(target.url().clone())
            .json(&Dispatch {
                input: data,
                translation_response: &translation,
            })
            .send()
            .await
            .map_err(|e| failed(format!("target URL: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!(
                "target URL answered HTTP {}",
                status.as_u16()
            )));
        }
        tracing::info!(style, "note dispatched");
        Ok(ApiResponse::ok(COMPLETE_MESSAGE))
    }
}

fn bad_context(error: &ContextError) -> ApiError {
    tracing::info!(%error, "no usable customer context");
    metrics::rejected("account");
    ApiError::BadRequest(NO_CUSTOMER_CONTEXT_MESSAGE.into())
}

fn refused(error: UrlRefused) -> ApiError {
    metrics::rejected("target-url");
    ApiError::BadRequest(format!("Refused target URL: {error}"))
}

fn non_empty_str<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}
