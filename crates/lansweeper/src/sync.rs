//! One customer sync from an SQS message (docs/original.md#lansweeper, improved): assets are streamed
//! page by page from Lansweeper, each page's software/people/OS references looked up
//! ([`References`]), the page converted and uploaded with `discoveredConfigurationItems` and its
//! async result awaited before the next page is fetched, so memory stays flat in the number of
//! assets; OS end-of-support dates are stored at the end. Authorization failures suspend the instance;
//! transient failures fail the SQS record (`ReportBatchItemFailures`) so SQS retries it and then
//! moves it to the dead-letter queue.

use std::collections::BTreeMap;

use app_builder_core::events::batch_failures;
use app_builder_core::fourme::instances::{InstanceUpdate, find_app_instance, update_app_instance};
use app_builder_core::fourme::{FourMeClient, FourMeError};
use app_builder_core::idempotency::{Once, OnceError};
use app_builder_core::metrics;
use app_builder_core::secrets::SecretStore;
use app_builder_core::secrets::customer_secret_name;
use app_builder_core::state::{Expect, Lease, StateStore, Written};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::Utc;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::api::{AssetQuery, ClientCredentials, LansweeperError, PagePosition, Session};
use crate::discovery::{DiscoveryBatch, MAX_ITEMS_PER_UPLOAD};
use crate::instance::{InstanceConfig, fields};
use crate::queue::{MAX_DELAY, SyncMessage};
use crate::references::References;
use crate::{
    CONSUMER, LansweeperFunction, ROTATE_TOKEN_COMMENT, RefreshQueue, client_secret, refresh_token,
};

const UPLOAD: &str = "mutation Discovered($input: DiscoveredConfigurationItemsInput!) { discoveredConfigurationItems(input: $input) { errors { path message } configurationItems { id sourceID } asyncQuery { id errorCount resultUrl resultCount } } }";

/// Legacy key of the customer secret that held the end of the running sync's lease (dropped by
/// the next sync); the lease is a record of the engine's state store now ([`sync_lease_key`]).
pub const SYNC_LEASE_KEY: &str = "sync_lease_until";

/// The state record of the lease of `account`'s sync.
pub fn sync_lease_key(offering: &str, account: &str) -> String {
    format!("lansweeper/{offering}/{account}/sync")
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Retrying later may succeed (the SQS record fails).
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying will not help (logged, the record is acknowledged).
    #[error("{0}")]
    Permanent(String),
}

enum Failure {
    Lansweeper(LansweeperError),
    FourMe(FourMeError),
    /// The checkpoint could not be saved (the step stops; its retry resumes from the last one).
    State(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Lansweeper(e) => e.fmt(f),
            Failure::FourMe(e) => e.fmt(f),
            Failure::State(e) => f.write_str(e),
        }
    }
}

impl From<LansweeperError> for Failure {
    fn from(e: LansweeperError) -> Self {
        Failure::Lansweeper(e)
    }
}

impl From<FourMeError> for Failure {
    fn from(e: FourMeError) -> Self {
        Failure::FourMe(e)
    }
}

fn is_4me_authorization(e: &FourMeError) -> bool {
    matches!(
        e,
        FourMeError::Authorization(_) | FourMeError::Unauthorized { .. }
    )
}

/// `{uploadCounts, errorCounts, info, errors}` of one sync, or `{error}` when Lansweeper
/// refused the sites query.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Summary {
    upload_counts: BTreeMap<String, BTreeMap<String, u64>>,
    error_counts: BTreeMap<String, BTreeMap<String, u64>>,
    info: BTreeMap<String, String>,
    errors: BTreeMap<String, Value>,
    error: Option<String>,
}

impl Summary {
    fn to_json(&self) -> Value {
        if let Some(error) = &self.error {
            return json!({ "error": error });
        }
        let mut out = serde_json::Map::new();
        if !self.upload_counts.is_empty() {
            out.insert("uploadCounts".into(), json!(self.upload_counts));
        }
        if !self.error_counts.is_empty() {
            out.insert("errorCounts".into(), json!(self.error_counts));
        }
        if !self.info.is_empty() {
            out.insert("info".into(), json!(self.info));
        }
        if !self.errors.is_empty() {
            out.insert("errors".into(), json!(self.errors));
        }
        Value::Object(out)
    }
}

/// `formatSummary`: pretty JSON in a code fence, truncated beyond `max` characters.
pub fn format_summary(summary: &Value, max: usize) -> String {
    let json = serde_json::to_string_pretty(summary).unwrap_or_default();
    if json.chars().count() > max {
        let cut: String = json.chars().take(max).collect();
        format!("Too much data to show! Truncated value:\n```\n{cut}\n```\n")
    } else {
        format!("```\n{json}\n```\n")
    }
}

