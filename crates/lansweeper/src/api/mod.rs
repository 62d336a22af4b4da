//! The Lansweeper Data API client (what the integration does with it: docs/original.md#lansweeper).
//!
//! [`LansweeperApi`] holds the HTTP client, the settings and a request pacer per Lansweeper
//! application (each customer authorizes its own, and Lansweeper's limits are per client);
//! [`LansweeperApi::session`] opens a [`Session`] for one customer (client credentials and
//! refresh token). Every request carries the integration headers; 429 answers are retried after
//! `Retry-After`, 5xx and network errors with exponential backoff, 401 on GraphQL once after a new
//! access token. When Lansweeper rotates the refresh token, the session keeps the new one and
//! reports it through [`Session::take_rotated_refresh_token`]: the caller must store it.

mod asset;
mod filters;

use std::sync::Arc;
use std::time::Duration;

use app_builder_core::config::{ConfigError, Settings};
use app_builder_core::fourme::backoff::{full_jitter, retry_after};
use app_builder_core::metrics;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

pub use asset::{
    ASSET_FIELDS, Asset, BasicInfo, Custom, MemoryModule, Named, OsMetadata, Processor,
    RecognitionInfo, User,
};
pub use filters::{AssetQuery, asset_type_regexes, escape_regex};

/// Overrides the API base (default [`DEFAULT_API_URL`]).
pub const ENV_API_URL: &str = "LANSWEEPER_API_URL";
/// Assets per page (default 500, the most Lansweeper serves).
pub const ENV_PAGE_SIZE: &str = "LANSWEEPER_PAGE_SIZE";
/// Maximum length of one filter value (default 100).
pub const ENV_MAX_FILTER_FIELD_LENGTH: &str = "LANSWEEPER_MAX_FILTER_FIELD_LENGTH";
/// Requests per minute the client allows itself (default 150, Lansweeper's limit).
pub const ENV_REQUESTS_PER_MINUTE: &str = "LANSWEEPER_REQUESTS_PER_MINUTE";
/// Requests per hour the client allows itself (default 2000, Lansweeper's limit; 0: none).
pub const ENV_REQUESTS_PER_HOUR: &str = "LANSWEEPER_REQUESTS_PER_HOUR";

/// The production API base.
pub const DEFAULT_API_URL: &str = "https://api.lansweeper.com/api";
/// Overrides where users authorize applications (default [`DEFAULT_APP_URL`]).
pub const ENV_APP_URL: &str = "LANSWEEPER_APP_URL";
/// Lansweeper's web application: a user authorizes an application at
/// `<app url>/authorize-app/<client id>?state=…`, and Lansweeper sends the browser to the
/// application's registered callback URL with `code` and `state`.
pub const DEFAULT_APP_URL: &str = "https://app.lansweeper.com";
/// `x-ls-integration-id` of the 4me integration.
pub const INTEGRATION_ID: &str = "a561a72d-aa5e-4c52-af6d-084129ab5f09";
/// `x-ls-integration-version`.
pub const INTEGRATION_VERSION: &str = "1.0";

/// Message of the authorization error raised by the token endpoint (the original's text).
pub const INCORRECT_CREDENTIALS: &str = "Incorrect Lansweeper credentials ('Client ID', 'Client Secret' or the application is no longer authorized)";

