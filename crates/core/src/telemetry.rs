//! Logging set-up shared by every function's `main`.
//!
//! One JSON line per event on stdout, which CloudWatch Logs ingests as is: no timestamp (Lambda
//! adds its own), no module target, and the fields of the current span (delivery id, event,
//! offering, account) on every line. `RUST_LOG` overrides the default `info` level with
//! comma-separated `level` and `target=level` directives (`warn,secrets=debug`); one that does
//! not parse leaves the default. The filter is `tracing_subscriber`'s `Targets`, not `EnvFilter`:
//! span and field filters are not needed in a function, and leaving out `EnvFilter`'s regex
//! engine made the binary 0.9 MiB and its resident memory 0.6 MiB smaller (BENCHMARKS.md).

use std::fmt::Display;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::registry::LookupSpan;

/// Installs the JSON subscriber. Call once, first thing in `main`.
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::registry()
        .with(
            json_layer(std::io::stdout)
                .with_filter(filter(std::env::var("RUST_LOG").ok().as_deref())),
        )
        .init();
}

/// The filter of `RUST_LOG`'s value (see the module docs).
fn filter(directives: Option<&str>) -> Targets {
    directives
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
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

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::filter;

    #[test]
    fn rust_log_sets_the_default_level_and_levels_per_target() {
        let default = filter(None);
        assert!(default.would_enable("secrets", &Level::INFO));
        assert!(!default.would_enable("secrets", &Level::DEBUG));

        let set = filter(Some("warn,secrets=debug"));
        assert!(set.would_enable("secrets::handler", &Level::DEBUG));
        assert!(!set.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(set.would_enable("aws_smithy_runtime", &Level::WARN));

        assert!(filter(Some("debug")).would_enable("anything", &Level::DEBUG));
        let garbled = filter(Some("secrets=loud"));
        assert!(garbled.would_enable("secrets", &Level::INFO));
        assert!(!garbled.would_enable("secrets", &Level::DEBUG));
    }
}
