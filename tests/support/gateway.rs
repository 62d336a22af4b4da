//! A local stand-in for API Gateway: serves a real Lambda HTTP handler on `127.0.0.1`, turning
//! each HTTP request into the API Gateway REST (v1) proxy event Lambda would receive (parsed by
//! `lambda_http` exactly as in Lambda) and the handler's `Response<Body>` back into HTTP. The
//! event and response conversions are the local engine's (`app_builder_local::gateway`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use app_builder_core::events::InvocationFailed;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

#[allow(unused_imports, reason = "each test binary uses part of the support")]
pub use app_builder_local::gateway::{API_HOST, BASE64_BODY_HEADER, STAGE};

/// A served function: its public URL (`http://127.0.0.1:<port>/Prod<resource>`).
#[derive(Debug, Clone)]
pub struct Served {
    /// The URL the sandbox (or a test) calls.
    pub url: String,
}

/// Serves a `lambda_http` handler at `resource` (e.g. `/secrets`); every path is accepted and
/// handed over, as a greedy proxy resource would. Returns its URL.
pub async fn serve<H, F>(resource: &str, handler: H) -> Served
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let resource_owned = resource.to_owned();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let handler = Arc::clone(&handler);
            let resource = resource_owned.clone();
            async move {
                let event = rest_event(&resource, &method, &uri, &headers, &body);
                let request = lambda_http::request::from_str(&event.to_string()).unwrap();
                into_http(handler(request).await)
            }
        },
    );
    listen(resource, app).await
}

/// Serves a `lambda_runtime` function taking the raw payload (`serde_json::Value`) at
/// `resource`: it gets the REST (v1) proxy event as JSON and must answer the proxy response
/// (`statusCode`, `headers`, `multiValueHeaders`, `body`, `isBase64Encoded`), which is sent back;
/// a function error is answered as API Gateway answers it (502).
pub async fn serve_payload<H, F>(resource: &str, function: H) -> Served
where
    H: Fn(Value) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Value, InvocationFailed>> + Send + 'static,
{
    let function = Arc::new(function);
    let resource_owned = resource.to_owned();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let function = Arc::clone(&function);
            let resource = resource_owned.clone();
            async move {
                let event = rest_event(&resource, &method, &uri, &headers, &body);
                let result = function(event).await.unwrap_or_else(
                    |failed| serde_json::json!({ "errorType": "InvocationFailed", "errorMessage": failed.to_string() }),
                );
                proxy_response_into_http(&result)
            }
        },
    );
    listen(resource, app).await
}

async fn listen(resource: &str, app: axum::Router) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // A greedy resource (`/integration/{proxy+}`) is served below its base (`/integration/`).
    let base = resource.strip_suffix("{proxy+}").unwrap_or(resource);
    let url = format!("http://{}/{STAGE}{base}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Served { url }
}

/// The API Gateway REST (v1) proxy event for one HTTP request to `resource` (the local engine's
/// API Gateway stand-in, with the stage `Prod` stripped from the path).
pub fn rest_event(
    resource: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Value {
    let stage_prefix = format!("/{STAGE}");
    let path = uri.path().strip_prefix(&stage_prefix).unwrap_or(uri.path());
    // A greedy proxy resource passes the rest of the path as `pathParameters.proxy`.
    let path_parameters: BTreeMap<String, String> = resource
        .strip_suffix("{proxy+}")
        .and_then(|base| path.strip_prefix(base))
        .map(|proxy| BTreeMap::from([("proxy".to_owned(), proxy.to_owned())]))
        .unwrap_or_default();
    app_builder_local::gateway::rest_event(&app_builder_local::gateway::HttpRequest {
        resource,
        path,
        path_parameters: &path_parameters,
        method,
        uri,
        headers,
        body,
    })
}

/// The handler's response as an HTTP response (status, headers, body bytes).
fn into_http(response: Response<Body>) -> axum::response::Response {
    let (parts, body) = response.into_parts();
    let status = StatusCode::from_u16(parts.status.as_u16()).unwrap();
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_str().as_bytes()),
            axum::http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    (status, headers, body.as_ref().to_vec()).into_response()
}

/// An API Gateway proxy response as HTTP (a malformed one fails the test).
fn proxy_response_into_http(response: &Value) -> axum::response::Response {
    assert!(
        response["statusCode"].is_u64(),
        "not a proxy response: {response}"
    );
    app_builder_local::gateway::proxy_response_into_http(response)
}
