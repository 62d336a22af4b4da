//! The Typeform API fake: registration validation and signed deliveries.

#![allow(clippy::unwrap_used)] // fixture helpers unwrap on test-generated data

use std::sync::{Arc, Mutex};

use app_builder_sandbox::typeform::{TypeformFake, TypeformFakeError, sign};
use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Value, json};

type Received = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

/// A receiver recording the signature header and body of every POST.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                let signature = headers
                    .get("typeform-signature")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                store.lock().unwrap().push((signature, body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

async fn put(fake: &TypeformFake, form: &str, token: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(format!("{}/forms/{form}/webhooks/4me-webhook", fake.url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn registration_is_validated_and_deliveries_are_signed() {
    let fake = TypeformFake::start().await.unwrap();
    fake.add_form("F1", "tok");
    let (url, received) = receiver().await;

    let (status, body) = put(&fake, "F1", "tok", json!({"enabled": true})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    let (status, _) = put(
        &fake,
        "F1",
        "tok",
        json!({"url": "not a url", "enabled": true}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = put(&fake, "F1", "tok", json!({"url": url, "enabled": "yes"})).await;
    assert_eq!(status, 400);
    let (status, body) = put(&fake, "F1", "nope", json!({"url": url, "enabled": true})).await;
    assert_eq!(status, 403, "Typeform answers an unknown token with 403");
    assert_eq!(body["code"], "AUTHENTICATION_ERROR");
    let (status, _) = put(&fake, "F2", "tok", json!({"url": url, "enabled": true})).await;
    assert_eq!(status, 404);
    assert!(matches!(
        fake.send_response("F1", json!({})).await,
        Err(TypeformFakeError::NoWebhook(_))
    ));

    let (status, body) = put(
        &fake,
        "F1",
        "tok",
        json!({"url": url, "enabled": true, "secret": "abc", "verify_ssl": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["form_id"], json!("F1"));
    assert_eq!(body["tag"], json!("4me-webhook"));
    assert_eq!(fake.put_requests(), 6);

    let delivery = fake
        .send_response("F1", json!({"form_id": "F1"}))
        .await
        .unwrap();
    assert_eq!(delivery.status, 200);
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, delivery.body);
    assert_eq!(
        got[0].0.as_deref(),
        Some(sign("abc", &delivery.body).as_str())
    );
    let event: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(event["event_type"], json!("form_response"));
    assert_eq!(event["event_id"], json!(delivery.event_id));

    fake.redeliver(&delivery).await.unwrap();
    let got = received.lock().unwrap().clone();
    assert_eq!(got[1], got[0], "a redelivery is byte-identical");

    // Disabled webhooks receive nothing.
    put(&fake, "F1", "tok", json!({"url": url, "enabled": false})).await;
    assert_eq!(fake.webhook("F1", "4me-webhook").unwrap().writes, 2);
    assert!(fake.send_response("F1", json!({})).await.is_err());
}
