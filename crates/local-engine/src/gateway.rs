//! The API Gateway stand-in: an HTTP request becomes the REST API (v1) proxy event Lambda would
//! receive (parsed by `lambda_http` exactly as in Lambda), and the function's proxy response
//! becomes the HTTP response again.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine as _;
use serde_json::{Value, json};

/// The stage API Gateway puts in front of every path (`/Prod/...`, as SAM deploys it).
pub const STAGE: &str = "Prod";

/// A request header (not passed on) asking the stand-in to deliver the body base64-encoded, as
/// API Gateway does for binary media types.
pub const BASE64_BODY_HEADER: &str = "x-e2e-base64-body";

/// The execute-api host the events name.
pub const API_HOST: &str = "abc123defg.execute-api.eu-west-1.amazonaws.com";

/// One HTTP request as API Gateway sees it, before it becomes an event.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The matched resource, e.g. `/integration/{proxy+}`.
    pub resource: &'a str,
    /// The path the function sees (no stage, no local stack prefix).
    pub path: &'a str,
    /// Path parameters of the matched resource (`proxy` of `{proxy+}`).
    pub path_parameters: &'a BTreeMap<String, String>,
    /// The method.
    pub method: &'a Method,
    /// The request URI (for the query string).
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The raw body.
    pub body: &'a [u8],
}

/// The API Gateway REST (v1) proxy event for one HTTP request: headers (single and multi-value,
/// names as sent), query string parameters, path parameters, the body as text or base64
/// (`isBase64Encoded`) when it is not UTF-8 or when the request carries [`BASE64_BODY_HEADER`].
pub fn rest_event(request: &HttpRequest<'_>) -> Value {
    let mut single = serde_json::Map::new();
    let mut multi: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, value) in request.headers {
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
    let query = request.uri.query().unwrap_or("");
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        query_single.insert(name.to_string(), json!(value));
        query_multi
            .entry(name.to_string())
            .or_default()
            .push(json!(value));
    }
    let force_base64 = request.headers.contains_key(BASE64_BODY_HEADER);
    let (body, is_base64) = match std::str::from_utf8(request.body) {
        _ if request.body.is_empty() => (Value::Null, false),
        Ok(text) if !force_base64 => (json!(text), false),
        _ => (
            json!(base64::engine::general_purpose::STANDARD.encode(request.body)),
            true,
        ),
    };
    let path_parameters = (!request.path_parameters.is_empty()).then_some(request.path_parameters);
    let method = request.method.as_str();
    json!({
        "resource": request.resource,
        "path": request.path,
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": (!query_single.is_empty()).then_some(query_single),
        "multiValueQueryStringParameters": (!query_multi.is_empty()).then_some(query_multi),
        "pathParameters": path_parameters,
        "stageVariables": null,
        "requestContext": {
            "resourceId": "k1m2n3",
            "resourcePath": request.resource,
            "httpMethod": method,
            "path": format!("/{STAGE}{}", request.path),
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
pub fn canonical_header(name: &str) -> String {
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

/// An API Gateway proxy response (`statusCode`, `headers`, `multiValueHeaders`, `body`,
/// `isBase64Encoded`) as HTTP; anything else is a 502, as API Gateway answers a malformed
/// Lambda response.
pub fn proxy_response_into_http(response: &Value) -> axum::response::Response {
    let Some(status) = response["statusCode"]
        .as_u64()
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
    else {
        tracing::error!("the function returned no proxy response");
        return (
            StatusCode::BAD_GATEWAY,
            [("content-type", "application/json")],
            r#"{"message": "Internal server error"}"#,
        )
            .into_response();
    };
    let mut headers = HeaderMap::new();
    for (name, value) in response["headers"].as_object().into_iter().flatten() {
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::from_bytes(name.as_bytes()),
            value.as_str().map(HeaderValue::from_str),
        ) {
            headers.insert(name, value);
        }
    }
    let multi = response["multiValueHeaders"]
        .as_object()
        .into_iter()
        .flatten();
    for (name, values) in multi {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        headers.remove(&name);
        for value in values.as_array().into_iter().flatten() {
            if let Some(Ok(value)) = value.as_str().map(HeaderValue::from_str) {
                headers.append(name.clone(), value);
            }
        }
    }
    let body = response["body"].as_str().unwrap_or_default();
    let body = if response["isBase64Encoded"].as_bool().unwrap_or(false) {
        match base64::engine::general_purpose::STANDARD.decode(body) {
            Ok(bytes) => bytes,
            Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
        }
    } else {
        body.as_bytes().to_vec()
    };
    (status, headers, body).into_response()
}

/// The `message` of a function's answer, for progress lines: the `message` member of a JSON
/// body (every handler of the engine answers `{"message": ...}`, which never holds a secret),
/// else the start of the body text.
pub fn response_message(payload: &Value) -> String {
    if let Some(error) = payload["errorMessage"].as_str() {
        return error.chars().take(120).collect();
    }
    let body = payload["body"].as_str().unwrap_or_default();
    // A page: its title says what it is.
    if let Some(title) = body
        .split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
        .map(|(title, _)| title)
    {
        return format!("page \"{}\"", title.chars().take(100).collect::<String>());
    }
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|b| b["message"].as_str().map(str::to_owned));
    message.unwrap_or_else(|| body.chars().take(120).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_page_is_named_by_its_title() {
        let page = json!({"statusCode": 200, "body": "<!DOCTYPE html>\n<html><head><title>Connect Lansweeper</title></head></html>"});
        assert_eq!(response_message(&page), "page \"Connect Lansweeper\"");
        let message = json!({"statusCode": 400, "body": "{\"message\":\"Bad\"}"});
        assert_eq!(response_message(&message), "Bad");
    }

    #[test]
    fn requests_become_rest_events_that_lambda_http_parses() {
        let mut headers = HeaderMap::new();
        headers.insert("x-4me-delivery", HeaderValue::from_static("d-1"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let uri: Uri = "/typeform/integration/?account=acme".parse().unwrap();
        let params = BTreeMap::from([("proxy".to_owned(), "acme/s3cr3t".to_owned())]);
        let event = rest_event(&HttpRequest {
            resource: "/integration/{proxy+}",
            path: "/integration/acme/s3cr3t",
            path_parameters: &params,
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
            body: b"{\"jwt\":\"x\"}",
        });
        assert_eq!(event["headers"]["X-4me-Delivery"], "d-1");
        assert_eq!(event["queryStringParameters"]["account"], "acme");
        assert_eq!(event["pathParameters"]["proxy"], "acme/s3cr3t");
        assert_eq!(event["isBase64Encoded"], false);
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        assert_eq!(request.method(), "POST");
        assert_eq!(
            app_builder_core::events::account_param(&request).as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn malformed_proxy_responses_are_bad_gateway() {
        let response = proxy_response_into_http(&json!({"body": "x"}));
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let response = proxy_response_into_http(&json!({
            "statusCode": 302,
            "multiValueHeaders": {"location": ["https://acme.example/x"]},
            "body": ""
        }));
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["location"], "https://acme.example/x");
    }
}
