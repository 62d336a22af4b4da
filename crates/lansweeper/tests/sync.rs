//! End to end: install → callback → SQS sync of a 1,000-asset site into the sandbox 4me; a
//! Lansweeper 401 suspends the instance; a 5xx fails the SQS record.
#![allow(clippy::unwrap_used)]

mod support;

use app_builder_core::secrets::{LocalSecretStore, SecretStore};
use app_builder_core::state::{Lease, StateStore};
use app_builder_sandbox::lansweeper::{
    LansweeperEndpoint, LansweeperFault, LansweeperFaultKind, SiteSpec,
};

use serde_json::{Value, json};
use support::{Env, PROVIDER, deadline, sqs_event};

#[tokio::test]
async fn syncs_a_thousand_asset_site_into_discovered_configuration_items() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    let mut spec = SiteSpec::new("HQ", 1_000);
    spec.installations = vec!["Main".into(), "Branch".into()];
    let site = env.lansweeper.add_site(spec);
    let customer = env.authorized("wdc-sync").await;

    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-sync"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());

    let expected = |installation: &str| {
        let inst = env
            .lansweeper
            .installations(&site)
            .into_iter()
            .find(|i| i.name == installation)
            .unwrap();
        env.expected_uploads(&site, 1_000, |a| a["installationId"] == inst.id.as_str())
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
    // Pages of up to 500 assets from Lansweeper; the sandbox refuses uploads of more than 100
    // CIs, so the absence of errors shows each page went up in several uploads.
    let pages = env.lansweeper.stats().asset_pages;
    assert!((2..=4).contains(&pages), "{pages} pages");
}

#[tokio::test]
async fn errors_suspends_on_lansweeper_authorization_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    env.lansweeper.add_site(SiteSpec::new("HQ", 10));
    let customer = env.authorized("wdc-401").await;
    env.lansweeper.revoke_all_tokens();
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-401"), deadline())
        .await;
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
    let event = sqs_event("wdc-5xx");
    let response = env.function.handle_sqs(&event, deadline()).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        Some(&response.batch_item_failures[0].item_identifier),
        event.records[0].message_id.as_ref()
    );
    assert_eq!(env.instance(&customer.instance_id)["suspended"], false);
    // A failed attempt releases its claim: SQS's redeliveries of the message sync once
    // Lansweeper is back (the injected faults run out).
    let redeliveries = async {
        for _ in 0..10 {
            let response = env.function.handle_sqs(&event, deadline()).await;
            if response.batch_item_failures.is_empty() {
                return true;
            }
        }
        false
    };
    assert!(redeliveries.await, "the message never synced");
    let summary = env.summary(&customer.instance_id);
    assert!(summary.get("errors").is_none(), "{summary}");
}

#[tokio::test]
async fn a_message_delivered_again_after_its_sync_is_acknowledged_without_a_second_sync() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    env.lansweeper.add_site(SiteSpec::new("HQ", 3));
    env.authorized("wdc-twice").await;
    let event = sqs_event("wdc-twice");
    let response = env.function.handle_sqs(&event, deadline()).await;
    assert!(response.batch_item_failures.is_empty());
    let requests = env.lansweeper.stats().graphql_requests;
    // SQS delivers at least once: the same message again.
    let response = env.function.handle_sqs(&event, deadline()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        env.lansweeper.stats().graphql_requests,
        requests,
        "no second sync"
    );
    // A new message for the account does sync.
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-twice"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert!(env.lansweeper.stats().graphql_requests > requests);
}

#[tokio::test]
async fn never_two_overlapping_syncs_for_one_account() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    env.lansweeper.add_site(SiteSpec::new("HQ", 10));
    let customer = env.authorized("wdc-lease").await;
    // A running sync (in another container) holds the lease in the engine's state store.
    let key = lansweeper::sync::sync_lease_key("lansweeper", "wdc-lease");
    let held = Lease::acquire(&env.state, &key, chrono::Utc::now().timestamp() + 600)
        .await
        .unwrap()
        .unwrap();
    let pages = env.lansweeper.stats().asset_pages;
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-lease"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(env.lansweeper.stats().asset_pages, pages);
    assert!(
        env.custom_field(&customer.instance_id, "sync_summary")
            .is_null()
    );

    // Released (or expired: a lease expires by itself): the next message syncs, and a lease an
    // earlier version kept in the customer secret is dropped from it.
    held.release(&env.state).await.unwrap();
    env.store
        .update(&env.secret_name("wdc-lease"), |current| {
            let mut next = current.cloned()?;
            next.insert("sync_lease_until", "2026-01-01T00:00:00Z");
            Some(next)
        })
        .await
        .unwrap();
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-lease"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert!(
        env.custom_field(&customer.instance_id, "sync_summary")
            .is_string()
    );
    assert!(
        env.secret("wdc-lease")
            .await
            .get("sync_lease_until")
            .is_none(),
        "the customer secret holds secrets only"
    );
    assert_eq!(
        env.state.get(&key).await.unwrap(),
        None,
        "released at the end"
    );
}

#[tokio::test]
async fn handles_refresh_sqs_call_without_import_type() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    let site = env.lansweeper.add_site(SiteSpec::new("HQ", 300));
    let customer = env.authorized("wdc-ip").await;
    env.set_fields(&customer.instance_id, &[("import_type", Value::Null)])
        .await;
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-ip"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let with_ip = env.expected_uploads(&site, 300, |a| {
        a["assetBasicInfo"].get("ipAddress").is_some()
    });
    let all = env.expected_uploads(&site, 300, |_| true);
    assert!(with_ip > 10 && with_ip < all, "{with_ip} of {all}");
    let summary = env.summary(&customer.instance_id);
    assert_eq!(
        summary["uploadCounts"]["HQ"]["HQ installation"], with_ip,
        "{summary}"
    );
    // No OS CI known in 4me: no end-of-support updates, nothing reported (docs/original.md#lansweeper).
    assert!(summary.get("info").is_none(), "{summary}");
}

