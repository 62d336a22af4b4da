//! The original's error scenarios (docs/original.md#tests-of-the-original) of one site, one page or one reference lookup: a fault scoped to one
//! Lansweeper site / operation or to one 4me operation of the customer account fails only that
//! part; the rest of the sync goes on and the failure is reported in the summary (transient
//! failures fail the SQS record instead, docs/original.md#fixed-bugs).
#![allow(clippy::unwrap_used)]

mod support;

use app_builder_core::secrets::LocalSecretStore;
use app_builder_sandbox::lansweeper::{
    LansweeperEndpoint, LansweeperFault, LansweeperFaultKind, LansweeperScope, SiteSpec,
};
use app_builder_sandbox::{OperationAnswer, OperationFault};
use serde_json::Value;
use support::{Env, PROVIDER, deadline, sqs_event};

const SITE_ASSETS: u64 = 300;

/// Two sites, "Site A" (installation "a1") and "Site B" (installations "b1", "b2"), and an
/// authorized customer; returns the environment, the site ids and the instance id. The tests
/// fail the second site, so a fault not scoped to it would hit site A first.
async fn two_sites(
    dir: &tempfile::TempDir,
    account: &str,
) -> (Env<LocalSecretStore>, String, String, String) {
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    let mut a = SiteSpec::new("Site A", SITE_ASSETS);
    a.installations = vec!["a1".into()];
    let mut b = SiteSpec::new("Site B", SITE_ASSETS);
    b.installations = vec!["b1".into(), "b2".into()];
    b.seed = 11;
    let site_a = env.lansweeper.add_site(a);
    let site_b = env.lansweeper.add_site(b);
    let customer = env.authorized(account).await;
    (env, site_a, site_b, customer.instance_id)
}

fn scoped(
    operation: &str,
    site_id: &str,
    kind: LansweeperFaultKind,
) -> (LansweeperScope, LansweeperFault) {
    (
        LansweeperScope {
            operation: Some(operation.into()),
            site_id: Some(site_id.into()),
        },
        LansweeperFault {
            target: LansweeperEndpoint::GraphQl,
            kind,
            times: 1,
        },
    )
}

/// Expected uploads of one installation of a site.
fn expected(env: &Env<LocalSecretStore>, site: &str, installation: &str) -> usize {
    let id = env
        .lansweeper
        .installations(site)
        .into_iter()
        .find(|i| i.name == installation)
        .unwrap()
        .id;
    env.expected_uploads(site, SITE_ASSETS, |a| a["installationId"] == id.as_str())
}

fn assert_site_a_synced(env: &Env<LocalSecretStore>, site_a: &str, summary: &Value) {
    let a1 = expected(env, site_a, "a1");
    assert!(a1 > 50);
    assert_eq!(summary["uploadCounts"]["Site A"]["a1"], a1, "{summary}");
    assert!(summary["errors"].get("Site A").is_none(), "{summary}");
}

#[tokio::test]
async fn handles_lansweeper_error_when_retrieving_installations_for_one_site() {
    let dir = tempfile::tempdir().unwrap();
    let (env, site_a, site_b, instance) = two_sites(&dir, "wdc-inst").await;
    let (scope, fault) = scoped(
        "allInstallations",
        &site_b,
        LansweeperFaultKind::GraphQlError,
    );
    env.lansweeper.inject_scoped_fault(scope, fault);

    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-inst"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let summary = env.summary(&instance);
    let error = summary["errors"]["Site B"].as_str().unwrap();
    assert!(error.starts_with("Unable to query "), "{summary}");
    assert!(summary["uploadCounts"].get("Site B").is_none(), "{summary}");
    assert_site_a_synced(&env, &site_a, &summary);
    assert_eq!(env.lansweeper.stats().faults_served, 1);
}

#[tokio::test]
async fn a_graphql_error_on_the_sites_query_is_the_summary_and_the_message_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (env, _, _, instance) = two_sites(&dir, "wdc-sites").await;
    env.lansweeper.inject_scoped_fault(
        LansweeperScope {
            operation: Some("authorizedSites".into()),
            site_id: None,
        },
        LansweeperFault {
            target: LansweeperEndpoint::GraphQl,
            kind: LansweeperFaultKind::GraphQlError,
            times: 1,
        },
    );

    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-sites"), deadline())
        .await;
    // As the original: the customer sees the error in the summary, and no retry meets it again.
    assert!(response.batch_item_failures.is_empty());
    let summary = env.summary(&instance);
    let error = summary["error"].as_str().unwrap();
    assert!(error.starts_with("Unable to query sites"), "{summary}");
    assert_eq!(summary.as_object().unwrap().len(), 1, "{summary}");
    assert!(
        env.custom_field(&instance, "sync_end_at").is_string(),
        "the sync is recorded as ended"
    );
    let duration = env.custom_field(&instance, "sync_duration_text");
    assert!(duration.as_str().unwrap().starts_with("0:0"), "{duration}");
    assert_eq!(env.instance(&instance)["suspended"], false);
}

#[tokio::test]
async fn a_transient_lansweeper_error_for_one_site_fails_the_record_for_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (env, _, site_b, instance) = two_sites(&dir, "wdc-inst5xx").await;
    let (scope, mut fault) = scoped(
        "allInstallations",
        &site_b,
        LansweeperFaultKind::ServerError { status: 503 },
    );
    fault.times = 100;
    env.lansweeper.inject_scoped_fault(scope, fault);

    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-inst5xx"), deadline())
        .await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(env.instance(&instance)["suspended"], false);
    assert!(env.custom_field(&instance, "sync_summary").is_null());
}

