//! A fake of the Typeform API: webhook registration and signed form-response deliveries.
//!
//! [`TypeformFake::start`] runs an HTTP server on `127.0.0.1:<ephemeral>` answering
//! `PUT /forms/{form_id}/webhooks/{tag}` like `api.typeform.com`
//! (<https://www.typeform.com/developers/webhooks/reference/create-or-update-webhook/>):
//!
//! - `Authorization: Bearer <token>` must name a registered token ([`TypeformFake::add_form`]),
//!   else 403 `{"code":"AUTHENTICATION_ERROR", "description": ...}` (Typeform answers an unknown
//!   or revoked token with 403, not 401);
//! - the form must exist and belong to that token's owner, else 404 `{"code":"FORM_NOT_FOUND", ...}`;
//! - the JSON body needs `url` (an absolute http(s) URL) and `enabled` (boolean), optional `secret`
//!   and `verify_ssl`; anything else malformed is 400 `{"code":"VALIDATION_ERROR", ...}`;
//! - 200 with `{id, form_id, tag, url, enabled, verify_ssl, created_at, updated_at, event_types}`.
//!   A second PUT with the same tag updates the registration (keeping its `id`).
//! - `DELETE /forms/{form_id}/webhooks/{tag}` (same authentication and form check) removes the
//!   registration: 204, or 404 `{"code":"NOT_FOUND", ...}` when there is none
//!   (<https://www.typeform.com/developers/webhooks/reference/delete-webhook/>).
//!
//! [`TypeformFake::send_response`] then POSTs a `form_response` event to the registered URL with
//! `Typeform-Signature: sha256=<base64(HMAC-SHA256(secret, body))>`, the secret used as raw UTF-8
//! bytes, exactly as Typeform signs deliveries; [`TypeformFake::redeliver`] re-sends a delivery's
//! identical bytes (a Typeform retry).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Header carrying the delivery signature.
pub const SIGNATURE_HEADER: &str = "Typeform-Signature";

/// Errors of the fake's Rust API.
#[derive(Debug, thiserror::Error)]
pub enum TypeformFakeError {
    /// No enabled webhook is registered for the form.
    #[error("no enabled webhook registered for form {0}")]
    NoWebhook(String),
    /// The delivery could not be sent (connection refused, timeout, ...).
    #[error("delivery to the webhook failed: {0}")]
    Delivery(String),
}

/// A webhook registration as recorded by the fake.
#[derive(Clone, PartialEq, Eq)]
pub struct TypeformWebhook {
    /// Registration id.
    pub id: String,
    /// Form id.
    pub form_id: String,
    /// Tag (`4me-webhook` for the app builder).
    pub tag: String,
    /// Target URL.
    pub url: String,
    /// Whether deliveries are sent.
    pub enabled: bool,
    /// Signing secret (`None`: deliveries are unsigned).
    pub secret: Option<String>,
    /// `verify_ssl` as requested.
    pub verify_ssl: bool,
    /// Number of PUTs that wrote this registration (1 after creation).
    pub writes: u32,
}

impl std::fmt::Debug for TypeformWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypeformWebhook")
            .field("id", &self.id)
            .field("form_id", &self.form_id)
            .field("tag", &self.tag)
            .field("url", &self.url)
            .field("enabled", &self.enabled)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("verify_ssl", &self.verify_ssl)
            .field("writes", &self.writes)
            .finish()
    }
}

/// One delivery of a form response to a webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeformDelivery {
    /// The target URL.
    pub url: String,
    /// `event_id` of the event.
    pub event_id: String,
    /// The exact body bytes sent.
    pub body: Vec<u8>,
    /// The `Typeform-Signature` header sent (`None` when the webhook has no secret).
    pub signature: Option<String>,
    /// HTTP status answered by the receiver.
    pub status: u16,
    /// Body answered by the receiver.
    pub response: String,
}

#[derive(Default)]
struct FakeState {
    /// token → owner (workspace) id.
    tokens: HashMap<String, String>,
    /// form id → owner id.
    forms: HashMap<String, String>,
    /// (form id, tag) → registration.
    webhooks: HashMap<(String, String), TypeformWebhook>,
    next_id: u64,
    deliveries: Vec<TypeformDelivery>,
    put_requests: u64,
    delete_requests: u64,
    /// Webhook requests still to answer with 503.
    unavailable: u32,
}

impl FakeState {
    /// Counts down [`TypeformFake::fail_next_requests`]: the 503 to answer, if any.
    fn outage(&mut self) -> Option<Response> {
        if self.unavailable == 0 {
            return None;
        }
        self.unavailable -= 1;
        Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "Service temporarily unavailable".into(),
        ))
    }
}

