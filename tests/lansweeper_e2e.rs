//! End to end, Lansweeper (docs/original.md#lansweeper, the connection states): the real
//! `secrets` and `lansweeper` functions built from their Lambda settings over Secrets Manager and
//! SQS on moto, the Lansweeper function served as its API Gateway integration
//! (`ANY /integration/{proxy+}`), the 4me sandbox and the Lansweeper fake.
//!
//! Install (the secrets function stores the customer secret, EventBridge reports the write) →
//! callback URL set and instance suspended → the customer authorizes in Lansweeper, whose
//! redirect reaches the OAuth callback through API Gateway → refresh token in Secrets Manager,
//! instance unsuspended, sync message on the SQS queue → that message, received from SQS, is
//! handled as Lambda's SQS event → the discovered CIs of a 1,000-asset site are in 4me. A
//! Lansweeper 5xx leaves the message failed (`batchItemFailures`); a 401 suspends the instance.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::sync::Arc;

use app_builder_core::context::ContextLoader;
use app_builder_core::events::Invocation;
use app_builder_core::fourme::{ClientSettings, Credentials, FourMeClient};
use app_builder_core::secrets::{AwsSecretStore, SecretStore};
use app_builder_core::state::DynamoStateStore;
use app_builder_sandbox::InstallOptions;
use app_builder_sandbox::lansweeper::{
    LansweeperEndpoint, LansweeperFake, LansweeperFault, LansweeperFaultKind, SiteSpec,
};
use lansweeper::{
    DEFAULT_ATTEMPT_TIME, FunctionConfig, LansweeperApi, LansweeperFunction, SqsRefreshQueue,
};
use serde_json::{Value, json};
use support::gateway::{API_HOST, STAGE, serve_payload};
use support::{Provider, Subscription, moto_store, unique_app};

const OFFERING: &str = "lansweeper";
const FUNCTION_ARN: &str =
    "arn:aws:lambda:eu-west-1:123456789012:function:lansweeper-IntegrationFunction-E2e123";
const ASSETS: u64 = 1_000;

type Function = LansweeperFunction<AwsSecretStore, SqsRefreshQueue, DynamoStateStore>;

struct World {
    provider: Provider<AwsSecretStore>,
    lansweeper: LansweeperFake,
    function: Arc<Function>,
    /// Where the stand-in API Gateway serves the function (`…/Prod/integration/`).
    local_url: String,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    /// The Lansweeper stack's rule on the engine's bus (its target stands in for the function).
    installations: Subscription,
}

impl World {
    async fn start() -> World {
        let store = moto_store().await;
        let app = unique_app("e2e-ls");
        let provider = Provider::start(store, &app, OFFERING).await;
        let lansweeper = LansweeperFake::start().await.unwrap();

        // The refresh queue the SAM template creates (`<ref>-refresh-trigger`, unique per test).
        let sqs = aws_sdk_sqs::Client::new(
            &aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await,
        );
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("{app}-refresh-trigger"))
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_owned();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .unwrap()
            .clone();

        // The function as its main builds it, from its Lambda environment.
        let env = provider
            .integration_env(OFFERING)
            .with("REFRESH_QUEUE_URL", queue_url.clone())
            .with("LANSWEEPER_API_URL", lansweeper.api_url())
            .with("LANSWEEPER_REQUESTS_PER_MINUTE", "60000");
        let config = FunctionConfig::from_settings(&env.settings()).unwrap();
        let endpoints = env.endpoints(&config.context.domain);
        let loader = ContextLoader::new(
            config.context,
            provider.store.clone(),
            endpoints.clone(),
            ClientSettings::default(),
        )
        .unwrap();
        let queue = SqsRefreshQueue::from_env(config.refresh_queue_url.clone()).await;
        let state = DynamoStateStore::from_env(config.state_table.clone()).await;
        let function = Arc::new(LansweeperFunction::new(
            loader,
            LansweeperApi::new(config.api).unwrap(),
            queue,
            state,
            config.function,
        ));
        let served_function = Arc::clone(&function);
        let served = serve_payload("/integration/{proxy+}", move |event| {
            let function = Arc::clone(&served_function);
            async move {
                let invocation = Invocation::new(FUNCTION_ARN, DEFAULT_ATTEMPT_TIME);
                function.handle_payload(event, invocation).await
            }
        })
        .await;

