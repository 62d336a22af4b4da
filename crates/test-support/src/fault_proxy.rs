//! A fault-injecting proxy in front of an AWS endpoint.
//!
//! The AWS JSON protocols used by the engine (Secrets Manager, DynamoDB, EventBridge, SQS) name
//! the operation in the `X-Amz-Target` header (`secretsmanager.PutSecretValue`,
//! `DynamoDB_20120810.PutItem`, `AWSEvents.PutEvents`, `AmazonSQS.SendMessage`), so a fault is
//! chosen by that header. A fault answers as AWS documents its errors for these protocols: a
//! JSON body `{"__type": <code>, "message": ...}` with status 503 for
//! `ServiceUnavailableException` and 400 for `ThrottlingException`; the SDK treats both as
//! transient and retries them.
//!
//! The proxy also keeps when each request arrived and was answered ([`FaultProxy::busy`]), so a
//! benchmark can tell the time spent waiting on the backend from the caller's own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How an operation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 `ServiceUnavailableException`.
    Unavailable,
    /// 400 `ThrottlingException`.
    Throttled,
}

#[derive(Debug)]
struct Rule {
    target: String,
    /// Texts the request body must contain (all of them).
    body: Vec<String>,
    fault: Fault,
    remaining: Option<u32>,
}

#[derive(Debug, Default)]
struct Shared {
    rules: Vec<Rule>,
    seen: HashMap<String, u32>,
    /// Arrival and answer of every request.
    spans: Vec<(Instant, Instant)>,
}

#[derive(Clone)]
struct Forward {
    upstream: String,
    http: reqwest::Client,
    shared: Arc<Mutex<Shared>>,
}

/// The proxy (see the module docs). Dropping it stops it.
pub struct FaultProxy {
    address: SocketAddr,
    forward: Forward,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (e.g. moto's `http://127.0.0.1:5000`) on an ephemeral port.
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let forward = Forward {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .map_err(std::io::Error::other)?,
            shared: Arc::default(),
        };
        let mut proxy = Self {
            address,
            forward,
            running: None,
        };
        proxy.serve(listener);
        Ok(proxy)
    }

    /// The endpoint to give the AWS SDK (`endpoint_url`).
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The SDK configuration of a function under test reaching AWS through this proxy, with the
    /// SDK's standard retries (3 attempts) but short backoff and timeouts, so that an outage is
    /// seen quickly.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint_url())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .build(),
            )
            .load()
            .await
    }

    /// From now on operation `target` fails with `fault`: `times` times, or always (`None`).
    pub fn fail(&self, target: &str, fault: Fault, times: Option<u32>) {
        self.fail_matching(target, &[], fault, times);
    }

    /// As [`fail`](Self::fail), for the requests of `target` whose body contains every one of
    /// `body` (say, a key and an update expression: one write among several of one operation).
    pub fn fail_matching(&self, target: &str, body: &[&str], fault: Fault, times: Option<u32>) {
        self.lock().rules.push(Rule {
            target: target.to_owned(),
            body: body.iter().map(|text| (*text).to_owned()).collect(),
            fault,
            remaining: times,
        });
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.lock().rules.clear();
    }

    /// How many requests for operation `target` arrived (failed or forwarded).
    pub fn seen(&self, target: &str) -> u32 {
        self.lock().seen.get(target).copied().unwrap_or_default()
    }

    /// How long, between `from` and `to`, at least one request was being served (arrived and
    /// not answered yet): the time a caller spent waiting on the backend, requests that overlap
    /// counted once.
    pub fn busy(&self, from: Instant, to: Instant) -> Duration {
        let mut spans: Vec<(Instant, Instant)> = self
            .lock()
            .spans
            .iter()
            .map(|&(start, end)| (start.max(from), end.min(to)))
            .filter(|(start, end)| start < end)
            .collect();
        spans.sort_unstable();
        let mut busy = Duration::ZERO;
        let mut covered = from;
        for (start, end) in spans {
            let start = start.max(covered);
            if end > start {
                busy += end - start;
                covered = end;
            }
        }
        busy
    }

    /// How many requests arrived between `from` and `to`.
    pub fn arrived(&self, from: Instant, to: Instant) -> usize {
        let spans = &self.lock().spans;
        spans
            .iter()
            .filter(|(start, _)| (from..to).contains(start))
            .count()
    }

    /// Stops listening and closes its connections: the endpoint refuses connections, as a
    /// stopped service does.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            let aborter = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                aborter.abort();
            }
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.address).await?;
        self.serve(listener);
        Ok(())
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(forward)
            .with_state(self.forward.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        self.running = Some((stop, task));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.forward
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some((_, task)) = self.running.take() {
            task.abort();
        }
    }
}

async fn forward(
    State(forward): State<Forward>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let response = answer(&forward, method, uri, headers, body).await;
    forward
        .shared
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .spans
        .push((arrived, Instant::now()));
    response
}

async fn answer(
    forward: &Forward,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let fault = {
        let mut shared = forward
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *shared.seen.entry(target.clone()).or_default() += 1;
        let text = String::from_utf8_lossy(&body);
        let rule = shared.rules.iter_mut().find(|rule| {
            rule.target == target
                && rule.remaining.is_none_or(|remaining| remaining > 0)
                && rule.body.iter().all(|part| text.contains(part.as_str()))
        });
        rule.map(|rule| {
            if let Some(remaining) = rule.remaining.as_mut() {
                *remaining -= 1;
            }
            rule.fault
        })
    };
    if let Some(fault) = fault {
        let (status, code) = match fault {
            Fault::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
            ),
            Fault::Throttled => (StatusCode::BAD_REQUEST, "ThrottlingException"),
        };
        let body = format!(r#"{{"__type":"{code}","message":"injected by the test"}}"#);
        return (
            status,
            [("content-type", "application/x-amz-json-1.1")],
            body,
        )
            .into_response();
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = forward
        .http
        .request(method, format!("{}{path}", forward.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let mut out = HeaderMap::new();
            for (name, value) in answer.headers() {
                if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                    out.append(name, value.clone());
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            (status, out, bytes).into_response()
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}