/// Settings of the Lansweeper client.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiSettings {
    /// API base without trailing slash (`<base>/v2/graphql`, `<base>/integrations/oauth/token`).
    pub api_url: String,
    /// Lansweeper's web application without trailing slash (`<app>/authorize-app/<client id>`).
    pub app_url: String,
    /// Assets per page (1–500).
    pub page_size: u32,
    /// Maximum length of a filter value (asset-type regexes are packed up to it).
    pub max_filter_field_length: usize,
    /// Minimum spacing between two requests of one Lansweeper application in this process
    /// (60 s / requests per minute).
    pub min_request_interval: Duration,
    /// Most requests of one Lansweeper application in this process in any hour (Lansweeper
    /// allows 2,000; 0: no limit).
    pub requests_per_hour: u32,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Attempts per request on 429, 5xx and network errors (including the first).
    pub max_attempts: u32,
    /// First backoff step after a 5xx or network error.
    pub backoff_base: Duration,
    /// Largest backoff step.
    pub backoff_max: Duration,
    /// Wait on a 429 without usable `Retry-After` (Lansweeper's one-minute cooldown).
    pub default_retry_after: Duration,
    /// Longest `Retry-After` honoured; a longer demand fails the request as rate limited.
    pub max_retry_after: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            api_url: DEFAULT_API_URL.to_owned(),
            app_url: DEFAULT_APP_URL.to_owned(),
            page_size: 500,
            max_filter_field_length: 100,
            min_request_interval: Duration::from_millis(400),
            requests_per_hour: 2_000,
            request_timeout: Duration::from_secs(30),
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(20),
            default_retry_after: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl ApiSettings {
    /// Settings from `LANSWEEPER_API_URL`, `LANSWEEPER_PAGE_SIZE`,
    /// `LANSWEEPER_MAX_FILTER_FIELD_LENGTH`, `LANSWEEPER_REQUESTS_PER_MINUTE` and
    /// `LANSWEEPER_REQUESTS_PER_HOUR` (all optional).
    pub fn from_settings<L: Fn(&str) -> Option<String>>(
        settings: &Settings<L>,
    ) -> Result<ApiSettings, ConfigError> {
        let mut out = ApiSettings::default();
        if let Some(url) = settings.optional(ENV_API_URL) {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    name: ENV_API_URL,
                    reason: "must be an http(s) URL".into(),
                });
            }
            out.api_url = url.trim_end_matches('/').to_owned();
        }
        if let Some(url) = settings.optional(ENV_APP_URL) {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    name: ENV_APP_URL,
                    reason: "must be an http(s) URL".into(),
                });
            }
            out.app_url = url.trim_end_matches('/').to_owned();
        }
        if let Some(size) = settings.parsed::<u32>(ENV_PAGE_SIZE)? {
            if !(1..=500).contains(&size) {
                return Err(ConfigError::Invalid {
                    name: ENV_PAGE_SIZE,
                    reason: "must be 1 to 500".into(),
                });
            }
            out.page_size = size;
        }
        if let Some(len) = settings.parsed::<usize>(ENV_MAX_FILTER_FIELD_LENGTH)? {
            if len == 0 {
                return Err(ConfigError::Invalid {
                    name: ENV_MAX_FILTER_FIELD_LENGTH,
                    reason: "must be positive".into(),
                });
            }
            out.max_filter_field_length = len;
        }
        if let Some(rpm) = settings.parsed::<u32>(ENV_REQUESTS_PER_MINUTE)? {
            if rpm == 0 {
                return Err(ConfigError::Invalid {
                    name: ENV_REQUESTS_PER_MINUTE,
                    reason: "must be positive".into(),
                });
            }
            out.min_request_interval = Duration::from_secs(60) / rpm;
        }
        if let Some(rph) = settings.parsed::<u32>(ENV_REQUESTS_PER_HOUR)? {
            out.requests_per_hour = rph;
        }
        Ok(out)
    }
}

/// A Lansweeper API failure.
#[derive(Debug, thiserror::Error)]
pub enum LansweeperError {
    /// The credentials or the authorization are not (or no longer) valid: suspend the instance.
    #[error("Lansweeper authorization failed: {0}")]
    Unauthorized(String),
    /// The GraphQL answer carried `errors` (e.g. an unknown site).
    #[error("Unable to query {operation}: {errors}")]
    GraphQl {
        /// What was queried.
        operation: String,
        /// The `errors` array as JSON.
        errors: String,
    },
    /// Still 429 after the allowed attempts, or a `Retry-After` longer than allowed.
    #[error("Lansweeper rate limit exceeded (retry after {retry_after:?})")]
    RateLimited {
        /// The last `Retry-After` demanded.
        retry_after: Duration,
    },
    /// A 5xx (or other unexpected status) after the allowed attempts.
    #[error("Lansweeper answered HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// Network failure or timeout after the allowed attempts.
    #[error("Lansweeper request failed: {0}")]
    Transport(String),
    /// A 2xx answer without the expected content.
    #[error("unexpected Lansweeper response: {0}")]
    InvalidResponse(String),
    /// The query cannot be built (e.g. no usable asset type filter).
    #[error("invalid Lansweeper query: {0}")]
    InvalidQuery(String),
}

