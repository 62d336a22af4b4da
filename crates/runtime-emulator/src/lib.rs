//! A Lambda runtime API emulator for one execution environment, and cold starts measured under
//! it.
//!
//! A Lambda function binary talks to the runtime API at `AWS_LAMBDA_RUNTIME_API`
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>): it asks for the next
//! invocation (`GET /2018-06-01/runtime/invocation/next`, answered with the event and the
//! `Lambda-Runtime-*` headers), then posts the result
//! (`POST .../invocation/{id}/response`) or a function error (`.../invocation/{id}/error`);
//! an initialisation failure goes to `POST /2018-06-01/runtime/init/error`. [`RuntimeApi`]
//! serves exactly that for a queue of events, and notes when each request arrives.
//!
//! [`cold_start`] starts a binary under it as Lambda starts a new execution environment (a
//! cleared environment holding the function's variables and Lambda's reserved ones), hands it
//! its events and reports:
//!
//! - **init**: spawn → the first `next` request (everything `main` does before it can serve);
//! - **first response**: spawn → the result of the first invocation;
//! - **peak RSS**: the process's `VmHWM` once it answered every event (Linux);
//! - the results themselves, so a caller can check the function did what it should; and for
//!   each later event (a warm invocation) its handling time, `next` → result.
//!
//! The process is killed afterwards, as Lambda freezes and eventually drops an environment.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::mpsc;

/// The ARN the emulated invocations name (`Lambda-Runtime-Invoked-Function-Arn`).
pub const FUNCTION_ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:emulated";

/// How long an emulated invocation may run (`Lambda-Runtime-Deadline-Ms` is now plus this).
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the function posted for an invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `POST .../response`: the function's result.
    Response(Value),
    /// `POST .../error`: a function error (`errorType`, `errorMessage`).
    Error(Value),
    /// `POST /runtime/init/error`: start-up failed.
    InitError(Value),
}

impl Outcome {
    /// The posted document.
    pub fn document(&self) -> &Value {
        match self {
            Outcome::Response(value) | Outcome::Error(value) | Outcome::InitError(value) => value,
        }
    }
}

/// A result the function posted and when it arrived.
#[derive(Debug, Clone)]
pub struct Posted {
    /// The invocation's request id (empty for an init error).
    pub request_id: String,
    /// What was posted.
    pub outcome: Outcome,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Shared {
    events: VecDeque<Value>,
    /// Arrival of every `next` request, in order.
    nexts: Vec<Instant>,
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Mutex<Shared>>,
    posted: mpsc::UnboundedSender<Posted>,
}

/// A runtime API serving a queue of events to one function process.
pub struct RuntimeApi {
    address: String,
    shared: Arc<Mutex<Shared>>,
    posted: mpsc::UnboundedReceiver<Posted>,
    server: tokio::task::JoinHandle<()>,
}

/// Why a cold start could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The runtime API could not listen.
    #[error("cannot listen for the runtime API: {0}")]
    Listen(std::io::Error),
    /// The binary could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: String,
        /// Why.
        source: std::io::Error,
    },
    /// The function posted nothing within the timeout.
    #[error("no result within {0:?} (the process's exit status: {1})")]
    Timeout(Duration, String),
}