/// The duration as the original writes `sync_duration_text`: whole seconds (floored) as `m:ss`,
/// or `h:mm:ss` from an hour on.
fn duration_text(seconds: f64) -> String {
    let total = seconds.max(0.0).floor() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// The state record of the checkpoint of `account`'s sync ([`Checkpoint`]).
pub fn checkpoint_key(offering: &str, account: &str) -> String {
    format!("lansweeper/{offering}/{account}/sync-checkpoint")
}

/// How long a sync may hold its lease past its step's start (the function timeout, 900 s); a
/// continuation's wait is added.
const LEASE_SECS: i64 = 15 * 60;

/// How long a checkpoint outlives its last write: the next sync of the account resumes a sync
/// whose continuation was lost within this time, and starts afresh after it.
const CHECKPOINT_MEMORY_SECS: i64 = 24 * 60 * 60;

/// Requests and query-cost points one batch may spend of the customer token's hourly 4me
/// budgets (reference lookups, the upload and its result): a step stops before a batch when
/// less is left and continues when the window resets.
pub const FOURME_BATCH_REQUESTS: u32 = 10;
/// See [`FOURME_BATCH_REQUESTS`].
pub const FOURME_BATCH_POINTS: u32 = 50;

/// Lansweeper requests a step needs before its first page (token, sites, installations and
/// asset types of a few sites).
const LANSWEEPER_STEP_RESERVE: u64 = 5;

/// Error messages kept per installation (the summary shown in 4me is truncated long before).
const MAX_KEPT_ERRORS: usize = 100;

/// Key of the progress answer of a step that continues in a later invocation.
const CONTINUED: &str = "continued";

/// Seconds since the epoch.
fn now() -> i64 {
    app_builder_core::state::now()
}

/// `2026-01-02T03:04:05Z` of a time in milliseconds since the epoch.
fn timestamp_text(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Where a sync is, saved in the engine's state store ([`checkpoint_key`]) after each uploaded
/// batch, so that the sync can stop before its invocation's deadline or a spent budget and go
/// on in another invocation, and a crashed step resumes from its last batch (an upload
/// repeated after a crash is harmless: 4me matches discovered CIs by source and `sourceID`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Checkpoint {
    /// The sync's name (its first message's id).
    pub sync: String,
    /// When the sync started (milliseconds since the epoch).
    pub started_at_ms: i64,
    /// Steps (invocations) so far.
    pub hops: u32,
    /// Batches uploaded so far.
    pub batches: u64,
    /// Assets last seen before this (seconds since the epoch) are not synced.
    pub cut_off: i64,
    /// The installations done (`<site id>/<installation id>`).
    pub done: Vec<String>,
    /// The installation being uploaded.
    pub current: Option<Position>,
    /// A spent budget resets at this time (seconds since the epoch): wait until then.
    pub paused_until: Option<i64>,
    /// The requests this sync has made in Lansweeper's current hourly window.
    pub lansweeper: HourWindow,
    summary: Summary,
    os: OsTally,
}

impl Checkpoint {
    fn new(sync: &str, cut_off: chrono::DateTime<Utc>) -> Self {
        Checkpoint {
            sync: sync.to_owned(),
            started_at_ms: Utc::now().timestamp_millis(),
            cut_off: cut_off.timestamp(),
            ..Checkpoint::default()
        }
    }

    fn cut_off(&self) -> chrono::DateTime<Utc> {
        chrono::DateTime::from_timestamp(self.cut_off, 0).unwrap_or_default()
    }
}

/// How far the current installation's upload is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Position {
    /// `<site id>/<installation id>`.
    pub unit: String,
    /// The page being uploaded (or next to fetch).
    pub page: PagePosition,
    /// Batches of that page uploaded.
    pub batches: usize,
    /// CIs 4me created or updated so far.
    pub count: u64,
    /// Assets skipped for want of a Lansweeper key.
    pub skipped: u64,
    /// Errors so far.
    pub error_count: u64,
    /// The first [`MAX_KEPT_ERRORS`] error messages.
    pub errors: Vec<String>,
}

impl Position {
    fn start(unit: &str) -> Self {
        Position {
            unit: unit.to_owned(),
            ..Position::default()
        }
    }

    fn error(&mut self, message: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_KEPT_ERRORS {
            self.errors.push(message);
        }
    }
}

/// Requests in an hourly window that started at `start` (seconds since the epoch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourWindow {
    /// When the window started.
    pub start: i64,
    /// Requests made in it.
    pub requests: u64,
}

/// The OS CIs whose end-of-support date was stored, or failed to be.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct OsTally {
    updated: std::collections::BTreeSet<String>,
    errored: std::collections::BTreeSet<String>,
}

/// One step of a sync, with its checkpoint.
struct Run {
    checkpoint: Checkpoint,
    key: String,
    /// The stored checkpoint's version (`None`: not stored yet).
    version: Option<u64>,
    /// A step stops before a batch from this time on (the deadline minus the margin).
    stop_at: i64,
    /// Batches this step uploaded (a step uploads at least one before a deadline stop).
    hop_batches: u64,
    /// Session requests already added to the Lansweeper window.
    counted: u64,
    /// Lansweeper's hourly limit (0: none).
    per_hour: u32,
}

impl Run {
    /// Adds the session's new requests to the Lansweeper window; when fewer than `reserve`
    /// requests are left in it, the time it resets.
    fn lansweeper_spent(&mut self, sent: u64, reserve: u64) -> Option<i64> {
        let now = now();
        let window = &mut self.checkpoint.lansweeper;
        if window.start == 0 || now >= window.start + 3600 {
            *window = HourWindow {
                start: now,
                requests: 0,
            };
        }
        window.requests += sent.saturating_sub(self.counted);
        self.counted = sent;
        (self.per_hour > 0 && window.requests + reserve > u64::from(self.per_hour))
            .then_some(window.start + 3600)
    }

    /// Whether the step stops before its next request: `Some(Some(t))` when a budget is spent
    /// until `t`, `Some(None)` at the deadline (after at least one batch, so that every step
    /// makes progress).
    fn should_stop(&mut self, sent: u64, client: &FourMeClient) -> Option<Option<i64>> {
        if let Some(until) = self.lansweeper_spent(sent, 1) {
            return Some(Some(until));
        }
        let now = now();
        let fourme = client
            .last_rate_limit()
            .and_then(|rl| rl.exhausted_until(FOURME_BATCH_REQUESTS, FOURME_BATCH_POINTS))
            .and_then(|reset| i64::try_from(reset).ok())
            .filter(|reset| *reset > now);
        if let Some(reset) = fourme {
            return Some(Some(reset));
        }
        (self.hop_batches > 0 && now >= self.stop_at).then_some(None)
    }

