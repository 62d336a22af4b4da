//! The Typeform integration function (docs/original.md#typeform).
//!
//! One Lambda function serves two kinds of events:
//!
//! - **installation** ([`TypeformFunction::handle_installation`]): an `Installation changed`
//!   event of the engine's bus for an installation of this offering. The function registers a
//!   Typeform webhook on the customer's form (`PUT /forms/{id}/webhooks/{tag}`, a tag per
//!   installation: [`api::webhook_tag`]) pointing at
//!   its own API URL with `?account=<customer>`, stores the generated secret in the customer
//!   secret (`typeform_secret`) and suspends or unsuspends the app instance; on disable and
//!   uninstall it deletes that webhook again;
//! - **Typeform webhook** ([`TypeformFunction::handle_webhook`]): a signed form response; it is
//!   verified and added as a note to the request named in the instance's `request_id` field.
//!
//! [`TypeformFunction::handle_payload`] routes a raw Lambda payload (an event of the engine's
//! bus → installation, anything else → HTTP).
//!
//! Deviations from the original, all deliberate:
//! - the webhook is registered again when the form, the Typeform token or the function's API
//!   URL changed since the last registration, which is a record of the engine's state table
//!   (form id, URL and a SHA-256 fingerprint of the token) — the original never re-registered
//!   once `typeform_secret` existed;
//! - a registration that still matches but whose instance this function suspended (one of its
//!   suspension comments) is registered again and the instance unsuspended; a suspension by the
//!   provider for other reasons is only lifted by a first registration (as the original did);
//! - a Typeform retry of an `event_id` already processed adds no second note, and an
//!   installation change delivered twice is handled once (idempotency records in the state
//!   table);
//! - what only the customer can fix is a 400, not retried; other failures are function errors,
//!   retried by Lambda;
//! - the signature comparison is constant time and the header is found case-insensitively;
//! - a request for an account without a secret is a 400, not a 500; malformed bodies are 400s;
//! - nothing secret (tokens, webhook secrets, bodies) is logged.

pub mod api;
pub mod fourme;
mod install;
pub mod note;
pub mod signature;
mod webhook;

use std::time::Duration;

use app_builder_core::config::{ConfigError, Settings};
use app_builder_core::context::ContextLoader;
use app_builder_core::events::{
    EngineEvent, Invocation, InvocationFailed, http_result, installation_once,
    unqualified_function_arn, unrecognised_payload, unsupported_event,
};
use app_builder_core::fourme::settings::parse_millis;
use app_builder_core::idempotency::Idempotency;
use app_builder_core::secrets::SecretStore;
use app_builder_core::state::StateStore;
use serde_json::Value;

pub use api::{TypeformApi, TypeformError};
pub use install::{REMOVE_FAILED, WEBHOOK_REMOVED};

/// Environment variable: wait before the one retry of the instance lookup, in ms (default 2000).
pub const ENV_INSTANCE_RETRY_TIMEOUT: &str = "INSTANCE_RETRY_TIMEOUT";

/// Default wait before the instance lookup is retried.
pub const DEFAULT_INSTANCE_RETRY_WAIT: Duration = Duration::from_millis(2000);

/// Key of the webhook secret in the customer secret (as the original).
pub const TYPEFORM_SECRET_KEY: &str = "typeform_secret";
/// Key of the customer's Typeform personal access token in the customer secret: the secret
/// field of the app's UI extension, which 4me sends in `app_instance.secrets-update`.
pub const TYPEFORM_TOKEN_KEY: &str = "typeform_token";

/// Legacy key of the last registration in the customer secret (read when the state table has
/// no record, dropped by the next registration).
pub const REGISTRATION_KEY: &str = "typeform_webhook";

/// Legacy key of the processed `event_id`s in the customer secret (read once, dropped by the
/// next registration): they are idempotency records in the state store now.
pub const EVENTS_KEY: &str = "typeform_events";

/// Prefix of this function's idempotency keys in the state store.
pub const CONSUMER: &str = "typeform";

/// How long a processed `event_id` or installation change is remembered: longer than Typeform
/// retries a delivery (every few minutes for ten hours) and than an installation event can be
/// retried (an hour at EventBridge, six at Lambda's asynchronous invocation).
pub const EVENT_MEMORY: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// How long handling a delivery may take when the Lambda context gives no deadline.
pub const DEFAULT_ATTEMPT_TIME: Duration = Duration::from_secs(60);

/// Settings of the function besides the context configuration.
#[derive(Debug, Clone)]
pub struct FunctionSettings {
    /// Wait before the instance lookup is retried once during installation.
    pub instance_retry_wait: Duration,
}

impl Default for FunctionSettings {
    fn default() -> Self {
        Self {
            instance_retry_wait: DEFAULT_INSTANCE_RETRY_WAIT,
        }
    }
}

