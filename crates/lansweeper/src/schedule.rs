//! Scheduled event (docs/original.md#lansweeper, improved): pages through *all* enabled, unsuspended app
//! instances of the offering (the original stopped at 100) and queues one sync per account whose
//! last sync started before `now − SYNC_INTERVAL` (or never), so a running sync is not queued
//! again.

use app_builder_core::metrics;
use app_builder_core::response::{ApiError, ApiResponse};
use app_builder_core::secrets::SecretStore;
use app_builder_core::state::StateStore;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use lambda_http::{Body, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::instance::fields;
use crate::queue::MAX_BATCH;
use crate::{LansweeperFunction, RefreshQueue};

/// Public message when the provider context or the instance query fails.
pub(crate) const SCHEDULE_CONFIG_ERROR: &str = "Configuration error, unable to query 4me";

const INSTANCES_QUERY: &str = "query EnabledInstances($reference: String, $previousEndCursor: String) { appInstances(first: 100, after: $previousEndCursor, filter: {appOfferingReference: {values: [$reference]}, disabled: false, suspended: false, enabledByCustomer: true}) { pageInfo { hasNextPage endCursor } nodes { id customerAccount { id } customFields { id value } } } }";

#[derive(Deserialize)]
struct Node {
    #[serde(rename = "customerAccount")]
    customer_account: Option<Account>,
    #[serde(rename = "customFields", default)]
    custom_fields: Option<Vec<Field>>,
}

#[derive(Deserialize)]
struct Account {
    id: String,
}

#[derive(Deserialize)]
struct Field {
    id: String,
    #[serde(default)]
    value: Value,
}

/// Whether an instance whose last sync started at `last_start` is due at cut-off `end`.
fn is_due(last_start: Option<&str>, end: DateTime<Utc>) -> bool {
    match last_start.map(DateTime::parse_from_rfc3339) {
        Some(Ok(start)) => start < end,
        // Never synced, or an unreadable value: sync.
        _ => true,
    }
}

impl<S: SecretStore, Q: RefreshQueue, T: StateStore> LansweeperFunction<S, Q, T> {
    /// Handles the schedule at `now`: 200 `Triggered refresh of <n> accounts`; 500
    /// `Configuration error, unable to query 4me` when the provider context or the query fails.
    pub async fn handle_schedule(&self, now: DateTime<Utc>) -> Response<Body> {
        let interval = chrono::Duration::from_std(self.settings.sync_interval)
            .unwrap_or(chrono::Duration::hours(8));
        let end = now - interval;
        tracing::info!(end = %end.to_rfc3339(), "queueing syncs last started before");
        let provider = match self.loader.provider().await {
            Ok(p) => p,
            Err(e) => return ApiError::upstream(SCHEDULE_CONFIG_ERROR, e).into_response(),
        };
        let client = match provider.client() {
            Ok(c) => c,
            Err(e) => return ApiError::upstream(SCHEDULE_CONFIG_ERROR, e).into_response(),
        };
        let mut nodes = std::pin::pin!(
            client.paged::<_, Node>(INSTANCES_QUERY, &json!({"reference": self.offering()}))
        );
        // Due accounts are queued a batch at a time as they are found, so a query that fails
        // half-way leaves the syncs found before it queued.
        let (mut due, mut queued, mut failed) = (Vec::new(), 0usize, 0usize);
        let mut flush = async |due: &mut Vec<String>| {
            let failures = self.queue.enqueue_all(due).await;
            for error in &failures {
                tracing::error!(account = %error.account, error = %error, "unable to queue sync");
            }
            queued += due.len() - failures.len();
            failed += failures.len();
            due.clear();
        };
        while let Some(node) = nodes.next().await {
            let node = match node {
                Ok(n) => n,
                Err(e) => {
                    flush(&mut due).await;
                    tracing::error!(error = %e, "app instance query failed");
                    return ApiError::upstream(SCHEDULE_CONFIG_ERROR, e).into_response();
                }
            };
            let Some(account) = node.customer_account.map(|a| a.id) else {
                continue;
            };
            let last_start = node
                .custom_fields
                .unwrap_or_default()
                .into_iter()
                .find(|f| f.id == fields::SYNC_START_AT)
                .and_then(|f| f.value.as_str().map(str::to_owned));
            if is_due(last_start.as_deref(), end) {
                due.push(account);
                if due.len() == MAX_BATCH {
                    flush(&mut due).await;
                }
            }
        }
        // A sync not queued now is due again at the next schedule (its last start stays old).
        flush(&mut due).await;
        metrics::count(metrics::SYNCS_QUEUED, queued as u64);
        tracing::info!(queued, failed, "scheduled syncs queued");
        ApiResponse::ok(&format!("Triggered refresh of {queued} accounts"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_when_never_synced_or_started_before_the_cut_off() {
        let end = DateTime::parse_from_rfc3339("2021-09-02T08:22:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(is_due(None, end));
        assert!(is_due(Some("garbage"), end));
        assert!(is_due(Some("2021-09-02T08:22:04Z"), end));
        assert!(!is_due(Some("2021-09-02T08:22:05Z"), end));
        assert!(!is_due(Some("2021-09-02T10:00:00+01:00"), end));
        assert!(is_due(Some("2021-09-02T10:00:00+02:00"), end));
    }
}
