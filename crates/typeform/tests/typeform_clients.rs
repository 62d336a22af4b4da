//! The 4me operations and the Typeform client against the sandbox and the Typeform fake
//! (docs/original.md#tests-of-the-original `notes_helper.test.js`, `instance_helper.test.js`, `typeform_client.test.js`), and
//! the webhook's 500 answers when the note cannot be added.

#![allow(clippy::unwrap_used)] // fixture helpers unwrap on test-generated data

mod common;

use app_builder_core::fourme::instances::{InstanceError, find_app_instance, lambda_api_url};
use app_builder_core::fourme::{ClientSettings, Credentials, FourMeClient, FourMeError};
use app_builder_core::secrets::LocalSecretStore;
use app_builder_sandbox::typeform::TypeformFake;
use common::{Env, FORM_ID, OFFERING};
use serde_json::{Value, json};
use typeform::api::{TypeformApi, TypeformError, WebhookRegistration};
use typeform::fourme::{self, FORM_URL_FIELD, LookupError, REQUEST_ID_FIELD};

struct Fixture {
    env: Env<LocalSecretStore>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path())).await;
    Fixture { env, _dir: dir }
}

fn customer_client(env: &Env<LocalSecretStore>, account: &str) -> FourMeClient {
    let creds = env.sandbox.add_oauth_application(account);
    FourMeClient::new(
        app_builder_test_support::sandbox_endpoints(&env.sandbox),
        account,
        Credentials::new(creds.client_id, creds.client_secret),
        ClientSettings::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn converts_request_id_to_node_id_before_adding_note() {
    let fx = fixture().await;
    let request = fx.env.sandbox.seed_request("acme", "Survey");
    let client = customer_client(&fx.env, "acme");
    let node_id = fourme::add_note(&client, &request.request_id, "Hello")
        .await
        .unwrap();
    assert_eq!(node_id, request.id);
    assert_eq!(fx.env.sandbox.request_notes(&request.id), vec!["Hello"]);
}

#[tokio::test]
async fn handles_request_not_found() {
    let fx = fixture().await;
    let client = customer_client(&fx.env, "acme");
    let err = fourme::add_note(&client, "12", "Hello").await.unwrap_err();
    assert!(matches!(err, LookupError::RequestNotFound(ref id) if id == "12"));
    assert_eq!(err.to_string(), "Request 12 not found");
}

#[tokio::test]
async fn detects_error_when_updating_request() {
    let fx = fixture().await;
    let request = fx.env.sandbox.seed_request("acme", "Survey");
    let client = customer_client(&fx.env, "acme");
    let err = fourme::add_note(&client, &request.request_id, "  ")
        .await
        .unwrap_err();
    assert!(
        matches!(err, LookupError::FourMe(FourMeError::Mutation { .. })),
        "{err}"
    );
    assert!(fx.env.sandbox.request_notes(&request.id).is_empty());
}

#[tokio::test]
async fn maps_form_url_and_request_id_of_the_instance() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = env
        .install("acme", Some("https://x.typeform.com/to/u6nXL7"), Some("t"))
        .await;
    let instance = find_app_instance(&env.provider, OFFERING, "acme")
        .await
        .unwrap();
    assert_eq!(instance.id, customer.instance_id);
    assert_eq!(
        instance.text(FORM_URL_FIELD).as_deref(),
        Some("https://x.typeform.com/to/u6nXL7")
    );
    assert_eq!(
        instance.text(REQUEST_ID_FIELD).as_deref(),
        Some(customer.request.request_id.as_str())
    );
    assert!(!instance.suspended);
    let err = find_app_instance(&env.provider, OFFERING, "nobody")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "No instances of typeform for nobody");
    assert_eq!(
        lambda_api_url(&env.provider, common::FUNCTION_ARN)
            .await
            .unwrap(),
        env.api_url
    );
    assert!(matches!(
        lambda_api_url(&env.provider, "arn:aws:lambda:x:1:function:other").await,
        Err(InstanceError::NoLambdaCi)
    ));
}

