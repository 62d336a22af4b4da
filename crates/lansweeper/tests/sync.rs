//! End to end: install → callback → SQS sync of a 1,000-asset site into the sandbox 4me; a
//! Lansweeper 401 suspends the instance; a 5xx fails the SQS record.
#![allow(clippy::unwrap_used)]

mod support;

use app_builder_core::fourme::instances::{InstanceUpdate, update_app_instance};
use app_builder_core::secrets::{LocalSecretStore, SecretStore};
use app_builder_sandbox::lansweeper::{
    LansweeperEndpoint, LansweeperFault, LansweeperFaultKind, SiteSpec,
};
use aws_lambda_events::sqs::SqsEvent;
use serde_json::{Value, json};
use support::{API_URL, Env, PROVIDER};

fn sqs_event(account: &str) -> SqsEvent {
    serde_json::from_value(json!({"Records": [{
        "messageId": "m-1", "receiptHandle": "r", "body": account,
        "attributes": {}, "messageAttributes": {}, "md5OfBody": "x",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:lansweeper-refresh-trigger",
        "awsRegion": "eu-west-1"
    }]}))
    .unwrap()
}

/// An authorized customer with import type `all`.
async fn authorized(env: &Env<LocalSecretStore>, account: &str) -> support::Customer {
    let customer = env.install(account).await;
    assert_eq!(env.installation("CreateSecret", account).await.0, 200);
    let secret = env
        .secret(account)
        .await
        .get_str("callback_secret")
        .unwrap()
        .to_owned();
    let code = env.lansweeper.authorize(
        &customer.lansweeper_app.client_id,
        &format!("{API_URL}{account}/{secret}"),
    );
    let resp = env
        .get(&format!("{account}/{secret}"), &[("code", &code)])
        .await;
    assert_eq!(resp.status(), 302);
    update_app_instance(
        &env.provider,
        &customer.instance_id,
        &InstanceUpdate {
            custom_fields: vec![("import_type".into(), json!("all"))],
            ..InstanceUpdate::default()
        },
    )
    .await
    .unwrap();
    customer
}

#[tokio::test]
async fn syncs_a_thousand_asset_site_into_discovered_configuration_items() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    let mut spec = SiteSpec::new("HQ", 1_000);
    spec.installations = vec!["Main".into(), "Branch".into()];
    let site = env.lansweeper.add_site(spec);
    let customer = authorized(&env, "wdc-sync").await;

    let response = env.function.handle_sqs(&sqs_event("wdc-sync")).await;
    assert!(response.batch_item_failures.is_empty());

    let cut_off = (chrono::Utc::now() - chrono::Duration::days(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let expected = |installation: &str| {
        let inst = env
            .lansweeper
            .installations(&site)
            .into_iter()
            .find(|i| i.name == installation)
            .unwrap();
        (0..1_000)
            .map(|i| env.lansweeper.asset(&site, i).unwrap())
            .filter(|a| {
                a["installationId"] == inst.id.as_str()
                    && a.get("assetCustom").is_some()
                    && a["assetBasicInfo"]["type"] != "Location"
                    && a["assetBasicInfo"]["lastSeen"]
                        .as_str()
                        .is_none_or(|l| l > cut_off.as_str())
            })
            .count() as u64
    };
    let summary = env.custom_field(&customer.instance_id, "sync_summary");
    let summary = summary.as_str().unwrap();
    let json_text = summary
        .strip_prefix("```\n")
        .unwrap()
        .strip_suffix("\n```\n")
        .unwrap();
    let result: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(
        result["uploadCounts"]["HQ"]["Main"],
        expected("Main"),
        "{result}"
    );
    assert_eq!(result["uploadCounts"]["HQ"]["Branch"], expected("Branch"));
    assert!(expected("Main") > 300);
    assert!(result.get("errors").is_none(), "{result}");
    assert!(
        env.custom_field(&customer.instance_id, "sync_start_at")
            .is_string()
    );
    assert!(
        env.custom_field(&customer.instance_id, "sync_end_at")
            .is_string()
    );
    // Paged: 100 assets per page, one upload per page.
    assert!(env.lansweeper.stats().asset_pages >= 10);
}

#[tokio::test]
async fn a_lansweeper_401_suspends_the_instance_and_drops_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    env.lansweeper.add_site(SiteSpec::new("HQ", 10));
    let customer = authorized(&env, "wdc-401").await;
    env.lansweeper.revoke_all_tokens();
    let response = env.function.handle_sqs(&sqs_event("wdc-401")).await;
    assert!(response.batch_item_failures.is_empty());
    let instance = env.instance(&customer.instance_id);
    assert_eq!(instance["suspended"], true);
    assert!(
        instance["suspensionComment"]
            .as_str()
            .unwrap()
            .starts_with("Unable to connect to Lansweeper: "),
        "{instance}"
    );
}

#[tokio::test]
async fn a_lansweeper_5xx_fails_the_sqs_record_for_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    env.lansweeper.add_site(SiteSpec::new("HQ", 10));
    let customer = authorized(&env, "wdc-5xx").await;
    env.lansweeper.inject_fault(LansweeperFault {
        target: LansweeperEndpoint::GraphQl,
        kind: LansweeperFaultKind::ServerError { status: 503 },
        times: 10,
    });
    let response = env.function.handle_sqs(&sqs_event("wdc-5xx")).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier, "m-1");
    assert_eq!(env.instance(&customer.instance_id)["suspended"], false);
}

#[tokio::test]
async fn never_two_overlapping_syncs_for_one_account() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    env.lansweeper.add_site(SiteSpec::new("HQ", 10));
    let customer = authorized(&env, "wdc-lease").await;
    // A running sync holds the lease.
    let until = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    env.store
        .update(&env.secret_name("wdc-lease"), |current| {
            let mut next = current.cloned()?;
            next.insert("sync_lease_until", until.clone());
            Some(next)
        })
        .await
        .unwrap();
    let pages = env.lansweeper.stats().asset_pages;
    let response = env.function.handle_sqs(&sqs_event("wdc-lease")).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(env.lansweeper.stats().asset_pages, pages);
    assert!(
        env.custom_field(&customer.instance_id, "sync_summary")
            .is_null()
    );

    // An expired lease is taken over, and released at the end.
    let expired = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    env.store
        .update(&env.secret_name("wdc-lease"), |current| {
            let mut next = current.cloned()?;
            next.insert("sync_lease_until", expired.clone());
            Some(next)
        })
        .await
        .unwrap();
    let response = env.function.handle_sqs(&sqs_event("wdc-lease")).await;
    assert!(response.batch_item_failures.is_empty());
    assert!(
        env.custom_field(&customer.instance_id, "sync_summary")
            .is_string()
    );
    assert!(
        env.secret("wdc-lease")
            .await
            .get("sync_lease_until")
            .is_none()
    );
}
