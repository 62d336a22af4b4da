//! Helpers over the events the engine's Lambda functions receive.
//!
//! - HTTP requests (API Gateway REST v1, HTTP API v2 and function URLs) arrive as
//!   [`lambda_http::Request`]: [`header`], [`delivery_id`], [`body_bytes`], [`query_param`],
//!   [`path_param`] and [`account_param`] read them uniformly whatever the source format.
//! - `Installation changed` events from the engine's bus become an [`InstallationEvent`].
//! - SQS partial batch failures are reported with [`batch_failures`].
//! - [`EngineEvent::classify`] sorts a raw Lambda payload into HTTP / installation / schedule /
//!   SQS, so one function can serve all of them; [`http_response_payload`] turns an HTTP response back into the
//!   payload API Gateway (v1 or v2) or a function URL expects.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

use crate::bus::{EVENT_SOURCE, InstallationEvent};
use crate::response::ApiError;

/// `source` of EventBridge scheduled events.
pub const SCHEDULE_SOURCE: &str = "aws.events";

/// Headers carrying the webhook delivery id, in order of preference (4me, then Xurrent branding).
pub const DELIVERY_HEADERS: [&str; 2] = ["x-4me-delivery", "x-xurrent-delivery"];

/// Errors raised while interpreting an event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The payload claims a kind (by `source` or `Records`) but does not have its shape.
    #[error("malformed {kind} event: {source}")]
    Malformed {
        /// The kind of event the payload was classified as.
        kind: &'static str,
        /// The deserialisation error.
        source: serde_json::Error,
    },
    /// The payload matches none of the supported event kinds.
    #[error("unrecognised Lambda payload: {0}")]
    Unrecognised(serde_json::Error),
    /// A response could not be converted into a Lambda payload.
    #[error("cannot serialise the HTTP response payload: {0}")]
    Response(serde_json::Error),
    /// The request says its body is base64 (`isBase64Encoded`) and it is not.
    #[error("the request body is not valid base64")]
    NotBase64,
    /// The request body is larger than [`MAX_BODY_BYTES`].
    #[error("the request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// The event has the request shape but no HTTP request can be built from it (say, a
    /// `domainName` that is no host); the event library panics on such events.
    #[error("no HTTP request can be built from the event")]
    Unbuildable,
}

/// The largest request body a function accepts (1 MiB); a larger one is refused with 413
/// before anything reads it. The functions' requests are small: a 4me delivery is one signed
/// token, a Typeform response a few kilobytes, the Lansweeper callback a `GET`. (API Gateway
/// itself accepts up to 10 MB.)
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Length above which a request body is not even read into the payload (see
/// [`ScreenedPayload`]): the base64 text of [`MAX_BODY_BYTES`] bytes. Any longer body is refused
/// whether it is base64 or not.
const UNREAD_BODY_LEN: usize = MAX_BODY_BYTES.div_ceil(3) * 4;

/// The member that stands for a body too long to read ([`UNREAD_BODY_LEN`]): its length. No
/// event has it; [`EngineEvent::classify`] refuses a payload carrying it with 413.
pub const UNREAD_BODY_MEMBER: &str = "appBuilderUnreadBodyLength";

/// A raw Lambda payload, read from the runtime's JSON as a [`Value`] except for a request
/// `body` longer than any accepted one, which is left unread and replaced by
/// [`UNREAD_BODY_MEMBER`]. Reading it into the value would copy it (6 MB for a 6 MB body, on top
/// of the runtime's own buffer) only for the classifier to refuse it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScreenedPayload(pub Value);

impl<'de> serde::Deserialize<'de> for ScreenedPayload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only a body is ever left unread; the payload itself always reads.
        let read = deserializer.deserialize_any(Screen { at_body: false })?;
        Ok(Self(read.unwrap_or(Value::Null)))
    }
}

