//! A [`SecretStore`] on AWS Secrets Manager.
//!
//! # Optimistic compare-and-swap (`update`, and so `upsert`)
//!
//! The original read, merged and wrote without any check, so concurrent writers (the secrets
//! lambda and the integration lambdas writing different keys of one customer secret) silently
//! dropped each other's keys (docs/original.md#fixed-bugs item 1). Here every `update` is a compare-and-swap cycle built on
//! Secrets Manager's staging labels:
//!
//! 1. `GetSecretValue(VersionStage=AWSCURRENT)` — always explicit, moto may otherwise return a
//!    stale version — gives the current document and its version id `R`. A caller that took
//!    this read ahead (`read_ahead`, sent while it takes a lock) passes it to `update_from`,
//!    and the first cycle starts from it: a stale one fails step 4 like any lost race, and a
//!    closure declining on it is asked again on a fresh read;
//! 2. the caller's closure computes the new document from it (for `upsert`: the update is
//!    `merge`d into it); when the closure returns `None` the cycle ends without any write;
//! 3. `PutSecretValue(ClientRequestToken=<new uuid N>, VersionStages=[WRITE_LABEL])` stores the
//!    merged document as a new version that is **not** current yet (without `VersionStages`
//!    Secrets Manager would make it current at once). A staging label is attached to one
//!    version at a time, so the label moves from the version of the previous write to this one:
//!    no clean-up call, and no label is ever left behind;
//! 4. `UpdateSecretVersionStage(VersionStage=AWSCURRENT, MoveToVersionId=N,
//!    RemoveFromVersionId=R)` promotes it. Secrets Manager rejects the call when `AWSCURRENT` is
//!    no longer attached to `R` — i.e. another writer committed in between — which makes this
//!    step the compare-and-swap. On such a rejection, `DescribeSecret` confirms that `AWSCURRENT`
//!    moved (otherwise the error is reported as permanent) and the whole cycle is retried after a
//!    jittered exponential backoff, at most `max_attempts` times (default 10), after which
//!    [`SecretStoreError::ConflictExhausted`] is returned.
//!
//! Writers racing on one secret move the label between their versions: a version that lost it
//! has no label until its writer promotes it, which Secrets Manager allows: a version without
//! labels is deprecated, and PutSecretValue's API reference says outdated versions are removed
//! only when there are more than 100, never one created less than 24 hours ago. A lost
//! promotion leaves an unlabelled version that Secrets Manager removes in time.
//!
//! When the secret does not exist, the closure is called with `None` and `CreateSecret` stores its
//! result (nulls dropped); if a
//! concurrent writer created it first (`ResourceExistsException`) the cycle restarts on the update
//! path. Transient errors (throttling, 5xx, timeouts, connection failures) restart the cycle as
//! well and share the attempt budget; the SDK's own retries apply to each call underneath. A
//! retried cycle re-runs the closure on the then current document; for `upsert` this is safe even
//! when the failed call actually succeeded: re-applying the same update to a document that
//! already contains it yields the same document.
//!
//! Secrets Manager limits the staging labels of one secret (20); labels other tools attach count
//! too, so a `LimitExceededException` from `PutSecretValue` is treated like a lost race.
//!
//! IAM: `update`/`upsert` need `secretsmanager:GetSecretValue`, `PutSecretValue`,
//! `UpdateSecretVersionStage`, `DescribeSecret` and `CreateSecret`; `get` needs `GetSecretValue`;
//! `delete` needs `DeleteSecret`.
//!
//! `delete` removes the secret immediately (`ForceDeleteWithoutRecovery`), so the name can be
//! reused at once.

use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use rand::Rng;

use super::{
    DocumentError, ReadAhead, SecretDocument, SecretName, SecretStore, SecretStoreError,
    without_nulls,
};

