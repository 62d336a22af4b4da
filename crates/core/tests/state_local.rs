//! The local file state store passes the state store contract.

#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

mod state_contract;

use std::sync::Arc;

use app_builder_core::state::LocalStateStore;

fn store() -> (LocalStateStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (LocalStateStore::new(dir.path().join("state")), dir)
}

#[tokio::test]
async fn local_absent_then_conflict() {
    let (store, _dir) = store();
    state_contract::absent_then_conflict(&store, "idempotency#wdc#delivery-1").await;
}

#[tokio::test]
async fn local_compare_and_swap() {
    let (store, _dir) = store();
    state_contract::compare_and_swap(&store, "lease/lansweeper/acme").await;
}

#[tokio::test]
async fn local_expired_records_are_absent() {
    let (store, _dir) = store();
    state_contract::expired_records_are_absent(&store, "expiring").await;
}

#[tokio::test]
async fn local_delete_by_version() {
    let (store, _dir) = store();
    state_contract::delete_by_version(&store, "deleted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_one_concurrent_claim_wins() {
    let (store, _dir) = store();
    state_contract::one_concurrent_claim_wins(Arc::new(store), "claimed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_concurrent_increments_lose_nothing() {
    let (store, _dir) = store();
    state_contract::concurrent_increments_lose_nothing(Arc::new(store), "counter").await;
}

#[tokio::test]
async fn local_invalid_keys_are_refused() {
    let (store, _dir) = store();
    state_contract::invalid_keys_are_refused(&store).await;
}

#[tokio::test]
async fn local_named_leases_pass_on_to_their_owner() {
    let (store, _dir) = store();
    state_contract::named_leases_pass_on_to_their_owner(&store, "lansweeper/x/acme/sync").await;
}

#[tokio::test]
async fn local_holds_are_exclusive_and_released_by_the_holders_write() {
    let (store, _dir) = store();
    state_contract::holds_are_exclusive_and_released_by_the_holders_write(
        &store,
        "secrets/applied/held",
    )
    .await;
}

#[tokio::test]
async fn local_holds_of_missing_or_expired_records_leave_nothing() {
    let (store, _dir) = store();
    state_contract::holds_of_missing_or_expired_records_leave_nothing(
        &store,
        "secrets/applied/held",
    )
    .await;
}

#[tokio::test]
async fn local_one_concurrent_hold_wins() {
    let (store, _dir) = store();
    state_contract::one_concurrent_hold_wins(Arc::new(store), "held").await;
}