impl RuntimeApi {
    /// Starts serving `events` (in order) on an ephemeral port of 127.0.0.1. A `next` request
    /// after the last event waits forever, as an idle execution environment does.
    pub async fn start(events: impl IntoIterator<Item = Value>) -> Result<Self, EmulatorError> {
        let shared = Arc::new(Mutex::new(Shared {
            events: events.into_iter().collect(),
            nexts: Vec::new(),
        }));
        let (sender, posted) = mpsc::unbounded_channel();
        let state = AppState {
            shared: Arc::clone(&shared),
            posted: sender,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(|state, id, body| record(state, id, body, Outcome::Response)),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(|state, id, body| record(state, id, body, Outcome::Error)),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(EmulatorError::Listen)?;
        let address = listener
            .local_addr()
            .map_err(EmulatorError::Listen)?
            .to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            address,
            shared,
            posted,
            server,
        })
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` (`host:port`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// When the function asked for its `n`-th invocation (from 0).
    pub fn next_at(&self, n: usize) -> Option<Instant> {
        self.lock().nexts.get(n).copied()
    }

    /// The next result the function posts, waiting up to `timeout`.
    pub async fn posted(&mut self, timeout: Duration) -> Option<Posted> {
        tokio::time::timeout(timeout, self.posted.recv())
            .await
            .ok()
            .flatten()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn millis_since_epoch(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or_default()
}

async fn next(State(state): State<AppState>) -> Response {
    let event = {
        let mut shared = state
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shared.nexts.push(Instant::now());
        shared.events.pop_front()
    };
    let Some(event) = event else {
        // No more work: the environment stays idle until it is dropped.
        std::future::pending::<()>().await;
        return StatusCode::GONE.into_response();
    };
    let deadline = millis_since_epoch(SystemTime::now() + INVOCATION_TIMEOUT);
    let mut headers = HeaderMap::new();
    let request_id = uuid::Uuid::new_v4().to_string();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", request_id.as_str()),
        ("lambda-runtime-deadline-ms", &deadline.to_string()),
        ("lambda-runtime-invoked-function-arn", FUNCTION_ARN),
        (
            "lambda-runtime-trace-id",
            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1",
        ),
        ("content-type", "application/json"),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    (headers, event.to_string()).into_response()
}

async fn record(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
    outcome: fn(Value) -> Outcome,
) -> StatusCode {
    let at = Instant::now();
    let document = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let _ = state.posted.send(Posted {
        request_id: id,
        outcome: outcome(document),
        at,
    });
    StatusCode::ACCEPTED
}

async fn init_error(state: State<AppState>, body: Bytes) -> StatusCode {
    record(state, UrlPath(String::new()), body, Outcome::InitError).await
}

/// One measured cold start.
#[derive(Debug, Clone)]
pub struct ColdStart {
    /// When the process was spawned (the other times are measured from it).
    pub spawned: Instant,
    /// Spawn → the first `next` request.
    pub init: Duration,
    /// Spawn → the first result posted.
    pub first_response: Duration,
    /// Peak resident set size in KiB (`VmHWM`), once the function answered; `None` off Linux.
    pub peak_rss_kib: Option<u64>,
    /// The first result.
    pub outcome: Outcome,
    /// Each later invocation (warm): its handling time (`next` → result) and its result.
    pub warm: Vec<(Duration, Outcome)>,
}

/// Runs `binary` as a new Lambda execution environment with `environment` (and nothing else
/// but Lambda's reserved variables), hands it `events` one after the other, and measures it
/// (see the crate docs); `events` must not be empty.
pub async fn cold_start(
    binary: &Path,
    environment: &[(String, String)],
    events: Vec<Value>,
    timeout: Duration,
) -> Result<ColdStart, EmulatorError> {
    let count = events.len();
    let mut api = RuntimeApi::start(events).await?;
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .envs(lambda_environment(api.address()))
        .envs(environment.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let spawned = Instant::now();
    let mut child = command.spawn().map_err(|source| EmulatorError::Spawn {
        binary: binary.display().to_string(),
        source,
    })?;
    let Some(posted) = api.posted(timeout).await else {
        let _ = child.start_kill();
        let status = child
            .wait()
            .await
            .map(|status| status.to_string())
            .unwrap_or_else(|e| e.to_string());
        return Err(EmulatorError::Timeout(timeout, status));
    };
    let mut warm = Vec::new();
    for n in 1..count {
        let Some(later) = api.posted(timeout).await else {
            let _ = child.start_kill();
            return Err(EmulatorError::Timeout(
                timeout,
                format!("invocation {n} unanswered"),
            ));
        };
        let asked = api.next_at(n).unwrap_or(later.at);
        warm.push((later.at.saturating_duration_since(asked), later.outcome));
    }
    let peak_rss_kib = child.id().and_then(peak_rss_kib);
    let _ = child.start_kill();
    let _ = child.wait().await;
    let first_next = api.next_at(0).unwrap_or(posted.at);
    Ok(ColdStart {
        spawned,
        init: first_next.saturating_duration_since(spawned),
        first_response: posted.at.saturating_duration_since(spawned),
        peak_rss_kib,
        outcome: posted.outcome,
        warm,
    })
}

/// Lambda's reserved variables of a function (those the Rust runtime reads), pointing at the
/// runtime API at `address`.
pub fn lambda_environment(address: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", address),
        ("AWS_LAMBDA_FUNCTION_NAME", "emulated"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/emulated"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]emulated"),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("TZ", ":UTC"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

/// `VmHWM` of process `pid` in KiB (Linux `/proc`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
