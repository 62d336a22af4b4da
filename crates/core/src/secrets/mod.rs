//! The secret store port, its adapters, secret naming and the merge.
//!
//! - [`naming`]: provider and customer secret names and parsing of installation-event secret ids;
//! - [`document`]: [`SecretDocument`] (a JSON object that never shows its values in logs) and
//!   [`merge`], the shallow merge with null removal of spec §1.4;
//! - [`SecretStore`]: the port used by handlers (`get`, `upsert`, `delete`);
//! - [`aws`]: [`AwsSecretStore`], AWS Secrets Manager with an optimistic compare-and-swap so that
//!   concurrent writers of different keys never lose each other's update (spec §8.1);
//! - [`local`]: [`LocalSecretStore`], one JSON file per secret under a directory, with an
//!   exclusive file lock around read-merge-write.
//!
//! Deviation from the original (documented improvement): `upsert` is atomic with respect to other
//! `upsert`s, concurrent first writes produce one secret containing all keys, nulls are never
//! stored, and read errors (throttling, access denied, invalid JSON) are reported instead of
//! looking like "no secret".

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
    CustomerSecretId, SecretName, SecretNameError, customer_secret_name, parse_customer_secret_id,
    provider_secret_name,
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

/// Storage of secret documents (the port handlers depend on).
pub trait SecretStore: Send + Sync {
    /// Reads a secret; `Ok(None)` if it does not exist.
    fn get(
        &self,
        name: &SecretName,
    ) -> impl Future<Output = Result<Option<SecretDocument>, SecretStoreError>> + Send;

    /// Applies `update` with [`merge`] to the stored document (or to nothing, creating the
    /// secret) atomically with respect to concurrent `upsert`s, and returns the merged document.
    fn upsert(
        &self,
        name: &SecretName,
        update: SecretDocument,
    ) -> impl Future<Output = Result<SecretDocument, SecretStoreError>> + Send;

    /// Deletes a secret immediately; deleting a missing secret succeeds.
    fn delete(
        &self,
        name: &SecretName,
    ) -> impl Future<Output = Result<(), SecretStoreError>> + Send;
}

impl<S: SecretStore> SecretStore for Arc<S> {
    fn get(
        &self,
        name: &SecretName,
    ) -> impl Future<Output = Result<Option<SecretDocument>, SecretStoreError>> + Send {
        (**self).get(name)
    }

    fn upsert(
        &self,
        name: &SecretName,
        update: SecretDocument,
    ) -> impl Future<Output = Result<SecretDocument, SecretStoreError>> + Send {
        (**self).upsert(name, update)
    }

    fn delete(
        &self,
        name: &SecretName,
    ) -> impl Future<Output = Result<(), SecretStoreError>> + Send {
        (**self).delete(name)
    }
}

impl<S: SecretStore> SecretStore for &S {
    fn get(
        &self,
        name: &SecretName,
    ) -> impl Future<Output = Result<Option<SecretDocument>, SecretStoreError>> + Send {
        (**self).get(name)
    }

    fn upsert(
        &self,
        name: &SecretName,
        update: SecretDocument,
    ) -> impl Future<Output = Result<SecretDocument, SecretStoreError>> + Send {
        (**self).upsert(name, update)
    }

    fn delete(
        &self,
        name: &SecretName,
    ) -> impl Future<Output = Result<(), SecretStoreError>> + Send {
        (**self).delete(name)
    }
}
