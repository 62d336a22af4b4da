//! Logging set-up shared by every function's `main`.
//!
//! One JSON line per event on stdout, which CloudWatch Logs ingests as is: no timestamp (Lambda
//! adds its own), no module target, and the fields of the current span (delivery id, event,
//! offering, account) on every line. `RUST_LOG` overrides the default `info` level.

use std::fmt::Display;

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber. Call once, first thing in `main`.
pub fn init() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .init();
}

/// Logs why the function could not start (a missing setting, an unusable endpoint...) and
/// returns the error for `main` to return, so the Lambda init fails visibly with the reason.
pub fn start_up_failed<E: Display>(error: E) -> E {
    tracing::error!(error = %error, "start-up failed");
    error
}
