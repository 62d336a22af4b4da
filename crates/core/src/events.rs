//! Helpers over the events the engine's Lambda functions receive.
//!
//! - HTTP requests (API Gateway REST v1, HTTP API v2 and function URLs) arrive as
//!   [`lambda_http::Request`]: [`header`], [`delivery_id`], [`body_bytes`], [`query_param`],
//!   [`path_param`] and [`account_param`] read them uniformly whatever the source format.
//! - CloudTrail "secret written" events from EventBridge become a [`SecretWriteEvent`].
//! - SQS partial batch failures are reported with [`batch_failures`].
//! - [`EngineEvent::classify`] sorts a raw Lambda payload into HTTP / secret write / schedule / SQS
//!   with the routing rules of the Lansweeper integration lambda (spec §5.3.1), so one function
//!   can serve all of them; [`http_response_payload`] turns an HTTP response back into the
//!   payload API Gateway (v1 or v2) or a function URL expects.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

use crate::response::ApiError;

/// `source` of Secrets Manager CloudTrail events delivered through EventBridge.
pub const SECRETS_MANAGER_SOURCE: &str = "aws.secretsmanager";

/// `source` of EventBridge scheduled events.
pub const SCHEDULE_SOURCE: &str = "aws.events";

/// Headers carrying the webhook delivery id, in order of preference (4me, then Xurrent branding).
pub const DELIVERY_HEADERS: [&str; 2] = ["x-4me-delivery", "x-xurrent-delivery"];

/// Public message of [`EventError::MissingSecretId`] (spec §3.3 step 1).
pub const MISSING_SECRET_ID_MESSAGE: &str = "Missing detail.requestParameters.secretId/name value";

/// Errors raised while interpreting an event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A CloudTrail secret event has neither `requestParameters.secretId` nor `.name`.
    #[error("Missing detail.requestParameters.secretId/name value")]
    MissingSecretId,
    /// A CloudTrail secret event for an API call other than the ones in [`SecretEventName`].
    #[error("unsupported Secrets Manager event name: {0:?}")]
    UnsupportedSecretEvent(String),
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
}

impl From<EventError> for ApiError {
    fn from(err: EventError) -> Self {
        match err {
            EventError::MissingSecretId => ApiError::BadRequest(MISSING_SECRET_ID_MESSAGE.into()),
            EventError::UnsupportedSecretEvent(_)
            | EventError::Malformed { .. }
            | EventError::Unrecognised(_) => ApiError::BadRequest(err.to_string()),
            EventError::Response(_) => ApiError::Internal(err.to_string()),
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

/// The path parameter `name` (e.g. `proxy` of `/integration/{proxy+}`).
pub fn path_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.path_parameters_ref()
        .and_then(|params| params.first(name))
}

/// The customer account of the request (spec §3.2): the `account` query parameter when
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
// EventBridge: CloudTrail secret writes and schedules
// ---------------------------------------------------------------------------------------------

/// The Secrets Manager API calls that signal an installation change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretEventName {
    /// A new secret: a new installation.
    CreateSecret,
    /// A new value of an existing secret: an updated installation.
    PutSecretValue,
    /// A version made current. `AwsSecretStore` writes a new value under a pending label and
    /// then moves `AWSCURRENT` to it, so only this event guarantees that a reader sees the new
    /// value; handlers must be idempotent, as each write also emits `PutSecretValue`.
    UpdateSecretVersionStage,
}

impl SecretEventName {
    /// The CloudTrail `eventName`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateSecret => "CreateSecret",
            Self::PutSecretValue => "PutSecretValue",
            Self::UpdateSecretVersionStage => "UpdateSecretVersionStage",
        }
    }
}

/// A CloudTrail `CreateSecret`/`PutSecretValue`/`UpdateSecretVersionStage` event (spec §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretWriteEvent {
    /// Which API call wrote the secret.
    pub event_name: SecretEventName,
    /// The secret written, as given in the call: a name or a full ARN. Interpreting it is
    /// `secrets::parse_customer_secret_id`'s job.
    pub secret_id: String,
}

