//! What the secrets function logs: one line per delivery with delivery id, event, offering and
//! account — and never a secret value, a token or a callback code. (A separate test binary: the
//! capturing subscriber is the global default.)
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::sync::Arc;

use app_builder_core::bus::EventPublisher;
use app_builder_core::secrets::{LocalSecretStore, SecretStore};
use app_builder_core::state::{LocalStateStore, StateStore};
use axum::routing::get;
use secrets::SecretsHandler;
use serde_json::{Value, json};
use support::*;

struct Fixture {
    _dir: tempfile::TempDir,
    store: LocalSecretStore,
    state: LocalStateStore,
    bus: Recorder,
    signer: Signer,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalSecretStore::new(dir.path().join("secrets"));
    let signer = Signer::generate();
    store
        .upsert(&provider_name(), provider_secret(&signer, AUDIENCE))
        .await
        .unwrap();
    Fixture {
        state: LocalStateStore::new(dir.path().join("state")),
        bus: Recorder::default(),
        _dir: dir,
        store,
        signer,
    }
}

impl Fixture {
    fn handler(
        &self,
        enabled: &str,
    ) -> SecretsHandler<&LocalSecretStore, &LocalStateStore, Recorder> {
        handler_on(&self.store, &self.state, self.bus.clone(), enabled)
    }
}

async fn send(
    handler: &SecretsHandler<impl SecretStore, impl StateStore, impl EventPublisher>,
    jwt: &str,
    delivery: Option<&str>,
) -> (u16, String) {
    status_and_message(&handler.handle(delivery_request(jwt, delivery)).await)
}

/// A callback server answering `status`.
async fn callback_server(status: u16) -> String {
    let app = axum::Router::new().route(
        "/verify",
        get(move || async move { axum::http::StatusCode::from_u16(status).unwrap() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn verify_claims(callback: &str) -> Value {
    claims("webhook.verify", json!({ "callback": callback }))
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn log_lines_carry_delivery_event_offering_account_and_no_secret_values() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(captured.clone())
        .finish();
    // Global (this binary holds only this test), so every thread and callsite reports to it.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let f = fixture().await;
    let stored = f.signer.sign(&claims(
        "app_instance.secrets-update",
        secrets_payload(
            "typeform",
            "acme",
            json!({"application": {"client_id": "cid", "client_secret": "csecret-value"},
                   "secrets": {"typeform_token": "tf-secret-value"}}),
        ),
    ));
    assert_eq!(
        send(&f.handler("*"), &stored, Some("log-delivery-1"))
            .await
            .0,
        200
    );
    assert_eq!(
        send(&f.handler("*"), &stored, Some("log-delivery-1"))
            .await
            .0,
        200
    );
    assert_eq!(
        send(
            &f.handler("typeform"),
            &f.signer.sign(&claims(
                "app_instance.secrets-update",
                secrets_payload(
                    "lansweeper",
                    "acme",
                    json!({"secrets": {"x": "tf-secret-value"}})
                ),
            )),
            Some("log-delivery-2")
        )
        .await
        .0,
        200
    );
    // Rejected token: nothing from its body may appear.
    let forged = Signer::generate().sign(&claims(
        "app_instance.secrets-update",
        secrets_payload(
            "typeform",
            "acme",
            json!({"secrets": {"typeform_token": "tf-secret-value"}}),
        ),
    ));
    assert_eq!(
        send(&f.handler("*"), &forged, Some("log-delivery-3"))
            .await
            .0,
        400
    );
    // A failed verification: the callback's one-time code stays out of the logs.
    let base = callback_server(401).await;
    let verify = f
        .signer
        .sign(&verify_claims(&format!("{base}/verify?code=one-time-code")));
    assert_eq!(
        send(&f.handler("*"), &verify, Some("log-delivery-4"))
            .await
            .0,
        500
    );
    let unreachable = f.signer.sign(&verify_claims(
        "http://127.0.0.1:9/verify?code=one-time-code",
    ));
    assert_eq!(
        send(&f.handler("*"), &unreachable, Some("log-delivery-5"))
            .await
            .0,
        500
    );

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for secret in [
        "csecret-value",
        "tf-secret-value",
        "one-time-code",
        &stored,
        &forged,
    ] {
        assert!(!logs.contains(secret), "logged a secret: {secret}\n{logs}");
    }
    let line = logs
        .lines()
        .find(|l| l.contains("secrets stored"))
        .unwrap_or_else(|| panic!("no 'secrets stored' line in\n{logs}"));
    for field in [
        "\"delivery\":\"log-delivery-1\"",
        "\"event\":\"app_instance.secrets-update\"",
        "\"offering\":\"typeform\"",
        "\"account\":\"acme\"",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(logs.contains("delivery already applied"), "{logs}");
    // The error line of a failed delivery carries its fields too.
    let failed = logs
        .lines()
        .find(|l| l.contains("request failed") && l.contains("log-delivery-4"))
        .unwrap_or_else(|| panic!("no error line for log-delivery-4 in\n{logs}"));
    assert!(failed.contains("\"event\":\"webhook.verify\""), "{failed}");
    assert!(failed.contains("Unable to verify webhook"), "{failed}");
    assert!(logs.contains("\"offering\":\"lansweeper\""), "{logs}");
}