/// Reads JSON as [`Value`] does, except a string longer than [`UNREAD_BODY_LEN`] where it stands
/// for the request body (`at_body`): that one is `Err(length)`, left unread (the JSON reader hands
/// an unescaped string over in place, so it is never copied). At the top level (not `at_body`),
/// the `body` member is read with `at_body`.
#[derive(Clone, Copy)]
struct Screen {
    at_body: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Screen {
    type Value = Result<Value, usize>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Screen {
    type Value = Result<Value, usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.at_body {
            let body = serde::de::value::MapAccessDeserializer::new(map);
            return serde::Deserialize::deserialize(body).map(Ok);
        }
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "body" {
                match map.next_value_seed(Screen { at_body: true })? {
                    Ok(body) => object.insert(key, body),
                    Err(length) => object.insert(UNREAD_BODY_MEMBER.into(), length.into()),
                };
            } else {
                let value = map.next_value::<Value>()?;
                object.insert(key, value);
            }
        }
        Ok(Ok(Value::Object(object)))
    }

    // Anything but an object is no event; it is read as it is, for the classifier to refuse.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Ok)
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(if self.at_body && text.len() > UNREAD_BODY_LEN {
            Err(text.len())
        } else {
            Ok(Value::from(text))
        })
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(Ok(Value::from(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Ok(Value::from(value)))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Ok(Value::from(value)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        Ok(Ok(Value::from(value)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Ok(Value::Null))
    }
}

impl From<EventError> for ApiError {
    fn from(err: EventError) -> Self {
        match err {
            EventError::Malformed { .. } | EventError::Unrecognised(_) => {
                ApiError::BadRequest(err.to_string())
            }
            EventError::Response(_) => ApiError::Internal(err.to_string()),
            EventError::NotBase64 => {
                ApiError::BadRequest("Request body is not valid base64".into())
            }
            EventError::Unbuildable => ApiError::BadRequest("Malformed request event".into()),
            EventError::TooLarge => ApiError::PayloadTooLarge(format!(
                "Request body larger than {MAX_BODY_BYTES} bytes"
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP requests
// ---------------------------------------------------------------------------------------------

/// The value of header `name`, looked up case-insensitively (REST v1 keeps the sender's casing,
/// HTTP API v2 and function URLs lowercase it). `None` when absent or not visible ASCII.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// The webhook delivery id: `X-4me-Delivery`, else `X-Xurrent-Delivery` (first non-empty one).
pub fn delivery_id(req: &Request) -> Option<&str> {
    DELIVERY_HEADERS
        .iter()
        .filter_map(|name| header(req, name))
        .find(|value| !value.is_empty())
}

/// The request body as bytes; lambda_http has already decoded base64 bodies
/// (`isBase64Encoded: true`). Empty when there is no body.
pub fn body_bytes(req: &Request) -> &[u8] {
    req.body().as_ref()
}

/// The first value of query parameter `name`, percent-decoded. Falls back to the URI's query
/// string when the request carries no API Gateway query extension (e.g. built in tests).
pub fn query_param<'a>(req: &'a Request, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    if let Some(value) = req
        .query_string_parameters_ref()
        .and_then(|params| params.first(name))
    {
        return Some(std::borrow::Cow::Borrowed(value));
    }
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// The deadline of the attempt handling `req` (seconds since the epoch): the Lambda invocation's,
/// else `default` from now (local runs, tests). Idempotency claims expire at it, so that a retry
/// of an attempt that died runs again once the attempt can no longer be running.
pub fn attempt_deadline(req: &Request, default: std::time::Duration) -> i64 {
    if let Some(AttemptDeadline(deadline)) = req.extensions().get::<AttemptDeadline>() {
        return *deadline;
    }
    let from_context = req
        .lambda_context_ref()
        .map(|context| context.deadline / 1000)
        .filter(|deadline| *deadline > 0)
        .and_then(|deadline| i64::try_from(deadline).ok());
    from_context.unwrap_or_else(|| deadline_after(default))
}

/// The invocation's deadline carried by a request built from a raw payload
/// ([`EngineEvent::classify_for`]), which has no Lambda context of its own.
#[derive(Debug, Clone, Copy)]
struct AttemptDeadline(i64);

/// The path parameter `name` (e.g. `proxy` of `/integration/{proxy+}`).
pub fn path_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.path_parameters_ref()
        .and_then(|params| params.first(name))
}

/// The customer account of the request (docs/original.md#webhook-receiver): the `account` query parameter when
/// non-empty, else the `account` path parameter when non-empty.
pub fn account_param(req: &Request) -> Option<String> {
    query_param(req, "account")
        .filter(|account| !account.is_empty())
        .map(std::borrow::Cow::into_owned)
        .or_else(|| {
            path_param(req, "account")
                .filter(|account| !account.is_empty())
                .map(str::to_owned)
        })
}

/// The Lambda payload answering `req` with `response`: an API Gateway REST (v1) proxy response
/// when the request came from a REST API, else the HTTP API v2 / function URL format.
pub fn http_response_payload(req: &Request, response: Response<Body>) -> Result<Value, EventError> {
    let (parts, body) = response.into_parts();
    let (is_base64_encoded, body) = match body {
        Body::Empty => (false, None),
        text @ Body::Text(_) => (false, Some(text)),
        binary @ Body::Binary(_) => (true, Some(binary)),
        _ => (false, None),
    };
    let status_code = i64::from(parts.status.as_u16());
    let is_rest = matches!(
        req.request_context_ref(),
        Some(RequestContext::ApiGatewayV1(_))
    );
    if is_rest {
        let mut payload = ApiGatewayProxyResponse::default();
        payload.status_code = status_code;
        payload.multi_value_headers = parts.headers;
        payload.body = body;
        payload.is_base64_encoded = is_base64_encoded;
        serde_json::to_value(payload).map_err(EventError::Response)
    } else {
        let mut payload = ApiGatewayV2httpResponse::default();
        payload.status_code = status_code;
        payload.headers = parts.headers;
        payload.body = body;
        payload.is_base64_encoded = is_base64_encoded;
        serde_json::to_value(payload).map_err(EventError::Response)
    }
}

// ---------------------------------------------------------------------------------------------
// EventBridge: installation events and schedules
// ---------------------------------------------------------------------------------------------

/// Whether an EventBridge event is a scheduled event (`source: aws.events`).
pub fn is_scheduled_event<T>(event: &EventBridgeEvent<T>) -> bool
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    event.source == SCHEDULE_SOURCE
}

/// The `{statusCode, body}` result of a non-HTTP invocation (EventBridge, schedule), as the
/// original returned it; logged at info level for 200, error level otherwise.
pub fn status_payload(response: Response<Body>) -> Value {
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(text) => text.clone(),
        Body::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    };
    if status == 200 {
        tracing::info!(status, "done");
    } else {
        tracing::error!(status, "failed");
    }
    serde_json::json!({ "statusCode": status, "body": body })
}

/// The invocation a raw-payload handler serves: which function was invoked and by when it must
/// be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invocation<'a> {
    /// The invoked function's ARN as the Lambda context gives it (possibly qualified).
    pub function_arn: &'a str,
    /// Seconds since the epoch by which the invocation ends (idempotency claims expire then).
    pub deadline: i64,
}

impl<'a> Invocation<'a> {
    /// The invocation described by a Lambda context; `default` from now when the context has no
    /// deadline.
    pub fn from_context(context: &'a lambda_http::Context, default: std::time::Duration) -> Self {
        let deadline = i64::try_from(context.deadline / 1000)
            .ok()
            .filter(|deadline| *deadline > 0)
            .unwrap_or_else(|| deadline_after(default));
        Self {
            function_arn: &context.invoked_function_arn,
            deadline,
        }
    }

    /// An invocation of `function_arn` that may take `time` from now (local runs, tests).
    pub fn new(function_arn: &'a str, time: std::time::Duration) -> Self {
        Self {
            function_arn,
            deadline: deadline_after(time),
        }
    }
}

fn deadline_after(time: std::time::Duration) -> i64 {
    crate::state::now().saturating_add(i64::try_from(time.as_secs()).unwrap_or(i64::MAX))
}

/// An asynchronously delivered event (the engine's bus, a schedule) whose handling failed in a
/// way a retry may fix. The function returns it to the Lambda runtime as a function error, so
/// that Lambda's asynchronous invocation retries the event (twice, with backoff) and then hands
/// it to the function's on-failure destination; answered as a value, the event would be lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event handling failed with {status}: {body}")]
pub struct InvocationFailed {
    /// The status the handler answered (5xx).
    pub status: u16,
    /// The handler's answer (public message, never a secret).
    pub body: String,
}

/// A function served with raw Lambda payloads (the engine bus's events, schedules, SQS batches
/// and API Gateway requests, sorted by [`EngineEvent::classify`]): every integration function,
/// run in Lambda by [`run_payload_function`] and in the local engine the same way.
pub trait PayloadFunction: Send + Sync {
    /// The binary's name (the `function` dimension of its metrics).
    const NAME: &'static str;
    /// How long one attempt may take when the Lambda context names no deadline.
    const ATTEMPT_TIME: std::time::Duration;

    /// Handles one payload: the answer, or a function error Lambda retries.
    fn handle_payload<'a>(
        &'a self,
        payload: Value,
        invocation: Invocation<'a>,
    ) -> impl Future<Output = Result<Value, InvocationFailed>> + Send + 'a;
}

/// Serves `function` under the Lambda runtime: each invocation's deadline from its context, its
/// metrics written as one EMF line ([`crate::metrics::emit`]) in the scope of the function's
/// settings.
pub async fn run_payload_function<F: PayloadFunction>(
    function: F,
) -> Result<(), lambda_http::Error> {
    use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
    let scope =
        crate::metrics::MetricScope::from_settings(&crate::config::Settings::from_env(), F::NAME);
    let (function, scope) = (&function, &scope);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ScreenedPayload>| async move {
            let invocation = Invocation::from_context(&event.context, F::ATTEMPT_TIME);
            // Boxed: a handler's future is large, and the runtime would copy it on every poll.
            let handled = Box::pin(function.handle_payload(event.payload.0, invocation));
            Ok::<Value, lambda_http::Error>(crate::metrics::emit(scope, handled).await?)
        },
    ))
    .await
}

/// The result of an asynchronously delivered event answered with `response`: a 5xx is an
/// [`InvocationFailed`] (retried), anything else the [`status_payload`].
pub fn event_result(response: Response<Body>) -> Result<Value, InvocationFailed> {
    let payload = status_payload(response);
    let status = payload["statusCode"].as_u64().unwrap_or(500);
    if status >= 500 {
        crate::metrics::count(crate::metrics::EVENTS_FAILED, 1);
        return Err(InvocationFailed {
            status: u16::try_from(status).unwrap_or(500),
            body: payload["body"].as_str().unwrap_or_default().to_owned(),
        });
    }
    Ok(payload)
}

/// Handles an `Installation changed` event at most once per change for `consumer` (EventBridge
/// delivers at least once, and the publisher's retry publishes the same change again under a
/// new event id): the key is the change, the payload the detail. A duplicate gets the recorded
/// result; an attempt still in progress elsewhere, a failed state store and a 5xx are
/// [`InvocationFailed`] (retried); a change id reused with another detail is refused with 400.
pub async fn installation_once<S: crate::state::StateStore>(
    deliveries: &crate::idempotency::Idempotency<S>,
    consumer: &str,
    event: &InstallationEvent,
    deadline: i64,
    handle: impl Future<Output = Response<Body>>,
) -> Result<Value, InvocationFailed> {
    use crate::idempotency::{Once, OnceError};
    let detail = &event.detail;
    let key = format!(
        "{consumer}/{}/{}/installation/{}",
        detail.offering,
        detail.account,
        crate::idempotency::payload_hash(detail.change.as_bytes())
    );
    let payload = serde_json::to_vec(detail).unwrap_or_default();
    let handled = deliveries
        .once(
            &[key],
            &payload,
            deadline,
            async { event_result(handle.await) },
            Value::clone,
        )
        .await;
    crate::metrics::count(crate::metrics::INSTALLATION_EVENTS_HANDLED, 1);
    match handled {
        Ok(Once::Ran(result)) => Ok(result),
        Ok(Once::Duplicate(result)) => {
            tracing::info!(change = %detail.change, "installation change already handled");
            Ok(result)
        }
        Err(OnceError::Failed(failed)) => Err(failed),
        Err(OnceError::Store(error)) => {
            crate::metrics::count(crate::metrics::EVENTS_FAILED, 1);
            tracing::error!(%error, "state store failed, the event will be retried");
            Err(InvocationFailed {
                status: 503,
                body: "State store unavailable".into(),
            })
        }
        Err(OnceError::InProgress(_)) => {
            crate::metrics::count(crate::metrics::EVENTS_FAILED, 1);
            Err(InvocationFailed {
                status: 503,
                body: "The change is being handled by another attempt".into(),
            })
        }
        Err(OnceError::PayloadMismatch(_)) => Ok(serde_json::json!({
            "statusCode": 400,
            "body": "Change id reused with another detail",
        })),
    }
}

/// The Lambda payload answering `req` with `response` ([`http_response_payload`]); a response
/// that cannot be encoded is logged and answered 500.
pub fn http_result(req: &Request, response: Response<Body>) -> Value {
    crate::metrics::http_outcome(response.status());
    http_response_payload(req, response).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot encode the HTTP response");
        serde_json::json!({"statusCode": 500, "body": "{\"message\":\"Internal server error\"}"})
    })
}

