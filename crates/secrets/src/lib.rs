//! The shared secrets-webhook function: the receiver of the provider account's webhooks.
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
//! 7. `app_instance.create` / `.update` / `.delete`: the lifecycle step of the instance
//!    (installed, enabled, disabled, suspended, deleted) is published on the engine's bus, once
//!    per delivery → 200 `Installation change published`;
//! 8. any other event → 400 `Unsupported event: <event>` (the original stored anything).
//!
//! After a committed secrets update the change is published on the engine's bus as an
//! `Installation changed` event ([`app_builder_core::bus`]); a failed publication answers 500
//! and 4me's retry writes the same values again and publishes. An update issued (`iat`) before
//! the one applied for a key is acknowledged and not applied for that key.
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

pub use app_builder_core::bus::ENV_EVENT_BUS;
use app_builder_core::bus::{EventPublisher, InstallationChanged, LifecycleStep};
use app_builder_core::config::{ConfigError, EnabledOfferings, Settings};
use app_builder_core::context::{ContextConfig, ContextError, ContextLoader};
use app_builder_core::events::{
    self, EngineEvent, Invocation, InvocationFailed, PayloadFunction, http_result,
    unrecognised_payload, unsupported_event,
};
use app_builder_core::fourme::instances::app_instance_state;
use app_builder_core::idempotency::{Idempotency, Once};
use app_builder_core::metrics;
use app_builder_core::policy::{StandardClaims, WebhookEnvelope};
use app_builder_core::response::{ApiError, ApiResponse};
use app_builder_core::secrets::{
    ReadAhead, SecretDocument, SecretName, SecretStore, customer_secret_name, merge,
};
use app_builder_core::state::{Expect, HeldRecord, StateRecord, StateStore, Written};
use app_builder_core::webhook::{self, Delivery, WEBHOOK_VERIFY_EVENT};
use lambda_http::{Body, Request, Response};
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

/// The app-instance lifecycle events of the provider account (bootstrap registers a webhook for
/// each, with the same policy and URL as the secrets webhook).
pub const INSTANCE_CREATE_EVENT: &str = "app_instance.create";
/// See [`INSTANCE_CREATE_EVENT`].
pub const INSTANCE_UPDATE_EVENT: &str = "app_instance.update";
/// See [`INSTANCE_CREATE_EVENT`].
pub const INSTANCE_DELETE_EVENT: &str = "app_instance.delete";

/// 200 once a lifecycle event was announced (or was a duplicate).
pub const LIFECYCLE_PUBLISHED_MESSAGE: &str = "Installation change published";

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
/// 500 when the change cannot be announced on the engine's bus (4me retries; the retry applies
/// the same values again and publishes).
pub const PUBLISH_FAILED_MESSAGE: &str = "Unable to publish the installation change";
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
    /// The engine's event bus ([`ENV_EVENT_BUS`]).
    pub event_bus: String,
}

pub use app_builder_core::state::ENV_STATE_TABLE;

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
            event_bus: settings.required(ENV_EVENT_BUS)?,
        })
    }
}

/// The client of `webhook.verify` callbacks: `timeout` per request, at most 3 redirects.
fn verify_client(timeout: Duration) -> Result<reqwest::Client, SetupError> {
    app_builder_core::tls::http_client_builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| SetupError::HttpClient(e.to_string()))
}

/// Why the handler could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The HTTP client for `webhook.verify` callbacks could not be built.
    #[error("cannot build the HTTP client for webhook verification: {0}")]
    HttpClient(String),
}

/// The secrets-webhook handler over a secret store, a state store and the engine's bus.
#[derive(Debug)]
pub struct SecretsHandler<S, T, P> {
    loader: ContextLoader<S>,
    deliveries: Idempotency<T>,
    bus: P,
    enabled: EnabledOfferings,
    verify_timeout: Duration,
    /// The client of `webhook.verify` callbacks, built on the first one: building it reads the
    /// system's root certificates, which a secrets update never needs.
    http: std::sync::OnceLock<reqwest::Client>,
}

impl<S: SecretStore, T: StateStore, P: EventPublisher> SecretsHandler<S, T, P> {
    /// A handler reading the provider context through `loader`, remembering applied deliveries
    /// in `state`, announcing committed changes on `bus`, storing secrets of the `enabled`
    /// offerings, and giving `webhook.verify` callbacks `verify_timeout`.
    pub fn new(
        loader: ContextLoader<S>,
        state: T,
        bus: P,
        enabled: EnabledOfferings,
        verify_timeout: Duration,
    ) -> Result<Self, SetupError> {
        Ok(Self {
            loader,
            deliveries: Idempotency::new(state, DELIVERY_MEMORY),
            bus,
            enabled,
            verify_timeout,
            http: std::sync::OnceLock::new(),
        })
    }

