//! The 4me HTTP client: OAuth token cache, GraphQL, paging, async results, REST, retries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt, TryStreamExt, stream};
use reqwest::{RequestBuilder, Response, StatusCode, header::HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use url::Url;

use super::backoff::{full_jitter, retry_after};
use super::endpoints::Endpoints;
use super::error::{FieldError, FourMeError};
use super::settings::{ClientSettings, Credentials};

/// The header naming the 4me account of a request.
pub const ACCOUNT_HEADER: &str = "X-4me-Account";

const TOKEN_OPERATION: &str = "access token";
const ASYNC_OPERATION: &str = "async query result";
const BODY_EXCERPT: usize = 300;

/// The token's hourly budgets as the last 4me response reported them: requests
/// (`x-ratelimit-*`, 3,600 an hour) and query-cost points (`x-costlimit-*`, 5,000 an hour), each
/// in a 60-minute window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// `x-ratelimit-limit`: requests allowed in the window.
    pub limit: Option<u32>,
    /// `x-ratelimit-remaining`: requests left in the window.
    pub remaining: Option<u32>,
    /// `x-ratelimit-reset`: unix time (seconds) at which the window resets.
    pub reset: Option<u64>,
    /// `x-costlimit-limit`: query-cost points allowed in the window.
    pub cost_limit: Option<u32>,
    /// `x-costlimit-remaining`: points left in the window.
    pub cost_remaining: Option<u32>,
    /// `x-costlimit-reset`: unix time (seconds) at which the cost window resets.
    pub cost_reset: Option<u64>,
}

impl RateLimit {
    /// Reads the `x-ratelimit-*` and `x-costlimit-*` headers; `None` when none is present.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        fn num<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
            headers.get(name)?.to_str().ok()?.trim().parse().ok()
        }
        let rl = Self {
            limit: num(headers, "x-ratelimit-limit"),
            remaining: num(headers, "x-ratelimit-remaining"),
            reset: num(headers, "x-ratelimit-reset"),
            cost_limit: num(headers, "x-costlimit-limit"),
            cost_remaining: num(headers, "x-costlimit-remaining"),
            cost_reset: num(headers, "x-costlimit-reset"),
        };
        (rl != Self::default()).then_some(rl)
    }

    /// When this budget next has fewer than `requests` requests or `points` cost points left,
    /// the unix time (seconds) at which the exhausted window resets; `None` while both suffice
    /// (or the headers did not say).
    pub fn exhausted_until(&self, requests: u32, points: u32) -> Option<u64> {
        let short = |remaining: Option<u32>, reset: Option<u64>, need: u32| {
            remaining
                .zip(reset)
                .filter(|(r, _)| *r < need)
                .map(|(_, at)| at)
        };
        let requests = short(self.remaining, self.reset, requests);
        let points = short(self.cost_remaining, self.cost_reset, points);
        requests.max(points)
    }
}

struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
    generation: u64,
}

struct Inner {
    http: reqwest::Client,
    endpoints: Endpoints,
    account: String,
    credentials: Credentials,
    settings: ClientSettings,
    token: tokio::sync::Mutex<Option<CachedToken>>,
    generation: AtomicU64,
    next_slot: StdMutex<Instant>,
    window: Option<Arc<Semaphore>>,
    rate_limit: StdMutex<Option<RateLimit>>,
}

/// A 4me client for one account and one OAuth application. Cheap to clone (shared state).
///
/// The access token is requested once and cached until shortly before `expires_in`
/// (concurrent callers share one token request) and refreshed once when 4me answers 401.
/// Requests are spaced by [`ClientSettings::min_request_spacing`]; 429 answers are retried after
/// `Retry-After`, 5xx answers, timeouts and connection errors with exponential backoff and jitter,
/// both bounded by [`ClientSettings::max_attempts`].
#[derive(Clone)]
pub struct FourMeClient(Arc<Inner>);

