//! Behaviour every `StateStore` adapter must show; used by `state_local` and `state_moto`.
#![allow(clippy::unwrap_used)] // test support code: a failed unwrap is a failed test

use std::sync::Arc;

use app_builder_core::state::{Expect, HeldRecord, StateStore, Written};
use serde_json::json;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A hold of `key` until `until` that must be granted (`why` says why it must).
async fn hold<S: StateStore>(store: &S, key: &str, until: i64, why: &str) -> HeldRecord {
    HeldRecord::take(store, key, until)
        .await
        .unwrap()
        .expect(why)
}

/// A first write needs the key absent; a second `Absent` write conflicts and returns the record.
pub async fn absent_then_conflict<S: StateStore>(store: &S, key: &str) {
    assert_eq!(store.get(key).await.unwrap(), None);
    let first = store
        .put(
            key,
            &json!({"status": "in_progress"}),
            Some(now() + 60),
            Expect::Absent,
        )
        .await
        .unwrap();
    assert_eq!(first, Written::Done(1));
    let again = store
        .put(key, &json!({"status": "other"}), None, Expect::Absent)
        .await
        .unwrap();
    let Written::Conflict(Some(current)) = again else {
        panic!("expected a conflict with the live record, got {again:?}");
    };
    assert_eq!(current.data, json!({"status": "in_progress"}));
    assert_eq!(current.version, 1);
    assert!(current.expires_at.is_some_and(|at| at > now()));
}

/// Compare-and-swap: only the expected version is replaced; the version counts writes.
pub async fn compare_and_swap<S: StateStore>(store: &S, key: &str) {
    assert_eq!(
        store
            .put(key, &json!(1), None, Expect::Version(1))
            .await
            .unwrap(),
        Written::Conflict(None),
        "no record: a version cannot match"
    );
    assert_eq!(
        store
            .put(key, &json!(1), None, Expect::Absent)
            .await
            .unwrap(),
        Written::Done(1)
    );
    assert_eq!(
        store
            .put(key, &json!(2), Some(now() + 600), Expect::Version(1))
            .await
            .unwrap(),
        Written::Done(2)
    );
    let stale = store
        .put(key, &json!("stale"), None, Expect::Version(1))
        .await
        .unwrap();
    assert!(
        matches!(stale, Written::Conflict(Some(ref r)) if r.version == 2 && r.data == json!(2))
    );
    let record = store.get(key).await.unwrap().unwrap();
    assert_eq!((record.data, record.version), (json!(2), 2));
    assert!(record.expires_at.is_some_and(|at| at > now()));
    // Removing the expiry makes the record permanent.
    assert_eq!(
        store
            .put(key, &json!(3), None, Expect::Version(2))
            .await
            .unwrap(),
        Written::Done(3)
    );
    assert_eq!(store.get(key).await.unwrap().unwrap().expires_at, None);
}

/// An expired record is absent for reads and conditions, and replacing it keeps counting.
pub async fn expired_records_are_absent<S: StateStore>(store: &S, key: &str) {
    assert_eq!(
        store
            .put(key, &json!("old"), Some(now() - 1), Expect::Absent)
            .await
            .unwrap(),
        Written::Done(1)
    );
    assert_eq!(store.get(key).await.unwrap(), None);
    assert_eq!(
        store
            .put(key, &json!("old"), None, Expect::Version(1))
            .await
            .unwrap(),
        Written::Conflict(None),
        "an expired record's version does not match"
    );
    assert!(!store.delete(key, 1).await.unwrap());
    assert_eq!(
        store
            .put(key, &json!("new"), None, Expect::Absent)
            .await
            .unwrap(),
        Written::Done(2),
        "a version names one write, also across expiry"
    );
    assert_eq!(store.get(key).await.unwrap().unwrap().data, json!("new"));
}

/// Deletes are conditioned on the live version.
pub async fn delete_by_version<S: StateStore>(store: &S, key: &str) {
    assert!(!store.delete(key, 1).await.unwrap(), "nothing to delete");
    store
        .put(key, &json!({}), None, Expect::Absent)
        .await
        .unwrap();
    assert!(!store.delete(key, 7).await.unwrap(), "wrong version");
    assert!(store.get(key).await.unwrap().is_some());
    assert!(store.delete(key, 1).await.unwrap());
    assert_eq!(store.get(key).await.unwrap(), None);
}

