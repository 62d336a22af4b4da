//! The handler over AWS Secrets Manager on moto (`AWS_ENDPOINT_URL` must point at a moto server;
//! these tests fail rather than skip without it): concurrent deliveries for one customer lose
//! nothing and a replayed delivery creates no new secret version.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::sync::Arc;
use std::time::Duration;

use app_builder_core::config::EnabledOfferings;
use app_builder_core::secrets::{AwsSecretStore, SecretStore};
use serde_json::{Value, json};
use support::aws::*;
use support::*;

async fn current_version(store: &AwsSecretStore, name: &str) -> String {
    store
        .client()
        .get_secret_value()
        .secret_id(name)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_concurrent_deliveries_for_one_customer_lose_nothing() {
    let store = moto_store().await;
    let provider = Provider::create(&store).await;
    let handler = Arc::new(handler_with(
        store.clone(),
        moto_state().await,
        moto_bus().await,
        context_config(DOMAIN, &provider.account),
        EnabledOfferings::All,
        Duration::from_secs(5),
    ));
    let customer = format!("c{}", uuid::Uuid::new_v4().simple());
    let parts = [
        json!({"application": {"client_id": "a", "client_secret": "s"}}),
        json!({"policy": {"algorithm": "RS256", "audience": null, "public_key": "k"}}),
        json!({"authorization_application": {"client_id": "c", "client_secret": "d"}}),
        json!({"secrets": {"typeform_token": "t"}}),
    ];
    let mut tasks = Vec::new();
    for i in 0..8 {
        let handler = Arc::clone(&handler);
        let jwt = provider.sign("typeform", &customer, parts[i % parts.len()].clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("concurrent-{i}");
            deliver_until_done(&*handler, &jwt, &id).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), (200, "Secrets stored".to_owned()));
    }
    let name = customer_name("typeform", &customer);
    let stored = Value::from(store.get(&name).await.unwrap().unwrap());
    for part in &parts {
        let (key, value) = part.as_object().unwrap().iter().next().unwrap();
        assert_eq!(&stored[key], value, "{key} lost");
    }
    assert!(
        stored.get(secrets::DELIVERIES_KEY).is_none(),
        "the secret holds secrets only"
    );
    // Every delivery is recorded in the state table: none of them writes again.
    let before = current_version(&store, name.as_str()).await;
    for i in 0..8 {
        let jwt = provider.sign("typeform", &customer, parts[i % parts.len()].clone());
        let id = format!("concurrent-{i}");
        assert_eq!(
            status_and_message(&handler.handle(delivery_request(&jwt, Some(&id))).await),
            (200, "Secrets stored".to_owned())
        );
    }
    assert_eq!(current_version(&store, name.as_str()).await, before);
}

#[tokio::test]
async fn moto_replayed_delivery_creates_no_new_version() {
    let store = moto_store().await;
    let provider = Provider::create(&store).await;
    let handler = handler_with(
        store.clone(),
        moto_state().await,
        moto_bus().await,
        context_config(DOMAIN, &provider.account),
        EnabledOfferings::parse("typeform"),
        Duration::from_secs(5),
    );
    let customer = format!("c{}", uuid::Uuid::new_v4().simple());
    let jwt = provider.sign("typeform", &customer, json!({"secrets": {"v": 1}}));
    let send = |jwt: String, id: &'static str| {
        let request = delivery_request(&jwt, Some(id));
        let handler = &handler;
        async move { status_and_message(&handler.handle(request).await) }
    };
    assert_eq!(send(jwt.clone(), "r-1").await.0, 200);
    let name = customer_name("typeform", &customer);
    let before = current_version(&store, name.as_str()).await;
    let other = provider.sign("typeform", &customer, json!({"secrets": {"v": 2}}));
    assert_eq!(send(jwt, "r-1").await, (200, "Secrets stored".to_owned()));
    // The same delivery id with another payload is refused, not applied.
    assert_eq!(
        send(other, "r-1").await,
        (400, secrets::PAYLOAD_MISMATCH_MESSAGE.to_owned())
    );
    assert_eq!(current_version(&store, name.as_str()).await, before);
    assert_eq!(
        Value::from(store.get(&name).await.unwrap().unwrap())["secrets"],
        json!({"v": 1})
    );
    // A disabled offering never reaches Secrets Manager.
    let disabled = provider.sign("lansweeper", &customer, json!({"secrets": {"v": 3}}));
    assert_eq!(
        send(disabled, "r-2").await,
        (200, "No action for app_reference: lansweeper".to_owned())
    );
    assert_eq!(
        store
            .get(&customer_name("lansweeper", &customer))
            .await
            .unwrap(),
        None
    );
}