#[tokio::test]
async fn can_create_webhook() {
    let fake = TypeformFake::start().await.unwrap();
    fake.add_form(FORM_ID, "tfp_ok");
    fake.add_form("OtherForm", "tfp_other");
    let api = TypeformApi::new(fake.url().parse().unwrap()).unwrap();
    let registration = WebhookRegistration {
        url: "https://example.test/Prod/integration/?account=acme",
        enabled: true,
        secret: "s3cr3t",
        verify_ssl: true,
    };
    api.put_webhook("tfp_ok", FORM_ID, "4me-webhook", &registration)
        .await
        .unwrap();
    let webhook = fake.webhook(FORM_ID, "4me-webhook").unwrap();
    assert_eq!(webhook.url, registration.url);
    assert_eq!(webhook.secret.as_deref(), Some("s3cr3t"));

    let unauthorized = api
        .put_webhook("tfp_bad", FORM_ID, "4me-webhook", &registration)
        .await
        .unwrap_err();
    assert!(
        matches!(unauthorized, TypeformError::Rejected { status: 403, ref code, .. } if code == "AUTHENTICATION_ERROR")
    );
    let not_found = api
        .put_webhook("tfp_ok", "OtherForm", "4me-webhook", &registration)
        .await
        .unwrap_err();
    assert!(matches!(
        not_found,
        TypeformError::Rejected { status: 404, .. }
    ));
    // Delete: the registration is gone, and deleting it again (404) counts as deleted.
    api.delete_webhook("tfp_ok", FORM_ID, "4me-webhook")
        .await
        .unwrap();
    assert!(fake.webhook(FORM_ID, "4me-webhook").is_none());
    api.delete_webhook("tfp_ok", FORM_ID, "4me-webhook")
        .await
        .unwrap();
    assert!(matches!(
        api.delete_webhook("tfp_bad", FORM_ID, "4me-webhook").await,
        Err(TypeformError::Rejected { status: 403, .. })
    ));
    assert_eq!(fake.delete_requests(), 3);
    // Neither the token nor the secret appears in errors or Debug output.
    for text in [
        unauthorized.to_string(),
        format!("{not_found:?}"),
        format!("{registration:?}"),
    ] {
        assert!(!text.contains("tfp_") && !text.contains("s3cr3t"), "{text}");
    }
}

#[tokio::test]
async fn webhook_answers_503_when_the_request_id_or_request_is_missing() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = env
        .install(
            "acme",
            Some(&format!("https://x.typeform.com/to/{FORM_ID}")),
            Some("tfp_ok"),
        )
        .await;
    env.typeform.add_form(FORM_ID, "tfp_ok");
    assert_eq!(env.installation("acme").await.0, 200);
    let secret = env
        .customer_secret("acme")
        .await
        .get_str("typeform_secret")
        .unwrap()
        .to_owned();
    let body = serde_json::to_vec(&json!({
        "event_id": "E1", "event_type": "form_response",
        "form_response": {"definition": {"title": "T", "fields": []}, "answers": []}
    }))
    .unwrap();
    let signature = typeform::signature::sign(&secret, &body);

    // The request named by the instance does not exist (any more).
    let _: Value = env
        .provider
        .mutation(
            "mutation($input: AppInstanceUpdateInput!) { appInstanceUpdate(input: $input) { errors { path message } appInstance { id } } }",
            &json!({"input": {"id": customer.instance_id, "customFields": [{"id": "request_id", "value": 999999}]}}),
        )
        .await
        .unwrap();
    assert_eq!(
        env.post_webhook("acme", &body, Some(&signature)).await,
        (503, "Unable to add note".to_owned())
    );
    // The event id was released: Typeform's retry can still add the note later.
    use app_builder_core::state::StateStore as _;
    assert_eq!(
        env.state
            .get("typeform/typeform/acme/events/E1")
            .await
            .unwrap(),
        None
    );
    assert!(
        env.customer_secret("acme")
            .await
            .get("typeform_events")
            .is_none()
    );

    // No request id configured at all.
    let _: Value = env
        .provider
        .mutation(
            "mutation($input: AppInstanceUpdateInput!) { appInstanceUpdate(input: $input) { errors { path message } appInstance { id } } }",
            &json!({"input": {"id": customer.instance_id, "customFields": [{"id": "request_id", "value": null}]}}),
        )
        .await
        .unwrap();
    assert_eq!(
        env.post_webhook("acme", &body, Some(&signature)).await,
        (503, "Unable to find request id".to_owned())
    );

    // Restored: the retry of E1 adds the note once.
    let _: Value = env
        .provider
        .mutation(
            "mutation($input: AppInstanceUpdateInput!) { appInstanceUpdate(input: $input) { errors { path message } appInstance { id } } }",
            &json!({"input": {"id": customer.instance_id, "customFields": [{"id": "request_id", "value": customer.request.request_id}]}}),
        )
        .await
        .unwrap();
    assert_eq!(
        env.post_webhook("acme", &body, Some(&signature)).await,
        (200, "Thanks for E1".to_owned())
    );
    assert_eq!(
        env.sandbox.request_notes(&customer.request.id),
        vec!["Received answer for \"T\":"]
    );
}
