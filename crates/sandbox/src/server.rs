//! HTTP layer: routing, faults, authentication, rate limiting, REST and async results.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::schema::{self, RequestCtx, SandboxSchema};
use crate::state::HourlyLimits;
use crate::state::RateInfo;
use crate::{Fault, FaultTarget, OperationAnswer, Shared};

#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    schema: SandboxSchema,
}

/// Builds the axum router of the sandbox.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let schema = schema::build(shared.clone());
    let app = App {
        shared: shared.clone(),
        schema,
    };
    Router::new()
        .route("/oauth/token", post(oauth_token))
        .route("/graphql", post(graphql))
        .route("/graphql/", post(graphql))
        .route("/v1/{resource}/{id}/avatar", post(rest_avatar))
        .route("/async/{file}", get(async_result))
        .route("/webhooks/{id}/verify", get(webhook_verify))
        .route("/app_instances/{id}/confirm", get(confirm_configuration))
        .fallback(fallback)
        .with_state(app)
        .merge(crate::app_store::router(shared))
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn set_header(resp: &mut Response, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(name, v);
    }
}

/// 4me's budget headers: the hourly request window (`x-ratelimit-*`) and the hourly query-cost
/// window (`x-costlimit-*`, with the cost of this request).
fn with_rate(mut resp: Response, info: RateInfo) -> Response {
    set_header(&mut resp, "x-ratelimit-limit", info.limit.to_string());
    set_header(
        &mut resp,
        "x-ratelimit-remaining",
        info.remaining.to_string(),
    );
    set_header(&mut resp, "x-ratelimit-reset", info.reset.to_string());
    set_header(&mut resp, "x-costlimit-limit", info.cost_limit.to_string());
    set_header(&mut resp, "x-costlimit-cost", info.cost.to_string());
    set_header(
        &mut resp,
        "x-costlimit-remaining",
        info.cost_remaining.to_string(),
    );
    set_header(&mut resp, "x-costlimit-reset", info.reset.to_string());
    if info.exceeded {
        set_header(&mut resp, "retry-after", info.retry_after.to_string());
    }
    resp
}

/// The `confirmation_url` of a configuration link: the user confirms, 4me enables the instance.
async fn confirm_configuration(State(app): State<App>, Path(id): Path<String>) -> Response {
    match crate::webhooks::confirm_configuration(&app.shared, &id).await {
        Ok(_) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Installation confirmed</title></head><body><h1>Installation confirmed</h1><p>The app is enabled.</p></body></html>",
        )
            .into_response(),
        Err(e) => json_response(StatusCode::NOT_FOUND, json!({"message": e.to_string()})),
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Rate info of the caller without consuming (for responses that are not counted).
fn peek_rate(shared: &Shared, headers: &HeaderMap) -> RateInfo {
    let key = bearer(headers).unwrap_or_else(|| "anonymous".to_owned());
    shared.lock().rate(&key, false)
}

/// Counts the request and serves the next matching fault, if any.
async fn gate(shared: &Shared, endpoint: FaultTarget, headers: &HeaderMap) -> Option<Response> {
    let fault = {
        let mut state = shared.lock();
        let stats = &mut state.stats;
        match endpoint {
            FaultTarget::OAuth => stats.token_requests += 1,
            FaultTarget::GraphQl => stats.graphql_requests += 1,
            FaultTarget::Rest => stats.rest_requests += 1,
            FaultTarget::AsyncResult => stats.async_result_requests += 1,
            FaultTarget::Any => {}
        }
        state.take_fault(endpoint)
    };
    match fault? {
        Fault::Delay { delay, .. } => {
            tokio::time::sleep(delay).await;
            None
        }
        Fault::TooManyRequests {
            retry_after_secs, ..
        } => {
            let info = peek_rate(shared, headers);
            let mut resp = with_rate(
                json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"errors": [{"message": "Too Many Requests"}]}),
                ),
                info,
            );
            set_header(&mut resp, "retry-after", retry_after_secs.to_string());
            Some(resp)
        }
        Fault::ServerError { status, .. } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = status.canonical_reason().unwrap_or("Server Error");
            Some(with_rate(
                json_response(status, json!({"errors": [{"message": message}]})),
                peek_rate(shared, headers),
            ))
        }
    }
}

