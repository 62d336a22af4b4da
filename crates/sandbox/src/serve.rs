//! Running an axum router in the background, stopped by dropping a handle: how the sandbox and
//! every fake serve HTTP.

use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Serves `app` on `listener` in a background task until the returned sender is dropped (or
/// used); `name` identifies the server in the error log.
pub(crate) fn spawn(
    listener: TcpListener,
    app: axum::Router,
    name: &'static str,
) -> oneshot::Sender<()> {
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!("{name} stopped: {e}");
        }
    });
    tx
}