struct Shared {
    state: Mutex<FakeState>,
    http: reqwest::Client,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Inner {
    shared: Arc<Shared>,
    url: String,
    _shutdown: oneshot::Sender<()>,
}

/// Handle on a running Typeform fake; clones share the server, which stops when the last handle
/// is dropped.
#[derive(Clone)]
pub struct TypeformFake {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TypeformFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypeformFake")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl TypeformFake {
    /// Starts the fake on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<TypeformFake> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState::default()),
            http,
        });
        let app = Router::new()
            .route(
                "/forms/{form_id}/webhooks/{tag}",
                put(put_webhook).delete(delete_webhook),
            )
            .with_state(shared.clone());
        let tx = crate::serve::spawn(listener, app, "typeform fake");
        Ok(TypeformFake {
            inner: Arc::new(Inner {
                shared,
                url,
                _shutdown: tx,
            }),
        })
    }

    /// Base URL (`http://127.0.0.1:<port>`, no trailing slash): the `TYPEFORM_API_URL`.
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// Registers form `form_id` owned by the holder of personal access `token` (a token may own
    /// several forms; a form has one owner).
    pub fn add_form(&self, form_id: &str, token: &str) {
        let mut state = self.inner.shared.lock();
        let owner = match state.tokens.get(token) {
            Some(owner) => owner.clone(),
            None => {
                state.next_id += 1;
                let owner = format!("workspace-{}", state.next_id);
                state.tokens.insert(token.to_owned(), owner.clone());
                owner
            }
        };
        state.forms.insert(form_id.to_owned(), owner);
    }

    /// Registers an additional `token` for the owner of `existing_token` (a rotated token).
    pub fn add_token(&self, token: &str, existing_token: &str) {
        let mut state = self.inner.shared.lock();
        if let Some(owner) = state.tokens.get(existing_token).cloned() {
            state.tokens.insert(token.to_owned(), owner);
        }
    }

    /// Revokes `token`: requests using it get 403.
    pub fn revoke_token(&self, token: &str) {
        self.inner.shared.lock().tokens.remove(token);
    }

    /// The registration of `(form_id, tag)`, if any.
    pub fn webhook(&self, form_id: &str, tag: &str) -> Option<TypeformWebhook> {
        self.inner
            .shared
            .lock()
            .webhooks
            .get(&(form_id.to_owned(), tag.to_owned()))
            .cloned()
    }

    /// Every registration, ordered by form id and tag.
    pub fn webhooks(&self) -> Vec<TypeformWebhook> {
        let mut all: Vec<TypeformWebhook> = self
            .inner
            .shared
            .lock()
            .webhooks
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| (&a.form_id, &a.tag).cmp(&(&b.form_id, &b.tag)));
        all
    }

    /// Number of `PUT /forms/.../webhooks/...` requests received (including rejected ones).
    pub fn put_requests(&self) -> u64 {
        self.inner.shared.lock().put_requests
    }

    /// Answers the next `count` webhook requests (`PUT`, `DELETE`) with 503, as during an outage.
    pub fn fail_next_requests(&self, count: u32) {
        self.inner.shared.lock().unavailable = count;
    }

    /// Number of `DELETE` webhook requests received.
    pub fn delete_requests(&self) -> u64 {
        self.inner.shared.lock().delete_requests
    }

    /// Every delivery sent so far, oldest first.
    pub fn deliveries(&self) -> Vec<TypeformDelivery> {
        self.inner.shared.lock().deliveries.clone()
    }

    /// Sends `form_response` (the object Typeform puts under `form_response`) as a new
    /// `form_response` event, with a fresh `event_id`, to the enabled webhook of `form_id`
    /// (the first by tag when there are several), signed with its secret.
    pub async fn send_response(
        &self,
        form_id: &str,
        form_response: Value,
    ) -> Result<TypeformDelivery, TypeformFakeError> {
        let event_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let event = json!({
            "event_id": event_id,
            "event_type": "form_response",
            "form_response": form_response,
        });
        self.send_event(form_id, &event).await
    }

    /// Sends an arbitrary event object (it should carry `event_id` and `event_type`) to the
    /// enabled webhook of `form_id`, signed with its secret.
    pub async fn send_event(
        &self,
        form_id: &str,
        event: &Value,
    ) -> Result<TypeformDelivery, TypeformFakeError> {
        let webhook = self
            .webhooks()
            .into_iter()
            .find(|w| w.form_id == form_id && w.enabled)
            .ok_or_else(|| TypeformFakeError::NoWebhook(form_id.to_owned()))?;
        let body =
            serde_json::to_vec(event).map_err(|e| TypeformFakeError::Delivery(e.to_string()))?;
        let signature = webhook.secret.as_deref().map(|secret| sign(secret, &body));
        let event_id = event
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.post(webhook.url, event_id, body, signature).await
    }

    /// Re-sends a delivery byte for byte with the same signature, as Typeform does when it
    /// retries.
    pub async fn redeliver(
        &self,
        delivery: &TypeformDelivery,
    ) -> Result<TypeformDelivery, TypeformFakeError> {
        self.post(
            delivery.url.clone(),
            delivery.event_id.clone(),
            delivery.body.clone(),
            delivery.signature.clone(),
        )
        .await
    }

    async fn post(
        &self,
        url: String,
        event_id: String,
        body: Vec<u8>,
        signature: Option<String>,
    ) -> Result<TypeformDelivery, TypeformFakeError> {
        let mut request = self
            .inner
            .shared
            .http
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "Typeform Webhooks")
            .body(body.clone());
        if let Some(signature) = &signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let response = request
            .send()
            .await
            .map_err(|e| TypeformFakeError::Delivery(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| TypeformFakeError::Delivery(e.to_string()))?;
        let delivery = TypeformDelivery {
            url,
            event_id,
            body,
            signature,
            status,
            response: text,
        };
        self.inner.shared.lock().deliveries.push(delivery.clone());
        Ok(delivery)
    }
}