    /// Writes the checkpoint (conditionally on the version read: a lost lease shows here).
    async fn save<T: StateStore>(&mut self, state: &T) -> Result<(), Failure> {
        let data = serde_json::to_value(&self.checkpoint)
            .map_err(|e| Failure::State(format!("checkpoint: {e}")))?;
        let expect = self.version.map_or(Expect::Absent, Expect::Version);
        match state
            .put(
                &self.key,
                &data,
                Some(now() + CHECKPOINT_MEMORY_SECS),
                expect,
            )
            .await
        {
            Ok(Written::Done(version)) => {
                self.version = Some(version);
                Ok(())
            }
            Ok(Written::Conflict(_)) => Err(Failure::State(
                "the checkpoint was changed by another sync".into(),
            )),
            Err(e) => Err(Failure::State(format!("checkpoint: {e}"))),
        }
    }
}

/// The outcome of one step.
enum Hop {
    /// The sync finished (its summary) or had nothing to do.
    Done(Value),
    /// The sync goes on in a continuation queued with this delay (seconds).
    Continued { hop: u32, delay: i64 },
}

impl Hop {
    fn into_value(self) -> Value {
        match self {
            Hop::Done(value) => value,
            Hop::Continued { hop, delay } => json!({ CONTINUED: { "hop": hop, "delay": delay } }),
        }
    }
}

/// How far a step's work went.
enum Progress {
    Finished,
    /// Stopped: a budget is spent until this time, or (`None`) the deadline is near.
    Paused(Option<i64>),
}

/// How far one installation's upload went.
enum UnitStep {
    Done(UnitResult),
    Paused(Option<i64>),
}

struct UnitResult {
    count: u64,
    error_count: u64,
    errors: Vec<String>,
}

