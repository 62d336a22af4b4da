//! A strict local emulator of 4me for tests, demos and local development.
//!
//! [`Sandbox::start`] runs an HTTP server on a tokio task that answers the 4me endpoints the app
//! builder uses: OAuth client credentials (`/oauth/token`), GraphQL (`/graphql`, a real derive-based
//! schema, so unknown fields or arguments are validation errors), REST (`/v1/...`) and async query
//! results (`/async/<id>.json`). Faults, token expiry and the 20-requests-per-2-seconds rate limit
//! can be triggered from tests through the handle. See `README.md` for the full behaviour.
#![warn(missing_docs)]

mod app_store;
mod contract;
pub mod fakes;
mod keys;
pub mod lansweeper;
mod rules;
mod schema;
mod serve;
mod server;
mod state;
pub mod typeform;
mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

pub use keys::KeyError;
pub use webhooks::{Delivery, InstallOptions, InstalledApp, PolicyInfo, WebhookError};

/// Domain the sandbox pretends to be (used in issuers and node ids).
pub const SANDBOX_DOMAIN: &str = "4me-sandbox.test";

/// Requests allowed per token in one short rate-limit window ([`RATE_WINDOW`]).
pub const RATE_LIMIT: u32 = 20;

/// Requests allowed per token in a 60-minute window (4me's `x-ratelimit-limit`).
pub const HOURLY_REQUESTS: u32 = 3600;

/// Query-cost points allowed per token in a 60-minute window (4me's `x-costlimit-limit`).
pub const HOURLY_COST: u32 = 5000;

/// Length of the rate-limit window.
pub const RATE_WINDOW: Duration = Duration::from_secs(2);

/// Maximum page size of a GraphQL connection (`first`), as 4me documents it.
pub const MAX_PAGE_SIZE: i32 = app_builder_schema::limits::MAX_PAGE_SIZE;

/// Client credentials of an OAuth application registered in the sandbox.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthCredentials {
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: String,
}

impl std::fmt::Debug for OAuthCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// Which endpoint a [`Fault`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTarget {
    /// Any of the endpoints below.
    Any,
    /// `POST /oauth/token`.
    OAuth,
    /// `POST /graphql`.
    GraphQl,
    /// `/v1/...` REST calls.
    Rest,
    /// `GET /async/<id>.json`.
    AsyncResult,
}

impl FaultTarget {
    pub(crate) fn matches(self, endpoint: FaultTarget) -> bool {
        self == FaultTarget::Any || self == endpoint
    }
}

/// A fault served to the next `times` matching requests (before authentication).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer 429 with a `Retry-After` header.
    TooManyRequests {
        /// Endpoint(s) affected.
        target: FaultTarget,
        /// Value of the `Retry-After` header (seconds).
        retry_after_secs: u64,
        /// Number of requests affected.
        times: u32,
    },
    /// Answer with the given HTTP status (e.g. 500, 502, 503).
    ServerError {
        /// Endpoint(s) affected.
        target: FaultTarget,
        /// HTTP status code to answer with.
        status: u16,
        /// Number of requests affected.
        times: u32,
    },
    /// Sleep before handling the request normally.
    Delay {
        /// Endpoint(s) affected.
        target: FaultTarget,
        /// How long to sleep.
        delay: Duration,
        /// Number of requests affected.
        times: u32,
    },
}

/// A fault of one GraphQL operation of one account ([`Sandbox::inject_operation_fault`]): the
/// next `times` GraphQL requests of `account` naming `operation` get `answer`; the requests of
/// other accounts (e.g. the provider's) and other operations are served normally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationFault {
    /// Account of the requests affected (the account of the caller's token).
    pub account: String,
    /// The request's operation name (`Discovered`) or one of its root fields
    /// (`discoveredConfigurationItems`, `configurationItemUpdate`, `people`, ...).
    pub operation: String,
    /// The answer.
    pub answer: OperationAnswer,
    /// Number of requests affected.
    pub times: u32,
}

/// What an [`OperationFault`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationAnswer {
    /// The given HTTP status (e.g. 500).
    ServerError {
        /// HTTP status code to answer with.
        status: u16,
    },
    /// 200 with a GraphQL `errors` array holding `message` and no data.
    GraphQlError {
        /// The error message.
        message: String,
    },
}

