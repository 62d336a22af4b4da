//! The Typeform function with the AWS Secrets Manager store against moto (`AWS_ENDPOINT_URL`
//! must point at a moto server; without it this test fails on purpose rather than skip):
//! install → EventBridge event → webhook registered at the Typeform fake → signed response →
//! note on the sandbox request; a replay and a forgery add nothing. And Secrets Manager failing
//! while a response arrives (through a fault-injecting proxy in front of moto): answered 5xx so
//! Typeform redelivers, no note; the redelivery posts exactly one.

#![allow(clippy::unwrap_used)] // fixture helpers unwrap on test-generated data

mod common;

use common::{Customer, Env, FORM_ID};
use serde_json::{Value, json};

use app_builder_core::secrets::AwsSecretStore;
use app_builder_test_support::{Fault, FaultProxy, moto_store};

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// `account` installed with a form at the Typeform fake; its installation event handled.
async fn installed<S>(env: &Env<S>, account: &str, token: &str) -> Customer
where
    S: app_builder_core::secrets::SecretStore + Clone + 'static,
{
    let customer = env
        .install(
            account,
            Some(&format!("https://mysite.typeform.com/to/{FORM_ID}")),
            Some(token),
        )
        .await;
    env.typeform.add_form(FORM_ID, token);
    let (status, message) = env.installation(account).await;
    assert_eq!((status, message.as_str()), (200, "OK"));
    customer
}

/// A form response answering "Happy?" with yes, in the form titled `title`.
fn happy_response(title: &str) -> Value {
    json!({
        "form_id": FORM_ID,
        "definition": {"id": FORM_ID, "title": title, "fields": [
            {"id": "f1", "title": "Happy?", "type": "yes_no", "ref": "happy"}
        ]},
        "answers": [{"type": "boolean", "boolean": true, "field": {"id": "f1", "type": "yes_no", "ref": "happy"}}]
    })
}

#[tokio::test]
async fn a_response_arriving_while_secrets_manager_fails_is_redelivered_and_noted_once() {
    moto_store().await; // fails, naming what to start, without moto
    let proxy = FaultProxy::start(&std::env::var("AWS_ENDPOINT_URL").unwrap())
        .await
        .unwrap();
    let store = AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(
        &proxy.sdk_config().await,
    ))
    .with_max_attempts(3)
    .with_backoff(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_millis(50),
    );
    let unique = unique();
    let env = Env::with_provider(store, &format!("tf-fault-provider-{unique}")).await;
    let account = format!("tf-fault-customer-{unique}");
    let customer = installed(&env, &account, "tfp_fault_token").await;
    let response = happy_response("Fault survey");

    proxy.fail("secretsmanager.GetSecretValue", Fault::Unavailable, None);
    let delivery = env.typeform.send_response(FORM_ID, response).await.unwrap();
    assert!(
        delivery.status >= 500,
        "{} {}",
        delivery.status,
        delivery.response
    );
    assert!(proxy.seen("secretsmanager.GetSecretValue") > 0);
    assert_eq!(
        env.sandbox.request_notes(&customer.request.id),
        Vec::<String>::new()
    );

    proxy.heal();
    for _ in 0..2 {
        let redelivery = env.typeform.redeliver(&delivery).await.unwrap();
        assert_eq!(redelivery.status, 200, "{}", redelivery.response);
    }
    assert_eq!(
        env.sandbox.request_notes(&customer.request.id),
        vec!["Received answer for \"Fault survey\":\n - \"Happy?\": Yes".to_owned()]
    );
}

#[tokio::test]
async fn typeform_install_and_survey_response_with_secrets_manager() {
    // Unique provider and customer accounts: moto is shared with other test processes and
    // keeps secrets between runs.
    let unique = unique();
    let env = Env::with_provider(moto_store().await, &format!("tf-provider-{unique}")).await;
    let account = format!("tf-customer-{unique}");
    let customer = installed(&env, &account, "tfp_moto_token").await;
    let provider = format!("tf-provider-{unique}");
    let tag = typeform::api::webhook_tag(&provider, common::OFFERING, &account);
    let webhook = env.typeform.webhook(FORM_ID, &tag).unwrap();
    assert_eq!(webhook.url, format!("{}?account={account}", env.api_url));
    let stored = env.customer_secret(&account).await;
    assert_eq!(stored.get_str("typeform_secret"), webhook.secret.as_deref());
    assert_eq!(webhook.secret.as_deref().map(str::len), Some(128));

    let response = happy_response("Moto survey");
    let delivery = env.typeform.send_response(FORM_ID, response).await.unwrap();
    assert_eq!(delivery.status, 200, "{}", delivery.response);
    let replay = env.typeform.redeliver(&delivery).await.unwrap();
    assert_eq!(replay.status, 200);

    let mut forged: Value = serde_json::from_slice(&delivery.body).unwrap();
    forged["event_id"] = json!("forged");
    let forged = serde_json::to_vec(&forged).unwrap();
    assert_eq!(
        env.post_webhook(&account, &forged, delivery.signature.as_deref())
            .await,
        (400, "Bad signature".to_owned())
    );

    assert_eq!(
        env.sandbox.request_notes(&customer.request.id),
        vec!["Received answer for \"Moto survey\":\n - \"Happy?\": Yes".to_owned()]
    );
}
