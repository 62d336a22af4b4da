//! The idempotency utility over the local state store (its semantics do not depend on the
//! adapter: both pass one contract) and, for simultaneous attempts, over DynamoDB on moto.

#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

mod moto;

use std::sync::Arc;
use std::time::Duration;

use app_builder_core::idempotency::{Begun, Idempotency};
use app_builder_core::state::{DynamoStateStore, LocalStateStore};
use serde_json::json;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn local() -> (Idempotency<LocalStateStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStateStore::new(dir.path());
    (Idempotency::new(store, Duration::from_secs(3600)), dir)
}

#[tokio::test]
async fn a_completed_key_answers_its_stored_response_without_running_again() {
    let (idem, _dir) = local();
    let Begun::New(claim) = idem
        .begin("delivery-1", b"payload", now() + 30)
        .await
        .unwrap()
    else {
        panic!("the first attempt runs");
    };
    assert_eq!(claim.key(), "delivery-1");
    // While it runs, a duplicate is told to come back later.
    assert_eq!(
        idem.begin("delivery-1", b"payload", now() + 30)
            .await
            .unwrap(),
        Begun::InProgress
    );
    assert!(idem.complete(claim, &json!({"status": 200})).await.unwrap());
    assert_eq!(
        idem.begin("delivery-1", b"payload", now() + 30)
            .await
            .unwrap(),
        Begun::Completed(json!({"status": 200}))
    );
}

#[tokio::test]
async fn the_same_key_with_another_payload_is_refused() {
    let (idem, _dir) = local();
    let Begun::New(claim) = idem.begin("k", b"one", now() + 30).await.unwrap() else {
        panic!("first attempt");
    };
    assert_eq!(
        idem.begin("k", b"two", now() + 30).await.unwrap(),
        Begun::PayloadMismatch
    );
    assert!(idem.complete(claim, &json!("done")).await.unwrap());
    assert_eq!(
        idem.begin("k", b"two", now() + 30).await.unwrap(),
        Begun::PayloadMismatch
    );
}

#[tokio::test]
async fn a_released_key_runs_again_at_once() {
    let (idem, _dir) = local();
    let Begun::New(claim) = idem.begin("k", b"p", now() + 300).await.unwrap() else {
        panic!("first attempt");
    };
    idem.release(claim).await.unwrap();
    assert!(matches!(
        idem.begin("k", b"p", now() + 300).await.unwrap(),
        Begun::New(_)
    ));
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried_and_cannot_overwrite_the_retry() {
    let (idem, _dir) = local();
    // The first attempt's deadline passes while it still runs (its record expires with it).
    let Begun::New(late) = idem.begin("k", b"p", now()).await.unwrap() else {
        panic!("first attempt");
    };
    let Begun::New(retry) = idem.begin("k", b"p", now() + 30).await.unwrap() else {
        panic!("the retry runs once the first attempt's deadline passed");
    };
    assert!(
        !idem.complete(late, &json!("late")).await.unwrap(),
        "the timed-out attempt lost its claim"
    );
    assert!(idem.complete(retry, &json!("retry")).await.unwrap());
    assert_eq!(
        idem.begin("k", b"p", now() + 30).await.unwrap(),
        Begun::Completed(json!("retry"))
    );
}

#[tokio::test]
async fn a_completed_record_expires_after_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let idem = Idempotency::new(LocalStateStore::new(dir.path()), Duration::ZERO);
    let Begun::New(claim) = idem.begin("k", b"p", now() + 30).await.unwrap() else {
        panic!("first attempt");
    };
    assert!(idem.complete(claim, &json!(1)).await.unwrap());
    assert!(matches!(
        idem.begin("k", b"p", now() + 30).await.unwrap(),
        Begun::New(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_simultaneous_attempts_on_dynamodb_exactly_one_runs() {
    moto::require_endpoint();
    let store = DynamoStateStore::new(
        moto::dynamodb_client().await,
        format!("idem-{}", uuid::Uuid::new_v4().simple()),
    );
    store.create_table().await.unwrap();
    let idem = Arc::new(Idempotency::new(store, Duration::from_secs(3600)));
    let attempts: Vec<_> = (0..12)
        .map(|_| {
            let idem = idem.clone();
            tokio::spawn(
                async move { idem.begin("delivery-x", b"same", now() + 30).await.unwrap() },
            )
        })
        .collect();
    let mut claims = Vec::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            Begun::New(claim) => claims.push(claim),
            Begun::InProgress => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(claims.len(), 1, "exactly one attempt runs");
    let claim = claims.pop().unwrap();
    assert!(idem.complete(claim, &json!({"effects": 1})).await.unwrap());
    assert_eq!(
        idem.begin("delivery-x", b"same", now() + 30).await.unwrap(),
        Begun::Completed(json!({"effects": 1}))
    );
}