/// The operation name and the root field names of a GraphQL request (nothing when unparsable).
pub(crate) fn operation_names(request: &async_graphql::Request) -> Vec<String> {
    use async_graphql::parser::types::Selection;
    let mut names: Vec<String> = request.operation_name.iter().cloned().collect();
    if let Ok(document) = async_graphql::parser::parse_query(&request.query) {
        for (name, operation) in document.operations.iter() {
            names.extend(name.map(|n| n.to_string()));
            for selection in &operation.node.selection_set.node.items {
                if let Selection::Field(field) = &selection.node {
                    names.push(field.node.name.node.to_string());
                }
            }
        }
    }
    names
}

impl Fault {
    pub(crate) fn target(&self) -> FaultTarget {
        match self {
            Fault::TooManyRequests { target, .. }
            | Fault::ServerError { target, .. }
            | Fault::Delay { target, .. } => *target,
        }
    }

    pub(crate) fn times_mut(&mut self) -> &mut u32 {
        match self {
            Fault::TooManyRequests { times, .. }
            | Fault::ServerError { times, .. }
            | Fault::Delay { times, .. } => times,
        }
    }
}

/// Request counters (every request received, including rejected ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `POST /oauth/token` requests.
    pub token_requests: u64,
    /// `POST /graphql` requests.
    pub graphql_requests: u64,
    /// `/v1/...` requests.
    pub rest_requests: u64,
    /// `GET /async/<id>.json` requests.
    pub async_result_requests: u64,
    /// Requests answered (or delayed) by an injected [`Fault`].
    pub faults_served: u64,
}

/// What one access token used: the requests 4me counts against its limits and the ones it
/// refused with 429 (see [`Sandbox::token_usage`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Account of the token.
    pub account: String,
    /// Requests counted (accepted).
    pub requests: u64,
    /// Requests refused with 429 (the 20-per-2-s window or the hourly budget).
    pub refused: u64,
    /// Most requests counted in one sliding rate window (at most 20 when nothing was refused).
    pub busiest_window: usize,
    /// Most requests counted in one sliding rate window across all tokens of the account.
    pub account_busiest_window: usize,
}

/// State shared between the server task and the handles.
pub(crate) struct Shared {
    state: Mutex<state::State>,
    pub(crate) base_url: String,
    pub(crate) domain: String,
    pub(crate) http: reqwest::Client,
}

