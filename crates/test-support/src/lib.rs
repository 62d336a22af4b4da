//! Test support shared by the workspace's tests (a dev-dependency only).
//!
//! - [`sandbox_endpoints`]: the 4me endpoints of a running sandbox;
//! - [`moto_store`]: Secrets Manager on moto, as the functions use it in Lambda;
//! - [`doc`] and [`installation_event`]: a secret document and an engine bus event from JSON;
//! - [`any_json`]: a proptest strategy of JSON values;
//! - [`FaultProxy`]: an HTTP proxy in front of an AWS endpoint (moto) that makes chosen AWS
//!   operations fail as AWS fails them (503 `ServiceUnavailableException`, 400
//!   `ThrottlingException`), counts the operations it sees, and can be stopped and started again
//!   on the same port (connections refused meanwhile), so that a test drives the real AWS SDK
//!   through an outage.
#![allow(clippy::unwrap_used)] // test support: a failed unwrap is a failed test

mod fault_proxy;

use app_builder_core::bus::{InstallationChanged, LifecycleStep};
use app_builder_core::fourme::Endpoints;
use app_builder_core::secrets::{AwsSecretStore, SecretDocument};
use app_builder_sandbox::Sandbox;
use serde_json::Value;

pub use fault_proxy::{Fault, FaultProxy};

/// Any JSON value, nested up to four levels (proptest).
pub fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|n| serde_json::json!(n)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// The OAuth, GraphQL and REST endpoints of `sandbox`.
pub fn sandbox_endpoints(sandbox: &Sandbox) -> Endpoints {
    Endpoints {
        oauth: sandbox.oauth_url().parse().unwrap(),
        graphql: sandbox.graphql_url().parse().unwrap(),
        rest: sandbox.rest_url().parse().unwrap(),
    }
}

/// AWS Secrets Manager on moto, as the functions use it in Lambda (`AwsSecretStore::from_env`),
/// with more compare-and-swap attempts than the default (tests share one moto). Fails, never
/// skips, when `AWS_ENDPOINT_URL` is not set.
pub async fn moto_store() -> AwsSecretStore {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        !endpoint.is_empty(),
        "AWS_ENDPOINT_URL is not set: these tests need AWS on moto. Run `cargo xtask test`, or \
         start `moto_server -H 127.0.0.1 -p 5055` and run with \
         AWS_ENDPOINT_URL=http://127.0.0.1:5055 AWS_ACCESS_KEY_ID=testing \
         AWS_SECRET_ACCESS_KEY=testing AWS_REGION=eu-west-1"
    );
    AwsSecretStore::from_env().await.with_max_attempts(30)
}

/// A secret document from a JSON object.
pub fn doc(value: Value) -> SecretDocument {
    SecretDocument::try_from(value).unwrap()
}

/// An `Installation changed` event of `offering` for `account` as EventBridge delivers it, with
/// a change id of its own.
pub fn installation_event(
    domain: &str,
    offering: &str,
    account: &str,
    step: LifecycleStep,
) -> Value {
    InstallationChanged {
        domain: domain.to_owned(),
        offering: offering.to_owned(),
        account: account.to_owned(),
        step,
        keys: vec!["secrets".to_owned()],
        change: uuid::Uuid::new_v4().to_string(),
    }
    .eventbridge_event(
        "7a1e2b3c-0001-4d5e-8f90-a1b2c3d4e5f6",
        "123456789012",
        "eu-west-1",
    )
}
