//! The state store: the engine's own records that are not secrets — idempotency records, leases,
//! sync checkpoints — kept out of Secrets Manager (which is priced per call, limited in write
//! rate and meant for secrets).
//!
//! A record is a JSON value under a key, with a version and an optional expiry. Writes are
//! conditional ([`Expect`]): "only if there is no live record" (claims, leases, first
//! writes) or "only if the record is still at version v" (compare-and-swap). An expired record
//! counts as absent everywhere, whether or not the backend has removed it yet (DynamoDB's TTL
//! deletes expired items lazily, up to days later).
//!
//! A record can also be *held* ([`StateStore::hold`], used through [`HeldRecord`]): its holder
//! reads it and marks it as its own until a deadline in one request, and its next write releases
//! it. That is a lease and a read in one round trip, and a write and a release in one more, for
//! work that must not run twice at once on one durable record.
//!
//! Adapters: [`DynamoStateStore`] (one on-demand table per engine, partition key `pk`, TTL
//! attribute `expires_at`) and [`LocalStateStore`] (one file per record, for the local engine and
//! tests). Both pass the same contract tests (`crates/core/tests/state_contract`).

mod dynamo;
mod local;

pub use dynamo::DynamoStateStore;
pub use local::LocalStateStore;

use serde_json::Value;

/// Setting of every function that keeps state: the name of the engine's state table.
pub const ENV_STATE_TABLE: &str = "STATE_TABLE";

/// Longest key accepted (DynamoDB allows 2048 bytes for a partition key).
pub const MAX_KEY_LEN: usize = 1024;

/// One stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRecord {
    /// The stored value.
    pub data: Value,
    /// Incremented by every write, also one that replaces an expired record, so a version names
    /// one write while the key is in the store (a deleted key starts again at 1).
    pub version: u64,
    /// When the record expires (seconds since the Unix epoch); `None`: never.
    pub expires_at: Option<i64>,
}

/// The condition of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// There is no live record under the key (none, or an expired one).
    Absent,
    /// The live record under the key has this version.
    Version(u64),
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Written; the record's new version.
    Done(u64),
    /// The condition did not hold; the live record (if any) as it is now.
    Conflict(Option<StateRecord>),
}

/// The outcome of [`StateStore::hold`].
#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    /// Held until the deadline asked for.
    Taken {
        /// The record's version while held (the hold is a write): the version to write at.
        version: u64,
        /// The record's data; `None` when there is no record (or it expired).
        data: Option<Value>,
        /// The record's expiry, which the hold leaves as it is.
        expires_at: Option<i64>,
    },
    /// Another holder's hold is live.
    Busy,
}