    /// The context loader (and through it the store).
    pub fn loader(&self) -> &ContextLoader<S> {
        &self.loader
    }

    /// Handles one API Gateway request (see the crate docs for the responses).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        self.respond(&req).await
    }

    async fn respond(&self, req: &Request) -> Response<Body> {
        match self.process(req).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }

    /// Handles a raw Lambda payload: an API Gateway request, answered in the format it came
    /// in. A body that is not what it claims or too large is refused with a 4xx before the
    /// request is built ([`EngineEvent::classify_for`]); any other event is refused with 400.
    pub async fn handle_payload(&self, payload: Value, invocation: Invocation<'_>) -> Value {
        match EngineEvent::classify_for(payload, &invocation) {
            Ok(EngineEvent::Http(request)) => http_result(&request, self.respond(&request).await),
            Ok(_) => unsupported_event(),
            Err(error) => unrecognised_payload(error),
        }
    }

    async fn process(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let received = webhook::receive(req)?;
        let provider = self
            .loader
            .provider()
            .await
            .map_err(provider_context_error)?;
        let mut checked =
            received.check::<WebhookEnvelope>(provider.verifier().map_err(provider_context_error)?);
        if checked.is_err() {
            // The policy may have been rotated since the context was cached: once more with
            // the provider secret read again.
            let refreshed = self.loader.refreshed_provider(&provider).await;
            if let Some(fresh) = refreshed.map_err(provider_context_error)? {
                checked = received.check(fresh.verifier().map_err(provider_context_error)?);
            }
        }
        let config = self.loader.config();
        let Delivery {
            id: delivery,
            token,
        } = received.answer(checked, &config.domain, &config.provider_account)?;
        let keys = delivery_keys(&token.claims, delivery.as_deref());
        let deadline = events::attempt_deadline(req, DEFAULT_ATTEMPT_TIME);
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
            issued_at: token.claims.iat,
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
            INSTANCE_CREATE_EVENT | INSTANCE_UPDATE_EVENT | INSTANCE_DELETE_EVENT => {
                self.instance_changed(envelope, attempt).await
            }
            other => {
                tracing::info!("unsupported event");
                Err(ApiError::BadRequest(format!("Unsupported event: {other}")))
            }
        }
    }

    async fn verify_webhook(&self, envelope: &WebhookEnvelope) -> Result<Response<Body>, ApiError> {
        tracing::info!("verifying webhook");
        let url = webhook::callback_url(&envelope.payload)?;
        let http = match self.http.get() {
            Some(http) => http,
            None => {
                let built = verify_client(self.verify_timeout).map_err(|error| {
                    tracing::error!(%error, "cannot build the HTTP client");
                    ApiError::Internal(webhook::VERIFY_FAILED_MESSAGE.into())
                })?;
                self.http.get_or_init(|| built)
            }
        };
        webhook::confirm_callback(http, url).await
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
        let change = Change {
            secret: &name,
            offering: reference,
            account: customer,
        };
        let applied = self
            .deliveries
            .once(
                attempt.keys,
                &payload_bytes,
                attempt.deadline,
                self.apply_serially(&change, &update, attempt),
                |()| serde_json::json!({"message": SECRETS_STORED_MESSAGE}),
            )
            .await
            .map_err(|error| {
                error.into_api_error(
                    STORE_FAILED_MESSAGE,
                    IN_PROGRESS_MESSAGE,
                    PAYLOAD_MISMATCH_MESSAGE,
                )
            })?;
        if let Once::Duplicate(_) = applied {
            tracing::info!(secret = %name, "delivery already applied, nothing stored");
        }
        Ok(ApiResponse::ok(SECRETS_STORED_MESSAGE))
    }

    /// `app_instance.create` / `.update` / `.delete`: announces the instance's lifecycle step on
    /// the bus, once per delivery. Create and update read the instance by its node id with the
    /// provider token (4me documents the envelope's `object_nodeID`, not these events' payload)
    /// and remember its offering and account; delete uses what was remembered (the instance is
    /// gone), else the payload's `app_offering.reference` and `customer_account_id`.
    async fn instance_changed(
        &self,
        envelope: &WebhookEnvelope,
        attempt: &Attempt<'_>,
    ) -> Result<Response<Body>, ApiError> {
        let node = envelope
            .object_node_id
            .as_deref()
            .filter(|node| !node.is_empty())
            .ok_or_else(|| ApiError::BadRequest("Missing object_nodeID".into()))?;
        let payload_bytes = serde_json::to_vec(envelope).unwrap_or_default();
        let announced = self
            .deliveries
            .once(
                attempt.keys,
                &payload_bytes,
                attempt.deadline,
                self.announce_instance(envelope, node, attempt),
                |message| serde_json::json!({ "message": message }),
            )
            .await
            .map_err(|error| {
                error.into_api_error(
                    PUBLISH_FAILED_MESSAGE,
                    IN_PROGRESS_MESSAGE,
                    PAYLOAD_MISMATCH_MESSAGE,
                )
            })?;
        Ok(match announced {
            Once::Ran(message) => ApiResponse::ok(&message),
            Once::Duplicate(_) => {
                tracing::info!("delivery already handled");
                ApiResponse::ok(LIFECYCLE_PUBLISHED_MESSAGE)
            }
        })
    }

    async fn announce_instance(
        &self,
        envelope: &WebhookEnvelope,
        node: &str,
        attempt: &Attempt<'_>,
    ) -> Result<String, ApiError> {
        let state = self.deliveries.store();
        let record_key = instance_key(node);
        let remembered = state
            .get(&record_key)
            .await
            .map_err(|error| ApiError::upstream(PUBLISH_FAILED_MESSAGE, error))?;
        let (offering, account, step, now) = if envelope.event == INSTANCE_DELETE_EVENT {
            let from_record = remembered.as_ref().and_then(|record| {
                Some((
                    record.data.get("offering")?.as_str()?.to_owned(),
                    record.data.get("account")?.as_str()?.to_owned(),
                ))
            });
            let from_payload = || {
                Some((
                    envelope
                        .payload
                        .pointer("/app_offering/reference")?
                        .as_str()?
                        .to_owned(),
                    envelope
                        .payload
                        .get("customer_account_id")?
                        .as_str()?
                        .to_owned(),
                ))
            };
            let Some((offering, account)) = from_record.or_else(from_payload) else {
                tracing::warn!(
                    node,
                    "deleted app instance unknown to the engine, nothing to announce"
                );
                return Ok(format!("Unknown app instance {node}"));
            };
            (offering, account, LifecycleStep::Deleted, None)
        } else {
            let provider = self
                .loader
                .provider()
                .await
                .map_err(provider_context_error)?;
            let client = provider.client().map_err(provider_context_error)?;
            let Some(instance) = app_instance_state(client, node)
                .await
                .map_err(|error| ApiError::upstream(PUBLISH_FAILED_MESSAGE, error))?
            else {
                tracing::info!(node, "app instance no longer exists, nothing to announce");
                return Ok(format!("Unknown app instance {node}"));
            };
            let now = if instance.suspended {
                LifecycleStep::Suspended
            } else if instance.is_active() {
                LifecycleStep::Enabled
            } else {
                LifecycleStep::Disabled
            };
            // A step is a change of state: an update that leaves the instance as it was (its
            // custom fields written, by the customer or by an integration) is `updated`, or
            // every write of an integration to an enabled instance would announce it enabled
            // again.
            let before = remembered
                .as_ref()
                .and_then(|record| record.data.get("state"))
                .and_then(Value::as_str);
            let step = if envelope.event == INSTANCE_CREATE_EVENT {
                LifecycleStep::Installed
            } else if before == Some(now.as_str()) {
                LifecycleStep::Updated
            } else {
                now
            };
            (instance.offering, instance.account, step, Some(now))
        };
        let span = tracing::Span::current();
        span.record("offering", offering.as_str());
        span.record("account", account.as_str());
        if !self.enabled.contains(&offering) {
            tracing::info!(enabled = ?self.enabled, "offering not enabled, no action");
            return Ok(format!("No action for app_reference: {offering}"));
        }
        let event = InstallationChanged {
            domain: self.loader.config().domain.clone(),
            offering,
            account,
            step,
            keys: Vec::new(),
            change: attempt.change_id(),
        };
        self.announce(&event).await?;
        tracing::info!(step = step.as_str(), "installation change published");
        // Recorded after the event is out: a publish that fails is retried with the same
        // comparison, so no change of state goes unannounced.
        if let Some(now) = now {
            let record = serde_json::json!({
                "offering": event.offering, "account": event.account, "state": now.as_str(),
            });
            let unchanged = remembered
                .as_ref()
                .is_some_and(|r| r.data.get("state") == record.get("state"));
            if !unchanged {
                let expect = remembered
                    .as_ref()
                    .map_or(Expect::Absent, |r| Expect::Version(r.version));
                let written = state
                    .put(&record_key, &record, None, expect)
                    .await
                    .map_err(|error| ApiError::upstream(PUBLISH_FAILED_MESSAGE, error))?;
                if let Written::Conflict(_) = written {
                    // Another delivery of this instance recorded a state meanwhile: this one is
                    // retried (its event again, under the same change id, which consumers
                    // handle once) and compares with what that one recorded.
                    return Err(ApiError::upstream(
                        PUBLISH_FAILED_MESSAGE,
                        "instance record changed meanwhile",
                    )
                    .retry_later());
                }
            }
        }
        if step == LifecycleStep::Deleted {
            self.forget_installation(&event, &record_key, remembered)
                .await;
        }
        Ok(LIFECYCLE_PUBLISHED_MESSAGE.to_owned())
    }

    /// After an uninstall: the engine's durable records of the installation go (what the
    /// instance was, the `iat`s applied to its secret); its idempotency records expire by
    /// themselves. Best effort: a record left behind is harmless (a reinstall starts with
    /// newer tokens).
    async fn forget_installation(
        &self,
        event: &InstallationChanged,
        record_key: &str,
        remembered: Option<StateRecord>,
    ) {
        let state = self.deliveries.store();
        let mut records = Vec::new();
        if let Some(record) = remembered {
            records.push((record_key.to_owned(), Some(record)));
        }
        let config = self.loader.config();
        if let Ok(name) =
            customer_secret_name(&config.app, &event.offering, &config.domain, &event.account)
        {
            let key = applied_key(name.as_str());
            match state.get(&key).await {
                Ok(record) => records.push((key, record)),
                Err(error) => {
                    tracing::warn!(%error, "applied updates of the uninstalled secret not read")
                }
            }
        }
        for (key, record) in records {
            if let Some(record) = record
                && let Err(error) = state.delete(&key, record.version).await
            {
                tracing::warn!(%key, %error, "record of the uninstalled installation not removed");
            }
        }
    }

    /// Applies an update while holding the record of the `iat`s applied to the customer secret,
    /// so that updates of one secret are applied one at a time in any number of containers (a
    /// concurrent one gets 503 and 4me retries it). Taking the hold reads the record, and
    /// writing the new `iat`s releases it: two requests for the lease and the record. The
    /// customer secret is read while the hold is taken (one round trip for both); the
    /// compare-and-swap keeps a read that went stale meanwhile from losing a write.
    async fn apply_serially(
        &self,
        change: &Change<'_>,
        update: &SecretDocument,
        attempt: &Attempt<'_>,
    ) -> Result<(), ApiError> {
        let state = self.deliveries.store();
        let applied_key = applied_key(change.secret.as_str());
        let (held, ahead) = tokio::join!(
            HeldRecord::take(state, &applied_key, attempt.deadline),
            self.loader.store().read_ahead(change.secret)
        );
        let held = held
            .map_err(|error| ApiError::upstream(STORE_FAILED_MESSAGE, error))?
            .ok_or_else(|| ApiError::Unavailable {
                message: IN_PROGRESS_MESSAGE.into(),
                detail: format!("{} is being updated", change.secret),
            })?;
        let applied = match self
            .store_fresh(change, update, attempt, held.data(), ahead)
            .await
        {
            Ok(Some(applied)) => applied,
            outcome => {
                if let Err(error) = held.release(state).await {
                    tracing::warn!(%error, "applied updates' record not released; its hold expires at the deadline");
                }
                return outcome.map(drop);
            }
        };
        let config = self.loader.config();
        let event = InstallationChanged {
            domain: config.domain.clone(),
            offering: change.offering.to_owned(),
            account: change.account.to_owned(),
            step: LifecycleStep::SecretsUpdated,
            keys: applied.keys,
            change: attempt.change_id(),
        };
        // The record and the event go together (one round trip). Either failing fails the
        // delivery and 4me retries it: the retry announces the same change again, which
        // consumers handle once.
        let (written, announced) =
            tokio::join!(held.write(state, &applied.record), self.announce(&event));
        let written = written.map_err(|error| ApiError::upstream(STORE_FAILED_MESSAGE, error))?;
        if !written {
            // Only the holder writes this record: the hold was lost, this attempt outlived its
            // deadline.
            return Err(ApiError::Unavailable {
                message: IN_PROGRESS_MESSAGE.into(),
                detail: format!("{applied_key} changed during the update"),
            });
        }
        announced
    }

    /// Stores the keys of `update` that are not older than the ones `applied` records; `None`
    /// when there are none, or they were stored already. Nothing older than what is stored is
    /// ever written back, whatever the order in which deliveries arrive.
    async fn store_fresh(
        &self,
        change: &Change<'_>,
        update: &SecretDocument,
        attempt: &Attempt<'_>,
        applied: Option<&Value>,
        ahead: ReadAhead,
    ) -> Result<Option<Applied>, ApiError> {
        let mut record = applied
            .filter(|record| record.is_object())
            .cloned()
            .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
        let (fresh, stale) = split_by_age(update, &record, attempt.issued_at);
        if !stale.is_empty() {
            tracing::info!(keys = ?stale, iat = ?attempt.issued_at, "older than the applied update, not applied");
        }
        if fresh.is_empty() {
            return Ok(None);
        }
        let stored = self
            .loader
            .store()
            .update_from(change.secret, ahead, |current| {
                apply_delivery(current, &fresh, attempt.delivery)
            })
            .await
            .map_err(|error| ApiError::upstream(STORE_FAILED_MESSAGE, error))?;
        if stored.is_none() {
            tracing::info!(secret = %change.secret, "delivery already applied, nothing stored");
            return Ok(None);
        }
        let keys: Vec<String> = fresh.keys().map(str::to_owned).collect();
        tracing::info!(?keys, secret = %change.secret, "secrets stored");
        if let (Some(iat), Some(fields)) = (attempt.issued_at, record.as_object_mut()) {
            for key in &keys {
                fields.insert(key.clone(), Value::from(iat));
            }
        }
        Ok(Some(Applied { keys, record }))
    }

    /// Publishes `event` on the engine's bus (a failure is a 500: 4me retries the delivery).
    async fn announce(&self, event: &InstallationChanged) -> Result<(), ApiError> {
        self.bus
            .publish(event)
            .await
            .map_err(|error| ApiError::upstream(PUBLISH_FAILED_MESSAGE, error))?;
        metrics::count(metrics::INSTALLATION_EVENTS_PUBLISHED, 1);
        Ok(())
    }
}