        // The function's `api_url` is the public API Gateway URL (the stand-in's host in events).
        provider
            .deploy_integration(
                OFFERING,
                "Lansweeper",
                "Lansweeper integration Authorize / Refresh service",
                FUNCTION_ARN,
                &format!("https://{API_HOST}/{STAGE}/integration/"),
            )
            .await;
        let installations = provider
            .bus
            .subscribe(
                "crates/lansweeper/template.yaml",
                provider.sandbox.domain(),
                OFFERING,
            )
            .await;
        World {
            provider,
            lansweeper,
            function,
            local_url: served.url,
            sqs,
            queue_url,
            queue_arn,
            installations,
        }
    }

    async fn stored(&self, account: &str) -> Value {
        let name = self.provider.customer_secret(OFFERING, account);
        Value::from(self.provider.store.get(&name).await.unwrap().unwrap())
    }

    fn instance(&self, id: &str) -> Value {
        self.provider.sandbox.record(id).unwrap()
    }

    fn field(&self, instance_id: &str, id: &str) -> Value {
        self.instance(instance_id)["customFields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["id"] == id)
            .map_or(Value::Null, |f| f["value"].clone())
    }

    /// Receives the queued messages and hands them to the function as Lambda's SQS event
    /// source does; returns (message ids, the function's answer).
    async fn deliver_queued(&self) -> (Vec<String>, Value) {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(1)
            .send()
            .await
            .unwrap();
        let records: Vec<Value> = received
            .messages()
            .iter()
            .map(|m| {
                json!({
                    "messageId": m.message_id().unwrap(),
                    "receiptHandle": m.receipt_handle().unwrap(),
                    "body": m.body().unwrap(),
                    "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1732000000000",
                                   "SenderId": "AROAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1732000000001"},
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body().unwrap(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": "eu-west-1",
                })
            })
            .collect();
        let ids = records
            .iter()
            .map(|r| r["messageId"].as_str().unwrap().to_owned())
            .collect();
        let answer = self
            .function
            .handle_payload(
                json!({ "Records": records }),
                Invocation::new(FUNCTION_ARN, DEFAULT_ATTEMPT_TIME),
            )
            .await
            .unwrap();
        (ids, answer)
    }

    /// A message for `account` back on the queue, as the schedule or `?refresh=1` would send.
    async fn queue_sync(&self, account: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(account)
            .send()
            .await
            .unwrap();
    }

    /// Discovered (physical asset) CIs of the customer account, read with its own token.
    async fn discovered_count(&self, account: &str) -> usize {
        let secret = self.stored(account).await;
        let client = FourMeClient::new(
            self.provider
                .integration_env(OFFERING)
                .endpoints(self.provider.sandbox.domain()),
            account,
            Credentials::new(
                secret["application"]["client_id"].as_str().unwrap(),
                secret["application"]["client_secret"].as_str().unwrap(),
            ),
            ClientSettings::default(),
        )
        .unwrap();
        let nodes: Vec<Value> = client
            .paged_all(
                "query Cis($previousEndCursor: String) { configurationItems(first: 100, after: $previousEndCursor, filter: {ruleSet: {values: [physical_asset]}}) { pageInfo { hasNextPage endCursor } nodes { id } } }",
                &json!({}),
            )
            .await
            .unwrap();
        nodes.len()
    }
}