impl<S: SecretStore, Q: RefreshQueue, T: StateStore> LansweeperFunction<S, Q, T> {
    /// Handles an SQS batch: one sync step per record ([`SyncMessage`]), once per message (SQS
    /// delivers at least once: a message delivered again after it was handled is acknowledged
    /// without a second run). Transient failures, and a message whose first delivery is still
    /// being handled, are reported as batch item failures (SQS delivers them again after the
    /// visibility timeout); `deadline` is the invocation's (seconds since the epoch).
    pub async fn handle_sqs(&self, event: &SqsEvent, deadline: i64) -> SqsBatchResponse {
        let mut failed = Vec::new();
        for record in &event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let message = SyncMessage::parse(record.body.as_deref().unwrap_or_default());
            let span = tracing::info_span!("sync", account = %message.account, message = %id, offering = %self.offering());
            if !self
                .sync_message(&id, &message, deadline)
                .instrument(span)
                .await
            {
                failed.push(id);
            }
        }
        batch_failures(failed)
    }

    /// Runs the sync step of message `id`; `false` when the message should be delivered again.
    async fn sync_message(&self, id: &str, message: &SyncMessage, deadline: i64) -> bool {
        let key = format!("{CONSUMER}/{}/queue/{id}", self.offering());
        let synced = self
            .deliveries()
            .once(
                &[key],
                message.body().as_bytes(),
                deadline,
                self.sync(message, id, deadline),
                |_| serde_json::json!({ "synced": true }),
            )
            .await;
        match synced {
            Ok(Once::Ran(summary)) if summary.get(CONTINUED).is_some() => {
                tracing::info!(progress = %summary, "sync continues in a later invocation");
                true
            }
            Ok(Once::Ran(summary)) => {
                tracing::info!(summary = %summary, "sync done");
                true
            }
            Ok(Once::Duplicate(_)) => {
                tracing::info!("message already handled, acknowledged");
                true
            }
            Err(OnceError::Failed(SyncError::Transient(e))) => {
                tracing::error!(error = %e, "sync failed, message will be retried");
                false
            }
            Err(OnceError::Failed(e @ SyncError::Permanent(_))) => {
                tracing::error!(error = %e, "sync impossible, message dropped");
                true
            }
            Err(OnceError::Store(e)) => {
                tracing::error!(error = %e, "state store failed, message will be retried");
                false
            }
            Err(OnceError::InProgress(_)) => {
                tracing::info!("message being handled by another attempt, retried later");
                false
            }
            Err(e @ OnceError::PayloadMismatch(_)) => {
                tracing::error!(error = %e, "message dropped");
                true
            }
        }
    }

    /// One invocation's part of a sync of `message.account`: a new sync, or the continuation of
    /// chained sync `message.sync`. A sync runs under a lease named after it (in the engine's
    /// state store, [`sync_lease_key`]): another sync of the account meanwhile is acknowledged
    /// without running, the sync's own continuation takes the lease over. A new sync is named
    /// after its first message (`message_id`), so that SQS delivering that message again
    /// resumes it. Returns the summary stored in the instance, `{"continued": …}` when the sync
    /// goes on in a queued continuation, or `null` when skipped.
    pub async fn sync(
        &self,
        message: &SyncMessage,
        message_id: &str,
        deadline: i64,
    ) -> Result<Value, SyncError> {
        let account = message.account.trim();
        let sync_id = message.sync.as_deref().unwrap_or(message_id);
        let key = sync_lease_key(self.offering(), account);
        let Some(mut lease) = Lease::acquire_for(&self.state, &key, sync_id, now() + LEASE_SECS)
            .await
            .map_err(|e| SyncError::Transient(format!("sync lease: {e}")))?
        else {
            tracing::info!("a sync of this account is already running, message acknowledged");
            return Ok(Value::Null);
        };
        self.drop_legacy_lease(account).await;
        let result = self
            .sync_leased(account, sync_id, message.sync.is_some(), deadline)
            .await;
        match &result {
            Ok(Hop::Continued { delay, .. }) => {
                // The lease stays with the sync until its continuation can have run.
                let until = now() + delay + LEASE_SECS;
                if let Err(e) = lease.extend(&self.state, until).await {
                    tracing::warn!(error = %e, "sync lease not extended (its continuation takes it over)");
                }
            }
            _ => {
                if let Err(e) = lease.release(&self.state).await {
                    tracing::error!(error = %e, "unable to release the sync lease (it expires by itself)");
                }
            }
        }
        result.map(Hop::into_value)
    }

    /// Removes the lease an earlier version kept in the customer secret (no write without it).
    async fn drop_legacy_lease(&self, account: &str) {
        let config = self.loader.config();
        let Ok(name) = customer_secret_name(&config.app, self.offering(), &config.domain, account)
        else {
            return;
        };
        let dropped = self
            .loader
            .store()
            .update(&name, |current| {
                let current = current?;
                current.get(SYNC_LEASE_KEY)?;
                let mut next = current.clone();
                next.remove(SYNC_LEASE_KEY);
                Some(next)
            })
            .await;
        if let Err(e) = dropped {
            tracing::warn!(error = %e, "legacy sync lease not dropped from the customer secret");
        }
    }

    /// The checkpoint this step resumes from (or a new one); `None` when there is nothing to do:
    /// a continuation of a sync that has finished, or that another sync took over.
    async fn checkpoint(
        &self,
        account: &str,
        sync_id: &str,
        continuation: bool,
    ) -> Result<Option<Run>, SyncError> {
        let key = checkpoint_key(self.offering(), account);
        let stored = self
            .state
            .get(&key)
            .await
            .map_err(|e| SyncError::Transient(format!("sync checkpoint: {e}")))?;
        let version = stored.as_ref().map(|r| r.version);
        let found = stored.and_then(|r| serde_json::from_value::<Checkpoint>(r.data).ok());
        let checkpoint = match found {
            Some(cp) if cp.sync == sync_id => cp,
            // We hold the lease, so the sync that wrote this is not running: its continuation
            // was lost (a queue failure, a message gone to the dead-letter queue). Resume it.
            Some(mut cp) if !continuation => {
                tracing::warn!(previous = %cp.sync, hops = cp.hops, "resuming an interrupted sync");
                sync_id.clone_into(&mut cp.sync);
                cp
            }
            Some(cp) => {
                tracing::info!(current = %cp.sync, "continuation of a sync another sync took over, acknowledged");
                return Ok(None);
            }
            None if continuation => {
                tracing::info!("continuation of a finished sync, acknowledged");
                return Ok(None);
            }
            None => Checkpoint::new(
                sync_id,
                last_seen_cut_off(Utc::now(), self.settings.last_seen_days),
            ),
        };
        Ok(Some(Run {
            checkpoint,
            key,
            version,
            stop_at: 0,
            hop_batches: 0,
            counted: 0,
            per_hour: self.api.settings().requests_per_hour,
        }))
    }

    async fn sync_leased(
        &self,
        account: &str,
        sync_id: &str,
        continuation: bool,
        deadline: i64,
    ) -> Result<Hop, SyncError> {
        let customer = self
            .loader
            .customer(account)
            .await
            .map_err(|e| SyncError::Permanent(format!("no customer context: {e}")))?;
        let Some(refresh) = refresh_token(customer.secrets()) else {
            return Err(SyncError::Permanent("no Lansweeper refresh token".into()));
        };
        let Some(mut run) = self.checkpoint(account, sync_id, continuation).await? else {
            return Ok(Hop::Done(
                json!({ "skipped": "no sync to continue (finished or taken over)" }),
            ));
        };
        run.checkpoint.hops += 1;
        run.stop_at = deadline
            .saturating_sub(i64::try_from(self.settings.stop_margin.as_secs()).unwrap_or(i64::MAX));
        // A budget spent in an earlier step: wait for its reset without a request.
        if let Some(until) = run.checkpoint.paused_until.filter(|at| *at > now()) {
            return self.continue_later(account, &mut run, Some(until)).await;
        }
        let provider = self
            .loader
            .provider()
            .await
            .map_err(|e| SyncError::Transient(format!("provider context: {e}")))?;
        let provider = provider
            .client()
            .map_err(|e| SyncError::Permanent(e.to_string()))?;
        let instance = find_app_instance(provider, self.offering(), account)
            .await
            .map_err(|e| SyncError::Transient(e.to_string()))?;
        // Disabled since the sync was queued: nothing (more) is synced (the schedule queues
        // enabled instances only).
        if instance.disabled {
            tracing::info!(account, "app instance disabled, not synced");
            self.forget_checkpoint(&run).await;
            return Ok(Hop::Done(json!({ "skipped": "app instance disabled" })));
        }
        let config = InstanceConfig::from(&instance);
        let (Some(client_id), Some(secret)) =
            (config.client_id.clone(), client_secret(customer.secrets()))
        else {
            return Err(SyncError::Permanent(
                "client_id or client_secret missing".into(),
            ));
        };
        let customer_client = customer
            .client()
            .map_err(|e| SyncError::Permanent(e.to_string()))?;
        let set = |fields: Vec<(String, Value)>| InstanceUpdate {
            custom_fields: fields,
            ..InstanceUpdate::default()
        };
        if run.version.is_none() {
            update_app_instance(
                provider,
                &instance.id,
                &set(vec![(
                    fields::SYNC_START_AT.into(),
                    json!(timestamp_text(run.checkpoint.started_at_ms)),
                )]),
            )
            .await
            .map_err(|e| SyncError::Transient(e.to_string()))?;
        }

        let mut session = self.api.session(
            ClientCredentials {
                client_id,
                client_secret: secret,
            },
            refresh,
        );
        let outcome = self
            .process(&mut session, &config, customer_client, &customer, &mut run)
            .await;
        self.store_rotated(&mut session, &customer).await;
        let suspend = |comment: String| InstanceUpdate {
            suspended: Some(true),
            suspension_comment: Some(comment),
            ..InstanceUpdate::default()
        };
        match outcome {
            Ok(Progress::Finished) => {}
            Ok(Progress::Paused(until)) => {
                return self.continue_later(account, &mut run, until).await;
            }
            // Lansweeper's hourly budget is spent (this process's count, or Lansweeper's
            // `Retry-After`): go on when it resets rather than fail into retries.
            Err(Failure::Lansweeper(LansweeperError::RateLimited { retry_after })) => {
                let until = now()
                    .saturating_add(i64::try_from(retry_after.as_secs()).unwrap_or(3600))
                    .saturating_add(1);
                tracing::info!(
                    retry_after_s = retry_after.as_secs(),
                    "Lansweeper budget spent"
                );
                return self.continue_later(account, &mut run, Some(until)).await;
            }
            Err(Failure::Lansweeper(e)) if e.is_authorization() => {
                let message = match &e {
                    LansweeperError::Unauthorized(m) => m.clone(),
                    other => other.to_string(),
                };
                update_app_instance(
                    provider,
                    &instance.id,
                    &suspend(format!("Unable to connect to Lansweeper: {message}")),
                )
                .await
                .map_err(|e| SyncError::Transient(e.to_string()))?;
                self.forget_checkpoint(&run).await;
                return Err(SyncError::Permanent(format!(
                    "Unable to connect to Lansweeper, suspended instance: {e}"
                )));
            }
            Err(Failure::FourMe(e)) if is_4me_authorization(&e) => {
                update_app_instance(
                    provider,
                    &instance.id,
                    &suspend(ROTATE_TOKEN_COMMENT.into()),
                )
                .await
                .map_err(|e| SyncError::Transient(e.to_string()))?;
                self.forget_checkpoint(&run).await;
                return Err(SyncError::Permanent(format!(
                    "Unable to connect to customer account, suspended instance: {e}"
                )));
            }
            // The checkpoint stays: the retry resumes from the last uploaded batch.
            Err(e) => return Err(SyncError::Transient(e.to_string())),
        }
        let seconds =
            (Utc::now().timestamp_millis() - run.checkpoint.started_at_ms).max(0) as f64 / 1000.0;
        let result = run.checkpoint.summary.to_json();
        update_app_instance(
            provider,
            &instance.id,
            &set(vec![
                (
                    fields::SYNC_END_AT.into(),
                    json!(timestamp_text(Utc::now().timestamp_millis())),
                ),
                (fields::SYNC_DURATION.into(), json!(format!("{seconds:.3}"))),
                (
                    fields::SYNC_DURATION_TEXT.into(),
                    json!(duration_text(seconds)),
                ),
                (
                    fields::SYNC_SUMMARY.into(),
                    json!(format_summary(&result, self.settings.max_summary_size)),
                ),
            ]),
        )
        .await
        .map_err(|e| SyncError::Transient(e.to_string()))?;
        self.forget_checkpoint(&run).await;
        tracing::info!(
            hops = run.checkpoint.hops,
            batches = run.checkpoint.batches,
            "chained sync finished"
        );
        Ok(Hop::Done(result))
    }

    /// Saves the checkpoint and queues the continuation: at once after a deadline stop, or
    /// when the spent budget resets (`until`; SQS delays a message 15 minutes at most, so a
    /// longer wait takes several continuations).
    async fn continue_later(
        &self,
        account: &str,
        run: &mut Run,
        until: Option<i64>,
    ) -> Result<Hop, SyncError> {
        run.checkpoint.paused_until = until;
        run.save(&self.state)
            .await
            .map_err(|e| SyncError::Transient(e.to_string()))?;
        let wait = until.map_or(0, |at| (at - now()).max(0));
        let delay = wait.min(i64::try_from(MAX_DELAY.as_secs()).unwrap_or(900));
        let message = SyncMessage::continuation(account, &run.checkpoint.sync);
        self.queue
            .send(
                &message,
                std::time::Duration::from_secs(delay.unsigned_abs()),
            )
            .await
            .map_err(|e| SyncError::Transient(e.to_string()))?;
        tracing::info!(
            hop = run.checkpoint.hops,
            delay,
            budget_wait = until.is_some(),
            "sync checkpointed, continuation queued"
        );
        Ok(Hop::Continued {
            hop: run.checkpoint.hops,
            delay,
        })
    }

    /// Deletes the checkpoint of a sync that ended (a failed delete expires by itself).
    async fn forget_checkpoint(&self, run: &Run) {
        let Some(version) = run.version else {
            return;
        };
        if let Err(e) = self.state.delete(&run.key, version).await {
            tracing::warn!(error = %e, "sync checkpoint not deleted (it expires by itself)");
        }
    }

    pub(crate) async fn store_rotated(
        &self,
        session: &mut Session,
        customer: &app_builder_core::context::AccountContext,
    ) {
        if let Some(token) = session.take_rotated_refresh_token()
            && let Err(e) = self
                .store_refresh_token(customer, token.expose_secret())
                .await
        {
            tracing::error!(error = %e, "unable to store the rotated Lansweeper refresh token");
        }
    }

    async fn process(
        &self,
        session: &mut Session,
        config: &InstanceConfig,
        client: &FourMeClient,
        customer: &app_builder_core::context::AccountContext,
        run: &mut Run,
    ) -> Result<Progress, Failure> {
        if let Some(until) = run.lansweeper_spent(session.requests_sent(), LANSWEEPER_STEP_RESERVE)
        {
            return Ok(Progress::Paused(Some(until)));
        }
        session.authenticate().await?;
        self.store_rotated(session, customer).await;
        let sites = match session.sites().await {
            Ok(sites) => sites,
            // As the original: Lansweeper's GraphQL error on the sites query is the sync's
            // result, shown to the customer in the summary; a retry would meet it again.
            Err(e @ LansweeperError::GraphQl { .. }) => {
                tracing::warn!(error = %e, "sites query refused, reported in the summary");
                run.checkpoint.summary.error = Some(e.to_string());
                return Ok(Progress::Finished);
            }
            Err(e) => return Err(e.into()),
        };
        let mut per_site = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for site in &sites {
            match session.installations(&site.id).await {
                Ok(list) => {
                    for i in &list {
                        if !names.contains(&i.name) {
                            names.push(i.name.clone());
                        }
                    }
                    per_site.push((site, Ok(list)));
                }
                Err(e) if e.is_authorization() || e.is_transient() => return Err(e.into()),
                Err(e) => per_site.push((site, Err(e.to_string()))),
            }
        }
        for extra in &config.installation_names {
            if !names.contains(extra) {
                names.push(extra.clone());
            }
        }
        let (with_ip, asset_types) = asset_filter(config);
        let labels = generate_labels(config);
        let cut_off = run.checkpoint.cut_off();
        let mut refs = References::new(&self.settings.users_to_ignore);
        for (site, installations) in per_site {
            let summary = &mut run.checkpoint.summary;
            let site_types = match &asset_types {
                Some(configured) => match available_asset_types(
                    session,
                    &site.id,
                    configured,
                    self.api.settings().max_filter_field_length,
                )
                .await
                {
                    Ok(types) => Some(types),
                    Err(SiteFailure::Fatal(e)) => return Err(e.into()),
                    Err(SiteFailure::Site(message)) => {
                        summary.errors.insert(site.name.clone(), json!(message));
                        continue;
                    }
                },
                None => None,
            };
            let installations = match installations {
                Ok(list) => list,
                Err(e) => {
                    summary.errors.insert(site.name.clone(), json!(e));
                    continue;
                }
            };
            let selected: Vec<_> = installations
                .into_iter()
                .filter(|i| {
                    config.installation_handling == "all"
                        || config.installation_names.contains(&i.name)
                })
                .collect();
            if selected.is_empty() {
                summary.info.insert(
                    site.name.clone(),
                    "No installations in this site matched selection".into(),
                );
                continue;
            }
            for inst in selected {
                let unit = format!("{}/{}", site.id, inst.id);
                if run.checkpoint.done.contains(&unit) {
                    continue;
                }
                let query = AssetQuery {
                    site_id: site.id.clone(),
                    cut_off,
                    with_ip,
                    installation_id: Some(inst.id.clone()),
                    asset_types: site_types.clone(),
                };
                let upload = Upload {
                    unit: &unit,
                    installation: &inst.name,
                    names: &names,
                    labels,
                    cut_off,
                };
                let uploaded = self
                    .upload_installation(session, client, query, upload, &mut refs, run)
                    .await;
                let result = match uploaded {
                    Ok(UnitStep::Done(result)) => result,
                    Ok(UnitStep::Paused(until)) => {
                        self.store_end_of_support(&refs, client, run).await;
                        return Ok(Progress::Paused(until));
                    }
                    Err(e) => {
                        self.store_end_of_support(&refs, client, run).await;
                        return Err(e);
                    }
                };
                let summary = &mut run.checkpoint.summary;
                summary
                    .upload_counts
                    .entry(site.name.clone())
                    .or_default()
                    .insert(inst.name.clone(), result.count);
                if result.error_count > 0 {
                    summary
                        .error_counts
                        .entry(site.name.clone())
                        .or_default()
                        .insert(inst.name.clone(), result.error_count);
                    let entry = summary
                        .errors
                        .entry(site.name.clone())
                        .or_insert_with(|| json!({}));
                    if let Some(map) = entry.as_object_mut() {
                        map.insert(inst.name.clone(), json!(result.errors));
                    }
                }
                run.checkpoint.done.push(unit);
                run.checkpoint.current = None;
            }
        }
        self.store_end_of_support(&refs, client, run).await;
        let os = &run.checkpoint.os;
        let errored: Vec<&String> = os.errored.difference(&os.updated).collect();
        if !errored.is_empty() {
            let list: Vec<&str> = errored.iter().map(|s| s.as_str()).collect();
            run.checkpoint.summary.errors.insert(
                OPERATING_SYSTEMS.into(),
                json!(format!(
                    "Unable to store end-of-support for: {}",
                    list.join(", ")
                )),
            );
        } else if !os.updated.is_empty() {
            let count = os.updated.len();
            run.checkpoint.summary.info.insert(
                OPERATING_SYSTEMS.into(),
                format!("Stored end-of-support for {count} item(s)"),
            );
        }
        Ok(Progress::Finished)
    }

    /// Stores the end-of-support dates of the operating systems this step met.
    async fn store_end_of_support(&self, refs: &References, client: &FourMeClient, run: &mut Run) {
        if let Some(os) = refs.update_end_of_support(client).await {
            let tally = &mut run.checkpoint.os;
            tally.updated.extend(os.updated);
            tally.errored.extend(os.errored);
        }
    }

    /// Uploads one installation's assets from where the checkpoint left it, saving the
    /// checkpoint after each uploaded batch; stops before a batch when this step should.
    async fn upload_installation(
        &self,
        session: &mut Session,
        client: &FourMeClient,
        query: AssetQuery,
        upload: Upload<'_>,
        refs: &mut References,
        run: &mut Run,
    ) -> Result<UnitStep, Failure> {
        // The run keeps the position last saved: a step that fails resumes from it.
        let mut at = match &run.checkpoint.current {
            Some(position) if position.unit == upload.unit => position.clone(),
            _ => Position::start(upload.unit),
        };
        let mut pages = match session.assets_from(query, at.page.clone()) {
            Ok(p) => p,
            Err(e) => {
                return Ok(UnitStep::Done(UnitResult {
                    count: 0,
                    error_count: 1,
                    errors: vec![e.to_string()],
                }));
            }
        };
        loop {
            if let Some(until) = run.should_stop(pages.session().requests_sent(), client) {
                run.checkpoint.current = Some(at);
                return Ok(UnitStep::Paused(until));
            }
            let page = match pages.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) if e.is_authorization() || e.is_transient() => return Err(e.into()),
                Err(e) => {
                    at.error(e.to_string());
                    break;
                }
            };
            metrics::count(metrics::SYNC_PAGES, 1);
            metrics::count(metrics::SYNC_ASSETS, page.len() as u64);
            let recent: Vec<_> = page
                .into_iter()
                .filter(|a| is_recent(a, upload.cut_off))
                .collect();
            // A page (up to 500 assets) goes to 4me in uploads of at most 100 CIs; a failed
            // reference lookup costs one upload, not the page.
            for (index, chunk) in recent.chunks(MAX_ITEMS_PER_UPLOAD).enumerate() {
                if index < at.batches {
                    continue;
                }
                if let Some(until) = run.should_stop(pages.session().requests_sent(), client) {
                    at.batches = index;
                    run.checkpoint.current = Some(at);
                    return Ok(UnitStep::Paused(until));
                }
                match refs.prepare(client, chunk).await {
                    Ok(()) => {}
                    Err(e) if is_4me_authorization(e.cause()) || e.cause().is_transient() => {
                        return Err(Failure::FourMe(e.into_cause()));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, cause = %e.cause(), "reference lookup failed");
                        at.error(UPLOAD_FAILED.into());
                        continue;
                    }
                }
                let mut batch = DiscoveryBatch::new(upload.labels);
                for asset in chunk {
                    batch.add(asset, refs);
                }
                at.skipped += batch.skipped_without_key();
                if batch.is_empty() {
                    continue;
                }
                let input = batch.into_input(upload.installation, upload.names);
                let (uploaded, failures) = upload_batch(client, input).await?;
                at.count += uploaded;
                for failure in failures {
                    at.error(failure);
                }
                at.batches = index + 1;
                run.hop_batches += 1;
                run.checkpoint.batches += 1;
                run.checkpoint.current = Some(at.clone());
                run.save(&self.state).await?;
            }
            // The page is done: the position moves on to the next one.
            at.page = pages.position().clone();
            at.batches = 0;
        }
        if at.skipped > 0 {
            at.error(format!(
                "{} assets without a Lansweeper key were skipped (4me needs a sourceID)",
                at.skipped
            ));
        }
        Ok(UnitStep::Done(UnitResult {
            count: at.count,
            error_count: at.error_count,
            errors: at.errors,
        }))
    }
}

