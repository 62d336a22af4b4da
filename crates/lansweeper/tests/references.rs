//! Software, people and OS references, OS end-of-support updates and the
//! asset-type availability check (docs/original.md#lansweeper) against the sandbox 4me and the Lansweeper fake.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;

use app_builder_core::fourme::FourMeClient;
use app_builder_core::secrets::LocalSecretStore;
use app_builder_sandbox::lansweeper::SiteSpec;
use app_builder_sandbox::{OperationAnswer, OperationFault};
use serde_json::{Value, json};
use support::{Env, PROVIDER, deadline, sqs_event};

const SITE_ASSETS: u64 = 300;

async fn create(client: &FourMeClient, mutation: &str, input: Value) -> String {
    let payload: Value = client
        .mutation(
            &format!(
                "mutation($input: {mutation}Input!) {{ {}(input: $input) {{ errors {{ path message }} {} {{ id }} }} }}",
                lower_first(mutation),
                if mutation.starts_with("Product") { "product" } else { "configurationItem" }
            ),
            &json!({"input": input}),
        )
        .await
        .unwrap();
    payload
        .as_object()
        .unwrap()
        .values()
        .find_map(|v| v.get("id"))
        .and_then(Value::as_str)
        .unwrap()
        .to_owned()
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Software CIs in the customer account: id by name.
async fn seed_software(client: &FourMeClient) -> HashMap<&'static str, String> {
    let product = create(
        client,
        "ProductCreate",
        json!({"name": "Software", "brand": "Various", "category": "software"}),
    )
    .await;
    let mut ids = HashMap::new();
    for (name, alternate, status) in [
        (
            "Microsoft Windows Server 2012 R2 Standard",
            vec![],
            "in_production",
        ),
        (
            "Windows 10",
            vec!["Microsoft Windows 10 Enterprise"],
            "installed",
        ),
        ("Google Chrome", vec![], "in_production"),
        ("Slack", vec![], "removed"),
    ] {
        let id = create(
            client,
            "ConfigurationItemCreate",
            json!({"name": name, "productId": product, "alternateNames": alternate, "status": status}),
        )
        .await;
        ids.insert(name, id);
    }
    ids
}

