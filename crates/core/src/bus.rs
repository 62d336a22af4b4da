//! The engine's event bus: `Installation changed` events.
//!
//! The engine stack owns one EventBridge bus. After each committed change of an installation the
//! engine's receiver of provider-account webhooks publishes an [`InstallationChanged`] event on it:
//! new or changed secrets (`app_instance.secrets-update`) and the app-instance lifecycle
//! (`app_instance.create`, `.update`, `.delete`). Each integration stack has a rule on the bus
//! that matches its own domain and offering reference, so an integration is invoked for its own
//! installations only — never for an unrelated write elsewhere in the AWS account.
//!
//! The event as EventBridge delivers it to a rule's target:
//!
//! ```json
//! {
//!   "id": "…", "source": "4me-app-builder", "detail-type": "Installation changed",
//!   "detail": {
//!     "domain": "4me-demo.com", "offering": "typeform", "account": "wdc",
//!     "step": "secrets-updated", "keys": ["application", "secrets"],
//!     "change": "secrets/token/https://wdc.4me-demo.com/0f3c…"
//!   }
//! }
//! ```
//!
//! `change` names the change, not the publication: a change published twice (the publisher's
//! retry after a failure to record it) carries the same `change`, which consumers use as their
//! idempotency key. The detail never carries a secret value, only the names of the changed keys.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::{Deserialize, Serialize};

/// `source` of the engine's events.
pub const EVENT_SOURCE: &str = "4me-app-builder";

/// `detail-type` of an [`InstallationChanged`] event.
pub const INSTALLATION_CHANGED: &str = "Installation changed";

/// Setting of the functions that publish: the name of the engine's bus.
pub const ENV_EVENT_BUS: &str = "EVENT_BUS";

/// Where an installation is in its life, as the event announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LifecycleStep {
    /// The customer installed the app (`app_instance.create`); its secrets may not be stored yet.
    Installed,
    /// Secrets of the installation were stored (`app_instance.secrets-update`); `keys` names them.
    SecretsUpdated,
    /// The instance was changed without a change of state (e.g. its custom fields).
    Updated,
    /// The instance became enabled (by the customer, and not suspended).
    Enabled,
    /// The instance became disabled (by the customer or in the provider account).
    Disabled,
    /// The provider suspended the instance.
    Suspended,
    /// The customer uninstalled the app (`app_instance.delete`).
    Deleted,
}

impl LifecycleStep {
    /// The step as it appears in the event (`secrets-updated`, `deleted`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Installed => "installed",
            Self::SecretsUpdated => "secrets-updated",
            Self::Updated => "updated",
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }
}

/// The detail of an `Installation changed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationChanged {
    /// The 4me environment domain, e.g. `4me.com`.
    pub domain: String,
    /// The app offering reference.
    pub offering: String,
    /// The customer account id.
    pub account: String,
    /// What happened.
    pub step: LifecycleStep,
    /// The names of the secret keys that changed (`application`, `policy`, `secrets`, …); empty
    /// for lifecycle steps.
    #[serde(default)]
    pub keys: Vec<String>,
    /// The change's identity: equal for every publication of the same change.
    pub change: String,
}

impl InstallationChanged {
    /// The event as EventBridge hands it to a rule's target, with the event id `id` (the local
    /// engine's bus and tests build it here, so that it has one shape everywhere).
    pub fn eventbridge_event(&self, id: &str, account: &str, region: &str) -> serde_json::Value {
        serde_json::json!({
            "version": "0",
            "id": id,
            "detail-type": INSTALLATION_CHANGED,
            "source": EVENT_SOURCE,
            "account": account,
            "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "region": region,
            "resources": [],
            "detail": self,
        })
    }
}

/// An `Installation changed` event as a rule's target receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationEvent {
    /// The EventBridge event id (stable across EventBridge's retries of one publication).
    pub id: String,
    /// The detail.
    pub detail: InstallationChanged,
}

impl InstallationEvent {
    /// Whether the event is about an installation of `offering` in `domain` (an integration's
    /// rule only delivers those; a function checks again, as a rule is configuration).
    pub fn concerns(&self, domain: &str, offering: &str) -> bool {
        self.detail.domain == domain && self.detail.offering == offering
    }

    /// Reads the detail of an EventBridge event from [`EVENT_SOURCE`].
    pub fn from_event(event: EventBridgeEvent<serde_json::Value>) -> serde_json::Result<Self> {
        Ok(Self {
            id: event.id.unwrap_or_default(),
            detail: serde_json::from_value(event.detail)?,
        })
    }
}

/// Why an event was not published.
#[derive(Debug, thiserror::Error)]
#[error("publishing {detail_type} on bus {bus} failed: {message}")]
pub struct PublishError {
    /// The bus.
    pub bus: String,
    /// The event's detail-type.
    pub detail_type: &'static str,
    /// The error code and message (never the event).
    pub message: String,
}

/// Publication of the engine's events (the port the receiver depends on).
pub trait EventPublisher: Send + Sync {
    /// Publishes `event`; an error means it may not have been published (the caller fails the
    /// delivery so that its sender retries).
    fn publish(
        &self,
        event: &InstallationChanged,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

impl<T: EventPublisher> EventPublisher for &T {
    fn publish(
        &self,
        event: &InstallationChanged,
    ) -> impl Future<Output = Result<(), PublishError>> + Send {
        (**self).publish(event)
    }
}

/// Publishes on an EventBridge bus with `PutEvents` (IAM: `events:PutEvents` on the bus).
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: Client,
    bus: String,
}

impl EventBridgePublisher {
    /// A publisher on the bus named `bus` through `client`.
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    /// A publisher on `bus` with the default AWS configuration (honours `AWS_ENDPOINT_URL`).
    pub async fn from_env(bus: impl Into<String>) -> Self {
        Self::new(Client::new(crate::aws::sdk_config().await), bus)
    }

    /// The bus name.
    pub fn bus(&self) -> &str {
        &self.bus
    }

    fn error(&self, message: String) -> PublishError {
        PublishError {
            bus: self.bus.clone(),
            detail_type: INSTALLATION_CHANGED,
            message,
        }
    }
}

impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, event: &InstallationChanged) -> Result<(), PublishError> {
        let detail = serde_json::to_string(event).map_err(|e| self.error(e.to_string()))?;
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(EVENT_SOURCE)
            .detail_type(INSTALLATION_CHANGED)
            .detail(detail)
            .build();
        let output = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|error| self.error(crate::aws_error::describe(&error).1))?;
        // PutEvents answers 200 also when an entry failed; the entry says why.
        if output.failed_entry_count() > 0 {
            let reason = output
                .entries()
                .iter()
                .find_map(|entry| {
                    entry.error_code().map(|code| {
                        format!("{code}: {}", entry.error_message().unwrap_or_default())
                    })
                })
                .unwrap_or_else(|| "the entry was not accepted".into());
            return Err(self.error(reason));
        }
        Ok(())
    }
}
