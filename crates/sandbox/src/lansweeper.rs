//! A fake of the Lansweeper Data API: OAuth token endpoint (authorization-code and refresh-token
//! grants with rotating refresh tokens) and a strict GraphQL endpoint answering `authorizedSites`,
//! `site { assetTypes allInstallations assetResources }` over deterministic, lazily generated
//! assets, with injectable faults and request counters. See the README, "Lansweeper fake".

mod assets;
mod schema;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::OAuthCredentials;

/// Value of the `x-ls-integration-id` header every request must carry.
pub const INTEGRATION_ID_HEADER: &str = "x-ls-integration-id";

/// Which endpoint a [`LansweeperFault`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LansweeperEndpoint {
    /// Both endpoints.
    Any,
    /// `POST /api/integrations/oauth/token`.
    Token,
    /// `POST /api/v2/graphql`.
    GraphQl,
}

/// What an injected fault answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LansweeperFaultKind {
    /// 429 with `Retry-After: <secs>`.
    TooManyRequests {
        /// `Retry-After` value in seconds.
        retry_after_secs: u64,
    },
    /// 401 (as for a revoked token).
    Unauthorized,
    /// The given 5xx (or any other) status.
    ServerError {
        /// HTTP status.
        status: u16,
    },
    /// 200 with a GraphQL `errors` array and no data (a query Lansweeper cannot answer).
    GraphQlError,
}

/// A fault served to the next `times` matching requests, before authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LansweeperFault {
    /// Endpoint(s) affected.
    pub target: LansweeperEndpoint,
    /// The answer.
    pub kind: LansweeperFaultKind,
    /// Number of requests affected.
    pub times: u32,
}

/// Limits a fault to some GraphQL requests ([`LansweeperFake::inject_scoped_fault`]); `None`
/// matches any request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LansweeperScope {
    /// Operation name of the request (`allInstallations`, `getAssetResources`, `assetTypes`,
    /// `authorizedSites`) or one of its root fields.
    pub operation: Option<String>,
    /// The request's `siteId` variable.
    pub site_id: Option<String>,
}

impl LansweeperScope {
    fn matches(&self, operations: &[String], site_id: Option<&str>) -> bool {
        self.operation
            .as_ref()
            .is_none_or(|o| operations.contains(o))
            && self.site_id.as_deref().is_none_or(|s| site_id == Some(s))
    }
}

/// Request counters of the fake (every request received counts, including rejected ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LansweeperStats {
    /// Token endpoint requests.
    pub token_requests: u64,
    /// Successful authorization-code grants.
    pub code_grants: u64,
    /// Successful refresh-token grants.
    pub refresh_grants: u64,
    /// GraphQL requests.
    pub graphql_requests: u64,
    /// `assetResources` pages answered.
    pub asset_pages: u64,
    /// Asset items returned in those pages.
    pub assets_served: u64,
    /// Requests answered by an injected fault.
    pub faults_served: u64,
    /// Requests refused with 429 by the rate limit.
    pub rate_limited: u64,
}

/// A site to add to the fake: `asset_count` assets (up to any size; generated per page), spread
/// round-robin over `installations`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSpec {
    /// Site name.
    pub name: String,
    /// Number of generated assets.
    pub asset_count: u64,
    /// Installation names (assets are spread round-robin over them).
    pub installations: Vec<String>,
    /// Seed of the generator (same seed, same assets).
    pub seed: u64,
}

impl SiteSpec {
    /// A site with one installation named `"<name> installation"` and seed 1.
    pub fn new(name: &str, asset_count: u64) -> SiteSpec {
        SiteSpec {
            name: name.to_owned(),
            asset_count,
            installations: vec![format!("{name} installation")],
            seed: 1,
        }
    }
}

/// An installation of a site, as the fake reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeInstallation {
    /// Installation id (used in the `installationId` filter).
    pub id: String,
    /// Installation name.
    pub name: String,
}

#[derive(Clone)]
struct CodeGrant {
    client_id: String,
    redirect_uri: String,
}

