//! In-process fakes of the external HTTP services the integrations call, for tests and local runs.
//!
//! - [`FunTranslations`]: the Fun Translations API (`POST /translate/<style>.json`), with the real
//!   response and 429 error shapes;
//! - [`CaptureServer`]: a catch-all HTTP server that records every request it receives (the
//!   customer's target URL of the note-dispatcher, or any other webhook receiver).
//!
//! Each fake listens on `127.0.0.1` with an ephemeral port ([`FunTranslations::start`],
//! [`CaptureServer::start`]), exposes its base URL through `url()` and stops when its last handle
//! is dropped.

mod capture;
mod funtranslations;

pub use capture::{CaptureServer, CapturedRequest};
pub use funtranslations::{FunTranslations, RATE_LIMIT_MESSAGE, TRANSLATIONS, TranslationCall};

use std::net::SocketAddr;

use tokio::sync::oneshot;

/// Serves `router` on `127.0.0.1:<ephemeral>`; returns the base URL and the shutdown sender
/// (the server stops when the sender is dropped).
async fn serve(router: axum::Router) -> std::io::Result<(String, oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let tx = crate::serve::spawn(listener, router, "fake server");
    Ok((url, tx))
}
