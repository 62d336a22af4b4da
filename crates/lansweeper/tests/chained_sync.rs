//! Syncs of any size: a sync that reaches its invocation's deadline or a spent hourly budget
//! saves a checkpoint, queues its continuation and goes on from there in the next invocation;
//! a failed step resumes from its last uploaded batch; one summary covers the whole sync.
//!
//! A deadline already past makes every step upload exactly one batch (a step always makes
//! progress before it stops), so these tests chain many steps without waiting for a clock.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use app_builder_core::secrets::LocalSecretStore;
use app_builder_core::state::{Expect, StateStore};
use app_builder_sandbox::lansweeper::SiteSpec;
use app_builder_sandbox::{OperationAnswer, OperationFault};
use lansweeper::queue::SyncMessage;
use lansweeper::sync::{Checkpoint, checkpoint_key, sync_lease_key};
use serde_json::{Value, json};
use support::{Env, OFFERING, PROVIDER, deadline, sqs_event, sqs_message};

type TestEnv = Env<LocalSecretStore>;

/// A deadline that has passed: each step stops after its first batch.
fn past() -> i64 {
    chrono::Utc::now().timestamp() - 1
}

async fn env() -> (TestEnv, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (
        Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await,
        dir,
    )
}

/// Delivers the queued continuations (as the refresh queue's event source mapping) until none
/// is left; returns how many steps ran and the delays they were queued with.
async fn drain(env: &TestEnv, deadline: impl Fn() -> i64) -> (u32, Vec<Duration>) {
    let mut steps = 0;
    let mut delays = Vec::new();
    while let Some((body, delay)) = env.queue.take().into_iter().next() {
        delays.push(delay);
        let response = env
            .function
            .handle_sqs(&sqs_message(&body), deadline())
            .await;
        assert!(response.batch_item_failures.is_empty(), "step {steps}");
        steps += 1;
        assert!(steps < 500, "the sync never ends");
    }
    (steps, delays)
}

async fn checkpoint(env: &TestEnv, account: &str) -> Option<(Checkpoint, u64)> {
    let record = env
        .state
        .get(&checkpoint_key(OFFERING, account))
        .await
        .unwrap()?;
    Some((serde_json::from_value(record.data).unwrap(), record.version))
}

/// What a single-invocation sync of the same data stores.
fn expected_counts(env: &TestEnv, site: &str, total: u64) -> Value {
    let count = |name: &str| {
        let inst = env
            .lansweeper
            .installations(site)
            .into_iter()
            .find(|i| i.name == name)
            .unwrap();
        env.expected_uploads(site, total, |a| a["installationId"] == inst.id.as_str())
    };
    json!({"HQ": {"Main": count("Main"), "Branch": count("Branch")}})
}

fn two_installations(total: u64) -> SiteSpec {
    let mut spec = SiteSpec::new("HQ", total);
    spec.installations = vec!["Main".into(), "Branch".into()];
    spec
}

#[tokio::test]
async fn a_sync_past_its_deadline_goes_on_batch_by_batch_to_one_summary() {
    let (env, _dir) = env().await;
    let site = env.lansweeper.add_site(two_installations(1_000));
    let customer = env.authorized("wdc-chain").await;
    env.queue.take();

    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-chain"), past())
        .await;
    assert!(response.batch_item_failures.is_empty());
    // One batch uploaded, its position saved, the continuation queued at once.
    let (first, _) = checkpoint(&env, "wdc-chain").await.unwrap();
    assert_eq!((first.hops, first.batches), (1, 1));
    let queued = env.queue.delayed();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].1, Duration::ZERO);
    let message = SyncMessage::parse(&queued[0].0);
    assert_eq!(message.account, "wdc-chain");
    assert_eq!(message.sync.as_deref(), Some(first.sync.as_str()));
    let started = env.custom_field(&customer.instance_id, "sync_start_at");
    assert!(started.is_string());
    assert!(
        env.custom_field(&customer.instance_id, "sync_summary")
            .is_null(),
        "no summary before the sync is complete"
    );
    // The lease passed on to the continuation: another sync of the account is acknowledged
    // without running.
    let pages = env.lansweeper.stats().asset_pages;
    let other = env
        .function
        .handle_sqs(&sqs_event("wdc-chain"), deadline())
        .await;
    assert!(other.batch_item_failures.is_empty());
    assert_eq!(env.lansweeper.stats().asset_pages, pages);
    assert_eq!(env.queue.delayed(), queued, "nothing else queued");

    let (steps, delays) = drain(&env, past).await;
    assert!(steps >= 8, "{steps} more steps");
    assert!(delays.iter().all(Duration::is_zero), "{delays:?}");
    let summary = env.summary(&customer.instance_id);
    assert_eq!(
        summary["uploadCounts"],
        expected_counts(&env, &site, 1_000),
        "{summary}"
    );
    assert!(summary.get("errors").is_none(), "{summary}");
    let discovered = env.discovered("wdc-chain").await;
    let total: u64 = ["Main", "Branch"]
        .iter()
        .map(|i| summary["uploadCounts"]["HQ"][i].as_u64().unwrap())
        .sum();
    assert_eq!(discovered.len() as u64, total);
    // One sync: started once, ended once, checkpoint and lease gone.
    assert_eq!(
        env.custom_field(&customer.instance_id, "sync_start_at"),
        started
    );
    assert!(
        env.custom_field(&customer.instance_id, "sync_end_at")
            .is_string()
    );
    assert!(checkpoint(&env, "wdc-chain").await.is_none());
    assert_eq!(
        env.state
            .get(&sync_lease_key(OFFERING, "wdc-chain"))
            .await
            .unwrap(),
        None
    );

    // A continuation delivered again after the end is acknowledged without a new sync.
    let pages = env.lansweeper.stats().asset_pages;
    let again = env
        .function
        .handle_sqs(&sqs_message(&queued[0].0), deadline())
        .await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(env.lansweeper.stats().asset_pages, pages);
    assert!(env.queue.delayed().is_empty());
}