#[tokio::test]
async fn handles_refresh_get_call_with_label_generator_lansweeper_asset_name() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    let site = env.lansweeper.add_site(SiteSpec::new("HQ", 50));
    let customer = env.authorized("wdc-labels").await;
    env.set_fields(
        &customer.instance_id,
        &[("label_generator", json!("lansweeper_asset_name"))],
    )
    .await;
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-labels"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let cis = env.discovered("wdc-labels").await;
    assert_eq!(cis.len(), env.expected_uploads(&site, 50, |_| true));
    for (key, ci) in &cis {
        let index: u64 = key.rsplit('-').next().unwrap().parse().unwrap();
        let asset = env.lansweeper.asset(&site, index).unwrap();
        let product = env
            .sandbox
            .record(ci["productId"].as_str().unwrap())
            .unwrap();
        assert_eq!(ci["label"], asset["assetBasicInfo"]["name"], "{ci}");
        assert_eq!(ci["name"], product["name"], "{ci}");
    }
}

#[tokio::test]
async fn errors_suspends_on_4me_customer_authorization_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    env.lansweeper.add_site(SiteSpec::new("HQ", 20));
    let customer = env.authorized("wdc-4me401").await;
    // The customer's 4me token no longer works.
    env.store
        .update(&env.secret_name("wdc-4me401"), |current| {
            let mut next = current.cloned()?;
            let mut app = next.get("application").cloned()?;
            app["client_secret"] = json!("revoked");
            next.insert("application", app);
            Some(next)
        })
        .await
        .unwrap();
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-4me401"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty(), "not retried");
    let instance = env.instance(&customer.instance_id);
    assert_eq!(instance["suspended"], true);
    assert_eq!(
        instance["suspensionComment"],
        "Unable to connect to customer account. Please rotate the token and unsuspend."
    );
}

#[tokio::test]
async fn handles_failure_on_download_for_first_page() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    let site = env.lansweeper.add_site(SiteSpec::new("HQ", 300));
    let customer = env.authorized("wdc-download").await;
    // The first page's async result cannot be read (a 4me error, not a transient one).
    env.sandbox
        .inject_fault(app_builder_sandbox::Fault::ServerError {
            target: app_builder_sandbox::FaultTarget::AsyncResult,
            status: 400,
            times: 1,
        });
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-download"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let all = env.expected_uploads(&site, 300, |_| true);
    let summary = env.summary(&customer.instance_id);
    let uploaded = summary["uploadCounts"]["HQ"]["HQ installation"]
        .as_u64()
        .unwrap() as usize;
    assert!(uploaded < all && uploaded + 100 >= all, "{summary}");
    assert_eq!(
        summary["errorCounts"]["HQ"]["HQ installation"], 1,
        "{summary}"
    );
    let errors = summary["errors"]["HQ"]["HQ installation"]
        .as_array()
        .unwrap();
    assert!(errors[0].as_str().unwrap().contains("400"), "{summary}");

    // The next sync reports every CI again (the upload itself went through).
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-download"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let summary = env.summary(&customer.instance_id);
    assert_eq!(summary["uploadCounts"]["HQ"]["HQ installation"], all);
    assert!(summary.get("errors").is_none(), "{summary}");
}

/// A sync queued before the customer disabled the app does nothing: no Lansweeper request, no
/// sync fields written.
#[tokio::test]
async fn a_queued_sync_of_a_disabled_instance_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    env.lansweeper.add_site(SiteSpec::new("HQ", 10));
    let customer = env.authorized("wdc-off").await;
    env.sandbox
        .set_app_instance_enabled(&customer.instance_id, false)
        .await
        .unwrap();
    let pages = env.lansweeper.stats().asset_pages;

    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-off"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(env.lansweeper.stats().asset_pages, pages);
    assert!(
        env.custom_field(&customer.instance_id, "sync_start_at")
            .is_null()
    );
}

/// Uninstalled: the customer secret with the Lansweeper tokens is scheduled for deletion, and a
/// sync queued before finds nothing to work with.
#[tokio::test]
async fn an_uninstall_forgets_the_lansweeper_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    env.authorized("wdc-gone").await;
    let validated = "lansweeper/lansweeper/wdc-gone/validated-credentials";
    assert!(env.state.get(validated).await.unwrap().is_some());
    assert!(
        env.secret("wdc-gone")
            .await
            .get_str("refresh_token")
            .is_some()
    );
    let event = support::installation_event(
        env.sandbox.domain(),
        "lansweeper",
        "wdc-gone",
        app_builder_core::bus::LifecycleStep::Deleted,
    );
    assert_eq!(
        env.installation_event(&event).await,
        (200, lansweeper::TOKENS_FORGOTTEN.to_owned())
    );
    assert_eq!(
        env.store.get(&env.secret_name("wdc-gone")).await.unwrap(),
        None
    );
    // Its state record goes too.
    assert_eq!(env.state.get(validated).await.unwrap(), None);
    // Again (EventBridge delivers at least once): the same answer.
    assert_eq!(env.installation_event(&event).await.0, 200);
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-gone"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty(), "nothing to retry");
}
