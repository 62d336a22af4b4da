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

/// A secret scheduled for deletion reads as missing; scheduling again (or a missing secret)
/// succeeds; the next write makes it anew, without the old content (a customer who uninstalled
/// and installs again within the recovery window starts clean).
pub async fn scheduled_deletion_and_reinstall<S: SecretStore>(store: &S, name: &SecretName) {
    store
        .upsert(name, doc(json!({"old": "v", "secrets": {"a": 1}})))
        .await
        .unwrap();
    store.schedule_deletion(name, 7).await.unwrap();
    assert_eq!(store.get(name).await.unwrap(), None);
    store.schedule_deletion(name, 7).await.unwrap();
    let merged = store
        .upsert(name, doc(json!({"secrets": {"b": 2}})))
        .await
        .unwrap();
    assert_eq!(Value::from(merged), json!({"secrets": {"b": 2}}));
    assert_eq!(
        store.get(name).await.unwrap().map(Value::from),
        Some(json!({"secrets": {"b": 2}}))
    );
    // And it merges normally again.
    store.upsert(name, doc(json!({"c": 3}))).await.unwrap();
    assert_eq!(
        store.get(name).await.unwrap().map(Value::from),
        Some(json!({"secrets": {"b": 2}, "c": 3}))
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

/// `update` sees the current document (or `None`), stores what the closure returns (top-level
/// nulls dropped) and returns it; a declining closure (`None`) writes nothing.
pub async fn update_replaces_or_declines<S: SecretStore>(store: &S, name: &SecretName) {
    let mut seen = Vec::new();
    let created = store
        .update(name, |current| {
            seen.push(current.cloned());
            Some(doc(json!({"a": 1, "dropped": null})))
        })
        .await
        .unwrap();
    assert_eq!(seen, vec![None]);
    assert_eq!(created.map(Value::from), Some(json!({"a": 1})));

    // The closure replaces the whole document: keys it leaves out are gone.
    let replaced = store
        .update(name, |current| {
            let current = current.unwrap();
            assert_eq!(Value::from(current.clone()), json!({"a": 1}));
            Some(doc(
                json!({"b": current.get("a").unwrap().as_i64().unwrap() + 1}),
            ))
        })
        .await
        .unwrap();
    assert_eq!(replaced.map(Value::from), Some(json!({"b": 2})));

    let declined = store
        .update(name, |current| {
            assert!(current.is_some());
            None
        })
        .await
        .unwrap();
    assert_eq!(declined, None);
    assert_eq!(
        store.get(name).await.unwrap().map(Value::from),
        Some(json!({"b": 2}))
    );
}

/// Declining on a missing secret creates nothing.
pub async fn update_declined_creates_nothing<S: SecretStore>(store: &S, name: &SecretName) {
    let declined = store.update(name, |_| None).await.unwrap();
    assert_eq!(declined, None);
    assert_eq!(store.get(name).await.unwrap(), None);
}

/// `writers` concurrent read-modify-write increments of one counter: none is lost (a real
/// compare-and-swap, not a merge of distinct keys), and each writer's marker key survives.
pub async fn concurrent_counter_increments<S: SecretStore + 'static>(
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
                .update(&name, move |current| {
                    let mut next = current.cloned().unwrap_or_default();
                    let count = next.get("count").and_then(Value::as_u64).unwrap_or(0);
                    next.insert("count", count + 1);
                    next.insert(format!("writer{i}"), true);
                    Some(next)
                })
                .await
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().unwrap().is_some());
    }
    let stored = store.get(name).await.unwrap().unwrap();
    assert_eq!(stored.get("count"), Some(&json!(writers)));
    assert_eq!(stored.len(), writers + 1);
}

/// An update from a read taken ahead loses no write made after that read: of an existing
/// secret, and of one missing when read and created meanwhile; a read of another secret is
/// ignored; a closure declining on a stale read is asked again.
pub async fn a_stale_read_ahead_loses_no_write<S: SecretStore>(
    store: &S,
    existing: &SecretName,
    missing: &SecretName,
) {
    let add = |key: &'static str| {
        move |current: Option<&SecretDocument>| {
            let mut next = current.cloned().unwrap_or_default();
            next.as_map_mut().insert(key.to_owned(), json!(key));
            Some(next)
        }
    };
    store
        .upsert(existing, doc(json!({"a": "a"})))
        .await
        .unwrap();
    let ahead = store.read_ahead(existing).await;
    store
        .upsert(existing, doc(json!({"b": "b"})))
        .await
        .unwrap();
    let stored = store.update_from(existing, ahead, add("c")).await.unwrap();
    let expected = doc(json!({"a": "a", "b": "b", "c": "c"}));
    assert_eq!(stored.as_ref(), Some(&expected));
    assert_eq!(store.get(existing).await.unwrap(), Some(expected));

    let ahead = store.read_ahead(missing).await;
    store.upsert(missing, doc(json!({"b": "b"}))).await.unwrap();
    store.update_from(missing, ahead, add("c")).await.unwrap();
    assert_eq!(
        store.get(missing).await.unwrap(),
        Some(doc(json!({"b": "b", "c": "c"})))
    );

    // A read of another secret is not a read of this one.
    let ahead = store.read_ahead(existing).await;
    store.update_from(missing, ahead, add("d")).await.unwrap();
    assert_eq!(
        store.get(missing).await.unwrap(),
        Some(doc(json!({"b": "b", "c": "c", "d": "d"})))
    );

    // A closure declining on the stale read is asked again on the current document.
    let ahead = store.read_ahead(existing).await;
    store
        .upsert(existing, doc(json!({"go": "go"})))
        .await
        .unwrap();
    let stored = store
        .update_from(existing, ahead, |current: Option<&SecretDocument>| {
            current.filter(|document| document.get("go").is_some())?;
            add("e")(current)
        })
        .await
        .unwrap();
    assert!(stored.is_some_and(|document| document.get("e").is_some()));
}