/// The answer to an event of a kind the function does not serve (400, not retried).
pub fn unsupported_event() -> Value {
    status_payload(ApiError::BadRequest("Unsupported event".into()).into_response())
}

/// Refuses a request body before anything decodes it: larger than [`MAX_BODY_BYTES`] (or left
/// unread by [`ScreenedPayload`]), or said to be base64 and not (aws_lambda_events panics on that
/// one while building the request).
fn screen_body(payload: &Value) -> Result<(), EventError> {
    use base64::Engine as _;
    if payload.get(UNREAD_BODY_MEMBER).is_some() {
        return Err(EventError::TooLarge);
    }
    let Some(body) = payload.get("body").and_then(Value::as_str) else {
        return Ok(());
    };
    let base64 = payload.get("isBase64Encoded").and_then(Value::as_bool) == Some(true);
    let size = if base64 {
        body.len() / 4 * 3
    } else {
        body.len()
    };
    if size > MAX_BODY_BYTES {
        return Err(EventError::TooLarge);
    }
    if base64
        && base64::engine::general_purpose::STANDARD
            .decode(body)
            .is_err()
    {
        return Err(EventError::NotBase64);
    }
    Ok(())
}

/// The answer to a payload that is no event the engine knows (400, logged, not retried).
pub fn unrecognised_payload(error: EventError) -> Value {
    tracing::warn!(%error, "unrecognised payload");
    if matches!(
        error,
        EventError::NotBase64 | EventError::TooLarge | EventError::Unbuildable
    ) {
        crate::metrics::rejected("body");
    }
    status_payload(ApiError::from(error).into_response())
}

