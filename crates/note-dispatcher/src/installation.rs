//! The function's entry point for raw Lambda payloads, and what it does when an installation
//! changes: API Gateway requests are automation-rule deliveries ([`NoteDispatcher::handle`]);
//! `Installation changed` events of the engine's bus are handled once per change. On an
//! uninstall the customer secret (application and webhook policy) is scheduled for deletion, so
//! deliveries signed for the uninstalled account are refused from then on; the dispatched
//! deliveries' records expire by themselves.

use app_builder_core::bus::{InstallationEvent, LifecycleStep};
use app_builder_core::events::{
    EngineEvent, Invocation, InvocationFailed, http_result, installation_once,
    unrecognised_payload, unsupported_event,
};
use app_builder_core::response::{ApiError, ApiResponse};
use app_builder_core::secrets::{RECOVERY_WINDOW_DAYS, SecretStore, customer_secret_name};
use app_builder_core::state::StateStore;
use lambda_http::{Body, Response};
use serde_json::Value;

use crate::NoteDispatcher;

/// Prefix of this function's idempotency keys in the state store.
pub const CONSUMER: &str = "note-dispatcher";
/// 200 after an uninstall.
pub const FORGOTTEN_MESSAGE: &str = "Customer secret scheduled for deletion";
/// 500 when the customer secret cannot be scheduled for deletion (the event is retried).
pub const FORGET_FAILED_MESSAGE: &str = "Unable to forget the installation";

impl<S: SecretStore, T: StateStore> NoteDispatcher<S, T> {
    /// Handles a raw Lambda payload: an event of the engine's bus is an installation change
    /// (`{"statusCode", "body"}`; a 5xx is an [`InvocationFailed`], so that Lambda retries
    /// it), anything else an API Gateway request answered in the format it came in.
    pub async fn handle_payload(
        &self,
        payload: Value,
        invocation: Invocation<'_>,
    ) -> Result<Value, InvocationFailed> {
        match EngineEvent::classify_for(payload, &invocation) {
            Ok(EngineEvent::Installation(event)) => {
                installation_once(
                    self.deliveries(),
                    CONSUMER,
                    &event,
                    invocation.deadline,
                    self.handle_installation(&event),
                )
                .await
            }
            Ok(EngineEvent::Http(request)) => {
                Ok(http_result(&request, self.handle(&request).await))
            }
            Ok(EngineEvent::Schedule(_) | EngineEvent::Sqs(_)) => Ok(unsupported_event()),
            Err(err) => Ok(unrecognised_payload(err)),
        }
    }

    /// Handles an `Installation changed` event: `deleted` schedules the customer secret for
    /// deletion (200 [`FORGOTTEN_MESSAGE`], 500 [`FORGET_FAILED_MESSAGE`]); other steps and
    /// other offerings 200 without action.
    pub async fn handle_installation(&self, event: &InstallationEvent) -> Response<Body> {
        let config = self.loader().config();
        let reference = config.offering_reference.as_deref().unwrap_or_default();
        if !event.concerns(&config.domain, reference) {
            return ApiResponse::ok(&format!(
                "Not an installation of {reference}: {}",
                event.detail.offering
            ));
        }
        let account = event.detail.account.as_str();
        let step = event.detail.step;
        tracing::info!(
            account,
            offering = reference,
            step = step.as_str(),
            "installation changed"
        );
        if step != LifecycleStep::Deleted {
            return ApiResponse::ok(&format!("No action for {}", step.as_str()));
        }
        let name = match customer_secret_name(&config.app, reference, &config.domain, account) {
            Ok(name) => name,
            Err(err) => return ApiError::BadRequest(err.to_string()).into_response(),
        };
        match self
            .loader()
            .store()
            .schedule_deletion(&name, RECOVERY_WINDOW_DAYS)
            .await
        {
            Ok(()) => {
                tracing::info!(account, secret = %name, "customer secret scheduled for deletion");
                ApiResponse::ok(FORGOTTEN_MESSAGE)
            }
            Err(err) => ApiError::upstream(FORGET_FAILED_MESSAGE, err).into_response(),
        }
    }
}

impl<S: SecretStore, T: StateStore> app_builder_core::events::PayloadFunction
    for NoteDispatcher<S, T>
{
    const NAME: &'static str = "note-dispatcher";
    const ATTEMPT_TIME: std::time::Duration = crate::handler::DEFAULT_ATTEMPT_TIME;

    fn handle_payload<'a>(
        &'a self,
        payload: Value,
        invocation: Invocation<'a>,
    ) -> impl Future<Output = Result<Value, InvocationFailed>> + Send + 'a {
        NoteDispatcher::handle_payload(self, payload, invocation)
    }
}