#[tokio::test]
async fn handles_lansweeper_error_when_retrieving_assets_for_one_site() {
    let dir = tempfile::tempdir().unwrap();
    let (env, site_a, site_b, instance) = two_sites(&dir, "wdc-assets").await;
    // The first asset page of site B (installation b1) fails; b2 and site A are unaffected.
    let (scope, fault) = scoped(
        "getAssetResources",
        &site_b,
        LansweeperFaultKind::GraphQlError,
    );
    env.lansweeper.inject_scoped_fault(scope, fault);

    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-assets"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let summary = env.summary(&instance);
    assert_eq!(summary["uploadCounts"]["Site B"]["b1"], 0, "{summary}");
    assert_eq!(summary["errorCounts"]["Site B"]["b1"], 1, "{summary}");
    let errors = summary["errors"]["Site B"]["b1"].as_array().unwrap();
    assert!(
        errors[0].as_str().unwrap().starts_with("Unable to query "),
        "{summary}"
    );
    let b2 = expected(&env, &site_b, "b2");
    assert!(b2 > 50);
    assert_eq!(summary["uploadCounts"]["Site B"]["b2"], b2, "{summary}");
    assert!(summary["errors"]["Site B"].get("b2").is_none(), "{summary}");
    assert_site_a_synced(&env, &site_a, &summary);
}

#[tokio::test]
async fn handles_lansweeper_error_when_retrieving_asset_types_for_one_site() {
    let dir = tempfile::tempdir().unwrap();
    let (env, site_a, site_b, instance) = two_sites(&dir, "wdc-types").await;
    env.set_fields(
        &instance,
        &[
            ("import_type", serde_json::json!("selected_types_only")),
            ("asset_types", serde_json::json!(" * Windows\n * Linux")),
        ],
    )
    .await;
    let (scope, fault) = scoped("assetTypes", &site_b, LansweeperFaultKind::GraphQlError);
    env.lansweeper.inject_scoped_fault(scope, fault);

    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-types"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let summary = env.summary(&instance);
    let error = summary["errors"]["Site B"].as_str().unwrap();
    assert!(error.starts_with("Unable to query "), "{summary}");
    assert!(summary["uploadCounts"].get("Site B").is_none(), "{summary}");
    let a1 = env.expected_uploads(&site_a, SITE_ASSETS, |a| {
        matches!(
            a["assetBasicInfo"]["type"].as_str(),
            Some("Windows" | "Linux")
        )
    });
    assert!(a1 > 10);
    assert_eq!(summary["uploadCounts"]["Site A"]["a1"], a1, "{summary}");
}

#[tokio::test]
async fn handles_error_on_first_page_upload() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    let site = env.lansweeper.add_site(SiteSpec::new("HQ", SITE_ASSETS));
    let customer = env.authorized("wdc-upload").await;
    env.sandbox.inject_operation_fault(OperationFault {
        account: "wdc-upload".into(),
        operation: "discoveredConfigurationItems".into(),
        answer: OperationAnswer::GraphQlError {
            message: "Unable to upload".into(),
        },
        times: 1,
    });

    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-upload"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let summary = env.summary(&customer.instance_id);
    let all = env.expected_uploads(&site, SITE_ASSETS, |_| true);
    let uploaded = summary["uploadCounts"]["HQ"]["HQ installation"]
        .as_u64()
        .unwrap() as usize;
    // Only the first page (at most 100 assets) is missing.
    assert!(uploaded < all && uploaded + 100 >= all, "{summary}");
    assert_eq!(env.discovered("wdc-upload").await.len(), uploaded);
    assert_eq!(
        summary["errorCounts"]["HQ"]["HQ installation"], 1,
        "{summary}"
    );
    let errors = summary["errors"]["HQ"]["HQ installation"]
        .as_array()
        .unwrap();
    assert!(
        errors[0].as_str().unwrap().contains("Unable to upload"),
        "{summary}"
    );
    assert_eq!(env.sandbox.stats().faults_served, 1);
}

/// A failing reference lookup of the first page: that page is reported as not uploaded, the
/// other pages are.
async fn error_preparing_upload(account: &str, operation: &str) {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    let site = env.lansweeper.add_site(SiteSpec::new("HQ", SITE_ASSETS));
    let customer = env.authorized(account).await;
    env.sandbox.inject_operation_fault(OperationFault {
        account: account.into(),
        operation: operation.into(),
        answer: OperationAnswer::GraphQlError {
            message: "lookup refused".into(),
        },
        times: 1,
    });

    let response = env
        .function
        .handle_sqs(&sqs_event(account), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let summary = env.summary(&customer.instance_id);
    assert_eq!(
        summary["errors"]["HQ"]["HQ installation"],
        serde_json::json!(["Unable to upload assets to 4me."]),
        "{summary}"
    );
    let all = env.expected_uploads(&site, SITE_ASSETS, |_| true);
    let uploaded = summary["uploadCounts"]["HQ"]["HQ installation"]
        .as_u64()
        .unwrap() as usize;
    assert!(uploaded < all && uploaded + 100 >= all, "{summary}");
    assert_eq!(env.sandbox.stats().faults_served, 1);
}

/// The original's "logged" error: its own `Unable to query 4me people data`.
#[tokio::test]
async fn handles_logged_error_preparing_upload() {
    error_preparing_upload("wdc-people", "people").await;
}

/// The software lookup (the first lookup of a page) failing.
#[tokio::test]
async fn handles_non_logged_error_preparing_upload() {
    error_preparing_upload("wdc-software", "AllSoftware").await;
}