/// Staging label of the current version.
const AWSCURRENT: &str = "AWSCURRENT";
/// Staging label of the version a writer stores before promoting it (see the module docs).
pub const WRITE_LABEL: &str = "AppBuilderWrite";
/// Default number of read-merge-write cycles before giving up.
const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Default first backoff cap.
const DEFAULT_BASE_BACKOFF: Duration = Duration::from_millis(50);
/// Default largest backoff.
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// AWS Secrets Manager secret store (see the module docs for the update protocol).
#[derive(Debug, Clone)]
pub struct AwsSecretStore {
    client: Client,
    max_attempts: u32,
    base_backoff: Duration,
    max_backoff: Duration,
}

/// Result of one read-modify-write cycle that did not fail.
enum Cycle {
    /// Committed (the stored document), or declined by the closure (`None`, nothing written).
    Done(Option<SecretDocument>),
    /// Lost against a concurrent writer; retry after a backoff.
    Conflict,
    /// The secret appeared concurrently; retry at once on the update path.
    RetryNow,
}

impl AwsSecretStore {
    /// A store using `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_backoff: DEFAULT_BASE_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }

    /// A store using a client configured from the environment
    /// ([`crate::aws::sdk_config`]; honours `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, …).
    pub async fn from_env() -> Self {
        Self::new(Client::new(crate::aws::sdk_config().await))
    }

