//! One customer sync from an SQS message (spec §5.3.6–5.3.8, improved): assets are streamed
//! page by page from Lansweeper, each page's software/people/OS references looked up
//! ([`References`]), the page converted and uploaded with `discoveredConfigurationItems` and its
//! async result awaited before the next page is fetched, so memory stays flat in the number of
//! assets; OS end-of-support dates are stored at the end. Authorization failures suspend the instance;
//! transient failures fail the SQS record (`ReportBatchItemFailures`) so SQS retries it and then
//! moves it to the dead-letter queue.

use std::collections::BTreeMap;
use std::time::Instant;

use app_builder_core::events::batch_failures;
use app_builder_core::fourme::instances::{InstanceUpdate, find_app_instance, update_app_instance};
use app_builder_core::fourme::{FourMeClient, FourMeError};
use app_builder_core::idempotency::{Once, OnceError};
use app_builder_core::secrets::SecretStore;
use app_builder_core::secrets::customer_secret_name;
use app_builder_core::state::{Lease, StateStore};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::api::{AssetQuery, ClientCredentials, LansweeperError, Session};
use crate::discovery::{DiscoveryBatch, MAX_ITEMS_PER_UPLOAD};
use crate::instance::{InstanceConfig, fields};
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

/// How long a sync may hold the lease (the function timeout, 900 s).
const LEASE: chrono::Duration = chrono::Duration::minutes(15);

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
#[derive(Debug, Default)]
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