#[tokio::test]
async fn a_failed_step_resumes_from_its_last_checkpoint_and_a_repeated_upload_has_no_second_effect()
{
    let (env, _dir) = env().await;
    let site = env.lansweeper.add_site(two_installations(1_000));
    let customer = env.authorized("wdc-crash").await;
    env.queue.take();
    env.function
        .handle_sqs(&sqs_event("wdc-crash"), past())
        .await;
    let (body, _) = env.queue.take().pop().unwrap();
    env.function.handle_sqs(&sqs_message(&body), past()).await;
    let (second, _) = checkpoint(&env, "wdc-crash").await.unwrap();
    assert_eq!(second.batches, 2);

    // A step whose upload 4me refuses (503, every attempt) fails its message, which SQS
    // delivers again: the retry goes on from the checkpoint.
    let (body, _) = env.queue.take().pop().unwrap();
    env.sandbox.inject_operation_fault(OperationFault {
        account: "wdc-crash".into(),
        operation: "discoveredConfigurationItems".into(),
        answer: OperationAnswer::ServerError { status: 503 },
        times: 5,
    });
    let event = sqs_message(&body);
    let failed = env.function.handle_sqs(&event, past()).await;
    assert_eq!(failed.batch_item_failures.len(), 1);
    assert!(env.queue.delayed().is_empty());
    assert_eq!(checkpoint(&env, "wdc-crash").await.unwrap().0, second);
    let retried = env.function.handle_sqs(&event, past()).await;
    assert!(retried.batch_item_failures.is_empty());
    let (third, version) = checkpoint(&env, "wdc-crash").await.unwrap();
    assert_eq!(third.batches, 3);

    // A step dies after its upload reached 4me, before its checkpoint was written: the state
    // is the previous checkpoint, and the next step uploads that batch again.
    env.state
        .put(
            &checkpoint_key(OFFERING, "wdc-crash"),
            &serde_json::to_value(&second).unwrap(),
            Some(chrono::Utc::now().timestamp() + 3600),
            Expect::Version(version),
        )
        .await
        .unwrap();
    let before = env.discovered("wdc-crash").await.len();
    let (body, _) = env.queue.take().pop().unwrap();
    env.function.handle_sqs(&sqs_message(&body), past()).await;
    assert_eq!(checkpoint(&env, "wdc-crash").await.unwrap().0.batches, 3);
    assert_eq!(
        env.discovered("wdc-crash").await.len(),
        before,
        "the repeated upload updated the CIs it had created"
    );
    drain(&env, past).await;

    let summary = env.summary(&customer.instance_id);
    let expected = expected_counts(&env, &site, 1_000);
    assert_eq!(summary["uploadCounts"], expected, "{summary}");
    let total =
        expected["HQ"]["Main"].as_u64().unwrap() + expected["HQ"]["Branch"].as_u64().unwrap();
    assert_eq!(env.discovered("wdc-crash").await.len() as u64, total);
}