    /// Sets how many read-merge-write cycles `upsert` tries (at least 1).
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Sets the backoff between cycles: the n-th wait is uniformly random in
    /// `0..=min(max, base * 2^(n-1))`.
    #[must_use]
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max.max(base);
        self
    }

    /// The underlying SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        let cap = self
            .base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=cap_ms))
    }

    /// Reads the `AWSCURRENT` version.
    async fn read_current(&self, name: &SecretName) -> Result<Current, SecretStoreError> {
        let output = match self
            .client
            .get_secret_value()
            .secret_id(name.as_str())
            .version_stage(AWSCURRENT)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if err.code() == Some("ResourceNotFoundException") => {
                return Ok(Current::Missing);
            }
            // Also the answer for a secret scheduled for deletion, which DescribeSecret tells
            // by its `DeletedDate`.
            Err(err) if err.code() == Some("InvalidRequestException") => {
                return if self.scheduled_for_deletion(name).await? {
                    Ok(Current::ScheduledForDeletion)
                } else {
                    Err(classify(name, "GetSecretValue", err))
                };
            }
            Err(err) => return Err(classify(name, "GetSecretValue", err)),
        };
        let invalid = |source| SecretStoreError::InvalidJson {
            name: name.clone(),
            source,
        };
        let raw = output
            .secret_string()
            .ok_or_else(|| invalid(DocumentError::Binary))?;
        let document = SecretDocument::from_json_str(raw).map_err(invalid)?;
        let version = output
            .version_id()
            .ok_or_else(|| SecretStoreError::Permanent {
                name: name.clone(),
                operation: "GetSecretValue",
                message: "response has no VersionId".to_owned(),
            })?;
        Ok(Current::Present(version.to_owned(), document))
    }

    /// `DescribeSecret`; `None` when there is no such secret.
    async fn describe(
        &self,
        name: &SecretName,
    ) -> Result<Option<DescribeSecretOutput>, SecretStoreError> {
        match self
            .client
            .describe_secret()
            .secret_id(name.as_str())
            .send()
            .await
        {
            Ok(output) => Ok(Some(output)),
            Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(err) => Err(classify(name, "DescribeSecret", err)),
        }
    }

    /// Whether the secret exists but is scheduled for deletion (it reads as missing; a write
    /// restores it).
    pub async fn scheduled_for_deletion(
        &self,
        name: &SecretName,
    ) -> Result<bool, SecretStoreError> {
        Ok(self
            .describe(name)
            .await?
            .is_some_and(|output| output.deleted_date().is_some()))
    }

    /// The version id currently labelled `AWSCURRENT`, `None` if the secret is missing.
    async fn current_version_id(
        &self,
        name: &SecretName,
    ) -> Result<Option<String>, SecretStoreError> {
        Ok(self.describe(name).await?.and_then(|output| {
            output.version_ids_to_stages().and_then(|stages| {
                stages
                    .iter()
                    .find(|(_, labels)| labels.iter().any(|l| l == AWSCURRENT))
                    .map(|(version, _)| version.clone())
            })
        }))
    }

    async fn create(
        &self,
        name: &SecretName,
        merged: SecretDocument,
    ) -> Result<Cycle, SecretStoreError> {
        match self
            .client
            .create_secret()
            .name(name.as_str())
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .secret_string(merged.to_json_string())
            .send()
            .await
        {
            Ok(_) => Ok(Cycle::Done(Some(merged))),
            Err(err) if err.code() == Some("ResourceExistsException") => Ok(Cycle::RetryNow),
            Err(err) => Err(classify(name, "CreateSecret", err)),
        }
    }

    async fn swap(
        &self,
        name: &SecretName,
        read_version: &str,
        merged: SecretDocument,
    ) -> Result<Cycle, SecretStoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let put = match self
            .client
            .put_secret_value()
            .secret_id(name.as_str())
            .client_request_token(&token)
            .secret_string(merged.to_json_string())
            .version_stages(WRITE_LABEL)
            .send()
            .await
        {
            Ok(put) => put,
            // Too many staging labels (other tools' labels count too): as a lost race.
            Err(err) if err.code() == Some("LimitExceededException") => return Ok(Cycle::Conflict),
            Err(err) => return Err(classify(name, "PutSecretValue", err)),
        };
        let new_version = put.version_id().unwrap_or(&token).to_owned();

        let promoted = self
            .client
            .update_secret_version_stage()
            .secret_id(name.as_str())
            .version_stage(AWSCURRENT)
            .move_to_version_id(&new_version)
            .remove_from_version_id(read_version)
            .send()
            .await;
        match promoted {
            Ok(_) => Ok(Cycle::Done(Some(merged))),
            Err(err)
                if matches!(
                    err.code(),
                    Some("InvalidParameterException" | "InvalidRequestException")
                ) =>
            {
                match self.current_version_id(name).await? {
                    Some(current) if current == read_version => {
                        Err(classify(name, "UpdateSecretVersionStage", err))
                    }
                    // AWSCURRENT moved (or the secret vanished): a concurrent writer won.
                    _ => Ok(Cycle::Conflict),
                }
            }
            Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(Cycle::Conflict),
            Err(err) => Err(classify(name, "UpdateSecretVersionStage", err)),
        }
    }

    /// One compare-and-swap cycle, from `read` when the caller read ahead. A write from a read
    /// gone stale fails its promotion and the cycle is retried; a decline is decided again on
    /// a fresh read, since only a current document can tell that nothing is to be written.
    async fn cycle<F>(
        &self,
        name: &SecretName,
        read: Option<Current>,
        f: &mut F,
    ) -> Result<Cycle, SecretStoreError>
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        if let Some(current) = read {
            match self.cycle_from(name, current, f).await? {
                Cycle::Done(None) => {}
                cycle => return Ok(cycle),
            }
        }
        let current = self.read_current(name).await?;
        self.cycle_from(name, current, f).await
    }

    async fn cycle_from<F>(
        &self,
        name: &SecretName,
        current: Current,
        f: &mut F,
    ) -> Result<Cycle, SecretStoreError>
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        match current {
            Current::Missing => match f(None) {
                None => Ok(Cycle::Done(None)),
                Some(next) => self.create(name, without_nulls(next)).await,
            },
            Current::Present(version, current) => match f(Some(&current)) {
                None => Ok(Cycle::Done(None)),
                Some(next) => self.swap(name, &version, without_nulls(next)).await,
            },
            // An uninstalled customer installs again within the recovery window: the secret is
            // restored and its old content replaced, as if it had been deleted.
            Current::ScheduledForDeletion => match f(None) {
                None => Ok(Cycle::Done(None)),
                Some(next) => {
                    match self
                        .client
                        .restore_secret()
                        .secret_id(name.as_str())
                        .send()
                        .await
                    {
                        Ok(_) => {}
                        Err(err) if err.code() == Some("InvalidRequestException") => {}
                        Err(err) => return Err(classify(name, "RestoreSecret", err)),
                    }
                    match self.read_current(name).await? {
                        Current::Present(version, _) => {
                            self.swap(name, &version, without_nulls(next)).await
                        }
                        _ => Ok(Cycle::RetryNow),
                    }
                }
            },
        }
    }
}

