//! Behaviour every `SecretStore` adapter must show; used by `secrets_local` and `secrets_moto`.
#![allow(clippy::unwrap_used)] // test support code: a failed unwrap is a failed test

use std::sync::Arc;

use app_builder_core::secrets::{SecretDocument, SecretName, SecretStore};
use serde_json::{Value, json};

/// Builds a document from a JSON object literal.
pub fn doc(value: Value) -> SecretDocument {
    SecretDocument::try_from(value).unwrap()
}

/// A missing secret reads as `None`.
pub async fn missing_is_none<S: SecretStore>(store: &S, name: &SecretName) {
    assert_eq!(store.get(name).await.unwrap(), None);
}

/// Creating drops nulls; updating merges shallowly and removes keys set to null.
pub async fn create_merge_and_null_removal<S: SecretStore>(store: &S, name: &SecretName) {
    let created = store
        .upsert(
            name,
            doc(json!({"application": {"client_id": "id", "client_secret": "s"}, "dropped": null})),
        )
        .await
        .unwrap();
    assert_eq!(
        Value::from(created),
        json!({"application": {"client_id": "id", "client_secret": "s"}})
    );
    assert_eq!(
        store.get(name).await.unwrap().map(Value::from),
        Some(json!({"application": {"client_id": "id", "client_secret": "s"}}))
    );

    store
        .upsert(
            name,
            doc(json!({"secrets": {"a": "1", "b": "2"}, "callback_secret": "c"})),
        )
        .await
        .unwrap();
    let merged = store
        .upsert(
            name,
            doc(json!({"secrets": {"a": "3", "nested": null}, "callback_secret": null})),
        )
        .await
        .unwrap();
    let expected = json!({
        "application": {"client_id": "id", "client_secret": "s"},
        "secrets": {"a": "3", "nested": null},
    });
    assert_eq!(Value::from(merged), expected);
    assert_eq!(
        store.get(name).await.unwrap().map(Value::from),
        Some(expected)
    );
}

/// Delete removes the secret; deleting again (missing) succeeds; the name can be reused.
pub async fn delete_and_recreate<S: SecretStore>(store: &S, name: &SecretName) {
    store.upsert(name, doc(json!({"k": "v"}))).await.unwrap();
    store.delete(name).await.unwrap();
    assert_eq!(store.get(name).await.unwrap(), None);
    store.delete(name).await.unwrap();
    store.upsert(name, doc(json!({"other": 1}))).await.unwrap();
    assert_eq!(
        store.get(name).await.unwrap().map(Value::from),
        Some(json!({"other": 1}))
    );
}

async fn concurrent_writers<S: SecretStore + 'static>(
    store: Arc<S>,
    name: &SecretName,
    writers: usize,
) {
    let mut tasks = Vec::new();
    for i in 0..writers {
        let store = Arc::clone(&store);
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            store
                .upsert(&name, doc(json!({ format!("key{i}"): i })))
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stored = store.get(name).await.unwrap().unwrap();
    let mut expected = serde_json::Map::new();
    for i in 0..writers {
        expected.insert(format!("key{i}"), json!(i));
    }
    let missing: Vec<String> = expected
        .keys()
        .filter(|k| !stored.contains_key(k))
        .cloned()
        .collect();
    assert!(missing.is_empty(), "lost updates: {missing:?}");
    assert_eq!(stored.into_map(), expected);
}

/// 20 concurrent writers of distinct keys into one existing secret: no update is lost.
pub async fn twenty_concurrent_writers<S: SecretStore + 'static>(store: Arc<S>, name: &SecretName) {
    store.upsert(name, doc(json!({"key0": 0}))).await.unwrap();
    concurrent_writers(store, name, 20).await;
}

/// 10 concurrent first writes: one secret containing every key.
pub async fn ten_concurrent_creates<S: SecretStore + 'static>(store: Arc<S>, name: &SecretName) {
    concurrent_writers(store, name, 10).await;
}