fn unauthorized(message: &str) -> Response {
    with_rate(
        json_response(
            StatusCode::UNAUTHORIZED,
            json!({"errors": [{"message": message}], "message": message}),
        ),
        RateInfo::uncharged(HourlyLimits::default()),
    )
}

/// Checks bearer token and `X-4me-Account`, then counts the request in the token's window.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<(String, RateInfo), Box<Response>> {
    let token = bearer(headers).ok_or_else(|| Box::new(unauthorized("Missing bearer token")))?;
    let mut state = shared.lock();
    let account = state
        .token_account(&token)
        .ok_or_else(|| Box::new(unauthorized("Invalid or expired access token")))?;
    let header_account = headers
        .get("x-4me-account")
        .or_else(|| headers.get("x-xurrent-account"))
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Box::new(unauthorized("Missing X-4me-Account header")))?;
    if header_account != account {
        return Err(Box::new(unauthorized(
            "The access token is not valid for the X-4me-Account",
        )));
    }
    let info = state.rate(&token, true);
    if info.exceeded {
        return Err(Box::new(with_rate(
            json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"errors": [{"message": "Too Many Requests"}]}),
            ),
            info,
        )));
    }
    Ok((account, info))
}

async fn oauth_token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(resp) = gate(&app.shared, FaultTarget::OAuth, &headers).await {
        return resp;
    }
    let info = RateInfo::uncharged(app.shared.lock().hourly);
    let params: std::collections::HashMap<String, String> =
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => map
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
                .collect(),
            _ => url::form_urlencoded::parse(&body).into_owned().collect(),
        };
    let error = |code: &str, description: &str| {
        with_rate(
            json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": code, "error_description": description}),
            ),
            info,
        )
    };
    match params.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return error(
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            );
        }
        None => return error("invalid_request", "Missing grant_type."),
    }
    let (Some(client_id), Some(client_secret)) =
        (params.get("client_id"), params.get("client_secret"))
    else {
        return error("invalid_client", "Client authentication failed.");
    };
    let issued = app.shared.lock().issue_token(client_id, client_secret);
    match issued {
        Some((token, expires_in)) => with_rate(
            json_response(
                StatusCode::OK,
                json!({
                    "access_token": token,
                    "token_type": "bearer",
                    "expires_in": expires_in,
                    "created_at": crate::state::unix_now(),
                }),
            ),
            info,
        ),
        None => error("invalid_client", "Client authentication failed."),
    }
}

async fn graphql(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(resp) = gate(&app.shared, FaultTarget::GraphQl, &headers).await {
        return resp;
    }
    let (account, info) = match authenticate(&app.shared, &headers) {
        Ok(ok) => ok,
        Err(resp) => return *resp,
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return with_rate(
                json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"errors": [{"message": format!("Invalid GraphQL request: {e}")}]}),
                ),
                info,
            );
        }
    };
    if let Err(refusal) = crate::contract::admit(&request) {
        return with_rate(json_response(StatusCode::OK, refusal), info);
    }
    let injected = {
        let mut state = app.shared.lock();
        if state.operation_faults.is_empty() {
            None
        } else {
            state.take_operation_fault(&account, &crate::operation_names(&request))
        }
    };
    match injected {
        Some(OperationAnswer::ServerError { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = status.canonical_reason().unwrap_or("Server Error");
            return with_rate(
                json_response(status, json!({"errors": [{"message": message}]})),
                info,
            );
        }
        Some(OperationAnswer::GraphQlError { message }) => {
            return with_rate(
                json_response(
                    StatusCode::OK,
                    json!({"data": null, "errors": [{"message": message}]}),
                ),
                info,
            );
        }
        None => {}
    }
    let response = app
        .schema
        .execute(request.data(RequestCtx { account }))
        .await;
    let body = serde_json::to_value(&response)
        .unwrap_or_else(|e| json!({"errors": [{"message": e.to_string()}]}));
    with_rate(json_response(StatusCode::OK, body), info)
}

/// Maps a REST resource name to the record type.
fn resource_kind(resource: &str) -> Option<&'static str> {
    Some(match resource {
        "app_offering_automation_rules" => "AppOfferingAutomationRule",
        "app_offerings" => "AppOffering",
        "app_instances" => "AppInstance",
        "configuration_items" => "ConfigurationItem",
        "products" => "Product",
        "ui_extensions" => "UiExtension",
        "webhooks" => "Webhook",
        "webhook_policies" => "WebhookPolicy",
        "requests" => "Request",
        "people" => "Person",
        _ => return None,
    })
}