impl Shared {
    /// Locks the state; a poisoned lock is recovered (the state stays usable for tests).
    pub(crate) fn lock(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Inner {
    shared: Arc<Shared>,
    url: String,
    _shutdown: oneshot::Sender<()>,
}

/// The GraphQL schema of the sandbox in SDL.
pub fn schema_sdl() -> String {
    schema::sdl()
}

/// Handle on a running sandbox; clones share the same server, which stops when the last handle
/// is dropped.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl Sandbox {
    /// Starts a sandbox on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<Sandbox> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a sandbox listening on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let url = format!("http://{local}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state::State::new()),
            base_url: url.clone(),
            domain: SANDBOX_DOMAIN.to_owned(),
            http,
        });
        let app = server::router(shared.clone());
        let tx = serve::spawn(listener, app, "sandbox server");
        Ok(Sandbox {
            inner: Arc::new(Inner {
                shared,
                url,
                _shutdown: tx,
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Base URL, `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// OAuth token endpoint, `<url>/oauth/token`.
    pub fn oauth_url(&self) -> String {
        format!("{}/oauth/token", self.inner.url)
    }

    /// GraphQL endpoint, `<url>/graphql`.
    pub fn graphql_url(&self) -> String {
        format!("{}/graphql", self.inner.url)
    }

    /// REST base, `<url>/v1` (clients append `/<resource>/<id>`).
    pub fn rest_url(&self) -> String {
        format!("{}/v1", self.inner.url)
    }

    /// The 4me domain the sandbox emulates, `4me-sandbox.test`.
    pub fn domain(&self) -> &str {
        &self.inner.shared.domain
    }

    /// Registers an account (idempotent).
    pub fn add_account(&self, account_id: &str) {
        self.shared().lock().add_account(account_id);
    }

    /// Registers an OAuth application for `account_id` (creating the account if needed).
    pub fn add_oauth_application(&self, account_id: &str) -> OAuthCredentials {
        let mut state = self.shared().lock();
        let app = state.add_oauth_application(account_id);
        OAuthCredentials {
            client_id: app.client_id,
            client_secret: app.client_secret,
        }
    }

    /// Lifetime of tokens issued from now on (default one hour).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared().lock().token_lifetime = lifetime;
    }

    /// Expires every token issued so far: using one gets a 401.
    pub fn expire_all_tokens(&self) {
        self.shared().lock().expire_all_tokens();
    }

    /// Length of the per-token rate-limit window (default [`RATE_WINDOW`], 2 s); tests can use a
    /// long window to make the limit independent of timing.
    pub fn set_rate_window(&self, window: Duration) {
        self.shared().lock().rate_window = window;
    }

    /// The hourly budgets of every token: `requests` per 60 minutes (default
    /// [`HOURLY_REQUESTS`]), `cost` points per 60 minutes (default [`HOURLY_COST`]) and the
    /// points one request costs (default 1).
    pub fn set_hourly_limits(&self, requests: u32, cost: u32, request_cost: u32) {
        let mut state = self.shared().lock();
        state.hourly = state::HourlyLimits {
            requests,
            cost,
            request_cost,
        };
        state.hours.clear();
    }

    /// Queues a fault for the next matching requests (faults are consumed in insertion order).
    pub fn inject_fault(&self, fault: Fault) {
        self.shared().lock().faults.push(fault);
    }

    /// Queues a fault of one account's GraphQL operation (faults are consumed in insertion order).
    pub fn inject_operation_fault(&self, fault: OperationFault) {
        self.shared().lock().operation_faults.push(fault);
    }

    /// Request counters so far.
    pub fn stats(&self) -> Stats {
        self.shared().lock().stats
    }

    /// What each access token issued so far used, one entry per token that made a request.
    pub fn token_usage(&self) -> Vec<TokenUsage> {
        let state = self.shared().lock();
        state
            .usage
            .iter()
            .map(|(token, usage)| TokenUsage {
                account: state
                    .tokens
                    .get(token)
                    .map(|t| t.account.clone())
                    .unwrap_or_default(),
                account_busiest_window: state
                    .tokens
                    .get(token)
                    .and_then(|t| state.account_windows.get(&t.account))
                    .map_or(0, |(_, busiest)| *busiest),
                ..usage.clone()
            })
            .collect()
    }

    /// Creates configuration items named `names` in `account_id`; returns their node ids.
    pub fn seed_configuration_items(&self, account_id: &str, names: &[&str]) -> Vec<String> {
        let mut state = self.shared().lock();
        state.add_account(account_id);
        names
            .iter()
            .map(|name| state.seed_ci(&self.inner.shared.domain, account_id, name))
            .collect()
    }

    /// Creates one configuration item with `fields` (e.g. a function's CI as `deploy` writes it:
    /// `name`, `label`, `systemID`, `customFields`); status `in_production` unless given.
    /// Returns its node id.
    pub fn seed_configuration_item(&self, account_id: &str, fields: Value) -> String {
        let mut state = self.shared().lock();
        state.add_account(account_id);
        let mut fields = match fields {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        fields
            .entry("status")
            .or_insert_with(|| Value::String("in_production".into()));
        state.insert(
            &self.inner.shared.domain,
            "ConfigurationItem",
            account_id,
            fields,
        )
    }

    /// Async query results created from now on answer 404 this many times before being ready.
    pub fn set_async_result_delay(&self, polls_before_ready: u32) {
        self.shared().lock().async_delay = polls_before_ready;
    }

    /// Creates a service instance (with a service and a support team); returns its node id.
    pub fn seed_service_instance(&self, account_id: &str, name: &str) -> String {
        let shared = self.shared();
        let mut state = shared.lock();
        state.add_account(account_id);
        let service = state.insert(
            &shared.domain,
            "Service",
            account_id,
            fields(json!({"name": format!("{name} service")})),
        );
        let team = state.insert(
            &shared.domain,
            "Team",
            account_id,
            fields(json!({"name": format!("{name} support")})),
        );
        state.insert(
            &shared.domain,
            "ServiceInstance",
            account_id,
            fields(json!({"name": name, "serviceId": service, "supportTeamId": team})),
        )
    }

    /// Creates a request; returns its node id and its request number (`requestId`).
    pub fn seed_request(&self, account_id: &str, subject: &str) -> SeededRequest {
        let shared = self.shared();
        let mut state = shared.lock();
        state.add_account(account_id);
        let id = state.insert(
            &shared.domain,
            "Request",
            account_id,
            fields(json!({"subject": subject, "status": "assigned", "notes": []})),
        );
        let request_id = state
            .records
            .get(&id)
            .map(|r| r.num.to_string())
            .unwrap_or_default();
        SeededRequest { id, request_id }
    }

    /// Texts of the notes added to request `id`, oldest first.
    pub fn request_notes(&self, id: &str) -> Vec<String> {
        self.shared()
            .lock()
            .records
            .get(id)
            .and_then(|r| r.fields.get("notes").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n.get("text").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    /// Creates a person from camelCase attributes (`name`, `primaryEmail`, `authenticationID`,
    /// `employeeID`, `supportID`, `sourceID`, `disabled`); returns its node id.
    pub fn seed_person(&self, account_id: &str, attributes: Value) -> String {
        let shared = self.shared();
        let mut state = shared.lock();
        state.add_account(account_id);
        state.insert(&shared.domain, "Person", account_id, fields(attributes))
    }

    /// A record by node id as JSON: its fields plus `id`, `type` and `account`.
    pub fn record(&self, id: &str) -> Option<Value> {
        let state = self.shared().lock();
        let r = state.records.get(id)?;
        let mut map = r.fields.clone();
        map.insert("id".into(), json!(r.id));
        map.insert("type".into(), json!(r.kind));
        map.insert("account".into(), json!(r.account));
        Some(Value::Object(map))
    }

    /// Creates a webhook policy in `account_id` with a new key pair for `jwt_alg` (`es512`,
    /// `rs256`, ...; HMAC and `none` policies have no public key).
    pub fn create_webhook_policy(
        &self,
        account_id: &str,
        jwt_alg: &str,
        audience: Option<&str>,
    ) -> Result<PolicyInfo, WebhookError> {
        let shared = self.shared();
        let id = webhooks::create_policy(shared, account_id, jwt_alg, audience.map(str::to_owned))?;
        let state = shared.lock();
        let record = state
            .records
            .get(&id)
            .ok_or_else(|| WebhookError::NotFound(format!("webhook policy {id}")))?;
        Ok(webhooks::policy_info(record))
    }

    /// Signs arbitrary `claims` with the private key of webhook policy `policy_id` (to craft
    /// expired, wrongly addressed or otherwise special tokens in tests).
    pub fn sign_claims(&self, policy_id: &str, claims: &Value) -> Result<String, WebhookError> {
        let state = self.shared().lock();
        let key = state
            .policy_keys
            .get(policy_id)
            .ok_or_else(|| WebhookError::NotFound(format!("webhook policy {policy_id}")))?;
        Ok(key.sign_jwt(claims)?)
    }

    /// Signs a token this sandbox issued again, as 4me does for a redelivery: the same policy,
    /// subject and `data`, a new `jti`, `iat` and `exp` (so the receiver sees a valid token of
    /// a delivery it may have seen before). Tokens the sandbox did not sign are `NotFound`.
    pub fn resign(&self, token: &str) -> Result<String, WebhookError> {
        webhooks::resign(self.shared(), token)
    }

    /// Creates a webhook in `account_id` directly. With `verified` it is active at once and no
    /// `webhook.verify` is sent; otherwise `webhook.verify` is sent as for `webhookCreate`.
    pub fn create_webhook(
        &self,
        account_id: &str,
        event: &str,
        uri: &str,
        policy_id: Option<&str>,
        verified: bool,
    ) -> Result<String, WebhookError> {
        let shared = self.shared();
        let id = {
            let mut state = shared.lock();
            if let Some(policy) = policy_id
                && state.find("WebhookPolicy", account_id, policy).is_none()
            {
                return Err(WebhookError::NotFound(format!("webhook policy {policy}")));
            }
            state.add_account(account_id);
            let mut map =
                fields(json!({"event": event, "uri": uri, "name": event, "active": verified}));
            if let Some(policy) = policy_id {
                map.insert("webhookPolicyId".into(), json!(policy));
            }
            state.insert(&shared.domain, "Webhook", account_id, map)
        };
        if !verified {
            webhooks::spawn_verify(shared.clone(), id.clone());
        }
        Ok(id)
    }

    /// Builds (without sending) the envelope and signed token 4me would deliver to webhook
    /// `webhook_id` for `event` about the webhook itself; returns `(data, jwt)` (the token is
    /// empty when the webhook has no policy).
    pub fn webhook_event(
        &self,
        webhook_id: &str,
        event: &str,
        payload: Value,
    ) -> Result<(Value, String), WebhookError> {
        let shared = self.shared();
        let webhook = shared
            .lock()
            .records
            .get(webhook_id)
            .filter(|r| r.kind == "Webhook")
            .cloned()
            .ok_or_else(|| WebhookError::NotFound(format!("webhook {webhook_id}")))?;
        let (_, jwt, data) = webhooks::webhook_delivery(
            shared,
            &webhook,
            event,
            (webhook.num, &webhook.id),
            payload,
        )?;
        Ok((data, jwt.unwrap_or_default()))
    }

    /// Sends `event` with `payload` to webhook `webhook_id` now (whether verified or not).
    pub async fn deliver_webhook_event(
        &self,
        webhook_id: &str,
        event: &str,
        payload: Value,
    ) -> Result<Delivery, WebhookError> {
        let shared = self.shared();
        let uri = shared
            .lock()
            .records
            .get(webhook_id)
            .and_then(|r| r.str("uri"))
            .ok_or_else(|| WebhookError::NotFound(format!("webhook {webhook_id}")))?;
        let (data, jwt) = self.webhook_event(webhook_id, event, payload)?;
        let jwt = (!jwt.is_empty()).then_some(jwt);
        Ok(webhooks::deliver(shared, webhook_id, &uri, event, jwt, data).await)
    }

    /// Creates a draft app offering in `account_id` from camelCase attributes (e.g.
    /// `webhookUriTemplate`, `policyJwtAlg`, `policyJwtAudience`, `name`); returns its node id.
    pub fn seed_app_offering(
        &self,
        account_id: &str,
        reference: &str,
        attributes: Value,
    ) -> String {
        let shared = self.shared();
        let mut state = shared.lock();
        state.add_account(account_id);
        let mut map = fields(json!({"name": reference, "published": false, "scopes": []}));
        map.extend(fields(attributes));
        map.insert("reference".into(), json!(reference));
        state.insert(&shared.domain, "AppOffering", account_id, map)
    }

    /// Installs the offering with reference `offering_ref` in `customer_account`: creates the
    /// customer's OAuth application and webhook policy and the app instance (visible to the
    /// provider), then sends `app_instance.secrets-update` deliveries to every *verified*
    /// provider webhook for that event: one with the `application` part, one with the `policy`
    /// (and `secrets`, if any) part.
    pub async fn install_app(
        &self,
        offering_ref: &str,
        customer_account: &str,
        options: InstallOptions,
    ) -> Result<InstalledApp, WebhookError> {
        webhooks::install_app(self.shared(), offering_ref, customer_account, options).await
    }

    /// The customer enables (`true`) or disables the app instance `app_instance_id`: 4me sends
    /// `app_instance.update` to the provider's webhooks for it (returned).
    pub async fn set_app_instance_enabled(
        &self,
        app_instance_id: &str,
        enabled: bool,
    ) -> Result<Vec<Delivery>, WebhookError> {
        webhooks::set_instance_enabled(self.shared(), app_instance_id, enabled).await
    }

    /// The customer confirms the configuration of app instance `app_instance_id` (what opening
    /// its `confirmation_url` does): 4me enables it and sends `app_instance.update` (returned).
    pub async fn confirm_configuration(
        &self,
        app_instance_id: &str,
    ) -> Result<Vec<Delivery>, WebhookError> {
        webhooks::confirm_configuration(self.shared(), app_instance_id).await
    }

    /// The customer uninstalls the app: the instance `app_instance_id` is deleted and 4me sends
    /// `app_instance.delete` to the provider's webhooks for it (returned).
    pub async fn uninstall_app(
        &self,
        app_instance_id: &str,
    ) -> Result<Vec<Delivery>, WebhookError> {
        webhooks::uninstall_app(self.shared(), app_instance_id).await
    }

    /// Calls the app-offering webhook of app instance `app_instance_id` (URI template with
    /// `{account}` replaced) with `payload`, signed with the customer-side policy, as an
    /// automation rule would.
    pub async fn trigger_app_webhook(
        &self,
        app_instance_id: &str,
        payload: Value,
    ) -> Result<Delivery, WebhookError> {
        webhooks::call_app_webhook(self.shared(), app_instance_id, payload, None).await
    }

    /// All deliveries sent so far (in completion order).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared().lock().deliveries.clone()
    }

    /// Waits until a delivery matching `wanted` was sent (the first such is returned) or
    /// `timeout` passed (`None`).
    pub async fn wait_for_delivery(
        &self,
        timeout: Duration,
        wanted: impl Fn(&Delivery) -> bool,
    ) -> Option<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = self
                .shared()
                .lock()
                .deliveries
                .iter()
                .find(|d| wanted(d))
                .cloned();
            if found.is_some() || tokio::time::Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until at least `count` deliveries were sent or `timeout` passed; returns them.
    pub async fn wait_for_deliveries(&self, count: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let deliveries = self.deliveries();
            if deliveries.len() >= count || tokio::time::Instant::now() >= deadline {
                return deliveries;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A request created by [`Sandbox::seed_request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededRequest {
    /// Node id.
    pub id: String,
    /// Request number as a string (`requestId` in GraphQL).
    pub request_id: String,
}

fn fields(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}
