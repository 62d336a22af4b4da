//! A catch-all HTTP server that records every request (method, path, headers, body) and answers
//! a configurable status with an empty JSON object.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

/// One request received by a [`CaptureServer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedRequest {
    /// The HTTP method (`POST`).
    pub method: String,
    /// The path and query (`/notes?x=1`).
    pub path: String,
    /// Headers as received (names lower case), in order.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl CapturedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
    }
}

struct CaptureState {
    requests: Vec<CapturedRequest>,
    status: StatusCode,
}

struct Inner {
    state: Arc<Mutex<CaptureState>>,
    url: String,
    _shutdown: oneshot::Sender<()>,
}

/// Handle of a running capture server (cheap to clone).
#[derive(Clone)]
pub struct CaptureServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CaptureServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureServer")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl CaptureServer {
    /// Starts the server on `127.0.0.1` with an ephemeral port; it answers 200 until told
    /// otherwise ([`CaptureServer::set_status`]).
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(CaptureState {
            requests: Vec::new(),
            status: StatusCode::OK,
        }));
        let router = Router::new().fallback(capture).with_state(state.clone());
        let (url, shutdown) = super::serve(router).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                state,
                url,
                _shutdown: shutdown,
            }),
        })
    }

    /// Base URL, `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// The status of every following answer (an invalid code is treated as 500).
    pub fn set_status(&self, status: u16) {
        self.lock().status =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<CapturedRequest> {
        self.lock().requests.clone()
    }

    /// Waits until at least `count` requests arrived or `timeout` passed; returns them.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<CapturedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= count || tokio::time::Instant::now() >= deadline {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, CaptureState> {
        lock(&self.inner.state)
    }
}

fn lock(state: &Mutex<CaptureState>) -> MutexGuard<'_, CaptureState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn capture(
    State(state): State<Arc<Mutex<CaptureState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let headers = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut state = lock(&state);
    state.requests.push(CapturedRequest {
        method: method.as_str().to_owned(),
        path,
        headers,
        body: body.to_vec(),
    });
    (state.status, axum::Json(serde_json::json!({}))).into_response()
}