impl<S: SecretStore, Q: RefreshQueue, T: StateStore> LansweeperFunction<S, Q, T> {
    /// Handles an SQS batch: one sync per record (body = customer account), once per message
    /// (SQS delivers at least once: a message delivered again after its sync completed is
    /// acknowledged without a second sync). Transient failures, and a message whose first
    /// delivery is still being synced, are reported as batch item failures (SQS delivers them
    /// again after the visibility timeout); `deadline` is the invocation's.
    pub async fn handle_sqs(&self, event: &SqsEvent, deadline: i64) -> SqsBatchResponse {
        let mut failed = Vec::new();
        for record in &event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let account = record.body.clone().unwrap_or_default();
            let span = tracing::info_span!("sync", account = %account, message = %id, offering = %self.offering());
            if !self
                .sync_message(&id, &account, deadline)
                .instrument(span)
                .await
            {
                failed.push(id);
            }
        }
        batch_failures(failed)
    }

    /// Syncs the account of message `id`; `false` when the message should be delivered again.
    async fn sync_message(&self, id: &str, account: &str, deadline: i64) -> bool {
        let key = format!("{CONSUMER}/{}/queue/{id}", self.offering());
        let synced = self
            .deliveries()
            .once(
                &[key],
                account.as_bytes(),
                deadline,
                self.sync_account(account.trim()),
                |_| serde_json::json!({ "synced": true }),
            )
            .await;
        match synced {
            Ok(Once::Ran(summary)) => {
                tracing::info!(summary = %summary, "sync done");
                true
            }
            Ok(Once::Duplicate(_)) => {
                tracing::info!("message already synced, acknowledged");
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
                tracing::info!("message being synced by another attempt, retried later");
                false
            }
            Err(e @ OnceError::PayloadMismatch(_)) => {
                tracing::error!(error = %e, "message dropped");
                true
            }
        }
    }

    /// Syncs one customer unless a sync of it is already running (a lease in the engine's state
    /// store, [`sync_lease_key`], taken atomically, released at the end, expiring by itself
    /// after the function's timeout); returns the summary stored in the instance, or `null`
    /// when skipped.
    pub async fn sync_account(&self, account: &str) -> Result<Value, SyncError> {
        let until = Utc::now().timestamp().saturating_add(LEASE.num_seconds());
        let key = sync_lease_key(self.offering(), account);
        let Some(lease) = Lease::acquire(&self.state, &key, until)
            .await
            .map_err(|e| SyncError::Transient(format!("sync lease: {e}")))?
        else {
            tracing::info!("a sync of this account is already running, message acknowledged");
            return Ok(Value::Null);
        };
        self.drop_legacy_lease(account).await;
        let result = self.sync_leased(account).await;
        if let Err(e) = lease.release(&self.state).await {
            tracing::error!(error = %e, "unable to release the sync lease (it expires by itself)");
        }
        result
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

    async fn sync_leased(&self, account: &str) -> Result<Value, SyncError> {
        let customer = self
            .loader
            .customer(account)
            .await
            .map_err(|e| SyncError::Permanent(format!("no customer context: {e}")))?;
        let Some(refresh) = refresh_token(customer.secrets()) else {
            return Err(SyncError::Permanent("no Lansweeper refresh token".into()));
        };
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
        // Disabled since the sync was queued: nothing is synced (the schedule queues enabled
        // instances only).
        if instance.disabled {
            tracing::info!(account, "app instance disabled, not synced");
            return Ok(json!({ "skipped": "app instance disabled" }));
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
        let start = Instant::now();
        let set = |fields: Vec<(String, Value)>| InstanceUpdate {
            custom_fields: fields,
            ..InstanceUpdate::default()
        };
        update_app_instance(
            provider,
            &instance.id,
            &set(vec![(
                fields::SYNC_START_AT.into(),
                json!(Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            )]),
        )
        .await
        .map_err(|e| SyncError::Transient(e.to_string()))?;

        let mut session = self.api.session(
            ClientCredentials {
                client_id,
                client_secret: secret,
            },
            refresh,
        );
        let mut summary = Summary::default();
        let outcome = self
            .process(
                &mut session,
                &config,
                customer_client,
                &customer,
                &mut summary,
            )
            .await;
        self.store_rotated(&mut session, &customer).await;
        let suspend = |comment: String| InstanceUpdate {
            suspended: Some(true),
            suspension_comment: Some(comment),
            ..InstanceUpdate::default()
        };
        match outcome {
            Ok(()) => {}
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
                return Err(SyncError::Permanent(format!(
                    "Unable to connect to customer account, suspended instance: {e}"
                )));
            }
            Err(Failure::Lansweeper(e)) => return Err(SyncError::Transient(e.to_string())),
            Err(Failure::FourMe(e)) => return Err(SyncError::Transient(e.to_string())),
        }
        let seconds = start.elapsed().as_secs_f64();
        let result = summary.to_json();
        update_app_instance(
            provider,
            &instance.id,
            &set(vec![
                (
                    "sync_end_at".into(),
                    json!(Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                ),
                ("sync_duration".into(), json!(format!("{seconds:.3}"))),
                ("sync_duration_text".into(), json!(duration_text(seconds))),
                (
                    "sync_summary".into(),
                    json!(format_summary(&result, self.settings.max_summary_size)),
                ),
            ]),
        )
        .await
        .map_err(|e| SyncError::Transient(e.to_string()))?;
        Ok(result)
    }

    async fn store_rotated(
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
        summary: &mut Summary,
    ) -> Result<(), Failure> {
        session.authenticate().await?;
        self.store_rotated(session, customer).await;
        let sites = match session.sites().await {
            Ok(sites) => sites,
            // As the original: Lansweeper's GraphQL error on the sites query is the sync's
            // result, shown to the customer in the summary; a retry would meet it again.
            Err(e @ LansweeperError::GraphQl { .. }) => {
                tracing::warn!(error = %e, "sites query refused, reported in the summary");
                summary.error = Some(e.to_string());
                return Ok(());
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
        let cut_off = last_seen_cut_off(Utc::now(), self.settings.last_seen_days);
        let mut refs = References::new(&self.settings.users_to_ignore);
        for (site, installations) in per_site {
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
                let query = AssetQuery {
                    site_id: site.id.clone(),
                    cut_off,
                    with_ip,
                    installation_id: Some(inst.id.clone()),
                    asset_types: site_types.clone(),
                };
                let (count, errors) = self
                    .upload_installation(
                        session,
                        client,
                        query,
                        Upload {
                            installation: &inst.name,
                            names: &names,
                            labels,
                            cut_off,
                        },
                        &mut refs,
                    )
                    .await?;
                summary
                    .upload_counts
                    .entry(site.name.clone())
                    .or_default()
                    .insert(inst.name.clone(), count);
                if !errors.is_empty() {
                    summary
                        .error_counts
                        .entry(site.name.clone())
                        .or_default()
                        .insert(inst.name.clone(), errors.len() as u64);
                    let entry = summary
                        .errors
                        .entry(site.name.clone())
                        .or_insert_with(|| json!({}));
                    if let Some(map) = entry.as_object_mut() {
                        map.insert(inst.name.clone(), json!(errors));
                    }
                }
            }
        }
        if let Some(os) = refs.update_end_of_support(client).await {
            if !os.errored.is_empty() {
                summary.errors.insert(
                    OPERATING_SYSTEMS.into(),
                    json!(format!(
                        "Unable to store end-of-support for: {}",
                        os.errored.join(", ")
                    )),
                );
            } else {
                summary.info.insert(
                    OPERATING_SYSTEMS.into(),
                    format!("Stored end-of-support for {} item(s)", os.updated.len()),
                );
            }
        }
        Ok(())
    }

    async fn upload_installation(
        &self,
        session: &mut Session,
        client: &FourMeClient,
        query: AssetQuery,
        upload: Upload<'_>,
        refs: &mut References,
    ) -> Result<(u64, Vec<String>), Failure> {
        let mut count = 0;
        let mut skipped = 0;
        let mut errors = Vec::new();
        let mut pages = match session.assets(query) {
            Ok(p) => p,
            Err(e) => return Ok((0, vec![e.to_string()])),
        };
        loop {
            let page = match pages.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) if e.is_authorization() || e.is_transient() => return Err(e.into()),
                Err(e) => {
                    errors.push(e.to_string());
                    break;
                }
            };
            let recent: Vec<_> = page
                .into_iter()
                .filter(|a| is_recent(a, upload.cut_off))
                .collect();
            if recent.is_empty() {
                continue;
            }
            // A page (up to 500 assets) goes to 4me in uploads of at most 100 CIs; a failed
            // reference lookup costs one upload, not the page.
            for chunk in recent.chunks(MAX_ITEMS_PER_UPLOAD) {
                match refs.prepare(client, chunk).await {
                    Ok(()) => {}
                    Err(e) if is_4me_authorization(e.cause()) || e.cause().is_transient() => {
                        return Err(Failure::FourMe(e.into_cause()));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, cause = %e.cause(), "reference lookup failed");
                        errors.push(UPLOAD_FAILED.into());
                        continue;
                    }
                }
                let mut batch = DiscoveryBatch::new(upload.labels);
                for asset in chunk {
                    batch.add(asset, refs);
                }
                skipped += batch.skipped_without_key();
                if batch.is_empty() {
                    continue;
                }
                let input = batch.into_input(upload.installation, upload.names);
                let (uploaded, failures) = upload_batch(client, input).await?;
                count += uploaded;
                errors.extend(failures);
            }
        }
        if skipped > 0 {
            errors.push(format!(
                "{skipped} assets without a Lansweeper key were skipped (4me needs a sourceID)"
            ));
        }
        Ok((count, errors))
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