impl LansweeperError {
    /// Whether this is an authorization failure (the instance must be suspended).
    pub fn is_authorization(&self) -> bool {
        matches!(self, LansweeperError::Unauthorized(_))
    }

    /// Whether retrying later may succeed (rate limit, 5xx, network).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LansweeperError::RateLimited { .. }
                | LansweeperError::Status { .. }
                | LansweeperError::Transport(_)
        )
    }
}

/// Lansweeper OAuth client credentials of a customer.
#[derive(Clone)]
pub struct ClientCredentials {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// Paces the requests of one Lansweeper application within Lansweeper's two limits: at least
/// `interval` apart (the per-minute limit), and at most `per_hour` in any hour.
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    per_hour: usize,
    state: Mutex<PacerState>,
}

#[derive(Debug, Default)]
struct PacerState {
    next: Option<Instant>,
    /// Start times of the requests of the last hour (at most `per_hour`).
    hour: std::collections::VecDeque<Instant>,
}

/// The window of the hourly limit.
const HOUR: Duration = Duration::from_secs(3600);

impl Pacer {
    fn new(interval: Duration, per_hour: u32) -> Pacer {
        Pacer {
            interval,
            per_hour: usize::try_from(per_hour).unwrap_or(usize::MAX),
            state: Mutex::new(PacerState::default()),
        }
    }

    /// Waits for this request's turn. When the hourly budget is spent and its next slot is
    /// further away than `max_wait`, nothing is waited and the wait is returned: the caller
    /// gives up and lets the request be retried later rather than sleep through an invocation.
    async fn wait(&self, max_wait: Duration) -> Result<(), Duration> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        while state
            .hour
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            state.hour.pop_front();
        }
        let mut at = state.next.map_or(now, |n| n.max(now));
        if self.per_hour > 0 && state.hour.len() >= self.per_hour {
            let free = state.hour[state.hour.len() - self.per_hour] + HOUR;
            if free.duration_since(now) > max_wait {
                return Err(free.duration_since(now));
            }
            at = at.max(free);
        }
        state.next = Some(at + self.interval);
        if self.per_hour > 0 {
            state.hour.push_back(at);
        }
        drop(state);
        tokio::time::sleep_until(at).await;
        Ok(())
    }
}

/// Request counters of this client (for logs and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Token endpoint requests (including retries).
    pub token: u64,
    /// GraphQL requests (including retries).
    pub graphql: u64,
    /// Retries after 429.
    pub rate_limited: u64,
    /// Retries after 5xx or network errors.
    pub retried: u64,
}

/// The Lansweeper API client (cheap to clone; clones share the pacers and counters).
#[derive(Clone, Debug)]
pub struct LansweeperApi {
    http: reqwest::Client,
    settings: Arc<ApiSettings>,
    /// One pacer per Lansweeper client id: a warm Lambda environment serves many customers,
    /// and one customer's requests must not spend another's budget.
    pacers: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Pacer>>>>,
    counts: Arc<std::sync::Mutex<RequestCounts>>,
}

/// A failed attempt: retry after the given wait, or give up with the error.
enum Attempt {
    Retry(Duration, LansweeperError),
    Fail(LansweeperError),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    refresh_token: Option<String>,
}

