//! Logging set-up shared by every function's `main`.
//!
//! One JSON line per event on stdout, which CloudWatch Logs ingests as is: no timestamp (Lambda
//! adds its own), no module target, and the fields of the current span (delivery id, event,
//! offering, account) on every line. `RUST_LOG` overrides the default `info` level.

use std::fmt::Display;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the JSON subscriber. Call once, first thing in `main`.
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::registry()
        .with(json_layer(std::io::stdout).with_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        ))
        .init();
}

/// The functions' log lines written to `writer`: what [`init`] writes to stdout in Lambda, and
/// what the local engine keeps of each invocation.
pub fn json_layer<S, W>(writer: W) -> impl Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_writer(writer)
}

/// Logs why the function could not start (a missing setting, an unusable endpoint...) and
/// returns the error for `main` to return, so the Lambda init fails visibly with the reason.
pub fn start_up_failed<E: Display>(error: E) -> E {
    tracing::error!(error = %error, "start-up failed");
    error
}
