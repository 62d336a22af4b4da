//! The secret store port, its adapters, secret naming and the merge.
//!
//! - [`naming`]: provider and customer secret names and parsing of installation-event secret ids;
//! - [`document`]: [`SecretDocument`] (a JSON object that never shows its values in logs) and
//!   [`merge`], the shallow merge with null removal of docs/original.md#secret-updates;
//! - [`SecretStore`]: the port used by handlers (`get`, `update`, `upsert`, `delete`);
//! - [`aws`]: [`AwsSecretStore`], AWS Secrets Manager with an optimistic compare-and-swap so that
//!   concurrent writers of different keys never lose each other's update (docs/original.md#fixed-bugs item 1);
//! - [`local`]: [`LocalSecretStore`], one JSON file per secret under a directory, with an
//!   exclusive file lock around read-merge-write.
//!
//! Deviation from the original (documented improvement): `upsert` is atomic with respect to other
//! `upsert`s, concurrent first writes produce one secret containing all keys, nulls are never
//! stored, and read errors (throttling, access denied, invalid JSON) are reported instead of
//! looking like "no secret".
//!
//! # `update`: a closure compare-and-swap
//!
//! [`SecretStore::update`] runs a closure over the current document inside the adapter's
//! compare-and-swap loop (AWS) or file lock (local). The closure returns the new document, or
//! `None` to leave the secret untouched (no write, no new version). `upsert` is `update` with
//! [`merge`]. The closure may run more than once (once per lost race on AWS), always on the latest
//! committed document, so it must be a pure function of its input (plus captured data).
//!
//! Top-level `null` values in a document returned by the closure are removed before it is stored,
//! so nulls are never stored whatever the caller does.
//!
//! Reserved key: customer secrets may hold `_deliveries` (the ids of the webhook deliveries the
//! secrets function applied, written in the same `update` as the secrets, see the `secrets`
//! crate). Readers only read the named keys of docs/original.md#customer-secret and ignore it; writers must not remove it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

pub mod aws;
pub mod document;
pub mod local;
pub mod naming;

pub use aws::AwsSecretStore;
pub use document::{DocumentError, SecretDocument, merge};
pub use local::LocalSecretStore;
pub use naming::{
    CustomerSecretId, SecretName, SecretNameError, customer_secret_name,
    offering_settings_secret_name, parse_customer_secret_id, provider_secret_name,
};

/// Errors of a [`SecretStore`]. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    /// A failure that may go away when retried (throttling, timeouts, 5xx, connection errors).
    #[error("transient failure during {operation} of secret {name}: {message}")]
    Transient {
        /// The secret concerned.
        name: SecretName,
        /// The store operation (`GetSecretValue`, `write`, …).
        operation: &'static str,
        /// Error code and message from the backend.
        message: String,
    },
    /// A failure that retrying will not fix (access denied, invalid request, …).
    #[error("{operation} of secret {name} failed: {message}")]
    Permanent {
        /// The secret concerned.
        name: SecretName,
        /// The store operation.
        operation: &'static str,
        /// Error code and message from the backend.
        message: String,
    },
    /// Every attempt of an update lost the race against a concurrent writer.
    #[error("update of secret {name} gave up after {attempts} attempts lost to concurrent writers")]
    ConflictExhausted {
        /// The secret concerned.
        name: SecretName,
        /// How many read-merge-write cycles were tried.
        attempts: u32,
    },
    /// The stored secret is not a JSON object (the update is not applied over it).
    #[error("secret {name} does not hold a JSON object: {source}")]
    InvalidJson {
        /// The secret concerned.
        name: SecretName,
        /// What is wrong (no values included).
        #[source]
        source: DocumentError,
    },
    /// A local file-system failure.
    #[error("{operation} of secret {name} failed: {source}")]
    Io {
        /// The secret concerned.
        name: SecretName,
        /// The file operation.
        operation: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl SecretStoreError {
    /// Whether retrying the operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Transient { .. } | Self::ConflictExhausted { .. }
        )
    }

    /// The secret the error is about.
    pub fn secret_name(&self) -> &SecretName {
        match self {
            Self::Transient { name, .. }
            | Self::Permanent { name, .. }
            | Self::ConflictExhausted { name, .. }
            | Self::InvalidJson { name, .. }
            | Self::Io { name, .. } => name,
        }
    }
}

/// A read of a secret taken ahead of its update ([`SecretStore::read_ahead`]); empty when the
/// store took none. An update of another secret ignores it.
#[derive(Default)]
pub struct ReadAhead(pub(crate) Option<(SecretName, aws::Current)>);

impl fmt::Debug for ReadAhead {
    // Never the document: it holds secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadAhead")
            .field("read", &self.0.is_some())
            .finish()
    }
}

/// Storage of secret documents (the port handlers depend on).
pub trait SecretStore: Send + Sync {
    /// Reads a secret; `Ok(None)` if it does not exist.
    fn get(
        &self,
        name: &SecretName,
    ) -> impl Future<Output = Result<Option<SecretDocument>, SecretStoreError>> + Send;

    /// Atomically replaces the stored document (`None` when the secret does not exist) by what
    /// `f` returns, or leaves it untouched when `f` returns `None`.
    ///
    /// Atomic with respect to every other `update`/`upsert`/`delete` of the same secret: `f` runs
    /// inside the compare-and-swap loop (AWS) or the file lock (local), possibly several times,
    /// always on the latest committed document. Returns the stored document, or `None` when `f`
    /// declined (then nothing was written). Top-level nulls of the result are dropped.
    fn update<F>(
        &self,
        name: &SecretName,
        f: F,
    ) -> impl Future<Output = Result<Option<SecretDocument>, SecretStoreError>> + Send
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send;