pub(crate) struct LsState {
    clients: HashMap<String, String>,
    /// The callback URL registered with each client (Lansweeper's "redirect URI" setting).
    redirect_uris: HashMap<String, String>,
    /// The user declines every authorization.
    declining: bool,
    codes: HashMap<String, CodeGrant>,
    refresh_tokens: HashMap<String, String>,
    access_tokens: HashMap<String, (String, Instant)>,
    access_lifetime: Duration,
    rotate: bool,
    pub(crate) sites: Vec<assets::SiteData>,
    faults: Vec<LansweeperFault>,
    scoped_faults: Vec<(LansweeperScope, LansweeperFault)>,
    pub(crate) stats: LansweeperStats,
    pub(crate) totals: HashMap<String, u64>,
    rate_limit: Option<(u32, Duration)>,
    window: (Instant, u32),
    now: DateTime<Utc>,
    counter: u64,
}

impl LsState {
    fn token(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!(
            "{prefix}-{}-{}",
            self.counter,
            uuid::Uuid::new_v4().simple()
        )
    }

    fn take_fault(&mut self, endpoint: LansweeperEndpoint) -> Option<LansweeperFault> {
        let pos = self.faults.iter().position(|f| {
            f.times > 0 && (f.target == LansweeperEndpoint::Any || f.target == endpoint)
        })?;
        let fault = self.faults[pos];
        self.faults[pos].times -= 1;
        if self.faults[pos].times == 0 {
            self.faults.remove(pos);
        }
        self.stats.faults_served += 1;
        Some(fault)
    }

    /// Takes the first scoped fault matching a GraphQL request (authenticated, parsed).
    fn take_scoped_fault(
        &mut self,
        operations: &[String],
        site_id: Option<&str>,
    ) -> Option<LansweeperFault> {
        let pos = self
            .scoped_faults
            .iter()
            .position(|(scope, f)| f.times > 0 && scope.matches(operations, site_id))?;
        let fault = self.scoped_faults[pos].1;
        self.scoped_faults[pos].1.times -= 1;
        if self.scoped_faults[pos].1.times == 0 {
            self.scoped_faults.remove(pos);
        }
        self.stats.faults_served += 1;
        Some(fault)
    }
}

/// State shared between the server task and the handles.
pub(crate) struct LsShared {
    state: Mutex<LsState>,
}

impl LsShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, LsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Inner {
    shared: Arc<LsShared>,
    url: String,
    _shutdown: oneshot::Sender<()>,
}

/// The GraphQL schema of the Lansweeper fake in SDL.
pub fn lansweeper_schema_sdl() -> String {
    schema::sdl()
}

