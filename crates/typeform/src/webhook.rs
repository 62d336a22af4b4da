//! Typeform webhook handler: a signed form response becomes a note on the customer's request,
//! once per `event_id` in any number of containers (an idempotency record in the engine's state
//! store, keyed on the customer and the `event_id`, holds the delivery while it is processed and
//! remembers it afterwards).

use app_builder_core::context::{AccountContext, ContextError};
use app_builder_core::events::{attempt_deadline, body_bytes, header, query_param};
use app_builder_core::fourme::instances::find_app_instance;
use app_builder_core::idempotency::Once;
use app_builder_core::metrics;
use app_builder_core::response::{ApiError, ApiResponse};
use app_builder_core::secrets::{SecretDocument, SecretStore};
use app_builder_core::state::StateStore;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

use crate::fourme::{self, REQUEST_ID_FIELD};
use crate::note::form_response_to_note;
use crate::signature::{SIGNATURE_HEADER, verify};
use crate::{CONSUMER, DEFAULT_ATTEMPT_TIME, EVENTS_KEY, TYPEFORM_SECRET_KEY, TypeformFunction};

const NOTE_FAILED: &str = "Unable to add note";

/// The processed event ids an earlier version stored in the customer secret.
fn remembered_events(document: Option<&SecretDocument>) -> Vec<String> {
    document
        .and_then(|d| d.get(EVENTS_KEY))
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl<S: SecretStore, T: StateStore> TypeformFunction<S, T> {
    /// Handles a Typeform webhook delivery: 200 `Thanks for <event_id>` when the note was added
    /// (or had been added for this `event_id` before); 405 for non-POST; 400
    /// `Missing account parameter`, `Bad signature`, `Invalid JSON body`, `Missing event_id`,
    /// `Unsupported event_type: <t>`; 410 `Unable to gather customer context` (no installation
    /// for the account: Typeform disables the webhook); 503 (Typeform retries for hours)
    /// `Unable to gather customer context`, `Unable to verify message` (no webhook secret
    /// stored yet), `Unable to find request id`, `Unable to add note`.
    pub async fn handle_webhook(&self, req: &Request) -> Response<Body> {
        match self.webhook(req).await {
            Ok(response) => response,
            // Typeform retries a 503 every few minutes for ten hours, a 500 only a few times.
            Err(err) => err.retry_later().into_response(),
        }
    }

    async fn webhook(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        if req.method() != http::Method::POST {
            return Err(ApiError::MethodNotAllowed);
        }
        let account = query_param(req, "account")
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| ApiError::BadRequest("Missing account parameter".into()))?;
        let customer = self.loader.customer(&account).await.map_err(|err| match err {
            ContextError::NotFound(_) | ContextError::InvalidName(_) | ContextError::Empty(_) => {
                // No installation (never installed, or uninstalled): 410 makes Typeform disable
                // the webhook instead of retrying it.
                tracing::info!(account = %account, error = %err, "webhook for an unknown account");
                metrics::rejected("account");
                ApiError::Gone("Unable to gather customer context".into())
            }
            other => ApiError::upstream("Unable to gather customer context", other),
        })?;
        let secret = customer
            .secrets()
            .get_str(TYPEFORM_SECRET_KEY)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ApiError::upstream(
                    "Unable to verify message",
                    format!("no {TYPEFORM_SECRET_KEY} stored for {account}"),
                )
            })?;
        let body = body_bytes(req);
        if let Err(err) = verify(secret, body, header(req, SIGNATURE_HEADER)) {
            tracing::warn!(account = %account, reason = %err, "rejected Typeform delivery");
            metrics::rejected("signature");
            return Err(ApiError::BadRequest("Bad signature".into()));
        }
        let event: Value = serde_json::from_slice(body)
            .map_err(|_| ApiError::BadRequest("Invalid JSON body".into()))?;
        let event_type = event["event_type"].as_str().unwrap_or_default();
        if event_type != "form_response" {
            return Err(ApiError::BadRequest(format!(
                "Unsupported event_type: {event_type}"
            )));
        }
        let event_id = event["event_id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ApiError::BadRequest("Missing event_id".into()))?;
        let offering = self
            .loader
            .config()
            .offering_reference
            .clone()
            .unwrap_or_default();
        tracing::info!(
            delivery = event_id,
            event = event_type,
            offering = %offering,
            account = %account,
            "Typeform form response received"
        );
        let thanks = format!("Thanks for {event_id}");
        if remembered_events(Some(customer.secrets()))
            .iter()
            .any(|id| id == event_id)
        {
            tracing::info!(delivery = event_id, account = %account, "event already processed, no second note");
            return Ok(ApiResponse::ok(&thanks));
        }
        let request_id = self.request_id(&offering, &account).await?;
        let key = format!("{CONSUMER}/{offering}/{account}/events/{event_id}");
        let note = form_response_to_note(&event["form_response"]);
        let added = self
            .deliveries
            .once(
                &[key],
                body,
                attempt_deadline(req, DEFAULT_ATTEMPT_TIME),
                add_note(&customer, &request_id, &note),
                |()| serde_json::json!({ "message": thanks }),
            )
            .await
            // Typeform retries a 503 a few minutes later.
            .map_err(|error| {
                error.into_api_error(
                    NOTE_FAILED,
                    "Event is being processed, retry later",
                    "event_id reused with another body",
                )
            })?;
        match added {
            Once::Ran(()) => tracing::info!(delivery = event_id, account = %account, "note added"),
            Once::Duplicate(_) => {
                tracing::info!(delivery = event_id, account = %account, "event already processed, no second note")
            }
        }
        Ok(ApiResponse::ok(&thanks))
    }

    /// The request id configured on the customer's instance (provider client, no retry).
    async fn request_id(&self, offering: &str, account: &str) -> Result<String, ApiError> {
        const MESSAGE: &str = "Unable to find request id";
        let provider = self
            .loader
            .provider()
            .await
            .map_err(|e| ApiError::upstream(MESSAGE, e))?;
        let client = provider
            .client()
            .map_err(|e| ApiError::upstream(MESSAGE, e))?;
        let instance = find_app_instance(client, offering, account)
            .await
            .map_err(|e| ApiError::upstream(MESSAGE, e))?;
        instance
            .text(REQUEST_ID_FIELD)
            .ok_or_else(|| ApiError::upstream(MESSAGE, "no request_id on the app instance"))
    }
}

async fn add_note(customer: &AccountContext, request_id: &str, note: &str) -> Result<(), ApiError> {
    let client = customer
        .client()
        .map_err(|e| ApiError::upstream(NOTE_FAILED, e))?;
    fourme::add_note(client, request_id, note)
        .await
        .map(drop)
        .map_err(|e| ApiError::upstream(NOTE_FAILED, e))
}