fn users_of(asset: &Value) -> Vec<(String, Option<String>)> {
    asset["users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_owned(),
                u["email"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

struct Synced {
    env: Env<LocalSecretStore>,
    /// The local secret store's directory (removed when dropped).
    _dir: tempfile::TempDir,
    site: String,
    software: HashMap<&'static str, String>,
    summary: Value,
    people: [String; 3],
}

/// A 300-asset site synced into an account with software CIs and people to link.
async fn synced_with_references() -> Synced {
    synced_with_references_after(|_| {}).await
}

/// As [`synced_with_references`], `prepare` run on the environment just before the sync.
async fn synced_with_references_after(prepare: impl FnOnce(&Env<LocalSecretStore>)) -> Synced {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    let site = env.lansweeper.add_site(SiteSpec::new("HQ", SITE_ASSETS));
    let customer = env.authorized("wdc-refs").await;
    let client = env.customer_client("wdc-refs").await;
    let software = seed_software(&client).await;
    let john = env.sandbox.seed_person(
        "wdc-refs",
        json!({"name": "John Doe", "primaryEmail": "John.Doe@example.com"}),
    );
    let bruce = env.sandbox.seed_person(
        "wdc-refs",
        json!({"name": "Bruce Wayne", "authenticationID": "bwayne"}),
    );
    let clark = env.sandbox.seed_person(
        "wdc-refs",
        json!({"name": "Clark Kent", "primaryEmail": "clark.kent@example.com", "disabled": true}),
    );

    prepare(&env);
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-refs"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let summary = env.summary(&customer.instance_id);
    Synced {
        env,
        _dir: dir,
        site,
        software,
        summary,
        people: [john, bruce, clark],
    }
}

#[tokio::test]
async fn lookup_4me_references() {
    let Synced {
        env,
        site,
        software,
        people: [john, bruce, clark],
        _dir,
        ..
    } = synced_with_references().await;
    let cis = env.discovered("wdc-refs").await;
    let (mut with_os, mut with_users, mut with_software) = (0, 0, 0);
    for index in 0..SITE_ASSETS {
        let asset = env.lansweeper.asset(&site, index).unwrap();
        let Some(ci) = cis.get(asset["key"].as_str().unwrap()) else {
            continue;
        };
        let expected_os = match asset["operatingSystem"]["name"].as_str() {
            Some("Microsoft Windows Server 2012 R2 Standard") => {
                Some(&software["Microsoft Windows Server 2012 R2 Standard"])
            }
            Some("Microsoft Windows 10 Enterprise") => Some(&software["Windows 10"]),
            _ => None,
        };
        assert_eq!(
            ci["operatingSystemId"].as_str(),
            expected_os.map(String::as_str)
        );
        with_os += usize::from(expected_os.is_some());

        let has_chrome = asset["softwares"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == "Google Chrome");
        let children: Vec<&str> = ci["ciRelations"]["childIds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        // Retired software (status outside the original's list) is never linked.
        let expected_children: Vec<&str> = if has_chrome {
            vec![software["Google Chrome"].as_str()]
        } else {
            vec![]
        };
        assert_eq!(children, expected_children);
        with_software += usize::from(has_chrome);

        let users = users_of(&asset);
        let mut expected_users = Vec::new();
        if users
            .iter()
            .any(|(_, e)| e.as_deref() == Some("john.doe@example.com"))
        {
            expected_users.push(john.as_str());
        }
        if users.iter().any(|(n, _)| n == "bwayne") {
            expected_users.push(bruce.as_str());
        }
        let mut ids: Vec<&str> = ci["userIds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            !ids.contains(&clark.as_str()),
            "disabled people are not linked"
        );
        ids.sort_unstable();
        expected_users.sort_unstable();
        assert_eq!(ids, expected_users, "{asset}");
        with_users += usize::from(!expected_users.is_empty());
    }
    assert!(with_os > 10 && with_users > 10 && with_software > 10);
}

#[tokio::test]
async fn updates_end_of_support_dates() {
    let Synced {
        env,
        software,
        summary,
        _dir,
        ..
    } = synced_with_references().await;
    assert_eq!(
        summary["info"]["operatingSystems"], "Stored end-of-support for 2 item(s)",
        "{summary}"
    );
    let eos = |name: &str| env.sandbox.record(&software[name]).unwrap()["endOfSupportDate"].clone();
    assert_eq!(
        eos("Microsoft Windows Server 2012 R2 Standard"),
        "2023-10-10"
    );
    assert_eq!(eos("Windows 10"), "2025-10-14");
    assert_eq!(eos("Google Chrome"), Value::Null);
}

/// `os_ci_mutation_helper` errors: a failed end-of-support update is reported in the summary,
/// the other OS CI is still updated and the sync succeeds.
#[tokio::test]
async fn os_ci_mutation_helper_errors() {
    let Synced {
        env,
        software,
        summary,
        _dir,
        ..
    } = synced_with_references_after(|env| {
        env.sandbox.inject_operation_fault(OperationFault {
            account: "wdc-refs".into(),
            operation: "configurationItemUpdate".into(),
            answer: OperationAnswer::GraphQlError {
                message: "Validation failed".into(),
            },
            times: 1,
        });
    })
    .await;
    let eos = |name: &str| env.sandbox.record(&software[name]).unwrap()["endOfSupportDate"].clone();
    let (failed, stored) = if eos("Windows 10").is_null() {
        ("Windows 10", "Microsoft Windows Server 2012 R2 Standard")
    } else {
        ("Microsoft Windows Server 2012 R2 Standard", "Windows 10")
    };
    assert!(eos(failed).is_null());
    assert!(eos(stored).is_string());
    assert_eq!(
        summary["errors"]["operatingSystems"],
        format!("Unable to store end-of-support for: {}", software[failed]),
        "{summary}"
    );
    assert!(
        summary["info"].get("operatingSystems").is_none(),
        "{summary}"
    );
    assert!(
        summary["uploadCounts"]["HQ"]["HQ installation"]
            .as_u64()
            .unwrap()
            > 100
    );
    assert_eq!(env.sandbox.stats().faults_served, 1);
}

#[tokio::test]
async fn finds_matching_configured_asset_types_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    let site = env.lansweeper.add_site(SiteSpec::new("HQ", SITE_ASSETS));
    let customer = env.authorized("wdc-types").await;
    env.set_fields(
        &customer.instance_id,
        &[
            ("import_type", json!("selected_types_only")),
            ("asset_types", json!(" * ipad\n * LINUX\n * Kassa")),
        ],
    )
    .await;
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-types"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let summary = env.summary(&customer.instance_id);
    let expected = env.expected_uploads(&site, SITE_ASSETS, |a| {
        matches!(a["assetBasicInfo"]["type"].as_str(), Some("iPad" | "Linux"))
    });
    assert!(expected > 10);
    assert_eq!(
        summary["uploadCounts"]["HQ"]["HQ installation"], expected,
        "{summary}"
    );
    let kinds: std::collections::BTreeSet<String> = env
        .discovered("wdc-types")
        .await
        .values()
        .map(|ci| {
            ci["name"]
                .as_str()
                .unwrap()
                .split('-')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["IPAD", "LINUX"]);
}

#[tokio::test]
async fn handles_no_matching_asset_types_for_one_site() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    env.lansweeper.add_site(SiteSpec::new("HQ", 20));
    let customer = env.authorized("wdc-notypes").await;
    env.set_fields(
        &customer.instance_id,
        &[
            ("import_type", json!("selected_types_only")),
            ("asset_types", json!(" * Kassa")),
        ],
    )
    .await;
    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-notypes"), deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let summary = env.summary(&customer.instance_id);
    let message = summary["errors"]["HQ"].as_str().unwrap();
    assert!(
        message.starts_with(
            "No assets matched selected asset types. Available types: Windows; Linux; "
        ),
        "{summary}"
    );
    assert!(summary.get("uploadCounts").is_none(), "{summary}");
    assert_eq!(env.lansweeper.stats().asset_pages, 0);
}