/// Of many concurrent `Absent` writes of one key, exactly one wins.
pub async fn one_concurrent_claim_wins<S: StateStore + 'static>(store: Arc<S>, key: &str) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let key = key.to_owned();
            tokio::spawn(async move {
                store
                    .put(
                        &key,
                        &json!({"claimed_by": i}),
                        Some(now() + 60),
                        Expect::Absent,
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), Written::Done(_)) {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

/// Of many concurrent compare-and-swap increments, none is lost.
pub async fn concurrent_increments_lose_nothing<S: StateStore + 'static>(store: Arc<S>, key: &str) {
    store
        .put(key, &json!(0), None, Expect::Absent)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let key = key.to_owned();
            tokio::spawn(async move {
                loop {
                    let current = store.get(&key).await.unwrap().unwrap();
                    let next = json!(current.data.as_i64().unwrap() + 1);
                    match store
                        .put(&key, &next, None, Expect::Version(current.version))
                        .await
                        .unwrap()
                    {
                        Written::Done(_) => break,
                        Written::Conflict(_) => tokio::task::yield_now().await,
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let record = store.get(key).await.unwrap().unwrap();
    assert_eq!((record.data, record.version), (json!(8), 9));
}

/// Keys are checked before any call.
pub async fn invalid_keys_are_refused<S: StateStore>(store: &S) {
    assert!(store.get("").await.is_err());
    let long = "k".repeat(app_builder_core::state::MAX_KEY_LEN + 1);
    assert!(
        store
            .put(&long, &json!(1), None, Expect::Absent)
            .await
            .is_err()
    );
}

/// A named lease: another owner cannot take it while it is live, its owner can again (a chained
/// piece of work handing it on), an extension keeps it, a release frees it for anyone.
pub async fn named_leases_pass_on_to_their_owner<S: StateStore>(store: &S, key: &str) {
    use app_builder_core::state::Lease;
    let first = Lease::acquire_for(store, key, "sync-1", now() + 600)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Lease::acquire_for(store, key, "sync-2", now() + 600)
            .await
            .unwrap(),
        None
    );
    assert!(
        Lease::acquire(store, key, now() + 600)
            .await
            .unwrap()
            .is_none()
    );
    let until = now() + 900;
    let mut again = Lease::acquire_for(store, key, "sync-1", until)
        .await
        .unwrap()
        .expect("the owner takes its lease again");
    assert_eq!(
        store.get(key).await.unwrap().unwrap().expires_at,
        Some(until)
    );
    // The first holder's copy is stale: it can neither extend nor free the lease now.
    let mut stale = first.clone();
    assert!(!stale.extend(store, now() + 1200).await.unwrap());
    first.release(store).await.unwrap();
    assert!(store.get(key).await.unwrap().is_some());
    let until = now() + 1200;
    assert!(again.extend(store, until).await.unwrap());
    assert_eq!(
        store.get(key).await.unwrap().unwrap().expires_at,
        Some(until)
    );
    again.release(store).await.unwrap();
    assert!(
        Lease::acquire_for(store, key, "sync-2", now() + 600)
            .await
            .unwrap()
            .is_some()
    );
}

/// A hold: the record read and marked in one request, exclusive while live, released by the
/// holder's next write (which must be at the hold's version) or by its release.
pub async fn holds_are_exclusive_and_released_by_the_holders_write<S: StateStore>(
    store: &S,
    key: &str,
) {
    use app_builder_core::state::Hold;
    let first = hold(store, key, now() + 600, "a missing key can be held").await;
    assert_eq!(first.data(), None);
    assert_eq!(store.get(key).await.unwrap(), None, "held, not written");
    assert_eq!(store.hold(key, now() + 600).await.unwrap(), Hold::Busy);
    assert!(
        matches!(
            store
                .put(key, &json!("other"), None, Expect::Absent)
                .await
                .unwrap(),
            Written::Conflict(None)
        ),
        "a held key is not absent"
    );
    assert!(first.write(store, &json!({"a": 1})).await.unwrap());
    let written = store.get(key).await.unwrap().unwrap();
    assert_eq!((written.data, written.expires_at), (json!({"a": 1}), None));

    // The hold counts as a write: a writer that read before it no longer matches.
    let second = hold(store, key, now() + 600, "the write released the hold").await;
    assert_eq!(second.data(), Some(&json!({"a": 1})));
    assert!(matches!(
        store
            .put(key, &json!("stale"), None, Expect::Version(written.version))
            .await
            .unwrap(),
        Written::Conflict(Some(_))
    ));
    second.release(store).await.unwrap();
    assert_eq!(store.get(key).await.unwrap().unwrap().data, json!({"a": 1}));

    // A hold lost to its deadline: another takes the record, and the first writes nothing.
    let lapsed = hold(store, key, now() - 1, "the key can be held").await;
    let taken = hold(
        store,
        key,
        now() + 600,
        "a lapsed hold lets the key be held",
    )
    .await;
    assert!(!lapsed.write(store, &json!("late")).await.unwrap());
    assert!(taken.write(store, &json!({"a": 2})).await.unwrap());
    let written = store.get(key).await.unwrap().unwrap();
    assert_eq!(written.data, json!({"a": 2}));

    // A release leaves the record as it was, its expiry included.
    let until = now() + 3600;
    assert!(matches!(
        store
            .put(
                key,
                &json!({"a": 3}),
                Some(until),
                Expect::Version(written.version)
            )
            .await
            .unwrap(),
        Written::Done(_)
    ));
    let held = hold(store, key, now() + 600, "the key can be held").await;
    held.release(store).await.unwrap();
    let released = store.get(key).await.unwrap().unwrap();
    assert_eq!(
        (released.data, released.expires_at),
        (json!({"a": 3}), Some(until))
    );
}

/// Holding a key that was never written and releasing it leaves nothing; an expired record is
/// held as missing and not revived.
pub async fn holds_of_missing_or_expired_records_leave_nothing<S: StateStore>(
    store: &S,
    key: &str,
) {
    let held = hold(store, key, now() + 600, "the key can be held").await;
    held.release(store).await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), None);
    assert!(matches!(
        store
            .put(key, &json!("old"), Some(now() - 1), Expect::Absent)
            .await
            .unwrap(),
        Written::Done(_)
    ));
    let held = hold(store, key, now() + 600, "the key can be held").await;
    assert_eq!(held.data(), None, "an expired record is missing");
    held.release(store).await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), None);
    assert!(matches!(
        store
            .put(key, &json!("new"), None, Expect::Absent)
            .await
            .unwrap(),
        Written::Done(_)
    ));
}

/// Of many concurrent holds of one key, exactly one is taken.
pub async fn one_concurrent_hold_wins<S: StateStore + 'static>(store: Arc<S>, key: &str) {
    use app_builder_core::state::Hold;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            let key = key.to_owned();
            tokio::spawn(async move { store.hold(&key, now() + 60).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), Hold::Taken { .. }) {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}