    /// Reads `name` ahead of an [`SecretStore::update_from`], so that the read can overlap other
    /// work (a lock being taken): the update then starts from it instead of reading again. A
    /// read that is stale by then costs the update a retry, never a write, and `f` declining
    /// on it is asked again on a fresh read: `update_from` keeps `update`'s contract. A read
    /// that fails is an empty one, and the update reads for itself. The local store gains
    /// nothing from it and returns an empty read.
    fn read_ahead(&self, name: &SecretName) -> impl Future<Output = ReadAhead> + Send {
        let _ = name;
        std::future::ready(ReadAhead::default())
    }

    /// [`SecretStore::update`], starting from `ahead` when it holds a read of `name`.
    fn update_from<F>(
        &self,
        name: &SecretName,
        ahead: ReadAhead,
        f: F,
    ) -> impl Future<Output = Result<Option<SecretDocument>, SecretStoreError>> + Send
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        drop(ahead);
        self.update(name, f)
    }

    /// Applies `update` with [`merge`] to the stored document (or to nothing, creating the
    /// secret) atomically with respect to concurrent writers, and returns the merged document.
    /// This is [`SecretStore::update`] with [`merge`].
    fn upsert(
        &self,
        name: &SecretName,
        update: SecretDocument,
    ) -> impl Future<Output = Result<SecretDocument, SecretStoreError>> + Send {
        async move {
            let stored = self
                .update(name, |current| Some(merge(current.cloned(), &update)))
                .await?;
            // The closure never declines; keep the error path rather than panicking anyway.
            stored.ok_or_else(|| SecretStoreError::Permanent {
                name: name.clone(),
                operation: "upsert",
                message: "the merge produced no document".to_owned(),
            })
        }
    }

    /// Deletes a secret immediately; deleting a missing secret succeeds.
    fn delete(
        &self,
        name: &SecretName,
    ) -> impl Future<Output = Result<(), SecretStoreError>> + Send;

    /// Deletes a secret after a recovery window of `recovery_days` (AWS allows 7 to 30; the
    /// value is clamped): from now on it reads as missing, and a write makes it anew (the old
    /// content is not merged). Scheduling a missing or already scheduled secret succeeds.
    fn schedule_deletion(
        &self,
        name: &SecretName,
        recovery_days: u32,
    ) -> impl Future<Output = Result<(), SecretStoreError>> + Send;
}

/// The recovery window of an uninstalled customer's secret, in days (Secrets Manager's default).
pub const RECOVERY_WINDOW_DAYS: u32 = 30;

/// Drops top-level nulls from a document the `update` closure produced (nulls are never stored).
pub(crate) fn without_nulls(mut document: SecretDocument) -> SecretDocument {
    document.as_map_mut().retain(|_, value| !value.is_null());
    document
}

impl<S: SecretStore> SecretStore for Arc<S> {
    fn get(
        &self,
        name: &SecretName,
    ) -> impl Future<Output = Result<Option<SecretDocument>, SecretStoreError>> + Send {
        (**self).get(name)
    }

    fn update<F>(
        &self,
        name: &SecretName,
        f: F,
    ) -> impl Future<Output = Result<Option<SecretDocument>, SecretStoreError>> + Send
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        (**self).update(name, f)
    }

    fn read_ahead(&self, name: &SecretName) -> impl Future<Output = ReadAhead> + Send {
        (**self).read_ahead(name)
    }

    fn update_from<F>(
        &self,
        name: &SecretName,
        ahead: ReadAhead,
        f: F,
    ) -> impl Future<Output = Result<Option<SecretDocument>, SecretStoreError>> + Send
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        (**self).update_from(name, ahead, f)
    }

    fn delete(
        &self,
        name: &SecretName,
    ) -> impl Future<Output = Result<(), SecretStoreError>> + Send {
        (**self).delete(name)
    }

    fn schedule_deletion(
        &self,
        name: &SecretName,
        recovery_days: u32,
    ) -> impl Future<Output = Result<(), SecretStoreError>> + Send {
        (**self).schedule_deletion(name, recovery_days)
    }
}

impl<S: SecretStore> SecretStore for &S {
    fn get(
        &self,
        name: &SecretName,
    ) -> impl Future<Output = Result<Option<SecretDocument>, SecretStoreError>> + Send {
        (**self).get(name)
    }

    fn update<F>(
        &self,
        name: &SecretName,
        f: F,
    ) -> impl Future<Output = Result<Option<SecretDocument>, SecretStoreError>> + Send
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        (**self).update(name, f)
    }

    fn read_ahead(&self, name: &SecretName) -> impl Future<Output = ReadAhead> + Send {
        (**self).read_ahead(name)
    }

    fn update_from<F>(
        &self,
        name: &SecretName,
        ahead: ReadAhead,
        f: F,
    ) -> impl Future<Output = Result<Option<SecretDocument>, SecretStoreError>> + Send
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        (**self).update_from(name, ahead, f)
    }

    fn delete(
        &self,
        name: &SecretName,
    ) -> impl Future<Output = Result<(), SecretStoreError>> + Send {
        (**self).delete(name)
    }

    fn schedule_deletion(
        &self,
        name: &SecretName,
        recovery_days: u32,
    ) -> impl Future<Output = Result<(), SecretStoreError>> + Send {
        (**self).schedule_deletion(name, recovery_days)
    }
}
