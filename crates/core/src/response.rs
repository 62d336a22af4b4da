//! HTTP responses of the engine's Lambda functions.
//!
//! Every message response has the body `{"message":"<text>"}` (byte-compatible with the Node.js
//! original's `JSON.stringify({message})`) and `content-type: application/json`. [`ApiResponse`]
//! builds successful responses; [`ApiError`] is the error type handlers return, mapping each
//! variant to the status codes of the response catalogue (spec Appendix B). Internal details of
//! 5xx errors are logged through `tracing`, never sent to the caller.

use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

/// The `content-type` of every JSON response.
pub const APPLICATION_JSON: &str = "application/json";

/// Public message of the 405 response.
pub const METHOD_NOT_ALLOWED_MESSAGE: &str = "Method not allowed. Use POST instead.";

/// Public message of [`ApiError::Unauthorized`].
pub const UNAUTHORIZED_MESSAGE: &str = "Unauthorized";

/// Public message of [`ApiError::Internal`].
pub const INTERNAL_ERROR_MESSAGE: &str = "Internal server error";

/// The `{"message": ...}` body.
#[derive(Debug, Serialize)]
struct MessageBody<'a> {
    message: &'a str,
}

/// Builders of successful (and arbitrary-status) responses.
#[derive(Debug, Clone, Copy)]
pub struct ApiResponse;

impl ApiResponse {
    /// `{"message": message}` with the given status.
    pub fn message(status: StatusCode, message: &str) -> Response<Body> {
        // Serialising a struct holding one `&str` cannot fail; fall back to an empty object anyway.
        let body = serde_json::to_string(&MessageBody { message }).unwrap_or_else(|_| "{}".into());
        json_response(status, body)
    }

    /// 200 `{"message": message}`.
    ///
    /// ```
    /// use app_builder_core::response::ApiResponse;
    ///
    /// let response = ApiResponse::ok("Secrets stored");
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.body().as_ref(), br#"{"message":"Secrets stored"}"#);
    /// ```
    pub fn ok(message: &str) -> Response<Body> {
        Self::message(StatusCode::OK, message)
    }

    /// Any serialisable value as the JSON body (e.g. the Lansweeper results object).
    ///
    /// A value that fails to serialise (a map with non-string keys, a failing `Serialize`
    /// implementation) yields the 500 response of [`ApiError::Internal`].
    pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
        match serde_json::to_string(value) {
            Ok(body) => json_response(status, body),
            Err(err) => {
                ApiError::Internal(format!("cannot serialise response body: {err}")).into_response()
            }
        }
    }

    /// 302 redirect to `location`, with an empty body.
    ///
    /// A location that is not a valid header value yields the 500 response of
    /// [`ApiError::Internal`].
    pub fn redirect(location: &str) -> Response<Body> {
        let Ok(value) = HeaderValue::from_str(location) else {
            return ApiError::Internal("redirect location is not a valid header value".into())
                .into_response();
        };
        let mut response = Response::new(Body::Empty);
        *response.status_mut() = StatusCode::FOUND;
        response.headers_mut().insert(LOCATION, value);
        response
    }
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(APPLICATION_JSON));
    response
}

/// An error a handler turns into an HTTP response.
///
/// `Display` is meant for logs; the public body is [`ApiError::public_message`]. Never put secret
/// values into any variant.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 405 `Method not allowed. Use POST instead.`
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 400 with the given message (e.g. `Expected jwt in body`).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 400 `Unauthorized`: the Lansweeper HTTP handler's rejection of an unknown or mismatching
    /// state/callback. The original answers 400, not 401; kept for compatibility.
    #[error("unauthorized")]
    Unauthorized,
    /// 404 with the given message.
    #[error("not found: {0}")]
    NotFound(String),
    /// 500 with a public catalogue message that carries no hidden detail
    /// (e.g. `Unable to gather customer context`).
    #[error("server error: {0}")]
    ServerError(String),
    /// 500 after a failing dependency (4me, Secrets Manager, Lansweeper, ...): the caller gets
    /// `message` (a catalogue message such as `Unable to process secrets`), `detail` is only logged.
    #[error("{message}: {detail}")]
    Upstream {
        /// Public message.
        message: String,
        /// Internal detail, logged only.
        detail: String,
    },
    /// 500 `Internal server error`; the detail is only logged.
    #[error("internal error: {0}")]
    Internal(String),
    /// 413 with the given message: the request body is larger than the functions accept.
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// 410 with the given message: the addressed resource is gone for good, and a sender that
    /// understands 410 (Typeform) stops delivering.
    #[error("gone: {0}")]
    Gone(String),
    /// 503 with a public message: a dependency failed transiently and the sender should retry
    /// later (Typeform retries a 503 for hours, a 500 only a few times); `detail` is only logged.
    #[error("{message} (retry later): {detail}")]
    Unavailable {
        /// Public message.
        message: String,
        /// Internal detail, logged only.
        detail: String,
    },
}