impl LansweeperApi {
    /// A client with `settings`.
    pub fn new(settings: ApiSettings) -> Result<LansweeperApi, LansweeperError> {
        let http = app_builder_core::tls::http_client_builder()
            .timeout(settings.request_timeout)
            .build()
            .map_err(|e| LansweeperError::Transport(e.to_string()))?;
        Ok(LansweeperApi {
            http,
            pacers: Arc::default(),
            settings: Arc::new(settings),
            counts: Arc::new(std::sync::Mutex::new(RequestCounts::default())),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &ApiSettings {
        &self.settings
    }

    /// Requests made so far.
    pub fn counts(&self) -> RequestCounts {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pacer of the Lansweeper application `client_id`.
    fn pacer(&self, client_id: &str) -> Arc<Pacer> {
        let mut pacers = self.pacers.lock().unwrap_or_else(|e| e.into_inner());
        pacers
            .entry(client_id.to_owned())
            .or_insert_with(|| {
                Arc::new(Pacer::new(
                    self.settings.min_request_interval,
                    self.settings.requests_per_hour,
                ))
            })
            .clone()
    }

    fn count(&self, f: impl FnOnce(&mut RequestCounts)) {
        f(&mut self.counts.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn token_url(&self) -> String {
        format!("{}/integrations/oauth/token", self.settings.api_url)
    }

    fn graphql_url(&self) -> String {
        format!("{}/v2/graphql", self.settings.api_url)
    }

    /// Sends one POST of Lansweeper application `client_id` with the integration headers,
    /// pacing and retries; returns the final status and JSON body (`Value::Null` when the body
    /// is not JSON). Every request sent (retries included) is added to `sent`.
    async fn post(
        &self,
        client_id: &str,
        url: &str,
        body: &Value,
        bearer: Option<&SecretString>,
        graphql: bool,
        sent: &mut u64,
    ) -> Result<(StatusCode, Value), LansweeperError> {
        let pacer = self.pacer(client_id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Err(wait) = pacer.wait(self.settings.max_retry_after).await {
                return Err(LansweeperError::RateLimited { retry_after: wait });
            }
            *sent += 1;
            self.count(|c| {
                if graphql {
                    c.graphql += 1
                } else {
                    c.token += 1
                }
            });
            let mut request = self
                .http
                .post(url)
                .header("x-ls-integration-id", INTEGRATION_ID)
                .header("x-ls-integration-version", INTEGRATION_VERSION)
                .json(body);
            if let Some(token) = bearer {
                request = request.bearer_auth(token.expose_secret());
            }
            let outcome = match request.send().await {
                Err(e) => Attempt::Retry(
                    full_jitter(
                        self.settings.backoff_base,
                        self.settings.backoff_max,
                        attempt,
                    ),
                    LansweeperError::Transport(e.without_url().to_string()),
                ),
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        metrics::count(metrics::LANSWEEPER_THROTTLED, 1);
                        let header = resp
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let wait = retry_after(
                            header.as_deref(),
                            self.settings.default_retry_after,
                            Duration::MAX,
                        );
                        if wait > self.settings.max_retry_after {
                            Attempt::Fail(LansweeperError::RateLimited { retry_after: wait })
                        } else {
                            self.count(|c| c.rate_limited += 1);
                            Attempt::Retry(wait, LansweeperError::RateLimited { retry_after: wait })
                        }
                    } else if status.is_server_error() {
                        Attempt::Retry(
                            full_jitter(
                                self.settings.backoff_base,
                                self.settings.backoff_max,
                                attempt,
                            ),
                            LansweeperError::Status {
                                status: status.as_u16(),
                            },
                        )
                    } else {
                        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
                        return Ok((status, body));
                    }
                }
            };
            match outcome {
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(wait, e) => {
                    if attempt >= self.settings.max_attempts {
                        return Err(e);
                    }
                    if !matches!(e, LansweeperError::RateLimited { .. }) {
                        self.count(|c| c.retried += 1);
                        metrics::count(metrics::LANSWEEPER_RETRIES, 1);
                    }
                    tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, error = %e, "Lansweeper request retried");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Posts to the token endpoint; maps 400 `invalid_grant`, 401, 403 and 404 to
    /// [`LansweeperError::Unauthorized`]. The error body is never logged (it may echo secrets).
    async fn token_request(
        &self,
        client_id: &str,
        body: Value,
        sent: &mut u64,
    ) -> Result<TokenResponse, LansweeperError> {
        let (status, body) = self
            .post(client_id, &self.token_url(), &body, None, false, sent)
            .await?;
        let invalid_grant = status == StatusCode::BAD_REQUEST
            && body.get("error").and_then(Value::as_str) == Some("invalid_grant");
        if status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
            || status == StatusCode::NOT_FOUND
            || invalid_grant
        {
            return Err(LansweeperError::Unauthorized(INCORRECT_CREDENTIALS.into()));
        }
        if !status.is_success() {
            return Err(LansweeperError::Status {
                status: status.as_u16(),
            });
        }
        serde_json::from_value(body)
            .map_err(|e| LansweeperError::InvalidResponse(format!("token response: {e}")))
    }

    /// Exchanges an authorization `code` (OAuth callback) for a refresh token.
    pub async fn exchange_code(
        &self,
        credentials: &ClientCredentials,
        code: &str,
        redirect_uri: &str,
    ) -> Result<SecretString, LansweeperError> {
        let response = self
            .token_request(
                &credentials.client_id,
                json!({
                    "client_id": credentials.client_id,
                    "client_secret": credentials.client_secret.expose_secret(),
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                }),
                &mut 0,
            )
            .await?;
        response
            .refresh_token
            .map(SecretString::from)
            .ok_or_else(|| LansweeperError::InvalidResponse("no refresh_token in answer".into()))
    }

    /// A session for one customer.
    pub fn session(&self, credentials: ClientCredentials, refresh_token: SecretString) -> Session {
        Session {
            api: self.clone(),
            credentials,
            refresh_token,
            rotated: false,
            access_token: None,
            sent: 0,
        }
    }
}

/// A site the token is authorized for.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Site {
    /// Site id.
    pub id: String,
    /// Site name (nullable in Lansweeper's schema; the id stands in for a missing one).
    #[serde(default, deserialize_with = "name_or_empty")]
    pub name: String,
}

/// A nullable string as `""`.
fn name_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// An installation (source) of a site.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Installation {
    /// Installation id (the `installationId` filter value).
    pub id: String,
    /// Installation name (nullable in Lansweeper's schema).
    #[serde(default, deserialize_with = "name_or_empty")]
    pub name: String,
    /// Site id.
    pub site_id: Option<String>,
}

/// Query of the sites.
pub const SITES_QUERY: &str = "query authorizedSites { authorizedSites { sites { id name } } }";
/// Query of a site's asset types.
pub const ASSET_TYPES_QUERY: &str =
    "query assetTypes($siteId: ID!) { site(id: $siteId) { id assetTypes } }";
/// Query of a site's installations.
pub const INSTALLATIONS_QUERY: &str = "query allInstallations($siteId: ID!) { site(id: $siteId) { allInstallations { id siteId name fqdn description unlinkedOn unlinkedBy linkStatus installationDate type totalAssets syncServerStatus lastAvailable version syncServer } } }";
/// Query of the first page of assets (filters as a variable), with the `total`.
pub const ASSETS_FIRST_PAGE_QUERY: &str = "query getAssetResources($siteId: ID!, $pagination: AssetsPaginationInputValidated, $fields: [String!]!, $filters: AssetsFilterGroupedInput) { site(id: $siteId) { assetResources(assetPagination: $pagination, fields: $fields, filters: $filters) { total pagination { next } items } } }";
/// Query of the following pages: Lansweeper refuses `total` together with `page: NEXT`
/// (developer.lansweeper.com, Data API restrictions), so it is asked for on the first page only.
pub const ASSETS_NEXT_PAGE_QUERY: &str = "query getAssetResources($siteId: ID!, $pagination: AssetsPaginationInputValidated, $fields: [String!]!, $filters: AssetsFilterGroupedInput) { site(id: $siteId) { assetResources(assetPagination: $pagination, fields: $fields, filters: $filters) { pagination { next } items } } }";

/// One customer's connection: credentials, the current refresh token and a cached access token.
pub struct Session {
    api: LansweeperApi,
    credentials: ClientCredentials,
    refresh_token: SecretString,
    rotated: bool,
    access_token: Option<SecretString>,
    sent: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.credentials.client_id)
            .field("rotated", &self.rotated)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Gets an access token now (refresh grant). Call [`Session::take_rotated_refresh_token`]
    /// afterwards and store a rotated token before doing anything else.
    pub async fn authenticate(&mut self) -> Result<(), LansweeperError> {
        let response = self
            .api
            .token_request(
                &self.credentials.client_id,
                json!({
                    "client_id": self.credentials.client_id,
                    "client_secret": self.credentials.client_secret.expose_secret(),
                    "grant_type": "refresh_token",
                    "refresh_token": self.refresh_token.expose_secret(),
                }),
                &mut self.sent,
            )
            .await?;
        let access = response.access_token.ok_or_else(|| {
            LansweeperError::InvalidResponse("Unable to access Lansweeper: no access_token".into())
        })?;
        if let Some(new) = response.refresh_token
            && new != self.refresh_token.expose_secret()
        {
            self.refresh_token = SecretString::from(new);
            self.rotated = true;
        }
        self.access_token = Some(SecretString::from(access));
        Ok(())
    }

    /// Requests this session has sent (token and GraphQL, retries included): what it spent of
    /// Lansweeper's hourly budget.
    pub fn requests_sent(&self) -> u64 {
        self.sent
    }

    /// The new refresh token if Lansweeper rotated it since the last call (the old one no
    /// longer works: store this one).
    pub fn take_rotated_refresh_token(&mut self) -> Option<SecretString> {
        std::mem::take(&mut self.rotated).then(|| self.refresh_token.clone())
    }

    /// Runs a GraphQL query; returns `data`. A 401 gets one new access token and one retry.
    pub async fn query(
        &mut self,
        operation: &str,
        query: &str,
        variables: Value,
    ) -> Result<Value, LansweeperError> {
        let body = json!({"query": query, "variables": variables});
        let mut reauthenticated = false;
        loop {
            if self.access_token.is_none() {
                self.authenticate().await?;
                reauthenticated = true;
            }
            let url = self.api.graphql_url();
            let (status, answer) = self
                .api
                .post(
                    &self.credentials.client_id,
                    &url,
                    &body,
                    self.access_token.as_ref(),
                    true,
                    &mut self.sent,
                )
                .await?;
            if status == StatusCode::FORBIDDEN {
                // The token is valid but no longer allowed (application revoked, site access
                // withdrawn): retrying cannot help; the instance must be re-authorized.
                return Err(LansweeperError::Unauthorized(
                    "Lansweeper refused access (HTTP 403)".into(),
                ));
            }
            if status == StatusCode::UNAUTHORIZED {
                self.access_token = None;
                if reauthenticated {
                    return Err(LansweeperError::Unauthorized(
                        "Lansweeper refused the access token".into(),
                    ));
                }
                continue;
            }
            if let Some(errors) = answer.get("errors").filter(|e| !e.is_null()) {
                return Err(LansweeperError::GraphQl {
                    operation: operation.to_owned(),
                    errors: errors.to_string(),
                });
            }
            if !status.is_success() {
                return Err(LansweeperError::Status {
                    status: status.as_u16(),
                });
            }
            return match answer.get("data") {
                Some(data) if !data.is_null() => Ok(data.clone()),
                _ => Err(LansweeperError::InvalidResponse(format!(
                    "no data for {operation}"
                ))),
            };
        }
    }

    /// The authorized sites; none is an authorization error (`Not authorized for any sites`).
    pub async fn sites(&mut self) -> Result<Vec<Site>, LansweeperError> {
        let data = self.query("sites", SITES_QUERY, json!({})).await?;
        let sites = data
            .pointer("/authorizedSites/sites")
            .cloned()
            .ok_or_else(|| LansweeperError::Unauthorized("Not authorized".into()))?;
        let sites: Vec<Site> = serde_json::from_value(sites)
            .map_err(|e| LansweeperError::InvalidResponse(format!("sites: {e}")))?;
        if sites.is_empty() {
            return Err(LansweeperError::Unauthorized(
                "Not authorized for any sites".into(),
            ));
        }
        Ok(sites)
    }

    /// The asset types of a site.
    pub async fn asset_types(&mut self, site_id: &str) -> Result<Vec<String>, LansweeperError> {
        let data = self
            .query("asset types", ASSET_TYPES_QUERY, json!({"siteId": site_id}))
            .await?;
        // `assetTypes` and its items are nullable in Lansweeper's schema.
        let types: Option<Vec<Option<String>>> = serde_json::from_value(
            data.pointer("/site/assetTypes")
                .cloned()
                .unwrap_or(Value::Null),
        )
        .map_err(|e| LansweeperError::InvalidResponse(format!("asset types: {e}")))?;
        Ok(types.into_iter().flatten().flatten().collect())
    }

    /// The installations of a site.
    pub async fn installations(
        &mut self,
        site_id: &str,
    ) -> Result<Vec<Installation>, LansweeperError> {
        let data = self
            .query(
                "all installations",
                INSTALLATIONS_QUERY,
                json!({"siteId": site_id}),
            )
            .await?;
        let installations: Option<Vec<Option<Installation>>> = serde_json::from_value(
            data.pointer("/site/allInstallations")
                .cloned()
                .unwrap_or(Value::Null),
        )
        .map_err(|e| LansweeperError::InvalidResponse(format!("installations: {e}")))?;
        Ok(installations.into_iter().flatten().flatten().collect())
    }

    /// A lazy stream of asset pages: each [`AssetPages::next_page`] fetches one page, so memory
    /// holds at most one page whatever the size of the site.
    pub fn assets(&mut self, query: AssetQuery) -> Result<AssetPages<'_>, LansweeperError> {
        self.assets_from(query, PagePosition::default())
    }

    /// The asset pages of `query` from `position` on (saved by [`AssetPages::position`], possibly
    /// by another invocation).
    pub fn assets_from(
        &mut self,
        query: AssetQuery,
        position: PagePosition,
    ) -> Result<AssetPages<'_>, LansweeperError> {
        let filters = query.filters(self.api.settings.max_filter_field_length)?;
        Ok(AssetPages {
            limit: self.api.settings.page_size,
            session: self,
            site_id: query.site_id,
            filters,
            done: position.started && position.cursor.is_none(),
            position,
        })
    }
}

/// Where a stream of asset pages is: the page its next [`AssetPages::next_page`] fetches.
/// Serializable, so that a sync can resume from it in another invocation.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct PagePosition {
    /// Whether the first page was fetched (then `cursor` is the next page's, `None` at the end).
    pub started: bool,
    /// Lansweeper's cursor of the next page.
    pub cursor: Option<String>,
    /// The total reported with the first page.
    pub total: Option<u64>,
    /// Assets retrieved before this position.
    pub retrieved: u64,
}

/// Pages of assets of one [`AssetQuery`] (cursor paging as the original: `FIRST`, then `NEXT`
/// while there is a `next` cursor and fewer than `total` assets were retrieved).
#[derive(Debug)]
pub struct AssetPages<'a> {
    session: &'a mut Session,
    site_id: String,
    filters: Value,
    limit: u32,
    position: PagePosition,
    done: bool,
}

