//! Faults on the AWS side, through the real AWS SDK against moto behind a fault-injecting proxy
//! (`app-builder-test-support`): Secrets Manager, DynamoDB or EventBridge failing mid-delivery,
//! throttling, the endpoint stopped and started again, and copies of one delivery racing on
//! DynamoDB's conditional writes. In every case the delivery is answered 5xx (so 4me retries)
//! with nothing half-applied, and the retry has exactly one effect.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::sync::Arc;
use std::time::Duration;

use app_builder_core::bus::EventBridgePublisher;
use app_builder_core::config::EnabledOfferings;
use app_builder_core::secrets::{AwsSecretStore, SecretStore};
use app_builder_core::state::DynamoStateStore;
use app_builder_test_support::{Fault, FaultProxy};
use serde_json::{Value, json};
use support::aws::*;
use support::*;

/// A provider, table and bus on moto, and a secrets handler reaching them through a proxy.
struct Setup {
    proxy: FaultProxy,
    /// Direct to moto: what was really written.
    store: AwsSecretStore,
    provider: Provider,
    handler: Arc<secrets::SecretsHandler<AwsSecretStore, DynamoStateStore, EventBridgePublisher>>,
    /// A queue receiving every event published on the bus.
    events: Option<String>,
}

impl Setup {
    async fn new() -> Setup {
        let store = moto_store().await;
        let provider = Provider::create(&store).await;
        let direct_state = moto_state().await;
        let direct_bus = moto_bus().await;
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
        let proxy = FaultProxy::start(&endpoint).await.unwrap();
        let config = proxy.sdk_config().await;
        let handler = handler_with(
            AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&config))
                .with_max_attempts(3)
                .with_backoff(Duration::from_millis(10), Duration::from_millis(50)),
            DynamoStateStore::new(aws_sdk_dynamodb::Client::new(&config), direct_state.table()),
            EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&config), direct_bus.bus()),
            context_config(DOMAIN, &provider.account),
            EnabledOfferings::All,
            Duration::from_secs(5),
        );
        let mut setup = Setup {
            proxy,
            store,
            provider,
            handler: Arc::new(handler),
            events: None,
        };
        setup.events = Some(setup.queue_for(direct_bus.bus()).await);
        setup
    }

    /// An SQS queue as the target of a rule matching every event of `bus`.
    async fn queue_for(&self, bus: &str) -> String {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let name = format!("events-{}", uuid::Uuid::new_v4().simple());
        let url = sqs.create_queue().queue_name(&name).send().await.unwrap();
        let url = url.queue_url().unwrap().to_owned();
        let arn = format!("arn:aws:sqs:eu-west-1:123456789012:{name}");
        let events = aws_sdk_eventbridge::Client::new(&config);
        events
            .put_rule()
            .name("all")
            .event_bus_name(bus)
            .event_pattern(r#"{"source": [{"prefix": ""}]}"#)
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule("all")
            .event_bus_name(bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        url
    }

    /// Every event delivered to the queue so far (waits a little for stragglers).
    async fn published(&self) -> Vec<Value> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let mut found = Vec::new();
        for _ in 0..3 {
            let received = sqs
                .receive_message()
                .queue_url(self.events.as_deref().unwrap())
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for message in received.messages() {
                found.push(serde_json::from_str(message.body().unwrap()).unwrap());
            }
        }
        found
    }

    /// A new customer and a signed update of its Typeform token.
    fn new_update(&self) -> (String, String) {
        let customer = customer();
        let jwt = self.provider.sign(
            "typeform",
            &customer,
            json!({"secrets": {"typeform_token": "t1"}}),
        );
        (customer, jwt)
    }

    /// `customer`'s secret was written once and its change announced once.
    async fn applied_once(&self, customer: &str) {
        assert_eq!(self.versions(customer).await, 1);
        assert_eq!(announced(&self.published().await, customer), 1);
    }

    async fn send(&self, jwt: &str, delivery: &str) -> (u16, String) {
        status_and_message(
            &self
                .handler
                .handle(delivery_request(jwt, Some(delivery)))
                .await,
        )
    }

    /// Sends the delivery and asserts that it was stored.
    async fn stores(&self, jwt: &str, delivery: &str) {
        assert_eq!(
            self.send(jwt, delivery).await,
            (200, "Secrets stored".into())
        );
    }

    async fn stored(&self, customer: &str) -> Option<Value> {
        self.store
            .get(&customer_name("typeform", customer))
            .await
            .unwrap()
            .map(Value::from)
    }

    async fn versions(&self, customer: &str) -> usize {
        self.store
            .client()
            .list_secret_version_ids()
            .secret_id(customer_name("typeform", customer).as_str())
            .send()
            .await
            .map(|listed| listed.versions().len())
            .unwrap_or_default()
    }
}

fn customer() -> String {
    format!("c{}", uuid::Uuid::new_v4().simple())
}

/// The changes announced for `customer` among `events`.
fn announced(events: &[Value], customer: &str) -> usize {
    events
        .iter()
        .filter(|event| event["detail"]["account"] == customer)
        .count()
}

