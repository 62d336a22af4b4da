//! The real `secrets` binary under a Lambda runtime API emulator, over AWS on moto
//! (`AWS_ENDPOINT_URL`): started as Lambda starts a new execution environment, its first
//! invocation is an accepted delivery that lands in Secrets Manager (and so is a second, warm
//! one), and a payload that would
//! crash an event library (a body said to be base64 that is not) is answered 400.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::time::Duration;

use app_builder_runtime_emulator::{Outcome, cold_start};
use serde_json::json;
use support::aws::Deployed;

const BINARY: &str = env!("CARGO_BIN_EXE_secrets");
const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_binary_stores_its_first_delivery_as_a_new_lambda_environment() {
    let deployed = Deployed::create().await;
    let customer = format!("c{}", uuid::Uuid::new_v4().simple());
    let first = deployed.delivery_event(&customer, "cold-1");
    let other = format!("{customer}-2");
    let second = deployed.delivery_event(&other, "warm-1");
    let started = cold_start(
        Path::new(BINARY),
        &deployed.environment(),
        vec![first, second],
        TIMEOUT,
    )
    .await
    .unwrap();
    let Outcome::Response(response) = &started.outcome else {
        panic!("not a response: {:?}", started.outcome);
    };
    assert_eq!(response["statusCode"], 200, "{response}");
    assert!(
        response["body"]
            .as_str()
            .unwrap()
            .contains("Secrets stored"),
        "{response}"
    );
    assert_eq!(
        deployed.stored(&customer).await.unwrap()["secrets"],
        json!({"typeform_token": "tfp_cold_start"})
    );
    // The second delivery, warm (the provider context cached), is stored too.
    let [(_, Outcome::Response(warm))] = &started.warm[..] else {
        panic!("one warm response: {:?}", started.warm);
    };
    assert_eq!(warm["statusCode"], 200, "{warm}");
    assert!(deployed.stored(&other).await.is_some());
    assert!(started.init <= started.first_response);
    assert!(started.peak_rss_kib.unwrap_or(1) > 0);
}

#[tokio::test]
async fn the_binary_answers_a_body_that_is_not_base64_with_400() {
    let deployed = Deployed::create().await;
    let customer = format!("c{}", uuid::Uuid::new_v4().simple());
    let mut event = deployed.delivery_event(&customer, "cold-2");
    event["body"] = json!("%%% not base64 %%%");
    event["isBase64Encoded"] = json!(true);
    let started = cold_start(
        Path::new(BINARY),
        &deployed.environment(),
        vec![event],
        TIMEOUT,
    )
    .await
    .unwrap();
    let Outcome::Response(response) = &started.outcome else {
        panic!(
            "not a response (a crash is a function error): {:?}",
            started.outcome
        );
    };
    assert_eq!(response["statusCode"], 400, "{response}");
    assert_eq!(deployed.stored(&customer).await, None);
}

/// A body longer than any accepted one (a 6 MB body, API Gateway takes up to 10 MB) is left
/// unread by the runtime's payload type and refused with 413; the same environment then stores
/// the next delivery.
#[tokio::test]
async fn the_binary_refuses_a_body_too_long_to_read_with_413_and_serves_the_next() {
    let deployed = Deployed::create().await;
    let customer = format!("c{}", uuid::Uuid::new_v4().simple());
    let mut huge = deployed.delivery_event(&customer, "huge-1");
    huge["body"] = json!("x".repeat(6 * 1024 * 1024));
    let next = deployed.delivery_event(&customer, "after-huge");
    let started = cold_start(
        Path::new(BINARY),
        &deployed.environment(),
        vec![huge, next],
        TIMEOUT,
    )
    .await
    .unwrap();
    let Outcome::Response(response) = &started.outcome else {
        panic!("not a response: {:?}", started.outcome);
    };
    assert_eq!(response["statusCode"], 413, "{response}");
    match &started.warm[..] {
        [(_, Outcome::Response(response))] => assert_eq!(response["statusCode"], 200),
        other => panic!("the next delivery was not answered: {other:?}"),
    }
    assert!(deployed.stored(&customer).await.is_some());
}
