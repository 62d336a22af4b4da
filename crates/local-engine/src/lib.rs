//! The whole engine on one machine, with no cloud account.
//!
//! [`LocalEngine`] runs every deployed function behind ONE HTTP server on `127.0.0.1`, playing
//! the AWS services around them:
//!
//! - **API Gateway** ([`gateway`]): a request to `<engine>/<stack prefix><API path>` (e.g.
//!   `/secrets/`, `/typeform/integration/`, `/lansweeper/integration/<account>/<secret>`)
//!   becomes the REST (v1) proxy event of the template's `Api` event and goes to the same
//!   handler the Lambda runs; its proxy response becomes the HTTP answer.
//! - **Secrets Manager** ([`store`]): the file store
//!   ([`LocalSecretStore`](app_builder_core::secrets::LocalSecretStore)), whose writes are
//!   reported as activity.
//! - **DynamoDB**: the engine's state table is a
//!   [`LocalStateStore`](app_builder_core::state::LocalStateStore) directory
//!   ([`EngineOptions::state_dir`]).
//! - **The engine's EventBridge bus** ([`bus`]): what the secrets function publishes is
//!   delivered asynchronously, in publication order, as the EventBridge event to every function
//!   whose template has a rule with a matching pattern — the same patterns SAM deploys. A
//!   function error (an event the function asks to be retried) is delivered again with backoff
//!   ([`EVENT_ATTEMPTS`]), as Lambda's asynchronous invocation retries it.
//! - **SQS**: a function that queues work (Lansweeper's refresh queue) gets an in-process
//!   queue; each message is delivered as an SQS event to the same function, and a message
//!   reported in `batchItemFailures` is delivered again with backoff ([`QUEUE_ATTEMPTS`]).
//! - **EventBridge schedules**: with [`EngineOptions::schedule_interval`] set, every function
//!   with a schedule event is invoked with the scheduled event at that interval (off by default).
//!
//! Functions are deployed at run time from their SAM template ([`LocalEngine::deploy`]): the
//! template's parameters (defaults, overridden by the deploy's values) become the environment
//! variables the template gives each function, plus the engine's own [`EngineOptions::environment`]
//! (endpoints of the local 4me sandbox and fakes). The deploy answers the template's Outputs with
//! local values: URLs of this server for the APIs, `arn:aws:lambda:local:000000000000:function:
//! <stack>-<Function>` for functions.
//!
//! Everything the engine does is reported as [`Activity`] (what arrived, the answer, what was
//! written — never a secret value), for progress output and tests.
#![warn(missing_docs)]

pub mod bus;
pub mod console;
pub mod functions;
pub mod gateway;
pub mod journal;
pub mod logs;
pub mod store;
pub mod template;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use app_builder_core::metrics::MetricScope;
use app_builder_core::secrets::LocalSecretStore;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

pub use console::{ConsoleAction, ConsoleActions, ConsoleField};
pub use functions::{FunctionError, LocalFunction, LocalQueue};
pub use journal::{Entry, Input, Recorded, Verdict};
pub use store::EventingStore;
pub use template::{Template, TemplateError};

/// The region in local ARNs and events.
pub const LOCAL_REGION: &str = "local";
/// The AWS account id in local ARNs and events.
pub const LOCAL_ACCOUNT: &str = "000000000000";
/// How often a queue message is delivered before it is dropped (SQS `maxReceiveCount`).
pub const QUEUE_ATTEMPTS: u32 = 3;
/// How often a bus event is delivered to a function that fails it (Lambda's asynchronous
/// invocation: the first attempt and two retries).
pub const EVENT_ATTEMPTS: u32 = 3;

/// A stack's Outputs by name.
pub type StackOutputs = BTreeMap<String, String>;

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where the secret files live.
    pub secrets_dir: PathBuf,
    /// Where the state store's files live (the local stand-in of the engine's DynamoDB table;
    /// default: `.state` in the secrets directory).
    pub state_dir: PathBuf,
    /// Address to listen on (default `127.0.0.1:0`, an ephemeral port).
    pub listen: SocketAddr,
    /// Variables added to every function's environment over the template's (endpoints of the
    /// local 4me and fakes, `NOTE_DISPATCHER_ALLOW_PRIVATE_URLS`, shorter timeouts, ...).
    pub environment: BTreeMap<String, String>,
    /// Interval of the scheduled events; `None` disables the scheduler.
    pub schedule_interval: Option<Duration>,
    /// First wait before a failed queue message or bus event is delivered again (doubles per
    /// attempt).
    pub retry_delay: Duration,
}