impl std::fmt::Debug for FourMeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FourMeClient")
            .field("account", &self.0.account)
            .field("endpoints", &self.0.endpoints)
            .field("client_id", &self.0.credentials.client_id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn excerpt(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(BODY_EXCERPT) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "request timed out".into();
    }
    let mut text = if error.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The operation named by a GraphQL document: its first root field (or alias).
pub fn operation_name(query: &str) -> String {
    let Some((_, after)) = query.split_once('{') else {
        return "GraphQL query".into();
    };
    let name: String = after
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() {
        "GraphQL query".into()
    } else {
        name
    }
}

/// The payload of the root field of `data`: its only field, or the one named `operation`.
fn root_field(operation: &str, data: Value) -> Result<Value, FourMeError> {
    match data {
        Value::Object(mut map) => {
            if map.len() == 1 {
                if let Some((_, v)) = map.into_iter().next() {
                    return Ok(v);
                }
            } else if let Some(v) = map.remove(operation) {
                return Ok(v);
            }
            Err(FourMeError::Decode {
                operation: operation.into(),
                message: "cannot determine the root field of data".into(),
            })
        }
        _ => Err(FourMeError::Decode {
            operation: operation.into(),
            message: "data is not an object".into(),
        }),
    }
}

fn decode<T: DeserializeOwned>(operation: &str, value: Value) -> Result<T, FourMeError> {
    serde_json::from_value(value).map_err(|e| FourMeError::Decode {
        operation: operation.into(),
        message: e.to_string(),
    })
}

/// The GraphQL `errors` of a response body, if any (non-empty array or other non-null value).
fn graphql_errors(body: &Value) -> Option<Vec<String>> {
    match body.get("errors") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.is_empty() => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|e| match e.get("message") {
                    Some(Value::String(m)) => m.clone(),
                    _ => e.to_string(),
                })
                .collect(),
        ),
        Some(other) => Some(vec![other.to_string()]),
    }
}

fn without_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

fn avatar_mime(file_name: &str) -> Option<&'static str> {
    let ext = file_name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        _ => return None,
    })
}