/// Handle on a running Lansweeper fake; clones share the server, which stops when the last
/// handle is dropped.
#[derive(Clone)]
pub struct LansweeperFake {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LansweeperFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LansweeperFake")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl LansweeperFake {
    /// Starts the fake on `127.0.0.1` with an ephemeral port.
    pub async fn start() -> std::io::Result<LansweeperFake> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the fake listening on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<LansweeperFake> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(LsShared {
            state: Mutex::new(LsState {
                clients: HashMap::new(),
                redirect_uris: HashMap::new(),
                declining: false,
                codes: HashMap::new(),
                refresh_tokens: HashMap::new(),
                access_tokens: HashMap::new(),
                access_lifetime: Duration::from_secs(3600),
                rotate: true,
                sites: Vec::new(),
                faults: Vec::new(),
                scoped_faults: Vec::new(),
                stats: LansweeperStats::default(),
                totals: HashMap::new(),
                rate_limit: None,
                window: (Instant::now(), 0),
                now: Utc::now(),
                counter: 0,
            }),
        });
        let app = router(shared.clone());
        let tx = crate::serve::spawn(listener, app, "lansweeper fake");
        Ok(LansweeperFake {
            inner: Arc::new(Inner {
                shared,
                url,
                _shutdown: tx,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LsState> {
        self.inner.shared.lock()
    }

    /// API base, `http://127.0.0.1:<port>/api` (the value for `LANSWEEPER_API_URL`).
    pub fn api_url(&self) -> String {
        format!("{}/api", self.inner.url)
    }

    /// Token endpoint, `<api>/integrations/oauth/token`.
    pub fn token_url(&self) -> String {
        format!("{}/api/integrations/oauth/token", self.inner.url)
    }

    /// GraphQL endpoint, `<api>/v2/graphql`.
    pub fn graphql_url(&self) -> String {
        format!("{}/api/v2/graphql", self.inner.url)
    }

    /// Where a user authorizes an application (`<app url>/authorize-app/<client id>?state=`, the
    /// value for `LANSWEEPER_APP_URL`).
    pub fn app_url(&self) -> String {
        self.inner.url.clone()
    }

    /// The customer enters `uri` as the callback URL of application `client_id` in Lansweeper.
    pub fn register_redirect_uri(&self, client_id: &str, uri: &str) {
        self.lock()
            .redirect_uris
            .insert(client_id.to_owned(), uri.to_owned());
    }

    /// The user declines (`true`) or grants every following authorization.
    pub fn set_declining(&self, declining: bool) {
        self.lock().declining = declining;
    }

    /// Registers an OAuth client (a Lansweeper "app" of the customer).
    pub fn add_client(&self) -> OAuthCredentials {
        let mut s = self.lock();
        let client_id = s.token("ls-client");
        let client_secret = s.token("ls-secret");
        s.clients.insert(client_id.clone(), client_secret.clone());
        OAuthCredentials {
            client_id,
            client_secret,
        }
    }

    /// The user authorizes `client_id` in Lansweeper, which redirects to `redirect_uri` with the
    /// returned one-time code.
    pub fn authorize(&self, client_id: &str, redirect_uri: &str) -> String {
        let mut s = self.lock();
        let code = s.token("ls-code");
        s.codes.insert(
            code.clone(),
            CodeGrant {
                client_id: client_id.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
            },
        );
        code
    }

    /// Issues a refresh token for `client_id` directly (as if authorized earlier).
    pub fn issue_refresh_token(&self, client_id: &str) -> String {
        let mut s = self.lock();
        let token = s.token("ls-refresh");
        s.refresh_tokens.insert(token.clone(), client_id.to_owned());
        token
    }

    /// Whether `refresh_token` is currently valid.
    pub fn is_refresh_token_valid(&self, refresh_token: &str) -> bool {
        self.lock().refresh_tokens.contains_key(refresh_token)
    }

    /// Revokes every refresh and access token (the app is no longer authorized).
    pub fn revoke_all_tokens(&self) {
        let mut s = self.lock();
        s.refresh_tokens.clear();
        s.access_tokens.clear();
    }

    /// Expires every access token issued so far (refresh tokens stay valid).
    pub fn expire_access_tokens(&self) {
        self.lock().access_tokens.clear();
    }

    /// Lifetime of access tokens issued from now on (default one hour).
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.lock().access_lifetime = lifetime;
    }

    /// Whether a refresh grant returns a new refresh token and revokes the old one (default on).
    pub fn set_rotate_refresh_tokens(&self, rotate: bool) {
        self.lock().rotate = rotate;
    }

    /// Refuses GraphQL requests beyond `limit` per `window` with 429 + `Retry-After` (off by
    /// default; Lansweeper allows 150 per minute).
    pub fn set_rate_limit(&self, limit: Option<(u32, Duration)>) {
        let mut s = self.lock();
        s.rate_limit = limit;
        s.window = (Instant::now(), 0);
    }

    /// Adds a site visible to every authorized client; returns its id.
    pub fn add_site(&self, spec: SiteSpec) -> String {
        let mut s = self.lock();
        let id = format!("site-{}", s.sites.len() + 1);
        let now = s.now;
        s.sites.push(assets::SiteData {
            id: id.clone(),
            name: spec.name,
            asset_count: spec.asset_count,
            installations: spec.installations,
            seed: spec.seed,
            now,
        });
        id
    }

    /// Installations of site `site_id`.
    pub fn installations(&self, site_id: &str) -> Vec<FakeInstallation> {
        let s = self.lock();
        s.sites
            .iter()
            .find(|site| site.id == site_id)
            .map(|site| {
                site.installations
                    .iter()
                    .enumerate()
                    .map(|(k, name)| FakeInstallation {
                        id: site.installation_id(k),
                        name: name.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The full generated item of asset `index` of site `site_id` (with every field the
    /// integration requests, plus `installationId`).
    pub fn asset(&self, site_id: &str, index: u64) -> Option<Value> {
        let site = self
            .lock()
            .sites
            .iter()
            .find(|site| site.id == site_id && index < site.asset_count)
            .cloned()?;
        Some(assets::asset(&site, index))
    }

    /// Reference time of generated dates (`lastSeen` etc. are relative to it).
    pub fn reference_time(&self) -> DateTime<Utc> {
        self.lock().now
    }

    /// Queues a fault for the next matching requests (FIFO).
    pub fn inject_fault(&self, fault: LansweeperFault) {
        self.lock().faults.push(fault);
    }

    /// Queues a fault for the next GraphQL requests within `scope` (FIFO among scoped faults),
    /// served after authentication so that other requests, e.g. another site's, are unaffected;
    /// `fault.target` is ignored.
    pub fn inject_scoped_fault(&self, scope: LansweeperScope, fault: LansweeperFault) {
        self.lock().scoped_faults.push((scope, fault));
    }

    /// Request counters so far.
    pub fn stats(&self) -> LansweeperStats {
        self.lock().stats
    }

    /// Whether `site_id` has an installation with id `installation_id`.
    pub fn has_installation(&self, site_id: &str, installation_id: &str) -> bool {
        self.lock()
            .sites
            .iter()
            .any(|s| s.id == site_id && assets::has_installation(s, installation_id))
    }
}

#[derive(Clone)]
struct App {
    shared: Arc<LsShared>,
    schema: schema::LsSchema,
}

fn router(shared: Arc<LsShared>) -> Router {
    let schema = schema::build(shared.clone());
    Router::new()
        .route("/api/integrations/oauth/token", post(token))
        .route("/api/v2/graphql", post(graphql))
        .route(
            "/authorize-app/{client_id}",
            axum::routing::get(authorize_app),
        )
        .fallback(|| async { json_response(StatusCode::NOT_FOUND, json!({"error": "not_found"})) })
        .with_state(App { shared, schema })
}

/// The user authorizes application `client_id` (signed in, sites chosen): Lansweeper sends the
/// browser to the application's registered callback URL with a one-time `code` and the
/// caller's `state`, or `error=access_denied` when the user declines. An application without a
/// registered callback URL gets an error page.
async fn authorize_app(
    State(app): State<App>,
    axum::extract::Path(client_id): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let mut s = app.shared.lock();
    let Some(redirect) = s.redirect_uris.get(&client_id).cloned() else {
        return (
            StatusCode::BAD_REQUEST,
            "This application has no callback URL registered.",
        )
            .into_response();
    };
    let Ok(mut target) = url::Url::parse(&redirect) else {
        return (StatusCode::BAD_REQUEST, "Invalid callback URL.").into_response();
    };
    {
        let mut pairs = target.query_pairs_mut();
        if s.declining {
            pairs.append_pair("error", "access_denied");
        } else {
            let code = s.token("ls-code");
            s.codes.insert(
                code.clone(),
                CodeGrant {
                    client_id,
                    redirect_uri: redirect.clone(),
                },
            );
            pairs.append_pair("code", &code);
        }
        if let Some(state) = query.get("state") {
            pairs.append_pair("state", state);
        }
    }
    (
        StatusCode::FOUND,
        [(axum::http::header::LOCATION, target.to_string())],
    )
        .into_response()
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn too_many(retry_after: u64) -> Response {
    let mut resp = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"errors": [{"message": "Too Many Requests"}]}),
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

/// The answer of an injected fault.
fn fault_response(kind: LansweeperFaultKind) -> Response {
    match kind {
        LansweeperFaultKind::TooManyRequests { retry_after_secs } => too_many(retry_after_secs),
        LansweeperFaultKind::Unauthorized => json_response(
            StatusCode::UNAUTHORIZED,
            json!({"errors": [{"message": "Unauthorized"}]}),
        ),
        LansweeperFaultKind::ServerError { status } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_response(
                status,
                json!({"errors": [{"message": status.canonical_reason().unwrap_or("Error")}]}),
            )
        }
        LansweeperFaultKind::GraphQlError => json_response(
            StatusCode::OK,
            json!({"data": null, "errors": [{"message": "Injected fault", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}),
        ),
    }
}

/// Counts the request, serves a queued fault and checks the integration header.
fn gate(shared: &LsShared, endpoint: LansweeperEndpoint, headers: &HeaderMap) -> Option<Response> {
    let fault = {
        let mut s = shared.lock();
        match endpoint {
            LansweeperEndpoint::Token => s.stats.token_requests += 1,
            _ => s.stats.graphql_requests += 1,
        }
        s.take_fault(endpoint)
    };
    if let Some(fault) = fault {
        return Some(fault_response(fault.kind));
    }
    if !headers.contains_key(INTEGRATION_ID_HEADER) {
        return Some(json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("missing {INTEGRATION_ID_HEADER} header")}),
        ));
    }
    None
}

#[derive(Deserialize)]
struct TokenRequest {
    client_id: Option<String>,
    client_secret: Option<String>,
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    refresh_token: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    json_response(status, json!({"error": error}))
}

async fn token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(resp) = gate(&app.shared, LansweeperEndpoint::Token, &headers) {
        return resp;
    }
    let Ok(req) = serde_json::from_slice::<TokenRequest>(&body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let mut s = app.shared.lock();
    let (Some(client_id), Some(secret)) = (req.client_id, req.client_secret) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    if s.clients.get(&client_id) != Some(&secret) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let refresh = match req.grant_type.as_deref() {
        Some("authorization_code") => {
            let grant = req.code.as_ref().and_then(|c| s.codes.get(c)).cloned();
            match grant {
                Some(g)
                    if g.client_id == client_id
                        && Some(&g.redirect_uri) == req.redirect_uri.as_ref() =>
                {
                    if let Some(c) = &req.code {
                        s.codes.remove(c);
                    }
                    s.stats.code_grants += 1;
                    let token = s.token("ls-refresh");
                    s.refresh_tokens.insert(token.clone(), client_id.clone());
                    Some(token)
                }
                _ => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
            }
        }
        Some("refresh_token") => {
            let owner = req
                .refresh_token
                .as_ref()
                .and_then(|t| s.refresh_tokens.get(t))
                .cloned();
            if owner.as_deref() != Some(client_id.as_str()) {
                return oauth_error(StatusCode::UNAUTHORIZED, "invalid_grant");
            }
            s.stats.refresh_grants += 1;
            if s.rotate {
                if let Some(old) = &req.refresh_token {
                    s.refresh_tokens.remove(old);
                }
                let token = s.token("ls-refresh");
                s.refresh_tokens.insert(token.clone(), client_id.clone());
                Some(token)
            } else {
                None
            }
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    let access = s.token("ls-access");
    let lifetime = s.access_lifetime;
    s.access_tokens
        .insert(access.clone(), (client_id, Instant::now() + lifetime));
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
    });
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    json_response(StatusCode::OK, body)
}

async fn graphql(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(resp) = gate(&app.shared, LansweeperEndpoint::GraphQl, &headers) {
        return resp;
    }
    {
        let mut s = app.shared.lock();
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let valid = bearer
            .and_then(|b| s.access_tokens.get(&b).cloned())
            .is_some_and(|(_, expiry)| expiry > Instant::now());
        if !valid {
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({"errors": [{"message": "Unauthorized", "extensions": {"code": "UNAUTHENTICATED"}}]}),
            );
        }
        if let Some((limit, window)) = s.rate_limit {
            let now = Instant::now();
            if now.duration_since(s.window.0) >= window {
                s.window = (now, 0);
            }
            if s.window.1 >= limit {
                s.stats.rate_limited += 1;
                let wait = window.saturating_sub(now.duration_since(s.window.0));
                return too_many(wait.as_secs().max(1));
            }
            s.window.1 += 1;
        }
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"errors": [{"message": format!("Invalid GraphQL request: {e}")}]}),
            );
        }
    };
    let scoped = {
        let mut s = app.shared.lock();
        if s.scoped_faults.is_empty() {
            None
        } else {
            let operations = crate::operation_names(&request);
            let site_id = request.variables.get("siteId").and_then(|v| match v {
                async_graphql::Value::String(s) => Some(s.clone()),
                _ => None,
            });
            s.take_scoped_fault(&operations, site_id.as_deref())
        }
    };
    if let Some(fault) = scoped {
        return fault_response(fault.kind);
    }
    let response = app.schema.execute(request).await;
    let body = serde_json::to_value(&response)
        .unwrap_or_else(|e| json!({"errors": [{"message": e.to_string()}]}));
    json_response(StatusCode::OK, body)
}