#[tokio::test]
async fn install_authorize_sync_and_failures_end_to_end() {
    let world = World::start().await;
    let account = "wna-it";
    let mut spec = SiteSpec::new("HQ", ASSETS);
    spec.installations = vec!["Main".into(), "Branch".into()];
    let site = world.lansweeper.add_site(spec);
    let app = world.lansweeper.add_client();

    // Install: the customer fills in the Lansweeper client id and secret.
    let mut custom_fields = serde_json::Map::new();
    custom_fields.insert("client_id".into(), json!(app.client_id));
    custom_fields.insert("connection_status".into(), json!("pending_callback_url"));
    custom_fields.insert("import_type".into(), json!("all"));
    let mut secrets = serde_json::Map::new();
    secrets.insert("client_secret".into(), json!(app.client_secret));
    let installed = world
        .provider
        .sandbox
        .install_app(
            OFFERING,
            account,
            InstallOptions {
                secrets,
                custom_fields,
                ..InstallOptions::default()
            },
        )
        .await
        .unwrap();
    for delivery in &installed.deliveries {
        assert_eq!(delivery.status, Some(200), "secrets function answered");
    }
    let instance_id = installed.app_instance_id;
    // The secrets function announced both deliveries on the engine's bus; the Lansweeper
    // stack's rule delivers them to the function.
    let events = world.installations.events().await;
    let updates = events
        .iter()
        .filter(|event| event["detail"]["step"] == "secrets-updated")
        .count();
    assert_eq!(updates, 2, "{events:?}");
    for event in events {
        assert_eq!(event["detail"]["account"], account);
        let invocation = Invocation::new(FUNCTION_ARN, DEFAULT_ATTEMPT_TIME);
        let result = world
            .function
            .handle_payload(event, invocation)
            .await
            .unwrap();
        assert_eq!(result["statusCode"], 200, "{result}");
    }

    // Callback URL set, instance suspended awaiting authorization.
    let callback_secret = world.stored(account).await["callback_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(callback_secret.len(), 32);
    let callback_url =
        format!("https://{API_HOST}/{STAGE}/integration/{account}/{callback_secret}");
    assert_eq!(world.field(&instance_id, "callback_url"), callback_url);
    assert_eq!(
        world.field(&instance_id, "connection_status"),
        "pending_authorization"
    );
    let instance = world.instance(&instance_id);
    assert_eq!(instance["suspended"], true);
    assert_eq!(
        instance["suspensionComment"],
        "Awaiting authorization from Lansweeper"
    );

    // The customer authorizes; Lansweeper redirects the browser to the callback URL.
    let code = world.lansweeper.authorize(&app.client_id, &callback_url);
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}{account}/{callback_secret}", world.local_url))
        .query(&[("code", &code)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        format!(
            "https://{account}.{}/app_instances/{instance_id}",
            world.provider.sandbox.domain()
        )
        .as_str()
    );
    let stored = world.stored(account).await;
    assert!(
        stored["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "refresh token stored in Secrets Manager"
    );
    let instance = world.instance(&instance_id);
    assert_eq!(instance["suspended"], false);
    assert_eq!(world.field(&instance_id, "connection_status"), "success");
    assert_eq!(world.field(&instance_id, "callback_url"), Value::Null);

    // The queued sync, received from SQS and handled as Lambda's SQS event.
    let (ids, answer) = world.deliver_queued().await;
    assert_eq!(ids.len(), 1, "one sync message queued");
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let cut_off = (chrono::Utc::now() - chrono::Duration::days(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let expected = (0..ASSETS)
        .map(|i| world.lansweeper.asset(&site, i).unwrap())
        .filter(|a| {
            a.get("assetCustom").is_some()
                && a["assetBasicInfo"]["type"] != "Location"
                && a["assetBasicInfo"]["lastSeen"]
                    .as_str()
                    .is_none_or(|l| l > cut_off.as_str())
        })
        .count();
    assert!(expected > 600, "{expected}");
    assert_eq!(world.discovered_count(account).await, expected);
    assert!(world.field(&instance_id, "sync_end_at").is_string());

    // A Lansweeper 5xx: the message fails (SQS retries it, then the DLQ), nothing suspended.
    world.queue_sync(account).await;
    world.lansweeper.inject_fault(LansweeperFault {
        target: LansweeperEndpoint::GraphQl,
        kind: LansweeperFaultKind::ServerError { status: 503 },
        // Every attempt of the client's retries of the first GraphQL request.
        times: 5,
    });
    let (ids, answer) = world.deliver_queued().await;
    assert_eq!(ids.len(), 1);
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": ids[0]}]})
    );
    assert_eq!(world.instance(&instance_id)["suspended"], false);

    // A Lansweeper 401 (authorization revoked): the instance is suspended, the message done.
    world.lansweeper.revoke_all_tokens();
    world.queue_sync(account).await;
    let (ids, answer) = world.deliver_queued().await;
    assert_eq!(ids.len(), 1);
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let instance = world.instance(&instance_id);
    assert_eq!(instance["suspended"], true);
    assert!(
        instance["suspensionComment"]
            .as_str()
            .unwrap()
            .starts_with("Unable to connect to Lansweeper: "),
        "{instance}"
    );
}