/// The unqualified function ARN (`arn:aws:lambda:<region>:<account>:function:<name>`): a version
/// or alias qualifier of the invoked ARN is dropped, as the function's configuration item holds
/// its own ARN as `systemID`.
pub fn unqualified_function_arn(invoked: &str) -> &str {
    let parts: Vec<&str> = invoked.splitn(8, ':').collect();
    if parts.len() == 8 && parts[0] == "arn" && parts[2] == "lambda" && parts[5] == "function" {
        let qualifier_len = parts[7].len() + 1;
        &invoked[..invoked.len() - qualifier_len]
    } else {
        invoked
    }
}

// ---------------------------------------------------------------------------------------------
// SQS
// ---------------------------------------------------------------------------------------------

/// The partial batch response reporting `message_ids` as failed (requires
/// `FunctionResponseTypes: [ReportBatchItemFailures]` on the event source mapping). An empty
/// list acknowledges the whole batch.
pub fn batch_failures<I, S>(message_ids: I) -> SqsBatchResponse
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut response = SqsBatchResponse::default();
    response.set_failures(message_ids);
    crate::metrics::count(
        crate::metrics::EVENTS_FAILED,
        response.batch_item_failures.len() as u64,
    );
    response
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

/// A Lambda payload sorted by kind.
#[derive(Debug)]
pub enum EngineEvent {
    /// An HTTP request (API Gateway REST v1, HTTP API v2 or function URL).
    Http(Box<Request>),
    /// An `Installation changed` event from the engine's bus.
    Installation(Box<InstallationEvent>),
    /// An EventBridge scheduled event.
    Schedule(Box<EventBridgeEvent<Value>>),
    /// An SQS batch.
    Sqs(SqsEvent),
}

