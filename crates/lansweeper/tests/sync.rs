//! End to end: install → callback → SQS sync of a 1,000-asset site into the sandbox 4me; a
//! Lansweeper 401 suspends the instance; a 5xx fails the SQS record.
#![allow(clippy::unwrap_used)]

mod support;

use app_builder_core::secrets::{LocalSecretStore, SecretStore};
use app_builder_sandbox::lansweeper::{
    LansweeperEndpoint, LansweeperFault, LansweeperFaultKind, SiteSpec,
};

use support::{Env, PROVIDER, sqs_event};

#[tokio::test]
async fn syncs_a_thousand_asset_site_into_discovered_configuration_items() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    let mut spec = SiteSpec::new("HQ", 1_000);
    spec.installations = vec!["Main".into(), "Branch".into()];
    let site = env.lansweeper.add_site(spec);
    let customer = env.authorized("wdc-sync").await;

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
    let result = env.summary(&customer.instance_id);
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
    let customer = env.authorized("wdc-401").await;
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
    let customer = env.authorized("wdc-5xx").await;
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
    let customer = env.authorized("wdc-lease").await;
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
