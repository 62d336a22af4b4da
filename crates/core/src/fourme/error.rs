//! Errors of the 4me client.

use serde::{Deserialize, Serialize};

/// A mutation-level validation error (`errors { path message }` of a mutation payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Path of the offending input field (4me sends an array of names; may be absent).
    #[serde(default)]
    pub path: Option<serde_json::Value>,
    /// Human readable message.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(serde_json::Value::Array(parts)) if !parts.is_empty() => {
                let joined: Vec<String> = parts
                    .iter()
                    .map(|p| match p {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                write!(f, "{}: {}", joined.join("."), self.message)
            }
            Some(serde_json::Value::String(s)) if !s.is_empty() => {
                write!(f, "{s}: {}", self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

fn join_messages<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Everything that can go wrong talking to 4me.
///
/// Messages carry the operation (GraphQL root field, REST resource or `access token`) but never
/// tokens, client secrets or signed URLs.
#[derive(Debug, thiserror::Error)]
pub enum FourMeError {
    /// The 4me endpoints could not be derived (bad domain or override URL).
    #[error(transparent)]
    Endpoint(#[from] super::endpoints::EndpointError),
    /// The OAuth token request was rejected or answered without a token.
    #[error("{0}")]
    Authorization(String),
    /// 4me kept answering 401 even with a freshly requested token.
    #[error("Unauthorized for {operation}: the access token was refused twice")]
    Unauthorized {
        /// The operation that was refused.
        operation: String,
    },
    /// The GraphQL response carried top-level `errors`.
    #[error("Unable to query {operation}: {}", join_messages(messages))]
    GraphQl {
        /// The GraphQL root field of the query.
        operation: String,
        /// The `message` of every error.
        messages: Vec<String>,
    },
    /// A mutation payload carried a non-empty `errors { path message }` list.
    #[error("Mutation {operation} failed: {}", join_messages(errors))]
    Mutation {
        /// The mutation root field.
        operation: String,
        /// The payload errors, in order.
        errors: Vec<FieldError>,
    },
    /// A non-retryable HTTP error status.
    #[error("Error from {operation}: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(" {body}") })]
    Http {
        /// The operation that failed.
        operation: String,
        /// HTTP status code.
        status: u16,
        /// Start of the response body (for diagnostics).
        body: String,
    },
    /// Retries for 429, 5xx, timeouts or connection errors were exhausted.
    #[error("4me unavailable for {operation} after {attempts} attempts: {last}")]
    Unavailable {
        /// The operation that failed.
        operation: String,
        /// Number of attempts made.
        attempts: u32,
        /// Description of the last failure.
        last: String,
    },
    /// An async-query result did not appear before the deadline.
    #[error("No result available after {elapsed_ms}ms; {location}")]
    AsyncTimeout {
        /// Milliseconds spent polling.
        elapsed_ms: u128,
        /// The result URL without its (signed) query string.
        location: String,
    },
    /// The response did not have the expected shape.
    #[error("Unexpected response for {operation}: {message}")]
    Decode {
        /// The operation whose response was malformed.
        operation: String,
        /// What was wrong.
        message: String,
    },
    /// A request could not be built or sent and retrying would not help.
    #[error("Request for {operation} failed: {message}")]
    Request {
        /// The operation that failed.
        operation: String,
        /// What was wrong.
        message: String,
    },
}

impl FourMeError {
    /// Whether trying again later may succeed (rate limits, outages, slow async results).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::AsyncTimeout { .. } => true,
            Self::Http { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The HTTP status of an [`FourMeError::Http`] error.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The messages of GraphQL or mutation errors (empty for other kinds).
    pub fn messages(&self) -> Vec<String> {
        match self {
            Self::GraphQl { messages, .. } => messages.clone(),
            Self::Mutation { errors, .. } => errors.iter().map(|e| e.message.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_error_display_joins_path() {
        let e = FieldError {
            path: Some(serde_json::json!(["configurationItem", "name"])),
            message: "Name can't be blank".into(),
        };
        assert_eq!(e.to_string(), "configurationItem.name: Name can't be blank");
        let bare = FieldError {
            path: None,
            message: "oops".into(),
        };
        assert_eq!(bare.to_string(), "oops");
    }

    #[test]
    fn mutation_error_lists_messages() {
        let err = FourMeError::Mutation {
            operation: "configurationItemCreate".into(),
            errors: vec![
                FieldError {
                    path: None,
                    message: "a".into(),
                },
                FieldError {
                    path: None,
                    message: "b".into(),
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "Mutation configurationItemCreate failed: a; b"
        );
        assert_eq!(err.messages(), vec!["a".to_string(), "b".to_string()]);
        assert!(!err.is_transient());
    }

    #[test]
    fn transient_classification() {
        let unavailable = FourMeError::Unavailable {
            operation: "x".into(),
            attempts: 3,
            last: "HTTP 503".into(),
        };
        assert!(unavailable.is_transient());
        let not_found = FourMeError::Http {
            operation: "x".into(),
            status: 404,
            body: String::new(),
        };
        assert!(!not_found.is_transient());
        assert_eq!(not_found.http_status(), Some(404));
        assert!(!FourMeError::Authorization("Access token request rejected".into()).is_transient());
    }
}