impl FunctionSettings {
    /// Reads [`ENV_INSTANCE_RETRY_TIMEOUT`] (JavaScript `parseInt(v) || 2000` semantics).
    pub fn from_settings<L: Fn(&str) -> Option<String>>(settings: &Settings<L>) -> Self {
        let instance_retry_wait = settings
            .optional(ENV_INSTANCE_RETRY_TIMEOUT)
            .as_deref()
            .and_then(parse_millis)
            .map_or(DEFAULT_INSTANCE_RETRY_WAIT, Duration::from_millis);
        Self {
            instance_retry_wait,
        }
    }
}

/// The Typeform API client configured by `TYPEFORM_API_URL` (default
/// `https://api.typeform.com`); an unparsable URL is a [`ConfigError::Invalid`].
pub fn typeform_api_from_settings<L: Fn(&str) -> Option<String>>(
    settings: &Settings<L>,
) -> Result<TypeformApi, ConfigError> {
    let raw = settings
        .optional(api::ENV_TYPEFORM_API_URL)
        .unwrap_or_else(|| api::DEFAULT_TYPEFORM_API_URL.to_owned());
    let url = url::Url::parse(&raw).map_err(|e| ConfigError::Invalid {
        name: api::ENV_TYPEFORM_API_URL,
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(ConfigError::Invalid {
            name: api::ENV_TYPEFORM_API_URL,
            reason: "must be an absolute http(s) URL".into(),
        });
    }
    TypeformApi::new(url).map_err(|e| ConfigError::Invalid {
        name: api::ENV_TYPEFORM_API_URL,
        reason: e.to_string(),
    })
}

/// The Typeform function over its ports: the secret store (through the context loader, which
/// also builds the 4me clients), the engine's state store (processed deliveries) and the
/// Typeform API.
#[derive(Debug, Clone)]
pub struct TypeformFunction<S, T> {
    loader: ContextLoader<S>,
    typeform: TypeformApi,
    deliveries: Idempotency<T>,
    settings: FunctionSettings,
}

impl<S: SecretStore, T: StateStore> TypeformFunction<S, T> {
    /// The function; `loader` must be configured with this offering's reference.
    pub fn new(
        loader: ContextLoader<S>,
        typeform: TypeformApi,
        state: T,
        settings: FunctionSettings,
    ) -> Self {
        Self {
            deliveries: Idempotency::new(state, EVENT_MEMORY),
            loader,
            typeform,
            settings,
        }
    }

    /// The context loader in use.
    pub fn loader(&self) -> &ContextLoader<S> {
        &self.loader
    }

    /// Handles a raw Lambda payload: an event of the engine's bus is an installation change,
    /// handled once per change (the result is `{"statusCode", "body"}` like the original's; a
    /// 5xx is an [`InvocationFailed`], so that Lambda retries the event), anything else an HTTP
    /// request answered in the API Gateway format it came in. The invocation's function ARN is
    /// the `systemID` of the function's configuration item.
    pub async fn handle_payload(
        &self,
        payload: Value,
        invocation: Invocation<'_>,
    ) -> Result<Value, InvocationFailed> {
        match EngineEvent::classify_for(payload, &invocation) {
            Ok(EngineEvent::Installation(event)) => {
                let function_arn = unqualified_function_arn(invocation.function_arn);
                installation_once(
                    &self.deliveries,
                    CONSUMER,
                    &event,
                    invocation.deadline,
                    self.handle_installation(&event, function_arn, invocation.deadline),
                )
                .await
            }
            Ok(EngineEvent::Http(request)) => {
                Ok(http_result(&request, self.handle_webhook(&request).await))
            }
            Ok(EngineEvent::Schedule(_) | EngineEvent::Sqs(_)) => Ok(unsupported_event()),
            Err(err) => Ok(unrecognised_payload(err)),
        }
    }
}

impl<S: SecretStore, T: StateStore> app_builder_core::events::PayloadFunction
    for TypeformFunction<S, T>
{
    const NAME: &'static str = "typeform";
    const ATTEMPT_TIME: Duration = DEFAULT_ATTEMPT_TIME;

    fn handle_payload<'a>(
        &'a self,
        payload: Value,
        invocation: Invocation<'a>,
    ) -> impl Future<Output = Result<Value, InvocationFailed>> + Send + 'a {
        TypeformFunction::handle_payload(self, payload, invocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Settings<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(move |name| map.get(name).cloned())
    }

    #[test]
    fn typeform_settings_name_the_variable() {
        let api = typeform_api_from_settings(&settings(&[])).unwrap();
        assert_eq!(api.base_url().as_str(), "https://api.typeform.com/");
        let err =
            typeform_api_from_settings(&settings(&[(api::ENV_TYPEFORM_API_URL, "not a url")]))
                .unwrap_err();
        assert!(err.to_string().contains(api::ENV_TYPEFORM_API_URL), "{err}");
        let wait =
            FunctionSettings::from_settings(&settings(&[(ENV_INSTANCE_RETRY_TIMEOUT, "50")]));
        assert_eq!(wait.instance_retry_wait, Duration::from_millis(50));
        let default =
            FunctionSettings::from_settings(&settings(&[(ENV_INSTANCE_RETRY_TIMEOUT, "x")]));
        assert_eq!(default.instance_retry_wait, DEFAULT_INSTANCE_RETRY_WAIT);
    }
}
