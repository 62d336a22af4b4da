//! A local stand-in for API Gateway: serves a real Lambda HTTP handler on `127.0.0.1`, turning
//! each HTTP request into the API Gateway REST (v1) proxy event Lambda would receive (parsed by
//! `lambda_http` exactly as in Lambda) and the handler's `Response<Body>` back into HTTP.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine as _;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

/// The stage API Gateway puts in front of every path (`/Prod/...`, as SAM deploys it).
pub const STAGE: &str = "Prod";

/// A request header (not passed on) asking the stand-in to deliver the body base64-encoded.
pub const BASE64_BODY_HEADER: &str = "x-e2e-base64-body";

/// The execute-api host the events name.
pub const API_HOST: &str = "abc123defg.execute-api.eu-west-1.amazonaws.com";

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
/// (`statusCode`, `headers`, `multiValueHeaders`, `body`, `isBase64Encoded`), which is sent back.
pub async fn serve_payload<H, F>(resource: &str, function: H) -> Served
where
    H: Fn(Value) -> F + Send + Sync + 'static,
    F: Future<Output = Value> + Send + 'static,
{
    let function = Arc::new(function);
    let resource_owned = resource.to_owned();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let function = Arc::clone(&function);
            let resource = resource_owned.clone();
            async move {
                let event = rest_event(&resource, &method, &uri, &headers, &body);
                proxy_response_into_http(&function(event).await)
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

/// The API Gateway REST (v1) proxy event for one HTTP request: headers (single and multi-value,
/// names as sent), query string parameters, the path without the stage, the body as text or
/// base64 (`isBase64Encoded`) when it is not UTF-8 or when the request carries the test header
/// [`BASE64_BODY_HEADER`] (as API Gateway does for binary media types).
pub fn rest_event(
    resource: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Value {
    let mut single = serde_json::Map::new();
    let mut multi: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        let name = canonical_header(name.as_str());
        if name == "Host" || name.eq_ignore_ascii_case(BASE64_BODY_HEADER) {
            continue;
        }
        single.insert(name.clone(), json!(value));
        multi.entry(name).or_default().push(json!(value));
    }
    single.insert("Host".into(), json!(API_HOST));
    multi.insert("Host".into(), vec![json!(API_HOST)]);

    let mut query_single = serde_json::Map::new();
    let mut query_multi: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, value) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        query_single.insert(name.to_string(), json!(value));
        query_multi
            .entry(name.to_string())
            .or_default()
            .push(json!(value));
    }
    let stage_prefix = format!("/{STAGE}");
    let path = uri
        .path()
        .strip_prefix(&stage_prefix)
        .unwrap_or(uri.path())
        .to_owned();
    let force_base64 = headers.contains_key(BASE64_BODY_HEADER);
    let (body, is_base64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (Value::Null, false),
        Ok(text) if !force_base64 => (json!(text), false),
        _ => (
            json!(base64::engine::general_purpose::STANDARD.encode(body)),
            true,
        ),
    };
    // A greedy proxy resource passes the rest of the path as `pathParameters.proxy`.
    let path_parameters = resource
        .strip_suffix("{proxy+}")
        .and_then(|base| path.strip_prefix(base))
        .map(|proxy| json!({ "proxy": proxy }));
    json!({
        "resource": resource,
        "path": path,
        "httpMethod": method.as_str(),
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": (!query_single.is_empty()).then_some(query_single),
        "multiValueQueryStringParameters": (!query_multi.is_empty()).then_some(query_multi),
        "pathParameters": path_parameters,
        "stageVariables": null,
        "requestContext": {
            "resourceId": "k1m2n3",
            "resourcePath": resource,
            "httpMethod": method.as_str(),
            "path": uri.path(),
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": "abc123defg",
            "requestId": uuid::Uuid::new_v4().to_string(),
            "identity": {"sourceIp": "203.0.113.7"},
            "domainName": API_HOST,
            "apiId": "abc123defg"
        },
        "body": body,
        "isBase64Encoded": is_base64
    })
}

/// Header names as clients send them (`X-4me-Delivery`, `Content-Type`): API Gateway passes the
/// sender's spelling through, and hyper lower-cases it.
fn canonical_header(name: &str) -> String {
    match name {
        "x-4me-delivery" => "X-4me-Delivery".to_owned(),
        "x-xurrent-delivery" => "X-Xurrent-Delivery".to_owned(),
        "typeform-signature" => "Typeform-Signature".to_owned(),
        other => other
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
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

/// An API Gateway proxy response (`statusCode`, headers, `body`, `isBase64Encoded`) as HTTP.
fn proxy_response_into_http(response: &Value) -> axum::response::Response {
    let status = response["statusCode"]
        .as_u64()
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or_else(|| panic!("not a proxy response: {response}"));
    let mut headers = HeaderMap::new();
    let single = response["headers"].as_object().into_iter().flatten();
    for (name, value) in single {
        if let (Ok(name), Some(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            value.as_str(),
        ) {
            headers.insert(name, axum::http::HeaderValue::from_str(value).unwrap());
        }
    }
    let multi = response["multiValueHeaders"]
        .as_object()
        .into_iter()
        .flatten();
    for (name, values) in multi {
        let Ok(name) = axum::http::HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        headers.remove(&name);
        for value in values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            headers.append(
                name.clone(),
                axum::http::HeaderValue::from_str(value).unwrap(),
            );
        }
    }
    let body = response["body"].as_str().unwrap_or_default();
    let body = if response["isBase64Encoded"].as_bool().unwrap_or(false) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    } else {
        body.as_bytes().to_vec()
    };
    (status, headers, body).into_response()
}