#[derive(Deserialize)]
struct AssetPage {
    total: Option<u64>,
    pagination: Option<PageCursor>,
    #[serde(default)]
    items: Option<Vec<Asset>>,
}

#[derive(Deserialize)]
struct PageCursor {
    next: Option<String>,
}

impl AssetPages<'_> {
    /// The next page (`None` when done). Empty pages are skipped.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Asset>>, LansweeperError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let (query, pagination) = if self.position.started {
                match &self.position.cursor {
                    Some(c) => (
                        ASSETS_NEXT_PAGE_QUERY,
                        json!({"limit": self.limit, "page": "NEXT", "cursor": c}),
                    ),
                    None => {
                        self.done = true;
                        return Ok(None);
                    }
                }
            } else {
                (
                    ASSETS_FIRST_PAGE_QUERY,
                    json!({"limit": self.limit, "page": "FIRST"}),
                )
            };
            let data = self
                .session
                .query(
                    "asset page",
                    query,
                    json!({
                        "siteId": self.site_id,
                        "pagination": pagination,
                        "fields": ASSET_FIELDS,
                        "filters": self.filters,
                    }),
                )
                .await?;
            let page: AssetPage = serde_json::from_value(
                data.pointer("/site/assetResources")
                    .cloned()
                    .unwrap_or(Value::Null),
            )
            .map_err(|e| LansweeperError::InvalidResponse(format!("asset page: {e}")))?;
            let position = &mut self.position;
            position.started = true;
            if let Some(total) = page.total {
                position.total = Some(total);
            }
            let items = page.items.unwrap_or_default();
            position.retrieved += items.len() as u64;
            position.cursor = page.pagination.and_then(|p| p.next);
            if position.total.is_some_and(|t| position.retrieved >= t) {
                position.cursor = None;
            }
            if position.cursor.is_none() {
                self.done = true;
            }
            if !items.is_empty() {
                return Ok(Some(items));
            }
        }
    }

    /// The total reported by Lansweeper (after the first page).
    pub fn total(&self) -> Option<u64> {
        self.position.total
    }

    /// Assets retrieved so far.
    pub fn retrieved(&self) -> u64 {
        self.position.retrieved
    }

    /// Where the stream is: the page the next [`AssetPages::next_page`] fetches.
    pub fn position(&self) -> &PagePosition {
        &self.position
    }

    /// The session (e.g. to check for a rotated refresh token between pages).
    pub fn session(&mut self) -> &mut Session {
        self.session
    }
}
