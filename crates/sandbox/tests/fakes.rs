//! The external-API fakes over real HTTP.
#![allow(clippy::unwrap_used)] // helpers of this test crate may unwrap

use app_builder_sandbox::fakes::{CaptureServer, FunTranslations, RATE_LIMIT_MESSAGE};
use serde_json::{Value, json};

async fn post_form(url: &str, text: Option<&str>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let request = client.post(url);
    let request = match text {
        Some(text) => request.form(&[("text", text)]),
        None => request.form(&[("other", "x")]),
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn fun_translations_answers_the_real_shapes() {
    let fake = FunTranslations::start().await.unwrap();
    let url = format!("{}/translate/pirate.json", fake.url());
    let (status, body) = post_form(&url, Some("hello friend")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"success": {"total": 1}, "contents": {
            "translated": "hello friend, arr!", "text": "hello friend", "translation": "pirate"}})
    );

    // JSON bodies (as the Node.js original sends) are read too.
    let response = reqwest::Client::new()
        .post(format!("{}/translate/morse.json", fake.url()))
        .json(&json!({"text": "sos"}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["contents"]["translated"], "... --- ...");

    let (status, body) =
        post_form(&format!("{}/translate/klingon.json", fake.url()), Some("x")).await;
    assert_eq!(
        (status, body),
        (404, json!({"error": {"code": 404, "message": "Not Found"}}))
    );
    let (status, body) = post_form(&url, None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 400);

    fake.rate_limit_next(1);
    let (status, body) = post_form(&url, Some("x")).await;
    assert_eq!(
        (status, body),
        (
            429,
            json!({"error": {"code": 429, "message": RATE_LIMIT_MESSAGE}})
        )
    );
    fake.fail_next(503);
    assert_eq!(post_form(&url, Some("x")).await.0, 503);
    assert_eq!(post_form(&url, Some("x")).await.0, 200);

    let calls = fake.calls();
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [200, 200, 404, 400, 429, 503, 200]);
    assert_eq!(calls[0].style, "pirate");
    assert_eq!(calls[0].text.as_deref(), Some("hello friend"));
    assert_eq!(calls[1].content_type.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn capture_server_records_every_request() {
    let capture = CaptureServer::start().await.unwrap();
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/notes?x=1", capture.url()))
        .header("X-Custom", "value")
        .json(&json!({"input": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    capture.set_status(418);
    let response = client
        .delete(format!("{}/other", capture.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 418);

    let requests = capture.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/notes?x=1");
    assert_eq!(requests[0].header("x-custom"), Some("value"));
    assert_eq!(requests[0].json().unwrap(), json!({"input": 1}));
    assert_eq!(requests[1].method, "DELETE");
    assert_eq!(requests[1].path, "/other");
    assert!(requests[1].body.is_empty());
}