/// Uploads one batch and reads its async result: the CIs created or updated and the errors 4me
/// reported (an upload 4me refuses is an error of the batch, not of the sync).
async fn upload_batch(client: &FourMeClient, input: Value) -> Result<(u64, Vec<String>), Failure> {
    let payload: Value = match client.mutation(UPLOAD, &json!({"input": input})).await {
        Ok(p) => p,
        Err(e) if is_4me_authorization(&e) || e.is_transient() => return Err(e.into()),
        Err(e) => return Ok((0, vec![e.to_string()])),
    };
    let result = match payload
        .pointer("/asyncQuery/resultUrl")
        .and_then(Value::as_str)
    {
        Some(url) => match client.async_result::<Value>(url).await {
            Ok(r) => r,
            Err(e) if is_4me_authorization(&e) || e.is_transient() => return Err(e.into()),
            Err(e) => return Ok((0, vec![e.to_string()])),
        },
        None => payload,
    };
    let count = result
        .get("configurationItems")
        .and_then(Value::as_array)
        .map_or(0, |a| a.len() as u64);
    let errors = result
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| e.to_string(), str::to_owned)
        })
        .collect();
    Ok((count, errors))
}

/// `(networkedAssetsOnly, assetTypes)` of the import type (`performUpload` step 4): absent,
/// `ip_only` or unknown → assets with an IP address only; `all` → no filter; `no_ip_only` →
/// assets without one; `selected_types_only` → the selected types, lower-cased (none selected:
/// no filter).
pub fn asset_filter(config: &InstanceConfig) -> (Option<bool>, Option<Vec<String>>) {
    match config.import_type.as_deref() {
        Some("all") => (None, None),
        Some("no_ip_only") => (Some(false), None),
        Some("selected_types_only") => {
            let types: Vec<String> = config
                .selected_asset_types
                .iter()
                .map(|t| t.to_lowercase())
                .collect();
            (None, Some(types).filter(|t| !t.is_empty()))
        }
        _ => (Some(true), None),
    }
}

