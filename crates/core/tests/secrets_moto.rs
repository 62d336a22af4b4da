//! The AWS Secrets Manager store against moto (`AWS_ENDPOINT_URL` must point at a moto server;
//! see the README). Without it these tests fail on purpose rather than skip.

#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

mod moto;
mod secrets_contract;

use std::sync::Arc;

use app_builder_core::secrets::aws::WRITE_LABEL;
use app_builder_core::secrets::{
    AwsSecretStore, SecretName, SecretStore, SecretStoreError, customer_secret_name,
    parse_customer_secret_id,
};
use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use secrets_contract::doc;
use serde_json::{Value, json};

const APP: &str = "4me-app-builder";
const DOMAIN: &str = "4me-demo.com";

async fn client() -> Client {
    moto::require_endpoint();
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    Client::new(&config)
}

async fn store() -> AwsSecretStore {
    AwsSecretStore::new(client().await)
}

/// A customer secret name unique to this test run.
fn unique(label: &str) -> SecretName {
    let account = format!("{label}-{}", uuid::Uuid::new_v4().simple());
    customer_secret_name(APP, "moto", DOMAIN, &account).unwrap()
}

#[tokio::test]
async fn moto_missing_is_none() {
    secrets_contract::missing_is_none(&store().await, &unique("missing")).await;
}

#[tokio::test]
async fn moto_create_merge_and_null_removal() {
    secrets_contract::create_merge_and_null_removal(&store().await, &unique("merge")).await;
}

#[tokio::test]
async fn moto_delete_and_recreate() {
    secrets_contract::delete_and_recreate(&store().await, &unique("delete")).await;
}

