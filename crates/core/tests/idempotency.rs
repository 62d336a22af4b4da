//! The idempotency utility over the local state store (its semantics do not depend on the
//! adapter: both pass one contract) and, for simultaneous attempts, over DynamoDB on moto.

#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

mod moto;

use std::sync::Arc;
use std::time::Duration;

use app_builder_core::bus::{InstallationChanged, InstallationEvent, LifecycleStep};
use app_builder_core::events::installation_once;
use app_builder_core::idempotency::{Begun, BegunAll, Claim, Idempotency, Once, OnceError};
use app_builder_core::state::{DynamoStateStore, LocalStateStore};
use serde_json::json;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The utility over a new table on DynamoDB (moto).
async fn on_dynamodb() -> Idempotency<DynamoStateStore> {
    moto::require_endpoint();
    let store = DynamoStateStore::new(
        moto::dynamodb_client().await,
        format!("idem-{}", uuid::Uuid::new_v4().simple()),
    );
    store.create_table().await.unwrap();
    Idempotency::new(store, Duration::from_secs(3600))
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
async fn a_delivery_seen_under_one_of_its_keys_claims_none_of_them() {
    let (idem, _dir) = local();
    let keys = |a: &str, b: &str| vec![a.to_owned(), b.to_owned()];
    let BegunAll::New(claims) = idem
        .begin_all(&keys("token/1", "delivery/1"), b"p", now() + 300)
        .await
        .unwrap()
    else {
        panic!("the first attempt claims both keys");
    };
    assert_eq!(
        claims.iter().map(Claim::key).collect::<Vec<_>>(),
        ["token/1", "delivery/1"]
    );
    idem.complete_all(claims, &json!("done")).await;
    // The same delivery under a new token id: a duplicate by its delivery id, and the new key
    // is not left claimed.
    assert_eq!(
        idem.begin_all(&keys("token/2", "delivery/1"), b"p", now() + 300)
            .await
            .unwrap(),
        BegunAll::Completed(json!("done"))
    );
    assert!(matches!(
        idem.begin("token/2", b"p", now() + 300).await.unwrap(),
        Begun::New(_)
    ));
    // A key in progress elsewhere is named, and the other key is released again.
    assert_eq!(
        idem.begin_all(&keys("delivery/3", "token/2"), b"p", now() + 300)
            .await
            .unwrap(),
        BegunAll::InProgress("token/2".into())
    );
    assert!(matches!(
        idem.begin("delivery/3", b"p", now() + 300).await.unwrap(),
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
    let idem = Arc::new(on_dynamodb().await);
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

/// Copies of a delivery known under two keys, racing: exactly one claims both, every round. (Keys
/// claimed together rather than in order let two copies each take one key and both give up.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_simultaneous_copies_under_two_keys_on_dynamodb_exactly_one_runs() {
    let idem = Arc::new(on_dynamodb().await);
    for round in 0..5 {
        let keys = vec![format!("token/{round}"), format!("delivery/{round}")];
        let copies: Vec<_> = (0..8)
            .map(|_| {
                let (idem, keys) = (idem.clone(), keys.clone());
                tokio::spawn(
                    async move { idem.begin_all(&keys, b"same", now() + 30).await.unwrap() },
                )
            })
            .collect();
        let mut winners = 0;
        for copy in copies {
            match copy.await.unwrap() {
                BegunAll::New(claims) => {
                    assert_eq!(claims.len(), 2);
                    winners += 1;
                }
                BegunAll::InProgress(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            winners, 1,
            "round {round}: exactly one copy claims both keys"
        );
    }
}

#[tokio::test]
async fn once_runs_the_work_records_it_and_answers_duplicates_with_the_record() {
    let (idem, _dir) = local();
    let runs = std::sync::atomic::AtomicU32::new(0);
    let work = || async {
        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, String>("done")
    };
    let keys = ["token-1".to_owned(), "delivery-1".to_owned()];
    let first = idem
        .once(&keys, b"p", now() + 30, work(), |out| json!({ "out": out }))
        .await
        .unwrap();
    assert_eq!(first, Once::Ran("done"));
    // The same delivery under either of its keys is a duplicate.
    for keys in [["token-1".to_owned()], ["delivery-1".to_owned()]] {
        let again = idem
            .once(&keys, b"p", now() + 30, work(), |out| json!({ "out": out }))
            .await
            .unwrap();
        assert_eq!(again, Once::Duplicate(json!({"out": "done"})));
    }
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    let reused = idem
        .once(&keys, b"other", now() + 30, work(), |_| json!(null))
        .await;
    assert!(
        matches!(reused, Err(OnceError::PayloadMismatch(_))),
        "{reused:?}"
    );
}

#[tokio::test]
async fn once_releases_a_failed_attempt_so_the_retry_runs() {
    let (idem, _dir) = local();
    let keys = ["k".to_owned()];
    let failed = idem
        .once(
            &keys,
            b"p",
            now() + 30,
            async { Err::<(), _>("down") },
            |_| json!(null),
        )
        .await;
    assert!(
        matches!(failed, Err(OnceError::Failed("down"))),
        "{failed:?}"
    );
    let retried = idem
        .once(&keys, b"p", now() + 30, async { Ok::<_, &str>(7) }, |n| {
            json!(n)
        })
        .await
        .unwrap();
    assert_eq!(retried, Once::Ran(7));
}

fn installation_event(id: &str, change: &str) -> InstallationEvent {
    InstallationEvent {
        id: id.to_owned(),
        detail: InstallationChanged {
            domain: "4me-demo.com".into(),
            offering: "typeform".into(),
            account: "wdc".into(),
            step: LifecycleStep::SecretsUpdated,
            keys: vec!["secrets".into()],
            change: change.to_owned(),
        },
    }
}

fn answer(status: u16) -> lambda_http::Response<lambda_http::Body> {
    lambda_http::Response::builder()
        .status(status)
        .body(lambda_http::Body::from(format!(
            "{{\"message\":\"{status}\"}}"
        )))
        .unwrap()
}

#[tokio::test]
async fn an_installation_change_published_twice_is_handled_once() {
    let (idem, _dir) = local();
    let runs = std::sync::atomic::AtomicU32::new(0);
    let handle = |status| {
        let runs = &runs;
        async move {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            answer(status)
        }
    };
    // A 5xx is a function error (Lambda retries the event) and runs again on the retry.
    let first = installation_event("ev-1", "secrets/token/iss/jti-1");
    let failed = installation_once(&idem, "typeform", &first, now() + 30, handle(500)).await;
    assert_eq!(failed.unwrap_err().status, 500);
    let done = installation_once(&idem, "typeform", &first, now() + 30, handle(200))
        .await
        .unwrap();
    assert_eq!(done["statusCode"], 200);
    // The publisher's retry publishes the same change under a new event id: not run again.
    let republished = installation_event("ev-2", "secrets/token/iss/jti-1");
    let again = installation_once(&idem, "typeform", &republished, now() + 30, handle(200))
        .await
        .unwrap();
    assert_eq!(again, done);
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Another consumer of the same change runs it for itself.
    installation_once(&idem, "lansweeper", &republished, now() + 30, handle(200))
        .await
        .unwrap();
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_installation_change_in_progress_elsewhere_is_retried_later() {
    let (idem, _dir) = local();
    let event = installation_event("ev-1", "secrets/token/iss/jti-2");
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let slow = async {
        started_tx.send(()).unwrap();
        finish_rx.await.unwrap();
        answer(200)
    };
    let first = installation_once(&idem, "typeform", &event, now() + 30, slow);
    let duplicate = async {
        started_rx.await.unwrap();
        let result = installation_once(&idem, "typeform", &event, now() + 30, async {
            panic!("a duplicate in progress must not run")
        })
        .await;
        finish_tx.send(()).unwrap();
        result
    };
    let (first, duplicate) = tokio::join!(first, duplicate);
    assert_eq!(first.unwrap()["statusCode"], 200);
    assert_eq!(duplicate.unwrap_err().status, 503);
}
