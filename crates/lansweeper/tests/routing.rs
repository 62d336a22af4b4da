//! Payload routing of the Lambda entry point (docs/original.md#lansweeper) and start-up configuration.
#![allow(clippy::unwrap_used)]

mod support;

use app_builder_core::config::{ConfigError, Settings};
use app_builder_core::events::Invocation;
use app_builder_core::secrets::LocalSecretStore;
use lansweeper::{DEFAULT_ATTEMPT_TIME as TIME, FunctionConfig};
use serde_json::{Value, json};
use support::{Env, FUNCTION_ARN, PROVIDER};

async fn env() -> (Env<LocalSecretStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (
        Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await,
        dir,
    )
}

fn invocation() -> Invocation<'static> {
    Invocation::new(FUNCTION_ARN, TIME)
}

fn body_message(result: &Value) -> String {
    let body: Value = serde_json::from_str(result["body"].as_str().unwrap()).unwrap();
    body["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn installation_events_go_to_the_installation_handler_with_the_unqualified_arn() {
    let (env, _dir) = env().await;
    let customer = env.install("wdc-r").await;
    let event = support::installation_event(
        env.sandbox.domain(),
        "lansweeper",
        "wdc-r",
        app_builder_core::bus::LifecycleStep::SecretsUpdated,
    );
    let result = env
        .function
        .handle_payload(
            event,
            Invocation::new(&format!("{FUNCTION_ARN}:live"), TIME),
        )
        .await
        .unwrap();
    assert_eq!(result["statusCode"], 200, "{result}");
    assert_eq!(body_message(&result), "OK");
    assert_eq!(env.instance(&customer.instance_id)["suspended"], true);
}

#[tokio::test]
async fn schedule_events_fan_out_and_http_events_answer_as_api_gateway_expects() {
    let (env, _dir) = env().await;
    env.install("wdc-s").await;
    let schedule = json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
        "time": "2026-11-23T08:00:00Z", "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/LansweeperResyncSchedule"],
        "detail": {}
    });
    let result = env
        .function
        .handle_payload(schedule, invocation())
        .await
        .unwrap();
    assert_eq!(result["statusCode"], 200);
    assert_eq!(body_message(&result), "Triggered refresh of 1 accounts");
    assert_eq!(env.queue.messages(), ["wdc-s"]);

    let http = support::apigw_v1_event("GET", "wdc-s/not-the-secret", &[("code", "x")]);
    let result = env
        .function
        .handle_payload(http, invocation())
        .await
        .unwrap();
    assert_eq!(result["statusCode"], 400);
    assert_eq!(body_message(&result), "Unauthorized");
}

/// No body crashes the function: one said to be base64 that is not is a 400 (the event library
/// panics on it), one above the limit a 413, both before anything reads them.
#[tokio::test]
async fn a_body_that_is_not_base64_or_too_large_is_refused_not_a_crash() {
    let (env, _dir) = env().await;
    let mut http = support::apigw_v1_event("POST", "wdc-s/secret", &[]);
    http["isBase64Encoded"] = json!(true);
    http["body"] = json!("this is not base64!");
    let result = env
        .function
        .handle_payload(http.clone(), invocation())
        .await
        .unwrap();
    assert_eq!(result["statusCode"], 400);
    assert_eq!(body_message(&result), "Request body is not valid base64");

    http["isBase64Encoded"] = json!(false);
    http["body"] = json!("x".repeat(app_builder_core::events::MAX_BODY_BYTES + 1));
    let result = env
        .function
        .handle_payload(http, invocation())
        .await
        .unwrap();
    assert_eq!(result["statusCode"], 413);
    assert!(body_message(&result).starts_with("Request body larger than"));
    assert!(env.queue.messages().is_empty());
}

#[tokio::test]
async fn an_sqs_record_for_an_unknown_customer_is_dropped_not_retried() {
    let (env, _dir) = env().await;
    let sqs = json!({"Records": [{
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "body": "wdc-q",
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183",
                       "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1545082649185"},
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:lansweeper-refresh-trigger",
        "awsRegion": "eu-west-1"
    }]});
    let result = env
        .function
        .handle_payload(sqs, invocation())
        .await
        .unwrap();
    assert_eq!(result["batchItemFailures"], json!([]));
}

#[test]
fn configuration_names_the_missing_refresh_queue_url() {
    let env = |with_queue: bool| {
        Settings::from_lookup(move |name: &str| {
            let value = match name {
                "PARAM_4ME_DOMAIN" => "4me-demo.com",
                "PARAM_BOOTSTRAP_APP" => "4me-app-builder",
                "PARAM_BOOTSTRAP_ACCOUNT" => "wdc",
                "PARAM_OFFERING_REFERENCE" => "lansweeper",
                "REFRESH_QUEUE_URL" if with_queue => "https://sqs.eu-west-1.amazonaws.com/1/q",
                "STATE_TABLE" => "4me-app-builder-4me-demo.com-state",
                "SYNC_INTERVAL" => "4",
                "LAST_SEEN_DAYS" => "60",
                _ => return None,
            };
            Some(value.to_owned())
        })
    };
    match FunctionConfig::from_settings(&env(false)) {
        Err(ConfigError::Missing(name)) => assert_eq!(name, "REFRESH_QUEUE_URL"),
        other => panic!("{other:?}"),
    }
    let config = FunctionConfig::from_settings(&env(true)).unwrap();
    assert_eq!(
        config.context.offering_reference.as_deref(),
        Some("lansweeper")
    );
    assert_eq!(config.function.sync_interval.as_secs(), 4 * 3600);
    assert_eq!(config.function.last_seen_days, 60);
    assert_eq!(config.function.max_summary_size, 15_000);
    assert_eq!(config.api.api_url, "https://api.lansweeper.com/api");
    assert_eq!(config.state_table, "4me-app-builder-4me-demo.com-state");
}