#[tokio::test]
async fn secrets_manager_failing_mid_delivery_writes_nothing_and_the_retry_applies_once() {
    let setup = Setup::new().await;
    let (customer, jwt) = setup.new_update();
    // The read succeeds; every write of the secret fails (after the SDK's own retries).
    setup
        .proxy
        .fail("secretsmanager.CreateSecret", Fault::Unavailable, None);
    setup
        .proxy
        .fail("secretsmanager.PutSecretValue", Fault::Unavailable, None);
    let (status, message) = setup.send(&jwt, "d-1").await;
    assert!(status >= 500, "{status} {message}");
    assert!(
        setup.proxy.seen("secretsmanager.CreateSecret") >= 3,
        "the SDK retried"
    );
    assert_eq!(setup.stored(&customer).await, None);
    assert_eq!(announced(&setup.published().await, &customer), 0);

    setup.proxy.heal();
    setup.stores(&jwt, "d-1").await;
    assert_eq!(
        setup.stored(&customer).await.unwrap()["secrets"],
        json!({"typeform_token": "t1"})
    );
    // 4me retries again (its answer was lost): no second write, no second announcement.
    setup.stores(&jwt, "d-1").await;
    setup.applied_once(&customer).await;
}

#[tokio::test]
async fn throttled_writes_are_retried_within_the_delivery() {
    let setup = Setup::new().await;
    let (customer, jwt) = setup.new_update();
    setup
        .proxy
        .fail("secretsmanager.CreateSecret", Fault::Throttled, Some(2));
    setup
        .proxy
        .fail("DynamoDB_20120810.UpdateItem", Fault::Throttled, Some(1));
    setup.stores(&jwt, "d-1").await;
    assert_eq!(setup.proxy.seen("secretsmanager.CreateSecret"), 3);
    // Two claims, the hold, the record written, two claims completed, and the throttled one.
    assert_eq!(setup.proxy.seen("DynamoDB_20120810.UpdateItem"), 7);
    setup.applied_once(&customer).await;
}

#[tokio::test]
async fn a_failed_put_events_is_a_5xx_and_the_retry_announces_once() {
    let setup = Setup::new().await;
    let (customer, jwt) = setup.new_update();
    setup
        .proxy
        .fail("AWSEvents.PutEvents", Fault::Throttled, None);
    let (status, message) = setup.send(&jwt, "d-1").await;
    assert_eq!(
        (status, message.as_str()),
        (500, secrets::PUBLISH_FAILED_MESSAGE)
    );
    assert_eq!(announced(&setup.published().await, &customer), 0);

    setup.proxy.heal();
    setup.stores(&jwt, "d-1").await;
    setup.stores(&jwt, "d-1").await;
    assert_eq!(
        setup.stored(&customer).await.unwrap()["secrets"],
        json!({"typeform_token": "t1"})
    );
    assert_eq!(announced(&setup.published().await, &customer), 1);
}

/// The record of the applied `iat`s is written together with the announcement of the change.
/// When the record fails after the secret was stored, the delivery is a 5xx; the retry applies
/// it, and every announcement names the same change (consumers handle a change once).
#[tokio::test]
async fn the_applied_record_failing_beside_the_announcement_is_a_5xx_and_the_retry_names_the_same_change()
 {
    let setup = Setup::new().await;
    let (customer, jwt) = setup.new_update();
    setup.proxy.fail_matching(
        "DynamoDB_20120810.UpdateItem",
        &["secrets/applied/", "SET #data"],
        Fault::Unavailable,
        None,
    );
    let (status, message) = setup.send(&jwt, "d-1").await;
    assert_eq!(
        (status, message.as_str()),
        (500, secrets::STORE_FAILED_MESSAGE)
    );
    assert!(
        setup.proxy.seen("DynamoDB_20120810.UpdateItem") >= 6,
        "the SDK retried the record's write"
    );

    setup.proxy.heal();
    for _ in 0..2 {
        setup.stores(&jwt, "d-1").await;
    }
    assert_eq!(
        setup.stored(&customer).await.unwrap()["secrets"],
        json!({"typeform_token": "t1"})
    );
    let events = setup.published().await;
    let changes: Vec<&Value> = events
        .iter()
        .filter(|event| event["detail"]["account"] == customer)
        .map(|event| &event["detail"]["change"])
        .collect();
    assert!(!changes.is_empty(), "the change was announced");
    assert!(
        changes
            .iter()
            .all(|change| *change == changes[0] && change.is_string()),
        "{changes:?}"
    );
}

#[tokio::test]
async fn with_the_endpoint_stopped_a_delivery_is_a_5xx_and_after_the_restart_it_applies_once() {
    let mut setup = Setup::new().await;
    // A first delivery: the provider context is cached, the clients are connected.
    let warm = customer();
    let jwt = setup.provider.sign(
        "typeform",
        &warm,
        json!({"secrets": {"typeform_token": "w"}}),
    );
    assert_eq!(setup.send(&jwt, "d-0").await.0, 200);

    setup.proxy.stop().await;
    let (customer, jwt) = setup.new_update();
    let (status, message) = setup.send(&jwt, "d-1").await;
    assert!(status >= 500, "{status} {message}");
    assert_eq!(setup.stored(&customer).await, None);

    setup.proxy.restart().await.unwrap();
    setup.stores(&jwt, "d-1").await;
    setup.stores(&jwt, "d-1").await;
    setup.applied_once(&customer).await;
}

/// Copies of one delivery arriving at once race on DynamoDB's conditional writes: exactly one
/// applies it; the others are told it is in progress (503, 4me retries) or answered as the
/// duplicate it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_of_a_delivery_racing_on_dynamodb_apply_it_once() {
    let setup = Setup::new().await;
    let (customer, jwt) = setup.new_update();
    let mut copies = Vec::new();
    for _ in 0..6 {
        let (handler, jwt) = (Arc::clone(&setup.handler), jwt.clone());
        copies.push(tokio::spawn(async move {
            status_and_message(&handler.handle(delivery_request(&jwt, Some("d-1"))).await)
        }));
    }
    let mut statuses = Vec::new();
    for copy in copies {
        statuses.push(copy.await.unwrap().0);
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    setup.applied_once(&customer).await;
}
