//! The log lines of each invocation, as CloudWatch Logs would hold them.
//!
//! In Lambda each function writes JSON lines to stdout ([`app_builder_core::telemetry`]); here
//! every function runs in one process, so the lines are kept per invocation instead:
//! [`capture_layer`] is the functions' own JSON layer writing into the buffer of the invocation
//! being polled (a task-local set by [`capture`]); lines logged outside an invocation are
//! dropped. Install the layer once per process (`cargo xtask local` does) — without it the
//! invocations simply have no lines. The lines hold what the functions log and nothing else:
//! the functions never log a secret value, so neither does the console.

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::registry::LookupSpan;

tokio::task_local! {
    static BUFFER: Arc<Mutex<Vec<u8>>>;
}

/// The layer that keeps each invocation's log lines (see the module docs).
pub fn capture_layer<S>() -> impl Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    app_builder_core::telemetry::json_layer(Invocations)
}

/// Makes [`capture_layer`] the process's subscriber (`info` and above, or what `RUST_LOG`
/// asks for); `false` when the process has one already.
pub fn init() -> bool {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(capture_layer().with_filter(filter))
        .try_init()
        .is_ok()
}

/// Runs `invocation`, keeping the lines it logs; returns its output and the lines.
pub async fn capture<F: Future>(invocation: F) -> (F::Output, Vec<String>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let output = BUFFER.scope(Arc::clone(&buffer), invocation).await;
    let bytes = std::mem::take(&mut *buffer.lock().unwrap_or_else(|e| e.into_inner()));
    let lines = String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    (output, lines)
}

/// Writes to the buffer of the invocation being polled.
struct Invocations;

impl<'a> MakeWriter<'a> for Invocations {
    type Writer = Invocations;

    fn make_writer(&'a self) -> Invocations {
        Invocations
    }
}

impl io::Write for Invocations {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let _ = BUFFER.try_with(|buffer| {
            buffer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(bytes);
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