impl EngineOptions {
    /// Options with the secrets in `secrets_dir`, an ephemeral port, no extra environment and no
    /// scheduler.
    pub fn new(secrets_dir: impl Into<PathBuf>) -> Self {
        let secrets_dir = secrets_dir.into();
        Self {
            state_dir: secrets_dir.join(".state"),
            secrets_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            environment: BTreeMap::new(),
            schedule_interval: None,
            retry_delay: Duration::from_secs(1),
        }
    }

    /// Adds one variable to every function's environment.
    pub fn with_env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.environment.insert(name.to_owned(), value.into());
        self
    }
}

/// Why a deploy failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The template cannot be read.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// An override names a parameter the template does not declare.
    #[error("the template declares no parameter `{0}`")]
    UnknownParameter(String),
    /// A parameter without default got no value.
    #[error("parameter `{0}` has no default and no value was given")]
    MissingParameter(String),
    /// A function could not be built.
    #[error("function {function}: {source}")]
    Function {
        /// The function (`<stack>-<LogicalId>`).
        function: String,
        /// Why.
        source: FunctionError,
    },
    /// The stack prefix is not a plain path segment.
    #[error("invalid stack prefix `{0}`: use letters, digits and `-`")]
    Prefix(String),
}

/// Something the engine did, for progress output and tests. Never holds a secret value: the
/// messages are the handlers' public `message`s, secrets appear by name only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// An HTTP request reached a function.
    Http {
        /// The function (`<stack>-<LogicalId>`).
        function: String,
        /// Method and path as received.
        request: String,
        /// The webhook delivery id, if the request carried one.
        delivery: Option<String>,
        /// The status answered.
        status: u16,
        /// The answer's message.
        message: String,
    },
    /// A secret was written (the Secrets Manager call and the secret's name).
    SecretWritten {
        /// `CreateSecret` or `PutSecretValue`.
        event_name: String,
        /// The secret's name.
        secret: String,
    },
    /// A function handled an `Installation changed` event of the engine's bus.
    InstallationEvent {
        /// The function.
        function: String,
        /// The lifecycle step (`secrets-updated`, `deleted`, ...).
        step: String,
        /// The offering reference.
        offering: String,
        /// The customer account.
        account: String,
        /// The status answered.
        status: u16,
        /// The answer's message.
        message: String,
    },
    /// A function handled a scheduled event.
    Schedule {
        /// The function.
        function: String,
        /// The status answered.
        status: u16,
        /// The answer's message.
        message: String,
    },
    /// A function handled a queue message.
    Queue {
        /// The function.
        function: String,
        /// The message body (a customer account).
        body: String,
        /// Which delivery of the message this was (1 = first).
        attempt: u32,
        /// Whether the function reported it failed.
        failed: bool,
    },
}

impl std::fmt::Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Activity::Http {
                function,
                request,
                delivery,
                status,
                message,
            } => {
                write!(f, "{function} <- {request}")?;
                if let Some(delivery) = delivery {
                    write!(f, " (delivery {delivery})")?;
                }
                write!(f, " -> {status} {message}")
            }
            Activity::SecretWritten { event_name, secret } => {
                write!(f, "secret store: {event_name} {secret}")
            }
            Activity::InstallationEvent {
                function,
                step,
                offering,
                account,
                status,
                message,
            } => write!(
                f,
                "{function} <- Installation changed ({step}) of {offering} for {account} -> {status} {message}"
            ),
            Activity::Schedule {
                function,
                status,
                message,
            } => write!(f, "{function} <- schedule -> {status} {message}"),
            Activity::Queue {
                function,
                body,
                attempt,
                failed,
            } => write!(
                f,
                "{function} <- queue message {body} (attempt {attempt}) -> {}",
                if *failed { "failed" } else { "done" }
            ),
        }
    }
}

/// One deployed function.
struct Deployed {
    name: String,
    arn: String,
    prefix: String,
    routes: Vec<template::ApiRoute>,
    /// The patterns of its rules on the engine's bus, resolved.
    rules: Vec<Value>,
    scheduled: bool,
    /// Where its metrics go (namespace, function and offering dimensions).
    metrics: MetricScope,
    function: Arc<dyn LocalFunction>,
}