#[tokio::test]
async fn a_spent_4me_budget_pauses_the_sync_until_its_window_resets() {
    let (env, _dir) = env().await;
    let site = env.lansweeper.add_site(two_installations(1_000));
    let customer = env.authorized("wdc-budget").await;
    env.queue.take();
    // The customer's token may make 16 requests this hour: not enough for the whole sync.
    env.sandbox.set_hourly_limits(16, 5_000, 1);

    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-budget"), deadline())
        .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "stopped before 4me refused a request"
    );
    let (paused, _) = checkpoint(&env, "wdc-budget").await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let until = paused.paused_until.unwrap();
    assert!((now + 3500..=now + 3600).contains(&until), "{until}");
    assert!(paused.batches >= 1);
    // The window resets in about an hour; SQS delays a message 15 minutes at most.
    let queued = env.queue.take();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].1, Duration::from_secs(900));

    // Delivered after 15 minutes, before the reset: queued again, without a request.
    let graphql = env.sandbox.stats().graphql_requests;
    let pages = env.lansweeper.stats().asset_pages;
    env.function
        .handle_sqs(&sqs_message(&queued[0].0), deadline())
        .await;
    assert_eq!(env.sandbox.stats().graphql_requests, graphql);
    assert_eq!(env.lansweeper.stats().asset_pages, pages);
    let again = env.queue.delayed();
    assert_eq!(again.len(), 1);
    assert!(again[0].1 >= Duration::from_secs(890), "{again:?}");

    // The hour passes: the window resets and the sync goes on from where it stopped.
    env.sandbox.set_hourly_limits(3_600, 5_000, 1);
    let (mut cp, version) = checkpoint(&env, "wdc-budget").await.unwrap();
    cp.paused_until = Some(now - 1);
    env.state
        .put(
            &checkpoint_key(OFFERING, "wdc-budget"),
            &serde_json::to_value(&cp).unwrap(),
            Some(now + 3600),
            Expect::Version(version),
        )
        .await
        .unwrap();
    drain(&env, deadline).await;
    let summary = env.summary(&customer.instance_id);
    assert_eq!(
        summary["uploadCounts"],
        expected_counts(&env, &site, 1_000),
        "{summary}"
    );
}

#[tokio::test]
async fn a_spent_lansweeper_budget_pauses_the_sync_instead_of_running_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::with_api(LocalSecretStore::new(dir.path()), PROVIDER, |api| {
        api.requests_per_hour = 8;
        api.page_size = 100;
    })
    .await;
    env.lansweeper.add_site(two_installations(1_000));
    env.authorized("wdc-lsbudget").await;
    env.queue.take();

    let response = env
        .function
        .handle_sqs(&sqs_event("wdc-lsbudget"), deadline())
        .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "no request was refused"
    );
    let (paused, _) = checkpoint(&env, "wdc-lsbudget").await.unwrap();
    assert!(paused.lansweeper.requests <= 8, "{paused:?}");
    let now = chrono::Utc::now().timestamp();
    assert!(paused.paused_until.unwrap() > now + 3500);
    assert!(paused.batches >= 1);
    let queued = env.queue.take();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].1, Duration::from_secs(900));
}

#[tokio::test]
async fn a_sync_whose_continuation_was_lost_is_resumed_by_the_next_sync() {
    let (env, _dir) = env().await;
    let site = env.lansweeper.add_site(two_installations(1_000));
    let customer = env.authorized("wdc-lost").await;
    env.queue.take();
    env.function
        .handle_sqs(&sqs_event("wdc-lost"), past())
        .await;
    // The continuation is lost and the lease expires.
    assert_eq!(env.queue.take().len(), 1);
    let key = sync_lease_key(OFFERING, "wdc-lost");
    let lease = env.state.get(&key).await.unwrap().unwrap();
    assert!(env.state.delete(&key, lease.version).await.unwrap());
    let pages = env.lansweeper.stats().asset_pages;

    // The next scheduled sync resumes it rather than starting over.
    env.function
        .handle_sqs(&sqs_event("wdc-lost"), deadline())
        .await;
    assert!(env.queue.delayed().is_empty());
    let summary = env.summary(&customer.instance_id);
    assert_eq!(
        summary["uploadCounts"],
        expected_counts(&env, &site, 1_000),
        "{summary}"
    );
    // A sync from the start would fetch every page again (two installations, 500 assets a
    // page): the resumed one refetched the page it was in, and the rest.
    let full = 4;
    assert!(env.lansweeper.stats().asset_pages - pages <= full);
    assert!(checkpoint(&env, "wdc-lost").await.is_none());
}