impl EngineEvent {
    /// Classifies a raw payload, in this order: `source` [`EVENT_SOURCE`] → installation event;
    /// `source == "aws.events"` → schedule; a `Records` member → SQS; anything else → HTTP (as
    /// the original's router, whose CloudTrail branch the engine's bus replaces).
    ///
    /// ```
    /// use app_builder_core::bus::LifecycleStep;
    /// use app_builder_core::events::EngineEvent;
    ///
    /// let payload = serde_json::json!({
    ///     "id": "6a7e8feb", "source": "4me-app-builder", "detail-type": "Installation changed",
    ///     "detail": {"domain": "4me-demo.com", "offering": "typeform", "account": "wdc",
    ///                "step": "deleted", "change": "lifecycle/delivery/1"}
    /// });
    /// let Ok(EngineEvent::Installation(event)) = EngineEvent::classify(payload) else {
    ///     panic!("not an installation event");
    /// };
    /// assert_eq!(event.detail.step, LifecycleStep::Deleted);
    /// assert_eq!(event.detail.account, "wdc");
    /// ```
    pub fn classify(payload: Value) -> Result<Self, EventError> {
        Self::classify_with(payload, None)
    }

    /// [`classify`](Self::classify) for `invocation`: an HTTP request carries the invocation's
    /// deadline, so that [`attempt_deadline`] gives it.
    pub fn classify_for(payload: Value, invocation: &Invocation<'_>) -> Result<Self, EventError> {
        Self::classify_with(payload, Some(invocation.deadline))
    }