struct Inner {
    url: String,
    options: EngineOptions,
    store: EventingStore,
    bus: bus::LocalBus,
    /// Deployed functions by stack.
    stacks: RwLock<BTreeMap<String, Vec<Arc<Deployed>>>>,
    activity: broadcast::Sender<Activity>,
    history: Mutex<Vec<Activity>>,
    journal: journal::Journal,
    console: RwLock<Option<Arc<dyn ConsoleActions>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// The running local engine (a cheap handle; the server and its tasks stop when the last handle
/// is dropped or on [`LocalEngine::shutdown`]).
#[derive(Clone)]
pub struct LocalEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEngine")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl LocalEngine {
    /// Starts the server, the event delivery and (if configured) the scheduler.
    pub async fn start(options: EngineOptions) -> std::io::Result<LocalEngine> {
        let listener = tokio::net::TcpListener::bind(options.listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (writes_tx, writes_rx) = mpsc::unbounded_channel();
        let store = EventingStore::new(LocalSecretStore::new(&options.secrets_dir), writes_tx);
        let (bus, events) = bus::LocalBus::new("local");
        let (activity, _) = broadcast::channel(1024);
        let schedule_interval = options.schedule_interval;
        let inner = Arc::new(Inner {
            url,
            options,
            store,
            bus,
            stacks: RwLock::new(BTreeMap::new()),
            activity,
            history: Mutex::new(Vec::new()),
            journal: journal::Journal::default(),
            console: RwLock::new(None),
            tasks: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&inner);
        let app = console::router(weak.clone()).fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let weak = weak.clone();
                async move {
                    match weak.upgrade() {
                        Some(inner) => inner.serve(method, uri, headers, body, None).await,
                        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                    }
                }
            },
        );
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "local engine server stopped");
            }
        });
        let writes = tokio::spawn(report_secret_writes(Arc::downgrade(&inner), writes_rx));
        let delivery = tokio::spawn(deliver_bus_events(Arc::downgrade(&inner), events));
        let mut tasks = vec![server, writes, delivery];
        if let Some(interval) = schedule_interval {
            tasks.push(tokio::spawn(run_schedule(Arc::downgrade(&inner), interval)));
        }
        inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(tasks);
        Ok(LocalEngine { inner })
    }

    /// The server's base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The store every function uses (write provider secrets here).
    pub fn store(&self) -> &EventingStore {
        &self.inner.store
    }

    /// Deploys (or redeploys, replacing) `stack` from `template` with the parameter values
    /// `overrides` under the URL prefix `/<prefix>` (empty: at the root). Returns the Outputs
    /// the template declares, with local values. Deploying the same again changes nothing
    /// visible: same URLs, same ARNs.
    pub fn deploy(
        &self,
        stack: &str,
        prefix: &str,
        template: &Template,
        overrides: &[(String, String)],
    ) -> Result<StackOutputs, EngineError> {
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(EngineError::Prefix(prefix.to_owned()));
        }
        let parameters = parameter_values(template, overrides)?;
        let prefix_path = if prefix.is_empty() {
            String::new()
        } else {
            format!("/{prefix}")
        };
        let resolver = Resolver {
            stack,
            url: &self.inner.url,
            prefix: &prefix_path,
            parameters: &parameters,
            template,
        };
        let mut deployed = Vec::new();
        let mut queues = Vec::new();
        for function in &template.functions {
            let name = format!("{stack}-{}", function.logical_id);
            let mut environment: BTreeMap<String, String> = function
                .environment
                .iter()
                .map(|(var, value)| (var.clone(), resolver.resolve(value)))
                .collect();
            environment.extend(self.inner.options.environment.clone());
            let metrics = MetricScope::from_settings(
                &app_builder_core::config::Settings::from_lookup(|name: &str| {
                    environment.get(name).cloned()
                }),
                &function.binary,
            );
            let state =
                app_builder_core::state::LocalStateStore::new(&self.inner.options.state_dir);
            let built = functions::build(
                &function.binary,
                &environment,
                self.inner.store.clone(),
                state,
                self.inner.bus.clone(),
            )
            .map_err(|source| EngineError::Function {
                function: name.clone(),
                source,
            })?;
            let entry = Arc::new(Deployed {
                arn: function_arn(&name),
                name,
                prefix: prefix_path.clone(),
                routes: function.routes.clone(),
                rules: function
                    .rules
                    .iter()
                    .map(|rule| rule.pattern.to_json(&|value| resolver.resolve(value)))
                    .collect(),
                scheduled: function.scheduled,
                metrics,
                function: built.function,
            });
            if let Some(queue) = built.queue {
                queues.push((Arc::downgrade(&entry), queue));
            }
            deployed.push(entry);
        }
        let outputs = template
            .outputs
            .iter()
            .map(|output| (output.name.clone(), resolver.resolve(&output.value)))
            .collect();
        for (function, queue) in queues {
            let task = tokio::spawn(consume_queue(
                Arc::downgrade(&self.inner),
                function,
                queue,
                self.inner.options.retry_delay,
            ));
            self.inner
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(task);
        }
        self.inner
            .stacks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stack.to_owned(), deployed);
        tracing::info!(stack, "deployed locally");
        Ok(outputs)
    }

    /// The deployed stacks and their functions' URLs (`(function, METHOD URL)`), for display.
    pub fn routes(&self) -> Vec<(String, String)> {
        let stacks = self.inner.stacks.read().unwrap_or_else(|e| e.into_inner());
        stacks
            .values()
            .flatten()
            .flat_map(|function| {
                function.routes.iter().map(|route| {
                    (
                        function.name.clone(),
                        format!(
                            "{} {}{}{}",
                            route.method, self.inner.url, function.prefix, route.path
                        ),
                    )
                })
            })
            .collect()
    }

    /// A receiver of everything the engine does from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Activity> {
        self.inner.activity.subscribe()
    }

    /// Everything the engine did so far.
    pub fn activity(&self) -> Vec<Activity> {
        self.inner
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits, at most `timeout`, until every event published on the bus (and every event the
    /// handlers published meanwhile) was delivered; `false` on timeout. Stopping the sandbox or
    /// the engine before that would fail the handlers still running.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.inner.bus.in_flight() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Waits until an activity matching `predicate` happened (also before the call), at most
    /// `timeout`; returns it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        predicate: impl Fn(&Activity) -> bool,
    ) -> Option<Activity> {
        let mut receiver = self.subscribe();
        if let Some(found) = self.activity().into_iter().find(|a| predicate(a)) {
            return Some(found);
        }
        tokio::time::timeout(timeout, async {
            loop {
                match receiver.recv().await {
                    Ok(activity) if predicate(&activity) => return Some(activity),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Invokes every scheduled function once now (what one tick of the scheduler does).
    pub async fn run_schedule_once(&self) {
        self.inner.run_schedule_once().await;
    }

    /// The invocations after entry `after` (0: all kept), oldest first.
    pub fn entries_after(&self, after: u64) -> Vec<Entry> {
        self.inner.journal.entries_after(after)
    }

    /// Every function's counters summed since the start (what the console shows).
    pub fn metrics(&self) -> BTreeMap<String, app_builder_core::metrics::Counters> {
        self.inner.journal.totals()
    }

    /// Writes the input of every invocation from now on to `path` (see [`journal`]).
    pub fn record_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.journal.record_to(path)
    }

    /// The deployed functions' names.
    pub fn function_names(&self) -> Vec<String> {
        self.inner
            .functions()
            .iter()
            .map(|function| function.name.clone())
            .collect()
    }

    /// Sends the input of entry `id` again, as a replay of it: a 4me delivery signed again by
    /// the local 4me (the console's [`ConsoleActions::resign`]; a new token of the same
    /// delivery, as 4me's redelivery), any other request as received, an event put on the bus
    /// again, a schedule or queue message delivered again. Returns what happened.
    pub async fn replay(&self, id: u64) -> Result<String, ReplayError> {
        let entry = self
            .inner
            .journal
            .entry(id)
            .ok_or(ReplayError::Unknown(id))?;
        self.inject(entry.input, Some(id)).await
    }

    /// Sends `input` (recorded here or by another engine) to this engine, as [`Self::replay`]
    /// does; `replay_of` names the entry it replays.
    pub async fn inject(
        &self,
        input: Input,
        replay_of: Option<u64>,
    ) -> Result<String, ReplayError> {
        let inner = &self.inner;
        match input {
            Input::Http {
                method,
                uri,
                headers,
                body,
            } => {
                let method = Method::from_bytes(method.as_bytes())
                    .map_err(|_| ReplayError::Invalid(format!("method {method}")))?;
                let uri: Uri = uri
                    .parse()
                    .map_err(|_| ReplayError::Invalid(format!("path {uri}")))?;
                let mut body =
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &body)
                        .map_err(|_| ReplayError::Invalid("the body is not base64".into()))?;
                let mut how = "sent again as received";
                let token = app_builder_core::webhook::jwt_from_body(&body);
                if let (Some(token), Some(console)) = (token, self.console_actions())
                    && let Some(token) = console.resign(&token)
                {
                    body = serde_json::json!({ "jwt": token }).to_string().into_bytes();
                    how = "signed again by the local 4me and sent";
                }
                let mut map = HeaderMap::new();
                for (name, value) in headers {
                    // The length is the new body's.
                    if name.eq_ignore_ascii_case("content-length") {
                        continue;
                    }
                    if let (Ok(name), Ok(value)) = (
                        axum::http::HeaderName::from_bytes(name.as_bytes()),
                        axum::http::HeaderValue::from_str(&value),
                    ) {
                        map.append(name, value);
                    }
                }
                let response = inner
                    .serve(method, uri, map, Bytes::from(body), replay_of)
                    .await;
                Ok(format!("{how}, answered {}", response.status().as_u16()))
            }
            Input::Event { detail } => {
                let put = match replay_of {
                    Some(of) => inner.bus.replay(&detail, of),
                    None => {
                        use app_builder_core::bus::EventPublisher as _;
                        inner.bus.publish(&detail).await
                    }
                };
                put.map_err(|error| ReplayError::Invalid(error.to_string()))?;
                Ok("put on the bus again".into())
            }
            Input::Schedule { function } => {
                let deployed = inner.function(&function)?;
                inner.run_schedule(&deployed, replay_of).await;
                Ok("scheduled event delivered again".into())
            }
            Input::Queue { function, body } => {
                let deployed = inner.function(&function)?;
                let message_id = uuid::Uuid::new_v4().to_string();
                let queue_arn = queue_arn(&deployed.name);
                let event = store::sqs_event(&queue_arn, &message_id, &body, 1);
                let source = Source {
                    input: Input::Queue {
                        function: function.clone(),
                        body: body.clone(),
                    },
                    description: "queue message (replayed)".into(),
                    delivery: None,
                    replay_of,
                };
                let result = inner.invoke(&deployed, event, source).await;
                let failed = status_of(&result) != 200;
                inner.record(Activity::Queue {
                    function,
                    body,
                    attempt: 1,
                    failed,
                });
                Ok(if failed {
                    "queue message delivered again: failed".into()
                } else {
                    "queue message delivered again".into()
                })
            }
        }
    }

    /// Stops the server and every background task.
    pub fn shutdown(&self) {
        for task in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// Why an input could not be sent again.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No entry has this id (or it is no longer kept).
    #[error("no entry #{0} (the engine keeps the last {KEPT} entries)", KEPT = journal::KEPT_ENTRIES)]
    Unknown(u64),
    /// The input names a function that is not deployed.
    #[error("no function `{0}` is deployed")]
    NoFunction(String),
    /// The input is not something the engine can send.
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// The ARN of a local function.
pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{name}")
}

fn parameter_values(
    template: &Template,
    overrides: &[(String, String)],
) -> Result<BTreeMap<String, String>, EngineError> {
    let mut values = BTreeMap::new();
    for (name, value) in overrides {
        if !template.parameters.contains_key(name) {
            return Err(EngineError::UnknownParameter(name.clone()));
        }
        values.insert(name.clone(), value.clone());
    }
    for (name, default) in &template.parameters {
        if !values.contains_key(name) {
            let default = default
                .clone()
                .ok_or_else(|| EngineError::MissingParameter(name.clone()))?;
            values.insert(name.clone(), default);
        }
    }
    Ok(values)
}

/// Resolves template values to their local equivalents.
struct Resolver<'a> {
    stack: &'a str,
    url: &'a str,
    prefix: &'a str,
    parameters: &'a BTreeMap<String, String>,
    template: &'a Template,
}

impl Resolver<'_> {
    fn resolve(&self, value: &template::TemplateValue) -> String {
        use template::TemplateValue;
        match value {
            TemplateValue::Literal(text) => text.clone(),
            TemplateValue::Ref(name) => self
                .parameters
                .get(name)
                .cloned()
                .unwrap_or_else(|| format!("local:{}-{name}", self.stack)),
            TemplateValue::GetAtt {
                resource,
                attribute,
            } => {
                let name = format!("{}-{resource}", self.stack);
                let is_function = self
                    .template
                    .functions
                    .iter()
                    .any(|f| &f.logical_id == resource);
                match attribute.as_str() {
                    "Arn" if is_function => function_arn(&name),
                    "Arn" if resource.ends_with("Role") => {
                        format!("arn:aws:iam::{LOCAL_ACCOUNT}:role/{name}")
                    }
                    "Arn" => format!("arn:aws:local:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{name}"),
                    other => format!("local:{name}.{other}"),
                }
            }
            TemplateValue::Sub(text) => {
                // An API Gateway URL (`https://${ServerlessRestApi}.execute-api...
                // /Prod/<path>`) is this server's URL of <prefix>/<path>.
                let stage = format!("/{}/", gateway::STAGE);
                if text.contains(".execute-api.")
                    && let Some((_, path)) = text.split_once(&stage)
                {
                    return format!("{}{}/{path}", self.url, self.prefix);
                }
                self.substitute(text)
            }
        }
    }

    fn substitute(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let name = &rest[start + 2..start + end];
            let value = match name {
                "AWS::Region" => LOCAL_REGION.to_owned(),
                "AWS::AccountId" => LOCAL_ACCOUNT.to_owned(),
                "AWS::StackName" => self.stack.to_owned(),
                "AWS::Partition" => "aws".to_owned(),
                "AWS::URLSuffix" => "localhost".to_owned(),
                other => self
                    .parameters
                    .get(other)
                    .cloned()
                    .unwrap_or_else(|| format!("local:{}-{other}", self.stack)),
            };
            out.push_str(&value);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// Matches `path` against the route `pattern` (`{name}` one segment, `{name+}` the rest, a
/// trailing slash ignored); returns the path parameters.
fn match_route(pattern: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut parameters = BTreeMap::new();
    for (index, part) in pattern.iter().enumerate() {
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix("+}")) {
            let rest = segments.get(index..)?.join("/");
            if rest.is_empty() {
                return None;
            }
            parameters.insert(name.to_owned(), rest);
            return Some(parameters);
        }
        let segment = segments.get(index)?;
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if segment.is_empty() {
                return None;
            }
            parameters.insert(name.to_owned(), (*segment).to_owned());
        } else if part != segment {
            return None;
        }
    }
    (segments.len() == pattern.len()).then_some(parameters)
}

impl Inner {
    fn record(&self, activity: Activity) {
        tracing::info!("{activity}");
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(activity.clone());
        // No subscriber is fine: the history keeps it.
        let _ = self.activity.send(activity);
    }

    fn function(&self, name: &str) -> Result<Arc<Deployed>, ReplayError> {
        self.functions()
            .into_iter()
            .find(|function| function.name == name)
            .ok_or_else(|| ReplayError::NoFunction(name.to_owned()))
    }

    fn functions(&self) -> Vec<Arc<Deployed>> {
        self.stacks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    async fn serve(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
        replay_of: Option<u64>,
    ) -> axum::response::Response {
        let path = uri.path();
        let mut method_mismatch = false;
        for function in self.functions() {
            let Some(local) = path.strip_prefix(function.prefix.as_str()) else {
                continue;
            };
            if !function.prefix.is_empty() && !local.is_empty() && !local.starts_with('/') {
                continue;
            }
            for route in &function.routes {
                let Some(parameters) = match_route(&route.path, local) else {
                    continue;
                };
                if route.method != "ANY" && route.method != method.as_str() {
                    method_mismatch = true;
                    continue;
                }
                let event = gateway::rest_event(&gateway::HttpRequest {
                    resource: &route.path,
                    path: local,
                    path_parameters: &parameters,
                    method: &method,
                    uri: &uri,
                    headers: &headers,
                    body: &body,
                });
                let delivery = app_builder_core::events::DELIVERY_HEADERS
                    .iter()
                    .find_map(|name| headers.get(*name))
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let request = format!("{method} {}", uri.path());
                let input = journal::Input::Http {
                    method: method.to_string(),
                    uri: uri
                        .path_and_query()
                        .map_or_else(|| uri.path().to_owned(), ToString::to_string),
                    headers: headers
                        .iter()
                        .filter_map(|(name, value)| {
                            Some((name.to_string(), value.to_str().ok()?.to_owned()))
                        })
                        .collect(),
                    body: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &body),
                };
                let source = Source {
                    input,
                    description: request.clone(),
                    delivery: delivery.clone(),
                    replay_of,
                };
                let result = self.invoke(&function, event, source).await;
                self.record(Activity::Http {
                    function: function.name.clone(),
                    request,
                    delivery,
                    status: status_of(&result),
                    message: gateway::response_message(&result),
                });
                return gateway::proxy_response_into_http(&result);
            }
        }
        // API Gateway's answers for unknown resources and methods.
        let status = if method_mismatch {
            StatusCode::METHOD_NOT_ALLOWED
        } else {
            StatusCode::NOT_FOUND
        };
        let message = format!("No function serves {method} {path}");
        (
            status,
            [("content-type", "application/json")],
            serde_json::json!({ "message": message }).to_string(),
        )
            .into_response()
    }

    async fn run_schedule_once(&self) {
        for function in self.functions().into_iter().filter(|f| f.scheduled) {
            self.run_schedule(&function, None).await;
        }
    }

    async fn run_schedule(&self, function: &Deployed, replay_of: Option<u64>) {
        let source = Source {
            input: journal::Input::Schedule {
                function: function.name.clone(),
            },
            description: "schedule".into(),
            delivery: None,
            replay_of,
        };
        let result = self
            .invoke(function, store::scheduled_event(&function.name), source)
            .await;
        self.record(Activity::Schedule {
            function: function.name.clone(),
            status: status_of(&result),
            message: gateway::response_message(&result),
        });
    }

    /// Invokes `function` with `payload` as Lambda would, keeping the invocation in the journal:
    /// its log lines, its metrics (written as the EMF line the function writes in Lambda, and
    /// added to the console's counters), its verdict and what started it.
    async fn invoke(&self, function: &Deployed, payload: Value, source: Source) -> Value {
        let at = chrono::Utc::now();
        let ((result, counters), mut logs) = logs::capture(app_builder_core::metrics::record(
            function.function.invoke(payload, &function.arn),
        ))
        .await;
        logs.push(
            counters
                .emf(&function.metrics, at.timestamp_millis())
                .to_string(),
        );
        let status = status_of(&result);
        let entry = journal::Entry {
            id: 0,
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            function: function.name.clone(),
            source: source.description,
            delivery: source.delivery,
            account: journal::account_of(&source.input, &logs),
            status,
            verdict: journal::Verdict::of(status, &counters),
            duration_ms: counters.get(app_builder_core::metrics::DURATION),
            logs,
            metrics: counters.iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            replay_of: source.replay_of,
            input: source.input,
        };
        self.journal.push(entry, &counters);
        result
    }
}

/// Where an invocation came from, for its journal entry.
struct Source {
    input: journal::Input,
    description: String,
    delivery: Option<String>,
    replay_of: Option<u64>,
}

/// The status of a Lambda result: an HTTP or event answer's `statusCode`; for an SQS batch
/// response 200, or 500 when an item failed; 502 for a function error (API Gateway's answer).
fn status_of(result: &Value) -> u16 {
    if let Some(failures) = result["batchItemFailures"].as_array() {
        return if failures.is_empty() { 200 } else { 500 };
    }
    result["statusCode"]
        .as_u64()
        .and_then(|status| u16::try_from(status).ok())
        .unwrap_or(502)
}

/// Reports each secret write as activity.
async fn report_secret_writes(
    inner: Weak<Inner>,
    mut writes: mpsc::UnboundedReceiver<store::SecretWrite>,
) {
    while let Some(write) = writes.recv().await {
        let Some(engine) = inner.upgrade() else {
            return;
        };
        engine.record(Activity::SecretWritten {
            event_name: write.call().to_owned(),
            secret: write.secret,
        });
    }
}

/// The bus's rules: each published event is delivered, in publication order, to every function
/// with a rule whose pattern matches it (a slow function delays the next delivery).
async fn deliver_bus_events(inner: Weak<Inner>, mut events: mpsc::UnboundedReceiver<bus::Put>) {
    while let Some((detail, replay_of)) = events.recv().await {
        let Some(engine) = inner.upgrade() else {
            return;
        };
        let event = bus::eventbridge_event(&detail);
        for function in engine.functions() {
            if !function
                .rules
                .iter()
                .any(|pattern| bus::matches(pattern, &event))
            {
                continue;
            }
            let mut delay = engine.options.retry_delay;
            for attempt in 1..=EVENT_ATTEMPTS {
                let source = Source {
                    input: journal::Input::Event {
                        detail: detail.clone(),
                    },
                    description: format!("Installation changed ({})", detail.step.as_str()),
                    delivery: None,
                    replay_of,
                };
                let result = engine.invoke(&function, event.clone(), source).await;
                engine.record(Activity::InstallationEvent {
                    function: function.name.clone(),
                    step: detail.step.as_str().to_owned(),
                    offering: detail.offering.clone(),
                    account: detail.account.clone(),
                    status: status_of(&result),
                    message: gateway::response_message(&result),
                });
                if !functions::is_function_error(&result) || attempt == EVENT_ATTEMPTS {
                    break;
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        engine.bus.delivered();
    }
}

async fn run_schedule(inner: Weak<Inner>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the first schedule runs one interval after start.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(engine) = inner.upgrade() else {
            return;
        };
        engine.run_schedule_once().await;
    }
}

/// The ARN of the local queue a function's messages go to.
fn queue_arn(function: &str) -> String {
    format!("arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{function}-queue")
}

/// The SQS event source mapping of one function's queue: each message as a one-record batch;
/// a message the function reports failed (`batchItemFailures`) is delivered again after a
/// doubling delay, at most [`QUEUE_ATTEMPTS`] times in all.
async fn consume_queue(
    inner: Weak<Inner>,
    function: Weak<Deployed>,
    mut messages: mpsc::UnboundedReceiver<String>,
    retry_delay: Duration,
) {
    while let Some(body) = messages.recv().await {
        let message_id = uuid::Uuid::new_v4().to_string();
        let mut delay = retry_delay;
        for attempt in 1..=QUEUE_ATTEMPTS {
            let (Some(engine), Some(function)) = (inner.upgrade(), function.upgrade()) else {
                return;
            };
            let queue_arn = queue_arn(&function.name);
            let event = store::sqs_event(&queue_arn, &message_id, &body, attempt);
            let source = Source {
                input: journal::Input::Queue {
                    function: function.name.clone(),
                    body: body.clone(),
                },
                description: format!("queue message (attempt {attempt})"),
                delivery: None,
                replay_of: None,
            };
            let result = engine.invoke(&function, event, source).await;
            let failed = status_of(&result) != 200;
            engine.record(Activity::Queue {
                function: function.name.clone(),
                body: body.clone(),
                attempt,
                failed,
            });
            if !failed {
                break;
            }
            drop((engine, function));
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn routes_match_like_api_gateway() {
        assert_eq!(match_route("/secrets", "/secrets/"), Some(BTreeMap::new()));
        assert_eq!(match_route("/secrets", "/secrets"), Some(BTreeMap::new()));
        assert_eq!(match_route("/secrets", "/secrets/x"), None);
        assert_eq!(match_route("/secrets", "/other"), None);
        let params = match_route("/integration/{proxy+}", "/integration/acme/s3").unwrap();
        assert_eq!(params["proxy"], "acme/s3");
        assert_eq!(match_route("/integration/{proxy+}", "/integration/"), None);
        let params = match_route("/a/{id}", "/a/7").unwrap();
        assert_eq!(params["id"], "7");
    }

    #[test]
    fn outputs_and_environment_resolve_to_local_values() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let template = Template::parse(
            &std::fs::read_to_string(root.join("crates/typeform/template.yaml")).unwrap(),
        )
        .unwrap();
        let parameters = parameter_values(
            &template,
            &[("OfferingReferenceParameter".into(), "tf".into())],
        )
        .unwrap();
        let resolver = Resolver {
            stack: "app-builder-typeform",
            url: "http://127.0.0.1:9",
            prefix: "/typeform",
            parameters: &parameters,
            template: &template,
        };
        let value = |name: &str| {
            let output = template.outputs.iter().find(|o| o.name == name).unwrap();
            resolver.resolve(&output.value)
        };
        assert_eq!(
            value("IntegrationApi"),
            "http://127.0.0.1:9/typeform/integration/"
        );
        assert_eq!(
            value("IntegrationFunction"),
            "arn:aws:lambda:local:000000000000:function:app-builder-typeform-IntegrationFunction"
        );
        assert!(value("IntegrationFunctionIamRole").starts_with("arn:aws:iam::000000000000:role/"));
        let env = &template.functions[0].environment;
        assert_eq!(resolver.resolve(&env["PARAM_OFFERING_REFERENCE"]), "tf");
        assert_eq!(
            resolver.resolve(&env["PARAM_4ME_DOMAIN"]),
            "4me-demo.com",
            "the default"
        );
        assert!(matches!(
            parameter_values(
                &template,
                &[("offeringReferenceParameter".into(), "x".into())]
            ),
            Err(EngineError::UnknownParameter(_))
        ));
    }
}