/// Whether CI names are product names and labels the Lansweeper asset names.
pub fn generate_labels(config: &InstanceConfig) -> bool {
    config.label_generator.as_deref() == Some("lansweeper_asset_name")
}

/// Assets last seen before this are not synced (`now − LAST_SEEN_DAYS days`).
pub fn last_seen_cut_off(now: chrono::DateTime<Utc>, days: u32) -> chrono::DateTime<Utc> {
    now - chrono::Duration::days(i64::from(days))
}

/// Summary key of the OS end-of-support outcome.
const OPERATING_SYSTEMS: &str = "operatingSystems";

/// Batch error when a page cannot be uploaded (as the original).
const UPLOAD_FAILED: &str = "Unable to upload assets to 4me.";

/// What one installation's pages are uploaded as.
struct Upload<'a> {
    /// `<site id>/<installation id>`.
    unit: &'a str,
    installation: &'a str,
    names: &'a [String],
    labels: bool,
    cut_off: chrono::DateTime<Utc>,
}

/// Assets without `lastSeen`, or seen after the cut-off, are synced (`recentAssets`).
fn is_recent(asset: &crate::api::Asset, cut_off: chrono::DateTime<Utc>) -> bool {
    asset
        .asset_basic_info
        .as_ref()
        .and_then(|b| b.last_seen.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_none_or(|t| t > cut_off)
}

enum SiteFailure {
    /// Authorization or transient: the whole sync fails.
    Fatal(LansweeperError),
    /// Only this site fails (its summary error).
    Site(String),
}

/// The configured asset types (lower-cased, configured order) that the site knows
/// case-insensitively (`getSelectedAssetTypes`); none → a site error listing the available ones.
async fn available_asset_types(
    session: &mut Session,
    site_id: &str,
    configured: &[String],
    max: usize,
) -> Result<Vec<String>, SiteFailure> {
    let all = match session.asset_types(site_id).await {
        Ok(all) => all,
        Err(e) if e.is_authorization() || e.is_transient() => return Err(SiteFailure::Fatal(e)),
        Err(e) => return Err(SiteFailure::Site(e.to_string())),
    };
    for long in all.iter().filter(|t| t.chars().count() > max) {
        tracing::warn!(asset_type = %long, max, "asset type too long to filter on");
    }
    let lower: Vec<String> = all.iter().map(|t| t.to_lowercase()).collect();
    let kept: Vec<String> = configured
        .iter()
        .map(|t| t.to_lowercase())
        .filter(|t| lower.contains(t))
        .collect();
    if kept.is_empty() {
        return Err(SiteFailure::Site(format!(
            "No assets matched selected asset types. Available types: {}",
            all.join("; ")
        )));
    }
    if kept.len() < configured.len() {
        tracing::warn!(kept = ?kept, configured = ?configured, "some selected asset types are not in this site");
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(import_type: Option<&str>, labels: Option<&str>) -> InstanceConfig {
        InstanceConfig {
            instance_id: "i".into(),
            client_id: None,
            connection_status: None,
            suspended: false,
            suspension_comment: None,
            import_type: import_type.map(str::to_owned),
            selected_asset_types: vec!["iPad".into(), "LINUX".into()],
            installation_handling: "all".into(),
            installation_names: vec![],
            label_generator: labels.map(str::to_owned),
            last_sync_start: None,
        }
    }

    #[test]
    fn import_type_ip_only_all_no_ip_only_selected_types_only() {
        assert_eq!(asset_filter(&config(None, None)), (Some(true), None));
        assert_eq!(
            asset_filter(&config(Some("ip_only"), None)),
            (Some(true), None)
        );
        assert_eq!(
            asset_filter(&config(Some("bogus"), None)),
            (Some(true), None)
        );
        assert_eq!(asset_filter(&config(Some("all"), None)), (None, None));
        assert_eq!(
            asset_filter(&config(Some("no_ip_only"), None)),
            (Some(false), None)
        );
        assert_eq!(
            asset_filter(&config(Some("selected_types_only"), None)),
            (None, Some(vec!["ipad".to_owned(), "linux".to_owned()]))
        );
        let mut none_selected = config(Some("selected_types_only"), None);
        none_selected.selected_asset_types.clear();
        assert_eq!(asset_filter(&none_selected), (None, None));
    }

    #[test]
    fn label_generator_lansweeper_asset_name_and_autogenerated() {
        assert!(generate_labels(&config(
            None,
            Some("lansweeper_asset_name")
        )));
        assert!(!generate_labels(&config(None, Some("autogenerated"))));
        assert!(!generate_labels(&config(None, None)));
    }

    #[test]
    fn determines_cut_off_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2021-09-30T07:12:33Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            last_seen_cut_off(now, 30).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "2021-08-31T07:12:33.000Z"
        );
    }

    #[test]
    fn filters_out_assets_with_old_last_seen_date() {
        let cut_off = chrono::DateTime::parse_from_rfc3339("2021-08-31T07:12:33Z")
            .unwrap()
            .with_timezone(&Utc);
        let asset = |last_seen: Option<&str>| -> crate::api::Asset {
            serde_json::from_value(json!({"assetBasicInfo": {"lastSeen": last_seen}})).unwrap()
        };
        assert!(is_recent(&asset(Some("2021-09-01T00:00:00.000Z")), cut_off));
        assert!(!is_recent(
            &asset(Some("2021-08-31T07:12:33.000Z")),
            cut_off
        ));
        assert!(!is_recent(&asset(Some("2020-01-01T00:00:00Z")), cut_off));
        assert!(is_recent(&asset(None), cut_off));
        assert!(is_recent(&crate::api::Asset::default(), cut_off));
    }

    #[test]
    fn summary_formatting_basic() {
        let v = json!({"site1": 1, "site2": 0});
        assert_eq!(
            format_summary(&v, 15_000),
            "```\n{\n  \"site1\": 1,\n  \"site2\": 0\n}\n```\n"
        );
        // The original's own examples (`secondsToDurationText`).
        for (seconds, text) in [
            (1.001, "0:01"),
            (7.01, "0:07"),
            (65.0, "1:05"),
            (144.0, "2:24"),
            (744.001, "12:24"),
            (3600.0, "1:00:00"),
            (7324.0, "2:02:04"),
            (7344.0, "2:02:24"),
            (72744.0, "20:12:24"),
        ] {
            assert_eq!(duration_text(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn summary_formatting_too_long() {
        let v = json!({"site1": 1, "site2": 0});
        let long = format_summary(&v, 5);
        assert_eq!(
            long,
            "Too much data to show! Truncated value:\n```\n{\n  \"\n```\n"
        );
    }
}