/// Maps an SDK error to a [`SecretStoreError`], deciding whether it is transient.
fn classify<E>(
    name: &SecretName,
    operation: &'static str,
    err: SdkError<E, aws_sdk_secretsmanager::config::http::HttpResponse>,
) -> SecretStoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (transient, message) = crate::aws_error::describe(&err);
    let name = name.clone();
    if transient {
        SecretStoreError::Transient {
            name,
            operation,
            message,
        }
    } else {
        SecretStoreError::Permanent {
            name,
            operation,
            message,
        }
    }
}

/// What a secret holds now.
pub(crate) enum Current {
    /// No such secret.
    Missing,
    /// Deleted with a recovery window: reads as missing, can be restored.
    ScheduledForDeletion,
    /// The `AWSCURRENT` version's id and document.
    Present(String, SecretDocument),
}

impl SecretStore for AwsSecretStore {
    async fn get(&self, name: &SecretName) -> Result<Option<SecretDocument>, SecretStoreError> {
        Ok(match self.read_current(name).await? {
            Current::Present(_, document) => Some(document),
            Current::Missing | Current::ScheduledForDeletion => None,
        })
    }

    async fn schedule_deletion(
        &self,
        name: &SecretName,
        recovery_days: u32,
    ) -> Result<(), SecretStoreError> {
        match self
            .client
            .delete_secret()
            .secret_id(name.as_str())
            .recovery_window_in_days(i64::from(recovery_days.clamp(7, 30)))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(()),
            // Already scheduled for deletion.
            Err(err)
                if err.code() == Some("InvalidRequestException")
                    && self.scheduled_for_deletion(name).await? =>
            {
                Ok(())
            }
            Err(err) => Err(classify(name, "DeleteSecret", err)),
        }
    }

    async fn update<F>(
        &self,
        name: &SecretName,
        f: F,
    ) -> Result<Option<SecretDocument>, SecretStoreError>
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        self.update_from(name, ReadAhead::default(), f).await
    }

    async fn read_ahead(&self, name: &SecretName) -> ReadAhead {
        match self.read_current(name).await {
            Ok(current) => ReadAhead(Some((name.clone(), current))),
            Err(error) => {
                tracing::debug!(secret = %name, %error, "read ahead failed; the update reads again");
                ReadAhead::default()
            }
        }
    }

    async fn update_from<F>(
        &self,
        name: &SecretName,
        ahead: ReadAhead,
        mut f: F,
    ) -> Result<Option<SecretDocument>, SecretStoreError>
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        // Only the first cycle starts from the read ahead (of this secret); a retry reads again.
        let mut read = ahead
            .0
            .filter(|(read_name, _)| read_name == name)
            .map(|(_, current)| current);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let wait = match self.cycle(name, read.take(), &mut f).await {
                Ok(Cycle::Done(stored)) => return Ok(stored),
                Ok(Cycle::RetryNow) if attempt < self.max_attempts => Duration::ZERO,
                Ok(Cycle::Conflict | Cycle::RetryNow) if attempt < self.max_attempts => {
                    self.backoff(attempt)
                }
                Ok(Cycle::Conflict | Cycle::RetryNow) => {
                    return Err(SecretStoreError::ConflictExhausted {
                        name: name.clone(),
                        attempts: attempt,
                    });
                }
                Err(err @ SecretStoreError::Transient { .. }) if attempt < self.max_attempts => {
                    tracing::debug!(secret = %name, error = %err, attempt, "retrying secret update");
                    self.backoff(attempt)
                }
                Err(err) => return Err(err),
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    async fn delete(&self, name: &SecretName) -> Result<(), SecretStoreError> {
        match self
            .client
            .delete_secret()
            .secret_id(name.as_str())
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(err) => Err(classify(name, "DeleteSecret", err)),
        }
    }
}