/// The `Typeform-Signature` value of `body` for `secret`:
/// `sha256=` + standard base64 of HMAC-SHA256 keyed with the secret's UTF-8 bytes.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, body);
    format!("sha256={}", STANDARD.encode(tag.as_ref()))
}

fn error(status: StatusCode, code: &str, description: String) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "description": description})),
    )
        .into_response()
}

/// `None` when the bearer token may manage the webhooks of `form_id`, else the error answer.
fn refusal(state: &FakeState, headers: &HeaderMap, form_id: &str) -> Option<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(owner) = token.and_then(|t| state.tokens.get(t)) else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "AUTHENTICATION_ERROR",
            "Authentication credentials not found on the Request".into(),
        ));
    };
    (state.forms.get(form_id) != Some(owner)).then(|| {
        error(
            StatusCode::NOT_FOUND,
            "FORM_NOT_FOUND",
            format!("Non existing form with uid {form_id}"),
        )
    })
}

async fn delete_webhook(
    State(shared): State<Arc<Shared>>,
    Path((form_id, tag)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut state = shared.lock();
    state.delete_requests += 1;
    if let Some(outage) = state.outage() {
        return outage;
    }
    if let Some(refused) = refusal(&state, &headers, &form_id) {
        return refused;
    }
    match state.webhooks.remove(&(form_id, tag.clone())) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Non existing webhook with tag {tag}"),
        ),
    }
}

async fn put_webhook(
    State(shared): State<Arc<Shared>>,
    Path((form_id, tag)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = shared.lock();
    state.put_requests += 1;
    if let Some(outage) = state.outage() {
        return outage;
    }
    if let Some(refused) = refusal(&state, &headers, &form_id) {
        return refused;
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value @ Value::Object(_)) => value,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "The payload is not a JSON object".into(),
            );
        }
    };
    let url = match request.get("url").and_then(Value::as_str) {
        Some(url)
            if url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) =>
        {
            url.to_owned()
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "url is required and must be an absolute http(s) URL".into(),
            );
        }
    };
    let Some(enabled) = request.get("enabled").and_then(Value::as_bool) else {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "enabled is required and must be a boolean".into(),
        );
    };
    let secret = match request.get("secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "secret must be a string".into(),
            );
        }
    };
    let verify_ssl = match request.get("verify_ssl") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "verify_ssl must be a boolean".into(),
            );
        }
    };
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    state.next_id += 1;
    let fresh_id = format!("01WH{:022}", state.next_id);
    let key = (form_id.clone(), tag.clone());
    let (id, writes) = match state.webhooks.get(&key) {
        Some(existing) => (existing.id.clone(), existing.writes + 1),
        None => (fresh_id, 1),
    };
    let webhook = TypeformWebhook {
        id: id.clone(),
        form_id: form_id.clone(),
        tag: tag.clone(),
        url: url.clone(),
        enabled,
        secret,
        verify_ssl,
        writes,
    };
    state.webhooks.insert(key, webhook);
    (
        StatusCode::OK,
        axum::Json(json!({
            "id": id,
            "form_id": form_id,
            "tag": tag,
            "url": url,
            "enabled": enabled,
            "verify_ssl": verify_ssl,
            "created_at": now,
            "updated_at": now,
            "event_types": {"form_response": true},
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_typeform_documentation_scheme() {
        // HMAC-SHA256("12345", "{}") computed independently with openssl:
        // printf '{}' | openssl dgst -sha256 -hmac 12345 -binary | base64
        assert_eq!(
            sign("12345", b"{}"),
            "sha256=P6n05TZ93duMrsAHAUcZ+Qzp6QKyZAoZhROMXmW3UII="
        );
    }
}