#[tokio::test]
async fn moto_scheduled_deletion_and_reinstall() {
    secrets_contract::scheduled_deletion_and_reinstall(&store().await, &unique("uninstall")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_twenty_concurrent_writers() {
    let store = Arc::new(store().await);
    secrets_contract::twenty_concurrent_writers(store, &unique("writers")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_ten_concurrent_creates() {
    let store = Arc::new(store().await);
    secrets_contract::ten_concurrent_creates(store, &unique("creates")).await;
}

/// The compare-and-swap relies on this: two writers read v0 and store v1 and v2 under the one
/// write label (which moves to v2, leaving v1 without a label); v1 is still promoted, and moving
/// AWSCURRENT with the stale RemoveFromVersionId then fails.
#[tokio::test]
async fn moto_rejects_stale_remove_from_version_id() {
    let client = client().await;
    let name = unique("cas");
    let created = client
        .create_secret()
        .name(name.as_str())
        .secret_string("{\"v\":0}")
        .send()
        .await
        .unwrap();
    let v0 = created.version_id().unwrap().to_owned();
    let put = |value: &'static str| {
        let token = uuid::Uuid::new_v4().to_string();
        client
            .put_secret_value()
            .secret_id(name.as_str())
            .client_request_token(token.clone())
            .secret_string(value)
            .version_stages(WRITE_LABEL)
            .send()
    };
    let v1 = put("{\"v\":1}")
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    let v2 = put("{\"v\":2}")
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();

    let stages =
        |described: &aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput,
         version: &str| {
            described
                .version_ids_to_stages()
                .and_then(|stages| stages.get(version))
                .cloned()
                .unwrap_or_default()
        };
    let described = client
        .describe_secret()
        .secret_id(name.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(
        stages(&described, &v2),
        [WRITE_LABEL],
        "the label moved to v2"
    );
    assert!(stages(&described, &v1).is_empty());

    // Writer 1 read v0 and wins.
    client
        .update_secret_version_stage()
        .secret_id(name.as_str())
        .version_stage("AWSCURRENT")
        .move_to_version_id(&v1)
        .remove_from_version_id(&v0)
        .send()
        .await
        .unwrap();
    // Writer 2 also read v0: its swap must be rejected.
    let err = client
        .update_secret_version_stage()
        .secret_id(name.as_str())
        .version_stage("AWSCURRENT")
        .move_to_version_id(&v2)
        .remove_from_version_id(&v0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterException"));

    let current = client
        .get_secret_value()
        .secret_id(name.as_str())
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    assert_eq!(current.secret_string(), Some("{\"v\":1}"));
    assert_eq!(current.version_id(), Some(v1.as_str()));
}

/// After updates, the labels are AWSCURRENT, AWSPREVIOUS and the write label on the current
/// version: no write leaves a label of its own behind.
#[tokio::test]
async fn moto_upserts_leave_one_write_label_on_the_current_version() {
    let store = store().await;
    let name = unique("labels");
    for i in 0..3 {
        store
            .upsert(&name, doc(json!({ format!("k{i}"): i })))
            .await
            .unwrap();
    }
    let described = store
        .client()
        .describe_secret()
        .secret_id(name.as_str())
        .send()
        .await
        .unwrap();
    let mut labels: Vec<Vec<String>> = described
        .version_ids_to_stages()
        .unwrap()
        .values()
        .filter(|labels| !labels.is_empty())
        .map(|labels| {
            let mut labels = labels.clone();
            labels.sort_unstable();
            labels
        })
        .collect();
    labels.sort_unstable();
    assert_eq!(
        labels,
        [
            vec!["AWSCURRENT".to_owned(), WRITE_LABEL.to_owned()],
            vec!["AWSPREVIOUS".to_owned()]
        ]
    );
    assert_eq!(
        store.get(&name).await.unwrap().map(Value::from),
        Some(json!({"k0": 0, "k1": 1, "k2": 2}))
    );
}

/// The ARN Secrets Manager reports for a customer secret parses back to its parts.
#[tokio::test]
async fn moto_arn_parses_to_customer_id() {
    let store = store().await;
    let account = format!("arn-{}", uuid::Uuid::new_v4().simple());
    let name = customer_secret_name(APP, "typeform", DOMAIN, &account).unwrap();
    store.upsert(&name, doc(json!({"a": 1}))).await.unwrap();
    let arn = store
        .client()
        .describe_secret()
        .secret_id(name.as_str())
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    assert!(arn.starts_with("arn:aws:secretsmanager:"), "{arn}");
    let id = parse_customer_secret_id(&arn, APP, DOMAIN).unwrap();
    assert_eq!(id.offering_reference, "typeform");
    assert_eq!(id.account, account);
    assert_eq!(parse_customer_secret_id(&arn, "4me-app", DOMAIN), None);
}

/// A secret that is not a JSON object is reported (without its value) and never overwritten.
#[tokio::test]
async fn moto_invalid_json_is_reported_and_not_overwritten() {
    let store = store().await;
    let name = unique("invalid");
    store
        .client()
        .create_secret()
        .name(name.as_str())
        .secret_string("hunter2")
        .send()
        .await
        .unwrap();
    let err = store.get(&name).await.unwrap_err();
    assert!(
        matches!(err, SecretStoreError::InvalidJson { .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("hunter2"));
    let err = store.upsert(&name, doc(json!({"a": 1}))).await.unwrap_err();
    assert!(
        matches!(err, SecretStoreError::InvalidJson { .. }),
        "{err:?}"
    );
    let raw = store
        .client()
        .get_secret_value()
        .secret_id(name.as_str())
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.secret_string(), Some("hunter2"));
}

/// Errors other than "not found" are reported, not turned into "no secret" (docs/original.md#fixed-bugs item 10).
#[tokio::test]
async fn moto_unreachable_endpoint_is_a_transient_error() {
    client().await; // keep the AWS_ENDPOINT_URL requirement uniform
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:9")
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let store = AwsSecretStore::new(Client::new(&config));
    let err = store.get(&unique("unreachable")).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

/// The AWSCURRENT version id of a secret.
async fn current_version(store: &AwsSecretStore, name: &SecretName) -> String {
    store
        .client()
        .get_secret_value()
        .secret_id(name.as_str())
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn moto_update_replaces_or_declines() {
    let store = store().await;
    let name = unique("update");
    secrets_contract::update_replaces_or_declines(&store, &name).await;
    // A declined update creates no new version.
    let before = current_version(&store, &name).await;
    assert_eq!(store.update(&name, |_| None).await.unwrap(), None);
    assert_eq!(current_version(&store, &name).await, before);
}

#[tokio::test]
async fn moto_update_declined_creates_nothing() {
    secrets_contract::update_declined_creates_nothing(&store().await, &unique("declined")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_ten_concurrent_counter_increments() {
    let store = Arc::new(store().await.with_max_attempts(30));
    secrets_contract::concurrent_counter_increments(store, &unique("counter"), 10).await;
}

#[tokio::test]
async fn moto_a_stale_read_ahead_loses_no_write() {
    secrets_contract::a_stale_read_ahead_loses_no_write(
        &store().await,
        &unique("ahead-existing"),
        &unique("ahead-missing"),
    )
    .await;
}

/// An update from a read taken ahead does not read again: the read overlaps the caller's other
/// work, and the update is one request shorter.
#[tokio::test]
async fn moto_an_update_from_a_read_ahead_reads_once() {
    moto::require_endpoint();
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let proxy = app_builder_test_support::FaultProxy::start(&endpoint)
        .await
        .unwrap();
    let store = AwsSecretStore::new(Client::new(&proxy.sdk_config().await));
    let name = unique("ahead-reads");
    store.upsert(&name, doc(json!({"a": 1}))).await.unwrap();
    let reads = proxy.seen("secretsmanager.GetSecretValue");

    let ahead = store.read_ahead(&name).await;
    assert_eq!(proxy.seen("secretsmanager.GetSecretValue"), reads + 1);
    let stored = store
        .update_from(&name, ahead, |current| {
            let mut next = current.cloned().unwrap_or_default();
            next.as_map_mut().insert("b".to_owned(), json!(2));
            Some(next)
        })
        .await
        .unwrap();
    assert_eq!(stored, Some(doc(json!({"a": 1, "b": 2}))));
    assert_eq!(
        proxy.seen("secretsmanager.GetSecretValue"),
        reads + 1,
        "the update read again"
    );
}