impl SecretWriteEvent {
    /// Reads the event from an EventBridge envelope: the secret id is
    /// `detail.requestParameters.secretId` (PutSecretValue, UpdateSecretVersionStage), else
    /// `.name` (CreateSecret), the
    /// first non-empty string of the two, as in the original.
    pub fn from_event(event: &EventBridgeEvent<Value>) -> Result<Self, EventError> {
        let params = event.detail.get("requestParameters");
        let secret_id = ["secretId", "name"]
            .iter()
            .filter_map(|key| params.and_then(|params| params.get(key)))
            .filter_map(Value::as_str)
            .find(|id| !id.is_empty())
            .ok_or(EventError::MissingSecretId)?;
        let event_name = match event.detail.get("eventName").and_then(Value::as_str) {
            Some("CreateSecret") => SecretEventName::CreateSecret,
            Some("PutSecretValue") => SecretEventName::PutSecretValue,
            Some("UpdateSecretVersionStage") => SecretEventName::UpdateSecretVersionStage,
            other => {
                return Err(EventError::UnsupportedSecretEvent(
                    other.unwrap_or_default().to_owned(),
                ));
            }
        };
        Ok(Self {
            event_name,
            secret_id: secret_id.to_owned(),
        })
    }

    /// `true` for `CreateSecret` (the original's `newInstallation`).
    pub fn is_new_installation(&self) -> bool {
        self.event_name == SecretEventName::CreateSecret
    }
}

impl TryFrom<&EventBridgeEvent<Value>> for SecretWriteEvent {
    type Error = EventError;

    fn try_from(event: &EventBridgeEvent<Value>) -> Result<Self, Self::Error> {
        Self::from_event(event)
    }
}

/// Whether an EventBridge event is a scheduled event (`source: aws.events`, spec §5.3.1).
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
    /// A Secrets Manager CloudTrail event (installation created or updated).
    SecretWrite(SecretWriteEvent),
    /// An EventBridge scheduled event.
    Schedule(Box<EventBridgeEvent<Value>>),
    /// An SQS batch.
    Sqs(SqsEvent),
}

impl EngineEvent {
    /// Classifies a raw payload as the original's router does (spec §5.3.1), in this order:
    /// `source == "aws.secretsmanager"` → secret write; `source == "aws.events"` → schedule;
    /// a `Records` member → SQS; anything else → HTTP.
    ///
    /// A secret event without secret id yields [`EventError::MissingSecretId`] (answered with a
    /// 400 `Missing detail.requestParameters.secretId/name value` through `ApiError`).
    ///
    /// ```
    /// use app_builder_core::events::{EngineEvent, SecretEventName};
    ///
    /// let payload = serde_json::json!({
    ///     "detail-type": "AWS API Call via CloudTrail",
    ///     "source": "aws.secretsmanager",
    ///     "detail": {
    ///         "eventName": "CreateSecret",
    ///         "requestParameters": {"name": "4me-app-builder/lansweeper/4me-demo.com/instances/wdc"}
    ///     }
    /// });
    /// let Ok(EngineEvent::SecretWrite(event)) = EngineEvent::classify(payload) else {
    ///     panic!("not a secret write");
    /// };
    /// assert_eq!(event.event_name, SecretEventName::CreateSecret);
    /// assert!(event.secret_id.ends_with("/instances/wdc"));
    /// ```
    pub fn classify(payload: Value) -> Result<Self, EventError> {
        let source = payload.get("source").and_then(Value::as_str);
        if source == Some(SECRETS_MANAGER_SOURCE) {
            let event = eventbridge(payload, "Secrets Manager")?;
            return SecretWriteEvent::from_event(&event).map(Self::SecretWrite);
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
        // lambda_http's request deserialiser needs JSON text (it buffers a `RawValue`).
        let text = serde_json::to_string(&payload).map_err(EventError::Unrecognised)?;
        lambda_http::request::from_str(&text)
            .map(|request| Self::Http(Box::new(request)))
            .map_err(EventError::Unrecognised)
    }
}

fn eventbridge(payload: Value, kind: &'static str) -> Result<EventBridgeEvent<Value>, EventError> {
    serde_json::from_value(payload).map_err(|source| EventError::Malformed { kind, source })
}