/// Errors of a [`StateStore`].
#[derive(Debug, thiserror::Error)]
pub enum StateStoreError {
    /// The key is empty or longer than [`MAX_KEY_LEN`] bytes.
    #[error("invalid state key ({0} bytes)")]
    InvalidKey(usize),
    /// A failure that may go away when retried (throttling, timeouts, 5xx, connection errors).
    #[error("transient failure during {operation} of state record {key}: {message}")]
    Transient {
        /// The record's key.
        key: String,
        /// The store operation.
        operation: &'static str,
        /// Error code and message from the backend.
        message: String,
    },
    /// A failure that retrying will not fix (access denied, missing table, …).
    #[error("{operation} of state record {key} failed: {message}")]
    Permanent {
        /// The record's key.
        key: String,
        /// The store operation.
        operation: &'static str,
        /// Error code and message from the backend.
        message: String,
    },
    /// A stored record that cannot be read back (not JSON, missing attributes).
    #[error("state record {key} is unreadable: {message}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A local file-system failure.
    #[error("{operation} of state record {key} failed: {source}")]
    Io {
        /// The record's key.
        key: String,
        /// The file operation.
        operation: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl StateStoreError {
    /// Whether retrying the operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

/// Storage of the engine's state records (the port handlers depend on).
pub trait StateStore: Send + Sync {
    /// The live record under `key` (`None` when there is none or it expired), read consistently.
    fn get(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<StateRecord>, StateStoreError>> + Send;

    /// Writes `data` (expiring at `expires_at`) under `key` if `expect` holds.
    fn put(
        &self,
        key: &str,
        data: &Value,
        expires_at: Option<i64>,
        expect: Expect,
    ) -> impl Future<Output = Result<Written, StateStoreError>> + Send;

    /// Deletes the record under `key` if it is live at `version`; `true` when it was deleted.
    fn delete(
        &self,
        key: &str,
        version: u64,
    ) -> impl Future<Output = Result<bool, StateStoreError>> + Send;

    /// Marks the record under `key` as held until `until` (seconds since the epoch) unless
    /// another hold on it is live, and returns it as it is: one request. The hold counts as a
    /// write (the version moves on), and the next `put` or `delete` at that version releases it;
    /// a holder that crashes loses it at `until`. Holding a missing key keeps the key (without
    /// data, so `get` still finds nothing) until it is written or deleted; an expired record is
    /// missing. The record's expiry is left as it is.
    fn hold(
        &self,
        key: &str,
        until: i64,
    ) -> impl Future<Output = Result<Hold, StateStoreError>> + Send;
}

impl<T: StateStore> StateStore for &T {
    fn get(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<StateRecord>, StateStoreError>> + Send {
        (**self).get(key)
    }

    fn put(
        &self,
        key: &str,
        data: &Value,
        expires_at: Option<i64>,
        expect: Expect,
    ) -> impl Future<Output = Result<Written, StateStoreError>> + Send {
        (**self).put(key, data, expires_at, expect)
    }

    fn delete(
        &self,
        key: &str,
        version: u64,
    ) -> impl Future<Output = Result<bool, StateStoreError>> + Send {
        (**self).delete(key, version)
    }

    fn hold(
        &self,
        key: &str,
        until: i64,
    ) -> impl Future<Output = Result<Hold, StateStoreError>> + Send {
        (**self).hold(key, until)
    }
}

/// A durable record held by this process ([`StateStore::hold`]): read and marked in one request,
/// written and released in one more.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "write or release the held record"]
pub struct HeldRecord {
    key: String,
    version: u64,
    data: Option<Value>,
    expires_at: Option<i64>,
}

impl HeldRecord {
    /// Holds the record `key` until `until` if nobody else holds it; `None` when another does.
    pub async fn take<S: StateStore>(
        store: &S,
        key: &str,
        until: i64,
    ) -> Result<Option<Self>, StateStoreError> {
        Ok(match store.hold(key, until).await? {
            Hold::Taken {
                version,
                data,
                expires_at,
            } => Some(Self {
                key: key.to_owned(),
                version,
                data,
                expires_at,
            }),
            Hold::Busy => None,
        })
    }

    /// The record's data when it was taken (`None`: there was none).
    pub fn data(&self) -> Option<&Value> {
        self.data.as_ref()
    }

    /// Writes `data` (never expiring) and releases the hold, in one request; `false` when the
    /// hold was lost meanwhile (it expired and another took the record), and nothing is written.
    /// When the write fails, the hold is released (if the store lets it), so that a retry need
    /// not wait for the deadline; a write that failed only in its answer has released it.
    pub async fn write<S: StateStore>(
        self,
        store: &S,
        data: &Value,
    ) -> Result<bool, StateStoreError> {
        match store
            .put(&self.key, data, None, Expect::Version(self.version))
            .await
        {
            Ok(written) => Ok(matches!(written, Written::Done(_))),
            Err(error) => {
                let key = self.key.clone();
                if let Err(release) = self.release(store).await {
                    tracing::warn!(%key, error = %release, "hold not released; it ends at its deadline");
                }
                Err(error)
            }
        }
    }

    /// Releases the hold and leaves the record as it was (a hold lost meanwhile is left to its
    /// new holder).
    pub async fn release<S: StateStore>(self, store: &S) -> Result<(), StateStoreError> {
        match &self.data {
            Some(data) => {
                store
                    .put(
                        &self.key,
                        data,
                        self.expires_at,
                        Expect::Version(self.version),
                    )
                    .await?;
            }
            None => {
                store.delete(&self.key, self.version).await?;
            }
        }
        Ok(())
    }
}

/// A held lease: the exclusive right to work on something until it expires or is released.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "release the lease when done"]
pub struct Lease {
    key: String,
    version: u64,
    holder: serde_json::Value,
}

impl Lease {
    /// Takes the lease `key` until `until` (seconds since the epoch) if nobody holds it; `None`
    /// when it is held. A holder that crashes loses it when it expires.
    pub async fn acquire<S: StateStore>(
        store: &S,
        key: &str,
        until: i64,
    ) -> Result<Option<Self>, StateStoreError> {
        let holder = serde_json::json!({ "lease": true });
        Ok(
            match store.put(key, &holder, Some(until), Expect::Absent).await? {
                Written::Done(version) => Some(Self {
                    key: key.to_owned(),
                    version,
                    holder,
                }),
                Written::Conflict(_) => None,
            },
        )
    }

    /// Takes the lease `key` for `owner` until `until` if nobody holds it or `owner` already
    /// does: work that continues in another invocation (a chained sync) hands its lease on by
    /// name, and nobody else can take it before it expires. `None` when another owner holds it.
    pub async fn acquire_for<S: StateStore>(
        store: &S,
        key: &str,
        owner: &str,
        until: i64,
    ) -> Result<Option<Self>, StateStoreError> {
        let holder = serde_json::json!({ "lease": true, "owner": owner });
        let mut expect = Expect::Absent;
        // Each conflict names the record as it is now; a third one means others keep writing.
        for _ in 0..3 {
            match store.put(key, &holder, Some(until), expect).await? {
                Written::Done(version) => {
                    return Ok(Some(Self {
                        key: key.to_owned(),
                        version,
                        holder,
                    }));
                }
                Written::Conflict(None) => expect = Expect::Absent,
                Written::Conflict(Some(record))
                    if record.data.get("owner") == holder.get("owner") =>
                {
                    expect = Expect::Version(record.version);
                }
                Written::Conflict(Some(_)) => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Keeps the lease until `until`; `false` when it was lost (it expired and another took it).
    pub async fn extend<S: StateStore>(
        &mut self,
        store: &S,
        until: i64,
    ) -> Result<bool, StateStoreError> {
        match store
            .put(
                &self.key,
                &self.holder,
                Some(until),
                Expect::Version(self.version),
            )
            .await?
        {
            Written::Done(version) => {
                self.version = version;
                Ok(true)
            }
            Written::Conflict(_) => Ok(false),
        }
    }

    /// Gives the lease up (a lease that expired meanwhile and was taken by another is left to
    /// its new holder).
    pub async fn release<S: StateStore>(self, store: &S) -> Result<(), StateStoreError> {
        store.delete(&self.key, self.version).await.map(|_| ())
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether a record with this expiry is live at `now`.
pub(crate) fn is_live(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_none_or(|at| at > now)
}

pub(crate) fn check_key(key: &str) -> Result<(), StateStoreError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(StateStoreError::InvalidKey(key.len()));
    }
    Ok(())
}