impl FourMeClient {
    /// Creates a client for `account` using the OAuth application `credentials`, with its own
    /// HTTP connection pool (rustls, [`ClientSettings::timeout`] per request) trusting the
    /// system's root certificates: this is the tools' client, on a provider's machine. The
    /// functions' clients come from their contexts, on the compiled-in roots ([`crate::tls`]).
    pub fn new(
        endpoints: Endpoints,
        account: impl Into<String>,
        credentials: Credentials,
        settings: ClientSettings,
    ) -> Result<Self, FourMeError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| FourMeError::Request {
                operation: "client setup".into(),
                message: describe(&e),
            })?;
        Ok(Self::with_http_client(
            http,
            endpoints,
            account,
            credentials,
            settings,
        ))
    }

    /// Creates a client from endpoints and settings read from the environment
    /// ([`Endpoints::from_env`], [`ClientSettings::from_env`]).
    pub fn from_env(
        domain: &str,
        account: impl Into<String>,
        credentials: Credentials,
    ) -> Result<Self, FourMeError> {
        Self::new(
            Endpoints::from_env(domain)?,
            account,
            credentials,
            ClientSettings::from_env(),
        )
    }

    /// Creates a client sharing an existing HTTP client (connection pool) with other clients,
    /// e.g. the provider and customer clients of one Lambda invocation.
    /// [`ClientSettings::timeout`] is applied to every request.
    pub fn with_http_client(
        http: reqwest::Client,
        endpoints: Endpoints,
        account: impl Into<String>,
        credentials: Credentials,
        settings: ClientSettings,
    ) -> Self {
        let window = (settings.rate_limit_requests > 0)
            .then(|| Arc::new(Semaphore::new(settings.rate_limit_requests as usize)));
        Self(Arc::new(Inner {
            http,
            endpoints,
            account: account.into(),
            credentials,
            settings,
            token: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            next_slot: StdMutex::new(Instant::now()),
            window,
            rate_limit: StdMutex::new(None),
        }))
    }

    /// The 4me account id sent in `X-4me-Account`.
    pub fn account(&self) -> &str {
        &self.0.account
    }

    /// The endpoints in use.
    pub fn endpoints(&self) -> &Endpoints {
        &self.0.endpoints
    }

    /// The settings in use.
    pub fn settings(&self) -> &ClientSettings {
        &self.0.settings
    }

    /// The `x-ratelimit-*` values of the latest 4me response carrying them.
    pub fn last_rate_limit(&self) -> Option<RateLimit> {
        *lock(&self.0.rate_limit)
    }

    /// Runs a GraphQL query and deserializes its whole `data` object into `T`.
    ///
    /// GraphQL `errors` become [`FourMeError::GraphQl`] with every message.
    pub async fn query<V, T>(&self, query: &str, variables: &V) -> Result<T, FourMeError>
    where
        V: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let operation = operation_name(query);
        let variables = self.variables(&operation, variables)?;
        let data = self.graphql(&operation, query, variables).await?;
        decode(&operation, data)
    }

    /// Runs a GraphQL mutation and deserializes the payload of its root field into `P`.
    ///
    /// A non-empty payload `errors { path message }` becomes [`FourMeError::Mutation`].
    pub async fn mutation<V, P>(&self, query: &str, variables: &V) -> Result<P, FourMeError>
    where
        V: Serialize + ?Sized,
        P: DeserializeOwned,
    {
        let operation = operation_name(query);
        let variables = self.variables(&operation, variables)?;
        let data = self.graphql(&operation, query, variables).await?;
        let payload = root_field(&operation, data)?;
        if let Some(errors) = payload.get("errors") {
            let list = match errors {
                Value::Array(items) => items
                    .iter()
                    .map(|item| {
                        serde_json::from_value::<FieldError>(item.clone()).unwrap_or_else(|_| {
                            FieldError {
                                path: None,
                                message: item.to_string(),
                            }
                        })
                    })
                    .collect(),
                Value::Null => Vec::new(),
                other => vec![FieldError {
                    path: None,
                    message: other.to_string(),
                }],
            };
            if !list.is_empty() {
                return Err(FourMeError::Mutation {
                    operation,
                    errors: list,
                });
            }
        }
        decode(&operation, payload)
    }

    /// Streams the `nodes` of a cursor-paged connection, page by page (lazily).
    ///
    /// The query must declare `$previousEndCursor: String` and pass it as `after:`; the client
    /// sets it to `null` first and then to `pageInfo.endCursor` while `pageInfo.hasNextPage`.
    /// The connection is the root field of `data`; it must select `pageInfo { hasNextPage
    /// endCursor }` and `nodes`.
    pub fn paged<V, N>(
        &self,
        query: &str,
        variables: &V,
    ) -> impl Stream<Item = Result<N, FourMeError>> + Send + 'static
    where
        V: Serialize + ?Sized,
        N: DeserializeOwned + Send + 'static,
    {
        struct PageState {
            client: FourMeClient,
            query: String,
            operation: String,
            variables: Map<String, Value>,
            error: Option<FourMeError>,
            cursor: Option<Value>,
            page: usize,
            done: bool,
        }
        let operation = operation_name(query);
        let variables = self.variables(&operation, variables).and_then(|v| match v {
            Value::Object(map) => Ok(map),
            Value::Null => Ok(Map::new()),
            _ => Err(FourMeError::Request {
                operation: operation.clone(),
                message: "variables must serialize to an object".into(),
            }),
        });
        let state = PageState {
            client: self.clone(),
            query: query.to_string(),
            operation,
            variables: variables.as_ref().map_or_else(|_| Map::new(), Clone::clone),
            error: variables.err(),
            cursor: None,
            page: 0,
            done: false,
        };
        stream::try_unfold(state, |mut st| async move {
            if st.done {
                return Ok(None);
            }
            if let Some(error) = st.error.take() {
                return Err(error);
            }
            let mut vars = st.variables.clone();
            vars.insert(
                "previousEndCursor".into(),
                st.cursor.clone().unwrap_or(Value::Null),
            );
            st.page += 1;
            let data = st
                .client
                .graphql(&st.operation, &st.query, Value::Object(vars))
                .await?;
            let connection = root_field(&st.operation, data)?;
            let page_info = connection
                .get("pageInfo")
                .ok_or_else(|| FourMeError::Decode {
                    operation: st.operation.clone(),
                    message: format!("no pageInfo on page {}", st.page),
                })?;
            let has_next = page_info
                .get("hasNextPage")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let end_cursor = page_info.get("endCursor").cloned().unwrap_or(Value::Null);
            if has_next && !end_cursor.is_null() && Some(&end_cursor) != st.cursor.as_ref() {
                st.cursor = Some(end_cursor);
            } else {
                st.done = true;
            }
            let nodes = match connection.get("nodes") {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(_) => {
                    return Err(FourMeError::Decode {
                        operation: st.operation.clone(),
                        message: format!("nodes is not a list on page {}", st.page),
                    });
                }
            };
            let nodes = nodes
                .into_iter()
                .map(|n| decode::<N>(&st.operation, n))
                .collect::<Vec<_>>();
            Ok(Some((nodes, st)))
        })
        .map_ok(stream::iter)
        .try_flatten()
        .boxed()
    }

    /// Collects every node of [`FourMeClient::paged`].
    pub async fn paged_all<V, N>(&self, query: &str, variables: &V) -> Result<Vec<N>, FourMeError>
    where
        V: Serialize + ?Sized,
        N: DeserializeOwned + Send + 'static,
    {
        self.paged(query, variables).try_collect().await
    }

    /// Polls an `asyncQuery.resultUrl` until its JSON appears and returns the root field of its
    /// `data` (e.g. the `discoveredConfigurationItems` object).
    ///
    /// 403/404 (and transient 5xx, 429, timeouts) before the file exists mean "not yet"; polls
    /// are [`ClientSettings::async_poll_interval`] apart until
    /// [`ClientSettings::async_timeout`] has passed ([`FourMeError::AsyncTimeout`]).
    pub async fn async_result<T: DeserializeOwned>(
        &self,
        result_url: &str,
    ) -> Result<T, FourMeError> {
        let url = Url::parse(result_url).map_err(|e| FourMeError::Request {
            operation: ASYNC_OPERATION.into(),
            message: format!("invalid result URL: {e}"),
        })?;
        let location = without_query(&url);
        let settings = &self.0.settings;
        let start = Instant::now();
        let max_wait = settings.async_timeout;
        let mut remaining = max_wait;
        while !remaining.is_zero() {
            let call_start = Instant::now();
            let timeout = remaining.max(Duration::from_secs(1)).min(settings.timeout);
            if let Some(value) = self.fetch_async_result(&url, &location, timeout).await? {
                let data = root_field(ASYNC_OPERATION, value)?;
                return decode(ASYNC_OPERATION, data);
            }
            let spent = call_start.elapsed();
            if let Some(pause) = settings.async_poll_interval.checked_sub(spent) {
                let left = max_wait.saturating_sub(start.elapsed());
                tokio::time::sleep(pause.min(left)).await;
            }
            remaining = max_wait.saturating_sub(start.elapsed());
        }
        Err(FourMeError::AsyncTimeout {
            elapsed_ms: start.elapsed().as_millis(),
            location,
        })
    }

    /// `POST <rest>/<resource>/<id>/avatar` as multipart with fields `avatar_file_name` and
    /// `avatar` (the file content).
    pub async fn upload_avatar(
        &self,
        resource: &str,
        id: &str,
        file_name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), FourMeError> {
        let operation = format!("POST {resource} avatar");
        let url = self.0.endpoints.rest_url(resource, id, &["avatar"]);
        let response = self
            .authed(&operation, |token| {
                let mut part =
                    reqwest::multipart::Part::bytes(bytes.clone()).file_name(file_name.to_string());
                if let Some(mime) = avatar_mime(file_name) {
                    part = match part.mime_str(mime) {
                        Ok(p) => p,
                        Err(_) => reqwest::multipart::Part::bytes(bytes.clone())
                            .file_name(file_name.to_string()),
                    };
                }
                let form = reqwest::multipart::Form::new()
                    .text("avatar_file_name", file_name.to_string())
                    .part("avatar", part);
                self.with_account(self.0.http.post(url.clone()))
                    .bearer_auth(token)
                    .multipart(form)
            })
            .await?;
        self.expect_success(&operation, response).await
    }

    // ----- internals -------------------------------------------------------------------------

    fn variables<V: Serialize + ?Sized>(
        &self,
        operation: &str,
        variables: &V,
    ) -> Result<Value, FourMeError> {
        serde_json::to_value(variables).map_err(|e| FourMeError::Request {
            operation: operation.into(),
            message: format!("variables cannot be serialized: {e}"),
        })
    }

    fn with_account(&self, builder: RequestBuilder) -> RequestBuilder {
        builder.header(ACCOUNT_HEADER, &self.0.account)
    }

    async fn expect_success(&self, operation: &str, response: Response) -> Result<(), FourMeError> {
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(FourMeError::Http {
            operation: operation.into(),
            status: status.as_u16(),
            body: excerpt(&body),
        })
    }

    /// POSTs a GraphQL document and returns `data`.
    async fn graphql(
        &self,
        operation: &str,
        query: &str,
        variables: Value,
    ) -> Result<Value, FourMeError> {
        let body = json!({ "query": query, "variables": variables });
        let url = self.0.endpoints.graphql.clone();
        let response = self
            .authed(operation, |token| {
                self.with_account(self.0.http.post(url.clone()))
                    .bearer_auth(token)
                    .json(&body)
            })
            .await?;
        let status = response.status();
        let text = response.text().await.map_err(|e| FourMeError::Request {
            operation: operation.into(),
            message: describe(&e),
        })?;
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        if let Some(messages) = parsed.as_ref().and_then(graphql_errors) {
            // Messages may echo variable values: log only how many there are.
            tracing::warn!(operation, count = messages.len(), "GraphQL errors from 4me");
            return Err(FourMeError::GraphQl {
                operation: operation.into(),
                messages,
            });
        }
        if !status.is_success() {
            return Err(FourMeError::Http {
                operation: operation.into(),
                status: status.as_u16(),
                body: excerpt(&text),
            });
        }
        match parsed {
            Some(Value::Object(mut map)) => match map.remove("data") {
                Some(Value::Null) | None => Err(FourMeError::Decode {
                    operation: operation.into(),
                    message: "response has no data".into(),
                }),
                Some(data) => Ok(data),
            },
            _ => Err(FourMeError::Decode {
                operation: operation.into(),
                message: "response is not a JSON object".into(),
            }),
        }
    }

    /// Sends an authenticated request; on 401 the token is renewed and the request retried once.
    async fn authed(
        &self,
        operation: &str,
        build: impl Fn(&str) -> RequestBuilder + Sync,
    ) -> Result<Response, FourMeError> {
        let mut renewed = false;
        loop {
            let (token, generation) = self.token().await?;
            let response = self
                .send(operation, true, &|| build(token.expose_secret()))
                .await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            if renewed {
                return Err(FourMeError::Unauthorized {
                    operation: operation.into(),
                });
            }
            tracing::warn!(operation, "4me answered 401; renewing the access token");
            self.invalidate(generation).await;
            renewed = true;
        }
    }

    /// Returns the cached token or requests a new one (single flight).
    async fn token(&self) -> Result<(SecretString, u64), FourMeError> {
        let mut cached = self.0.token.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok((c.token.clone(), c.generation));
        }
        let (token, lifetime) = self.request_token().await?;
        let generation = self.0.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let margin = self.0.settings.token_refresh_margin.min(lifetime / 2);
        *cached = Some(CachedToken {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
            generation,
        });
        Ok((token, generation))
    }

    async fn invalidate(&self, generation: u64) {
        let mut cached = self.0.token.lock().await;
        if cached.as_ref().is_some_and(|c| c.generation == generation) {
            *cached = None;
        }
    }

    /// The client-credentials grant.
    async fn request_token(&self) -> Result<(SecretString, Duration), FourMeError> {
        let inner = &self.0;
        let body = json!({
            "client_id": inner.credentials.client_id,
            "client_secret": inner.credentials.client_secret.expose_secret(),
            "grant_type": "client_credentials",
        });
        let url = inner.endpoints.oauth.clone();
        let response = self
            .send(TOKEN_OPERATION, false, &|| {
                self.with_account(inner.http.post(url.clone())).json(&body)
            })
            .await?;
        let status = response.status();
        if status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED {
            tracing::warn!(status = status.as_u16(), "access token request rejected");
            return Err(FourMeError::Authorization(
                "Access token request rejected".into(),
            ));
        }
        if !status.is_success() {
            tracing::warn!(status = status.as_u16(), "access token request failed");
            return Err(FourMeError::Authorization(format!(
                "Unable to get access token: HTTP {}",
                status.as_u16()
            )));
        }
        let parsed: Value = response.json().await.unwrap_or(Value::Null);
        match parsed.get("access_token").and_then(Value::as_str) {
            Some(token) if !token.is_empty() => {
                let seconds = parsed
                    .get("expires_in")
                    .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .unwrap_or(Duration::from_secs(3600));
                Ok((SecretString::from(token.to_string()), seconds))
            }
            _ => {
                let reason = ["error_description", "error"]
                    .iter()
                    .find_map(|k| parsed.get(*k).and_then(Value::as_str))
                    .filter(|s| !s.is_empty());
                Err(FourMeError::Authorization(match reason {
                    Some(r) => format!("Unable to get access token: {r}"),
                    None => "Unable to get access token".into(),
                }))
            }
        }
    }

    /// Occupies a place in the client-side rate-limit window (see [`Self::release_later`]).
    async fn enter_window(&self) -> Option<OwnedSemaphorePermit> {
        let window = self.0.window.as_ref()?;
        window.clone().acquire_owned().await.ok()
    }

    /// Frees a window place one window length after the response arrived.
    fn release_later(&self, permit: Option<OwnedSemaphorePermit>) {
        if let Some(permit) = permit {
            let window = self.0.settings.rate_limit_window;
            tokio::spawn(async move {
                tokio::time::sleep(window).await;
                drop(permit);
            });
        }
    }

    /// Waits for the next request slot of this client (spacing and exhausted rate windows).
    async fn pace(&self) {
        let settings = &self.0.settings;
        let slot = {
            let mut next = lock(&self.0.next_slot);
            let now = Instant::now();
            let mut slot = (*next).max(now);
            if let Some(reset) = lock(&self.0.rate_limit).and_then(|rl| rl.exhausted_until(1, 1)) {
                let now_unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if reset > now_unix {
                    let wait = Duration::from_secs(reset - now_unix).min(settings.max_retry_after);
                    slot = slot.max(now + wait);
                }
            }
            *next = slot + settings.min_request_spacing;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Sends a request with bounded retries for 429, 5xx, timeouts and connection errors.
    async fn send(
        &self,
        operation: &str,
        paced: bool,
        build: &(dyn Fn() -> RequestBuilder + Sync),
    ) -> Result<Response, FourMeError> {
        let settings = &self.0.settings;
        let max_attempts = settings.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let permit = if paced {
                let permit = self.enter_window().await;
                self.pace().await;
                permit
            } else {
                None
            };
            let outcome = build().timeout(settings.timeout).send().await;
            self.release_later(permit);
            let last = match outcome {
                Ok(response) => {
                    if let Some(rl) = RateLimit::from_headers(response.headers()) {
                        *lock(&self.0.rate_limit) = Some(rl);
                    }
                    let status = response.status();
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        crate::metrics::count(crate::metrics::FOURME_THROTTLED, 1);
                        let header = response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        if attempt >= max_attempts {
                            return Err(FourMeError::Unavailable {
                                operation: operation.into(),
                                attempts: attempt,
                                last: "HTTP 429 Too Many Requests".into(),
                            });
                        }
                        let wait = retry_after(
                            header.as_deref(),
                            Duration::from_secs(1),
                            settings.max_retry_after,
                        );
                        tracing::warn!(
                            operation,
                            attempt,
                            retry_after_ms = wait.as_millis() as u64,
                            "4me rate limit hit (429); waiting"
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    if !status.is_server_error() {
                        return Ok(response);
                    }
                    format!("HTTP {}", status.as_u16())
                }
                Err(e) if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() => {
                    describe(&e)
                }
                Err(e) => {
                    return Err(FourMeError::Request {
                        operation: operation.into(),
                        message: describe(&e),
                    });
                }
            };
            if attempt >= max_attempts {
                tracing::warn!(operation, attempts = attempt, last, "giving up on 4me");
                return Err(FourMeError::Unavailable {
                    operation: operation.into(),
                    attempts: attempt,
                    last,
                });
            }
            let wait = full_jitter(settings.base_backoff, settings.max_backoff, attempt);
            crate::metrics::count(crate::metrics::FOURME_RETRIES, 1);
            tracing::warn!(
                operation,
                attempt,
                backoff_ms = wait.as_millis() as u64,
                last,
                "transient 4me failure; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One GET of an async result: `Ok(None)` when not there yet.
    async fn fetch_async_result(
        &self,
        url: &Url,
        location: &str,
        timeout: Duration,
    ) -> Result<Option<Value>, FourMeError> {
        let response = match self.0.http.get(url.clone()).timeout(timeout).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() => {
                tracing::warn!(
                    location,
                    error = describe(&e),
                    "async result not reachable yet"
                );
                return Ok(None);
            }
            Err(e) => {
                return Err(FourMeError::Request {
                    operation: ASYNC_OPERATION.into(),
                    message: describe(&e),
                });
            }
        };
        let status = response.status();
        if matches!(status.as_u16(), 403 | 404) {
            return Ok(None);
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            tracing::warn!(
                location,
                status = status.as_u16(),
                "async result poll failed"
            );
            return Ok(None);
        }
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(
                    location,
                    error = describe(&e),
                    "async result body unreadable"
                );
                return Ok(None);
            }
        };
        if !status.is_success() {
            return Err(FourMeError::Http {
                operation: ASYNC_OPERATION.into(),
                status: status.as_u16(),
                body: excerpt(&text),
            });
        }
        if text.trim().is_empty() {
            return Ok(None);
        }
        let body: Value = serde_json::from_str(&text).map_err(|e| FourMeError::Decode {
            operation: ASYNC_OPERATION.into(),
            message: e.to_string(),
        })?;
        if body.is_null() {
            return Ok(None);
        }
        if let Some(messages) = graphql_errors(&body) {
            return Err(FourMeError::GraphQl {
                operation: ASYNC_OPERATION.into(),
                messages,
            });
        }
        match body {
            Value::Object(mut map) => match map.remove("data") {
                Some(Value::Null) | None => Err(FourMeError::Decode {
                    operation: ASYNC_OPERATION.into(),
                    message: "result has no data".into(),
                }),
                Some(data) => Ok(Some(data)),
            },
            _ => Err(FourMeError::Decode {
                operation: ASYNC_OPERATION.into(),
                message: "result is not a JSON object".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_name_is_first_root_field() {
        assert_eq!(
            operation_name("query($f: X) { configurationItems(first: 1) { nodes { id } } }"),
            "configurationItems"
        );
        assert_eq!(
            operation_name("mutation { appOfferingCreate(input: {}) { errors { path } } }"),
            "appOfferingCreate"
        );
        assert_eq!(operation_name("nonsense"), "GraphQL query");
    }

    #[test]
    fn root_field_picks_single_or_named() {
        let v = root_field("a", json!({"x": 1})).unwrap();
        assert_eq!(v, json!(1));
        let v = root_field("b", json!({"a": 1, "b": 2})).unwrap();
        assert_eq!(v, json!(2));
        assert!(root_field("c", json!({"a": 1, "b": 2})).is_err());
        assert!(root_field("c", json!([1])).is_err());
    }

    #[test]
    fn graphql_errors_collects_messages() {
        assert_eq!(graphql_errors(&json!({"data": {}})), None);
        assert_eq!(graphql_errors(&json!({"errors": []})), None);
        assert_eq!(
            graphql_errors(&json!({"errors": [{"message": "a"}, {"message": "b"}]})),
            Some(vec!["a".to_string(), "b".to_string()])
        );
    }

    #[test]
    fn rate_limit_headers_are_parsed() {
        let mut h = HeaderMap::new();
        assert_eq!(RateLimit::from_headers(&h), None);
        h.insert("x-ratelimit-limit", "20".parse().unwrap());
        h.insert("x-ratelimit-remaining", "7".parse().unwrap());
        h.insert("x-ratelimit-reset", "1700000000".parse().unwrap());
        assert_eq!(
            RateLimit::from_headers(&h),
            Some(RateLimit {
                limit: Some(20),
                remaining: Some(7),
                reset: Some(1_700_000_000),
                ..RateLimit::default()
            })
        );
        h.insert("x-costlimit-limit", "5000".parse().unwrap());
        h.insert("x-costlimit-remaining", "12".parse().unwrap());
        h.insert("x-costlimit-reset", "1700000100".parse().unwrap());
        let rl = RateLimit::from_headers(&h).unwrap();
        assert_eq!(
            (rl.cost_limit, rl.cost_remaining, rl.cost_reset),
            (Some(5000), Some(12), Some(1_700_000_100))
        );
        assert_eq!(rl.exhausted_until(5, 10), None);
        assert_eq!(rl.exhausted_until(8, 10), Some(1_700_000_000));
        assert_eq!(rl.exhausted_until(5, 20), Some(1_700_000_100));
        assert_eq!(rl.exhausted_until(8, 20), Some(1_700_000_100));
        assert_eq!(RateLimit::default().exhausted_until(8, 20), None);
    }

    #[test]
    fn url_query_is_stripped_for_messages() {
        let u = Url::parse("https://s3.example/r/1.json?X-Amz-Signature=abc").unwrap();
        assert_eq!(without_query(&u), "https://s3.example/r/1.json");
    }

    #[test]
    fn excerpt_is_bounded() {
        let long = "é".repeat(1000);
        assert_eq!(excerpt(&long).chars().count(), BODY_EXCERPT + 1);
        assert_eq!(excerpt(" short "), "short");
    }

    #[test]
    fn client_debug_has_no_secret() {
        let c = FourMeClient::new(
            Endpoints::for_domain("4me.test").unwrap(),
            "wdc",
            Credentials::new("id", "very-secret"),
            ClientSettings::default(),
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(dbg.contains("wdc"));
        assert!(!dbg.contains("very-secret"));
    }
}
