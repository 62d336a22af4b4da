//! Scheduled event (docs/original.md#tests-of-the-original "handles scheduled event", with paging beyond 100 instances).
#![allow(clippy::unwrap_used)]

mod support;

use app_builder_core::fourme::instances::{InstanceUpdate, update_app_instance};
use app_builder_core::secrets::LocalSecretStore;
use app_builder_sandbox::InstallOptions;
use chrono::{Duration, Utc};
use serde_json::json;
use support::{Env, OFFERING, PROVIDER};

async fn install(
    env: &Env<LocalSecretStore>,
    account: &str,
    sync_start_at: Option<String>,
) -> String {
    let mut custom_fields = serde_json::Map::new();
    if let Some(start) = sync_start_at {
        custom_fields.insert("sync_start_at".into(), json!(start));
    }
    env.sandbox
        .install_app(
            OFFERING,
            account,
            InstallOptions {
                custom_fields,
                // EC keys are generated much faster than RSA ones (105 installations below).
                customer_policy_alg: Some("es256".into()),
                ..InstallOptions::default()
            },
        )
        .await
        .unwrap()
        .app_instance_id
}

fn at(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[tokio::test]
async fn handles_scheduled_event() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    let now = Utc::now();
    install(&env, "wdc-never", None).await;
    install(&env, "wna-it", Some(at(now - Duration::hours(9)))).await;
    install(&env, "recent", Some(at(now - Duration::hours(1)))).await;
    let suspended = install(&env, "suspended", None).await;
    update_app_instance(
        &env.provider,
        &suspended,
        &InstanceUpdate {
            suspended: Some(true),
            suspension_comment: Some("Awaiting authorization from Lansweeper".into()),
            ..InstanceUpdate::default()
        },
    )
    .await
    .unwrap();

    let (status, message) = support::response_parts(env.function.handle_schedule(now).await);
    assert_eq!(
        (status, message.as_str()),
        (200, "Triggered refresh of 2 accounts")
    );
    let mut queued = env.queue.messages();
    queued.sort();
    assert_eq!(queued, ["wdc-never", "wna-it"]);
}

#[tokio::test]
async fn the_schedule_pages_beyond_one_hundred_instances() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    for i in 0..105 {
        install(&env, &format!("c{i:03}"), None).await;
    }
    let (status, message) = support::response_parts(env.function.handle_schedule(Utc::now()).await);
    assert_eq!(
        (status, message.as_str()),
        (200, "Triggered refresh of 105 accounts")
    );
    let mut queued = env.queue.messages();
    queued.sort();
    queued.dedup();
    assert_eq!(queued.len(), 105);
}

#[tokio::test]
async fn schedule_without_provider_secret_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    std::fs::remove_dir_all(dir.path()).unwrap();
    let (status, message) = support::response_parts(env.function.handle_schedule(Utc::now()).await);
    assert_eq!(
        (status, message.as_str()),
        (500, "Configuration error, unable to query 4me")
    );
    assert!(env.queue.messages().is_empty());
}
