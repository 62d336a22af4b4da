//! The DynamoDB state store against moto (`AWS_ENDPOINT_URL` must point at a moto server; see
//! the README). Without it these tests fail on purpose rather than skip. Each test uses a table
//! of its own, created as the engine's template declares it.

#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

mod moto;
mod state_contract;

use std::sync::Arc;

use app_builder_core::state::DynamoStateStore;

async fn store() -> DynamoStateStore {
    let table = format!("state-{}", uuid::Uuid::new_v4().simple());
    let store = DynamoStateStore::new(moto::dynamodb_client().await, table);
    store.create_table().await.unwrap();
    // Creating it twice is harmless.
    store.create_table().await.unwrap();
    store
}

#[tokio::test]
async fn moto_absent_then_conflict() {
    state_contract::absent_then_conflict(&store().await, "idempotency#wdc#delivery-1").await;
}

#[tokio::test]
async fn moto_compare_and_swap() {
    state_contract::compare_and_swap(&store().await, "lease/lansweeper/acme").await;
}

#[tokio::test]
async fn moto_expired_records_are_absent() {
    state_contract::expired_records_are_absent(&store().await, "expiring").await;
}

#[tokio::test]
async fn moto_delete_by_version() {
    state_contract::delete_by_version(&store().await, "deleted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_one_concurrent_claim_wins() {
    state_contract::one_concurrent_claim_wins(Arc::new(store().await), "claimed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_concurrent_increments_lose_nothing() {
    state_contract::concurrent_increments_lose_nothing(Arc::new(store().await), "counter").await;
}

#[tokio::test]
async fn moto_invalid_keys_are_refused() {
    state_contract::invalid_keys_are_refused(&store().await).await;
}

#[tokio::test]
async fn moto_named_leases_pass_on_to_their_owner() {
    state_contract::named_leases_pass_on_to_their_owner(&store().await, "lansweeper/x/acme/sync")
        .await;
}

#[tokio::test]
async fn moto_holds_are_exclusive_and_released_by_the_holders_write() {
    state_contract::holds_are_exclusive_and_released_by_the_holders_write(
        &store().await,
        "secrets/applied/held",
    )
    .await;
}

#[tokio::test]
async fn moto_holds_of_missing_or_expired_records_leave_nothing() {
    state_contract::holds_of_missing_or_expired_records_leave_nothing(
        &store().await,
        "secrets/applied/held",
    )
    .await;
}

#[tokio::test]
async fn moto_one_concurrent_hold_wins() {
    state_contract::one_concurrent_hold_wins(Arc::new(store().await), "held").await;
}
