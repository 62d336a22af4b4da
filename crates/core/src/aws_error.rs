//! What every AWS adapter needs to know about an SDK error: whether retrying may help, and a
//! message naming the error code (never a request or response body).

use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// `(transient, message)` of an SDK error. Transient: timeouts, dispatch and response failures,
/// 5xx, 429 and the throttling codes of the AWS APIs.
pub(crate) fn describe<E>(err: &SdkError<E, HttpResponse>) -> (bool, String)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            status >= 500
                || status == 429
                || matches!(
                    err.code(),
                    Some(
                        "ThrottlingException"
                            | "Throttling"
                            | "TooManyRequestsException"
                            | "RequestLimitExceeded"
                            | "ProvisionedThroughputExceededException"
                            | "InternalServiceError"
                            | "InternalServerError"
                            | "ServiceUnavailable"
                            | "RequestTimeout"
                    )
                )
        }
        _ => false,
    };
    let message = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(err).to_string(),
    };
    (transient, message)
}