/// Finds the node id of a record addressed by node id or numeric id.
fn rest_lookup(shared: &Shared, resource: &str, id: &str, account: &str) -> Option<String> {
    let kind = resource_kind(resource)?;
    let state = shared.lock();
    if let Some(r) = state.find(kind, account, id) {
        return Some(r.id.clone());
    }
    let num: u64 = id.parse().ok()?;
    state
        .records
        .values()
        .find(|r| r.kind == kind && r.account == account && r.num == num)
        .map(|r| r.id.clone())
}

fn not_found(info: RateInfo) -> Response {
    with_rate(
        json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
        info,
    )
}

async fn rest_avatar(
    State(app): State<App>,
    Path((resource, id)): Path<(String, String)>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    if let Some(resp) = gate(&app.shared, FaultTarget::Rest, &headers).await {
        return resp;
    }
    let (account, info) = match authenticate(&app.shared, &headers) {
        Ok(ok) => ok,
        Err(resp) => return *resp,
    };
    let Some(node) = rest_lookup(&app.shared, &resource, &id, &account) else {
        return not_found(info);
    };
    let unprocessable = |message: String| {
        with_rate(
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": message}),
            ),
            info,
        )
    };
    let mut multipart = match axum::extract::Multipart::from_request(request, &()).await {
        Ok(m) => m,
        Err(e) => return unprocessable(format!("Expected multipart/form-data: {e}")),
    };
    let mut file_name = None;
    let mut avatar = None;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                let bytes = match field.bytes().await {
                    Ok(b) => b,
                    Err(e) => return unprocessable(format!("Invalid multipart field: {e}")),
                };
                match name.as_str() {
                    "avatar_file_name" => {
                        file_name = Some(String::from_utf8_lossy(&bytes).into_owned())
                    }
                    "avatar" => avatar = Some(bytes.to_vec()),
                    other => return unprocessable(format!("Unknown field '{other}'")),
                }
            }
            Ok(None) => break,
            Err(e) => return unprocessable(format!("Invalid multipart body: {e}")),
        }
    }
    let (Some(file_name), Some(avatar)) = (file_name, avatar) else {
        return unprocessable("Fields avatar_file_name and avatar are required".to_owned());
    };
    if avatar.is_empty() {
        return unprocessable("Avatar is empty".to_owned());
    }
    let avatar_url = format!("{}/avatars/{}/{}", app.shared.base_url, node, file_name);
    let num = {
        let mut state = app.shared.lock();
        match state.records.get_mut(&node) {
            Some(record) => {
                record
                    .fields
                    .insert("avatar".into(), Value::String(avatar_url.clone()));
                let num = record.num;
                state.avatars.insert(node.clone(), (file_name, avatar));
                num
            }
            None => return not_found(info),
        }
    };
    with_rate(
        json_response(
            StatusCode::OK,
            json!({"id": num, "nodeID": node, "avatar": avatar_url}),
        ),
        info,
    )
}

async fn async_result(
    State(app): State<App>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(resp) = gate(&app.shared, FaultTarget::AsyncResult, &headers).await {
        return resp;
    }
    let Some(id) = file.strip_suffix(".json") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut state = app.shared.lock();
    match state.async_results.get_mut(id) {
        Some(result) if result.polls_remaining > 0 => {
            result.polls_remaining -= 1;
            StatusCode::NOT_FOUND.into_response()
        }
        Some(result) => json_response(StatusCode::OK, result.body.clone()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(serde::Deserialize)]
struct VerifyQuery {
    code: Option<String>,
}

async fn webhook_verify(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(query): Query<VerifyQuery>,
) -> Response {
    let mut state = app.shared.lock();
    let expected = state.verify_codes.get(&id).cloned();
    match (expected, query.code) {
        (Some(expected), Some(code)) if expected == code => {
            state.verify_codes.remove(&id);
            if let Some(record) = state.records.get_mut(&id) {
                record.fields.insert("active".into(), Value::Bool(true));
            }
            (StatusCode::OK, "Webhook verified").into_response()
        }
        _ => (StatusCode::NOT_FOUND, "Unknown or expired verification").into_response(),
    }
}

async fn fallback(State(app): State<App>, headers: HeaderMap) -> Response {
    with_rate(
        json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"})),
        peek_rate(&app.shared, &headers),
    )
}
