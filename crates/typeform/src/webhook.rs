//! Typeform webhook handler (spec §5.2.2, §5.2.3) with replay protection by `event_id`.

use app_builder_core::context::{AccountContext, ContextError};
use app_builder_core::events::{body_bytes, header, query_param};
use app_builder_core::fourme::instances::find_app_instance;
use app_builder_core::response::{ApiError, ApiResponse};
use app_builder_core::secrets::{SecretDocument, SecretName, SecretStore, SecretStoreError};
use lambda_http::{Body, Request, Response};
use serde_json::Value;

use crate::fourme::{self, REQUEST_ID_FIELD};
use crate::note::form_response_to_note;
use crate::signature::{SIGNATURE_HEADER, verify};
use crate::{EVENTS_KEY, MAX_REMEMBERED_EVENTS, TYPEFORM_SECRET_KEY, TypeformFunction};

const NOTE_FAILED: &str = "Unable to add note";

/// The processed event ids stored in a secret document.
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

/// Outcome of claiming an event id.
enum Claim {
    /// The id was recorded now: process the event.
    New,
    /// The id was already recorded: the event was processed before.
    Duplicate,
}

impl<S: SecretStore> TypeformFunction<S> {
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
        let name = customer.secret_name().clone();
        match self.claim(&name, event_id).await {
            Ok(Claim::Duplicate) => {
                tracing::info!(delivery = event_id, account = %account, "event already processed, no second note");
                return Ok(ApiResponse::ok(&thanks));
            }
            Ok(Claim::New) => {}
            Err(err) => return Err(ApiError::upstream(NOTE_FAILED, err)),
        }
        let note = form_response_to_note(&event["form_response"]);
        if let Err(err) = add_note(&customer, &request_id, &note).await {
            if let Err(unclaim) = self.unclaim(&name, event_id).await {
                tracing::error!(delivery = event_id, error = %unclaim, "cannot release the event id");
            }
            return Err(err);
        }
        tracing::info!(delivery = event_id, account = %account, "note added");
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

    /// Records `event_id` as processed in the customer secret unless it already is, atomically
    /// (the store's compare-and-swap update): of two simultaneous deliveries of one event, only
    /// one claims it, and concurrent claims of different events keep each other's ids.
    async fn claim(&self, name: &SecretName, event_id: &str) -> Result<Claim, SecretStoreError> {
        let stored = self
            .loader
            .store()
            .update(name, |current| {
                let mut events = remembered_events(current);
                if events.iter().any(|id| id == event_id) {
                    return None;
                }
                events.push(event_id.to_owned());
                let excess = events.len().saturating_sub(MAX_REMEMBERED_EVENTS);
                events.drain(..excess);
                let mut document = current.cloned().unwrap_or_default();
                document.insert(EVENTS_KEY, events);
                Some(document)
            })
            .await?;
        Ok(if stored.is_some() {
            Claim::New
        } else {
            Claim::Duplicate
        })
    }

    /// Forgets `event_id` after its note could not be added, so a Typeform retry can add it.
    async fn unclaim(&self, name: &SecretName, event_id: &str) -> Result<(), SecretStoreError> {
        self.loader
            .store()
            .update(name, |current| {
                let current = current?;
                let mut events = remembered_events(Some(current));
                let before = events.len();
                events.retain(|id| id != event_id);
                if events.len() == before {
                    return None;
                }
                let mut document = current.clone();
                document.insert(EVENTS_KEY, events);
                Some(document)
            })
            .await
            .map(drop)
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