/// Keys stored by an update, and the record of the `iat`s applied with them.
struct Applied {
    keys: Vec<String>,
    record: Value,
}

/// The customer secret a change is about.
struct Change<'a> {
    secret: &'a SecretName,
    offering: &'a str,
    account: &'a str,
}

/// The state record of what the engine knows about an app instance (its offering and account).
pub fn instance_key(node: &str) -> String {
    format!("instances/{node}")
}

/// The state record of the `iat` of the update applied last, per key, of a customer secret.
pub fn applied_key(secret: &str) -> String {
    format!("secrets/applied/{secret}")
}

/// The keys of `update` issued at `iat` or later than the ones `applied` records, and the names
/// of the others. Without `iat` (4me always sends one) nothing can be ordered: all are fresh.
fn split_by_age(
    update: &SecretDocument,
    applied: &Value,
    iat: Option<i64>,
) -> (SecretDocument, Vec<String>) {
    let mut fresh = SecretDocument::default();
    let mut stale = Vec::new();
    for (key, value) in update.as_map() {
        let newer = match (iat, applied.get(key).and_then(Value::as_i64)) {
            (Some(iat), Some(seen)) => iat >= seen,
            _ => true,
        };
        if newer {
            fresh.insert(key, value.clone());
        } else {
            stale.push(key.clone());
        }
    }
    (fresh, stale)
}

/// One attempt at a delivery: its id, its idempotency keys, its deadline and when its token
/// was issued.
struct Attempt<'a> {
    delivery: Option<&'a str>,
    keys: &'a [String],
    deadline: i64,
    issued_at: Option<i64>,
}

impl Attempt<'_> {
    /// The identity of the change the delivery makes: its first idempotency key (the token's),
    /// equal for every attempt at the same delivery.
    fn change_id(&self) -> String {
        self.keys
            .first()
            .cloned()
            .unwrap_or_else(|| format!("secrets/unkeyed/{}", app_builder_core::state::now()))
    }
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

impl<S: SecretStore, T: StateStore, P: EventPublisher> PayloadFunction for SecretsHandler<S, T, P> {
    const NAME: &'static str = "secrets";
    const ATTEMPT_TIME: Duration = DEFAULT_ATTEMPT_TIME;

    async fn handle_payload<'a>(
        &'a self,
        payload: Value,
        invocation: Invocation<'a>,
    ) -> Result<Value, InvocationFailed> {
        // A webhook is answered, never failed: 4me retries on the status.
        Ok(SecretsHandler::handle_payload(self, payload, invocation).await)
    }
}
