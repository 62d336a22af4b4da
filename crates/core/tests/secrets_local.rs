//! Secret naming, the merge, and the local file secret store.

#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

mod secrets_contract;

use std::sync::Arc;

use app_builder_core::secrets::{
    CustomerSecretId, LocalSecretStore, SecretName, SecretNameError, SecretStore, SecretStoreError,
    customer_secret_name, merge, parse_customer_secret_id, provider_secret_name,
};
use secrets_contract::doc;
use serde_json::{Value, json};

const APP: &str = "4me-app-builder";
const DOMAIN: &str = "4me-demo.com";

fn id(offering_reference: &str, account: &str) -> Option<CustomerSecretId> {
    Some(CustomerSecretId {
        offering_reference: offering_reference.to_owned(),
        account: account.to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// Naming

#[test]
fn provider_and_customer_names() {
    assert_eq!(
        provider_secret_name(APP, DOMAIN, "wdc").unwrap().as_str(),
        "4me-app-builder/4me-demo.com/wdc"
    );
    assert_eq!(
        customer_secret_name(APP, "typeform", DOMAIN, "acme")
            .unwrap()
            .as_str(),
        "4me-app-builder/typeform/4me-demo.com/instances/acme"
    );
}

#[test]
fn naming_rejects_bad_segments() {
    assert_eq!(
        provider_secret_name(APP, DOMAIN, ""),
        Err(SecretNameError::EmptySegment {
            segment: "provider"
        })
    );
    assert_eq!(
        customer_secret_name(APP, "type/form", DOMAIN, "acme"),
        Err(SecretNameError::SlashInSegment {
            segment: "offering_reference"
        })
    );
    assert_eq!(
        customer_secret_name(APP, "typeform", DOMAIN, "ac me"),
        Err(SecretNameError::InvalidCharacter(' '))
    );
    assert_eq!(
        SecretName::new("a//b"),
        Err(SecretNameError::EmptyPathSegment)
    );
    assert_eq!(
        SecretName::new("x".repeat(513)),
        Err(SecretNameError::TooLong(513))
    );
    assert!(SecretName::new("x".repeat(512)).is_ok());
}

#[test]
fn parse_customer_secret_name_and_arn() {
    assert_eq!(
        parse_customer_secret_id(
            "4me-app-builder/typeform/4me-demo.com/instances/acme",
            APP,
            DOMAIN
        ),
        id("typeform", "acme")
    );
    assert_eq!(
        parse_customer_secret_id(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:4me-app-builder/lansweeper/4me-demo.com/instances/wdc-Ab12Cd",
            APP,
            DOMAIN
        ),
        id("lansweeper", "wdc")
    );
    // An account name that itself ends in a dash-suffix survives ARN stripping.
    assert_eq!(
        parse_customer_secret_id(
            "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:4me-app-builder/typeform/4me-demo.com/instances/my-acme1-XyZ789",
            APP,
            DOMAIN
        ),
        id("typeform", "my-acme1")
    );
}

#[test]
fn parse_customer_secret_rejects_other_ids() {
    let reject = [
        // wrong app, including the substring trap
        "my-app2/typeform/4me-demo.com/instances/acme",
        "4me-app-builder2/typeform/4me-demo.com/instances/acme",
        "x4me-app-builder/typeform/4me-demo.com/instances/acme",
        // wrong domain (also a prefix/suffix of the right one)
        "4me-app-builder/typeform/4me-demo.com.evil/instances/acme",
        "4me-app-builder/typeform/4me-demo.co/instances/acme",
        "4me-app-builder/typeform/4me-qa.com/instances/acme",
        // missing / extra segments
        "4me-app-builder/4me-demo.com/wdc",
        "4me-app-builder/typeform/4me-demo.com/instances",
        "4me-app-builder/typeform/4me-demo.com/instances/",
        "4me-app-builder/typeform/4me-demo.com/instances/acme/extra",
        "4me-app-builder//4me-demo.com/instances/acme",
        "4me-app-builder/typeform/4me-demo.com/instance/acme",
        "4me-app-builder/typeform/4me-demo.com/instancesx/acme",
        // malformed ARNs: no 6-character suffix, wrong service or resource
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:4me-app-builder/typeform/4me-demo.com/instances/acme",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:4me-app-builder/typeform/4me-demo.com/instances/acme-Ab12",
        "arn:aws:ssm:eu-west-1:123456789012:secret:4me-app-builder/typeform/4me-demo.com/instances/acme-Ab12Cd",
        "arn:aws:secretsmanager:eu-west-1:123456789012:parameter:4me-app-builder/typeform/4me-demo.com/instances/acme-Ab12Cd",
        "arn:aws:secretsmanager:eu-west-1",
        "",
    ];
    for raw in reject {
        assert_eq!(parse_customer_secret_id(raw, APP, DOMAIN), None, "{raw}");
    }
    // The provider's own app name is not a customer app when given with a different domain.
    assert_eq!(
        parse_customer_secret_id(
            "4me-app-builder/typeform/4me-demo.com/instances/acme",
            "my-app",
            DOMAIN
        ),
        None
    );
}

// ---------------------------------------------------------------------------------------------
// Merge

#[test]
fn merge_replaces_top_level_keys_and_removes_nulls() {
    let current = doc(json!({
        "application": {"client_id": "a"},
        "secrets": {"typeform_token": "t", "other": "o"},
        "typeform_secret": "h",
    }));
    let update = doc(json!({"secrets": {"typeform_token": "new"}, "typeform_secret": null}));
    assert_eq!(
        Value::from(merge(Some(current), &update)),
        json!({"application": {"client_id": "a"}, "secrets": {"typeform_token": "new"}})
    );
}

#[test]
fn merge_on_create_drops_nulls_and_keeps_nested_nulls() {
    let update = doc(json!({"policy": {"audience": null}, "gone": null}));
    assert_eq!(
        Value::from(merge(None, &update)),
        json!({"policy": {"audience": null}})
    );
}

#[test]
fn merge_removes_nulls_stored_by_the_original() {
    let current = doc(json!({"a": null, "b": 1}));
    assert_eq!(
        Value::from(merge(Some(current), &doc(json!({"c": 2})))),
        json!({"b": 1, "c": 2})
    );
}

#[test]
fn document_debug_and_display_show_keys_only() {
    let d = doc(json!({"client_secret": "hunter2-very-secret"}));
    for shown in [format!("{d:?}"), format!("{d}"), format!("{d:#?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("client_secret"), "{shown}");
    }
}

// ---------------------------------------------------------------------------------------------
// Local store

fn store() -> (tempfile::TempDir, LocalSecretStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalSecretStore::new(dir.path().join("secrets"));
    (dir, store)
}

fn customer(account: &str) -> SecretName {
    customer_secret_name(APP, "typeform", DOMAIN, account).unwrap()
}

#[tokio::test]
async fn local_missing_is_none() {
    let (_dir, store) = store();
    secrets_contract::missing_is_none(&store, &customer("missing")).await;
}

#[tokio::test]
async fn local_create_merge_and_null_removal() {
    let (_dir, store) = store();
    secrets_contract::create_merge_and_null_removal(&store, &customer("merge")).await;
}

#[tokio::test]
async fn local_delete_and_recreate() {
    let (_dir, store) = store();
    secrets_contract::delete_and_recreate(&store, &customer("delete")).await;
}

#[tokio::test]
async fn local_scheduled_deletion_and_reinstall() {
    let (_dir, store) = store();
    secrets_contract::scheduled_deletion_and_reinstall(&store, &customer("uninstall")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_twenty_concurrent_writers() {
    let (_dir, store) = store();
    secrets_contract::twenty_concurrent_writers(Arc::new(store), &customer("writers")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_ten_concurrent_creates() {
    let (_dir, store) = store();
    secrets_contract::ten_concurrent_creates(Arc::new(store), &customer("creates")).await;
}

#[tokio::test]
async fn local_secrets_are_separate_files_with_mode_0600() {
    let (_dir, store) = store();
    let provider = provider_secret_name(APP, DOMAIN, "wdc").unwrap();
    let acme = customer("acme");
    store
        .upsert(&provider, doc(json!({"clientID": "p"})))
        .await
        .unwrap();
    store.upsert(&acme, doc(json!({"x": 1}))).await.unwrap();

    let path = store.path_of(&provider);
    assert_eq!(path.parent(), Some(store.dir()));
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some("4me-app-builder%2F4me-demo.com%2Fwdc.json")
    );
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(stored, json!({"clientID": "p"}));
    assert_eq!(
        store.get(&acme).await.unwrap().map(Value::from),
        Some(json!({"x": 1}))
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(store.dir()).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }
    // No temporary files are left behind.
    let leftovers: Vec<String> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn local_invalid_json_is_reported_and_not_overwritten() {
    let (_dir, store) = store();
    let name = customer("broken");
    std::fs::create_dir_all(store.dir()).unwrap();
    std::fs::write(store.path_of(&name), "[\"hunter2\"]").unwrap();

    let err = store.get(&name).await.unwrap_err();
    assert!(
        matches!(err, SecretStoreError::InvalidJson { .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!err.is_transient());

    let err = store.upsert(&name, doc(json!({"a": 1}))).await.unwrap_err();
    assert!(
        matches!(err, SecretStoreError::InvalidJson { .. }),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read_to_string(store.path_of(&name)).unwrap(),
        "[\"hunter2\"]"
    );
}

#[tokio::test]
async fn local_stores_share_a_directory() {
    // Two store values over one directory (as two processes would) see each other's writes.
    let (dir, first) = store();
    let second = LocalSecretStore::new(dir.path().join("secrets"));
    let name = customer("shared");
    first.upsert(&name, doc(json!({"a": 1}))).await.unwrap();
    second.upsert(&name, doc(json!({"b": 2}))).await.unwrap();
    assert_eq!(
        first.get(&name).await.unwrap().map(Value::from),
        Some(json!({"a": 1, "b": 2}))
    );
    assert_eq!(name, name.as_str().parse::<SecretName>().unwrap());
}

#[tokio::test]
async fn local_update_replaces_or_declines() {
    let (_dir, store) = store();
    let name = customer("update");
    secrets_contract::update_replaces_or_declines(&store, &name).await;
    // A declined update does not rewrite the file.
    let before = std::fs::metadata(store.path_of(&name))
        .unwrap()
        .modified()
        .unwrap();
    let inode_before = file_identity(&store.path_of(&name));
    assert_eq!(store.update(&name, |_| None).await.unwrap(), None);
    assert_eq!(file_identity(&store.path_of(&name)), inode_before);
    assert_eq!(
        std::fs::metadata(store.path_of(&name))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
}

/// The inode of a file: a write (temp file + rename) always changes it.
fn file_identity(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[tokio::test]
async fn local_update_declined_creates_nothing() {
    let (_dir, store) = store();
    let name = customer("declined");
    secrets_contract::update_declined_creates_nothing(&store, &name).await;
    assert!(!store.path_of(&name).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_twenty_concurrent_counter_increments() {
    let (_dir, store) = store();
    secrets_contract::concurrent_counter_increments(Arc::new(store), &customer("counter"), 20)
        .await;
}

#[tokio::test]
async fn local_update_on_a_current_thread_runtime_with_a_borrowing_closure() {
    // The closure may borrow local state (no 'static bound) and the store works on a
    // current-thread runtime.
    let (_dir, store) = store();
    let name = customer("borrow");
    let mut calls = 0;
    let label = String::from("borrowed");
    store
        .update(&name, |_| {
            calls += 1;
            Some(secrets_contract::doc(json!({ "label": label.as_str() })))
        })
        .await
        .unwrap();
    assert_eq!(calls, 1);
    assert_eq!(
        store.get(&name).await.unwrap().map(Value::from),
        Some(json!({"label": "borrowed"}))
    );
}

#[tokio::test]
async fn local_a_stale_read_ahead_loses_no_write() {
    let (_dir, store) = store();
    secrets_contract::a_stale_read_ahead_loses_no_write(
        &store,
        &customer("ahead-existing"),
        &customer("ahead-missing"),
    )
    .await;
}