    fn classify_with(payload: Value, deadline: Option<i64>) -> Result<Self, EventError> {
        let source = payload.get("source").and_then(Value::as_str);
        if source == Some(EVENT_SOURCE) {
            let event = eventbridge(payload, "installation")?;
            return InstallationEvent::from_event(event)
                .map(|event| Self::Installation(Box::new(event)))
                .map_err(|source| EventError::Malformed {
                    kind: "installation",
                    source,
                });
        }
        if source == Some(SCHEDULE_SOURCE) {
            return eventbridge(payload, "scheduled").map(|event| Self::Schedule(Box::new(event)));
        }
        if payload.get("Records").is_some() {
            return serde_json::from_value(payload)
                .map(Self::Sqs)
                .map_err(|source| EventError::Malformed {
                    kind: "SQS",
                    source,
                });
        }
        screen_body(&payload)?;
        // lambda_http's request deserialiser needs JSON text (it buffers a `RawValue`).
        let text = serde_json::to_string(&payload).map_err(EventError::Unrecognised)?;
        // lambda_http builds the request with `expect`s (a URI from the event's host and path,
        // a base64 body): an event it cannot build is refused here rather than crash the
        // function. Its panic message still reaches the log through the panic hook.
        let built = std::panic::catch_unwind(|| lambda_http::request::from_str(&text))
            .map_err(|_| EventError::Unbuildable)?;
        let mut request = built.map_err(EventError::Unrecognised)?;
        if let Some(deadline) = deadline {
            request.extensions_mut().insert(AttemptDeadline(deadline));
        }
        Ok(Self::Http(Box::new(request)))
    }
}

fn eventbridge(payload: Value, kind: &'static str) -> Result<EventBridgeEvent<Value>, EventError> {
    serde_json::from_value(payload).map_err(|source| EventError::Malformed { kind, source })
}