impl ApiError {
    /// [`ApiError::Upstream`] from a public message and the underlying error.
    pub fn upstream(message: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::Upstream {
            message: message.into(),
            detail: detail.to_string(),
        }
    }

    /// The same failure for a sender that retries longer on 503: every 5xx becomes
    /// [`ApiError::Unavailable`] with its public message and detail; 4xx stay as they are.
    pub fn retry_later(self) -> Self {
        match self {
            Self::Upstream { message, detail } => Self::Unavailable { message, detail },
            Self::ServerError(message) => Self::Unavailable {
                detail: message.clone(),
                message,
            },
            Self::Internal(detail) => Self::Unavailable {
                message: INTERNAL_ERROR_MESSAGE.into(),
                detail,
            },
            other => other,
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) | Self::Unauthorized => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Gone(_) => StatusCode::GONE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::ServerError(_) | Self::Upstream { .. } | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The message sent to the caller.
    pub fn public_message(&self) -> &str {
        match self {
            Self::MethodNotAllowed => METHOD_NOT_ALLOWED_MESSAGE,
            Self::Unauthorized => UNAUTHORIZED_MESSAGE,
            Self::BadRequest(message)
            | Self::NotFound(message)
            | Self::Gone(message)
            | Self::PayloadTooLarge(message)
            | Self::ServerError(message)
            | Self::Upstream { message, .. }
            | Self::Unavailable { message, .. } => message,
            Self::Internal(_) => INTERNAL_ERROR_MESSAGE,
        }
    }

    /// The `{"message": ...}` response; 5xx errors are logged at error level (with their
    /// internal detail), 4xx at info level.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = %self, "request rejected");
        }
        ApiResponse::message(status, self.public_message())
    }
}

impl From<ApiError> for Response<Body> {
    fn from(err: ApiError) -> Self {
        err.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(response: &Response<Body>) -> &str {
        match response.body() {
            Body::Text(text) => text,
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn retry_later_turns_server_errors_into_503_and_keeps_client_errors() {
        let unavailable =
            ApiError::upstream("Unable to add note", "4me answered 502").retry_later();
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.public_message(), "Unable to add note");
        let internal = ApiError::Internal("secret detail".into()).retry_later();
        assert_eq!(internal.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!internal.public_message().contains("secret"));
        let gone = ApiError::Gone("Unknown account".into()).retry_later();
        assert_eq!(gone.status(), StatusCode::GONE);
        assert_eq!(
            ApiError::BadRequest("Bad signature".into())
                .retry_later()
                .status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn message_body_is_byte_compatible() {
        let response = ApiResponse::ok("Secrets stored");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(&response), r#"{"message":"Secrets stored"}"#);
        assert_eq!(response.headers()[CONTENT_TYPE], APPLICATION_JSON);
    }

    #[test]
    fn message_escapes_json() {
        let response = ApiResponse::message(
            StatusCode::BAD_REQUEST,
            "Bad JWT - (d) Incorrect request: \"x\"\n4me-demo.com - wdc",
        );
        assert_eq!(
            text(&response),
            r#"{"message":"Bad JWT - (d) Incorrect request: \"x\"\n4me-demo.com - wdc"}"#
        );
    }

    #[test]
    fn errors_map_to_catalogue_statuses() {
        let cases = [
            (ApiError::MethodNotAllowed, 405, METHOD_NOT_ALLOWED_MESSAGE),
            (
                ApiError::BadRequest("Expected jwt in body".into()),
                400,
                "Expected jwt in body",
            ),
            (ApiError::Unauthorized, 400, "Unauthorized"),
            (ApiError::NotFound("nope".into()), 404, "nope"),
            (
                ApiError::ServerError("Unable to gather customer context".into()),
                500,
                "Unable to gather customer context",
            ),
            (
                ApiError::upstream("Unable to process secrets", "AccessDenied: secret-value"),
                500,
                "Unable to process secrets",
            ),
            (
                ApiError::Internal("token endpoint down".into()),
                500,
                "Internal server error",
            ),
        ];
        for (err, status, message) in cases {
            let response = err.into_response();
            assert_eq!(response.status().as_u16(), status);
            let body: serde_json::Value = serde_json::from_str(text(&response)).unwrap();
            assert_eq!(body, serde_json::json!({ "message": message }));
        }
    }

    #[test]
    fn upstream_detail_stays_out_of_body() {
        let response: Response<Body> =
            ApiError::upstream("Unable to store secrets", "hidden-detail").into();
        assert!(!text(&response).contains("hidden-detail"));
    }

    #[test]
    fn json_and_redirect() {
        let response = ApiResponse::json(
            StatusCode::OK,
            &serde_json::json!({"recordCount": 1, "successCount": 1}),
        );
        assert_eq!(text(&response), r#"{"recordCount":1,"successCount":1}"#);
        let response = ApiResponse::redirect("https://wdc.4me-demo.com/app_instances/7");
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(
            response.headers()[LOCATION],
            "https://wdc.4me-demo.com/app_instances/7"
        );
        let response = ApiResponse::redirect("bad\nlocation");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
