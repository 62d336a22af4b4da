//! Idempotency over the [`StateStore`], with the semantics of Powertools for AWS Lambda's
//! idempotency utility (there is no Rust Powertools; its documented behaviour is the model):
//!
//! - [`Idempotency::begin`] writes an **in-progress** record for the key, expiring at the
//!   invocation's deadline: if the attempt times out or crashes, the record expires with it and a
//!   retry runs again;
//! - [`Idempotency::complete`] replaces it with a **completed** record holding the response, kept
//!   for the configured TTL: a duplicate within it gets the stored response without running again;
//! - a duplicate that arrives while the first attempt is still in progress gets
//!   [`Begun::InProgress`] (answer it so the sender retries later);
//! - the record keeps a SHA-256 of the payload: the same key with a different payload is
//!   [`Begun::PayloadMismatch`] (refused and logged, never run);
//! - [`Idempotency::release`] removes the in-progress record after a failure, so the sender's
//!   retry runs at once instead of waiting for the deadline.
//!
//! A delivery known under several keys (a signed token's id and a delivery id, say) is a
//! duplicate when any of them was seen: [`Idempotency::begin_all`] claims them all or none.
//! [`Idempotency::once`] is the whole shape (claim, run, record or release) around a piece of
//! work; handlers use it rather than the steps.
//!
//! Every transition is a conditional write ([`Expect`]), so of simultaneous attempts with one key
//! in any number of containers exactly one runs, and an attempt that lost its record (it outlived
//! its deadline and a retry took over) cannot overwrite the retry's outcome.

use std::time::Duration;

use serde_json::{Value, json};

use crate::state::{Expect, StateStore, StateStoreError, Written};

/// The idempotency utility over a state store.
#[derive(Debug, Clone)]
pub struct Idempotency<S> {
    store: S,
    ttl: Duration,
}

/// An attempt that holds the in-progress record of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "complete or release the claim"]
pub struct Claim {
    key: String,
    version: u64,
    hash: String,
}

impl Claim {
    /// The idempotency key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// What [`Idempotency::begin_all`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum BegunAll {
    /// Every key was claimed: run, then complete or release them all.
    New(Vec<Claim>),
    /// One key was already done: its stored response (nothing is claimed).
    Completed(Value),
    /// One key is being worked on by another attempt (nothing is claimed).
    InProgress(String),
    /// One key was used with another payload (nothing is claimed).
    PayloadMismatch(String),
}

/// What [`Idempotency::once`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Once<T> {
    /// The work ran (first attempt, or the retry of a failed or timed-out one) and its outcome
    /// is recorded.
    Ran(T),
    /// A duplicate: the work ran before; the response recorded then.
    Duplicate(Value),
}

/// Why [`Idempotency::once`] did not run the work, or the work's own failure.
#[derive(Debug, thiserror::Error)]
pub enum OnceError<E> {
    /// The state store failed: nothing ran (retry).
    #[error(transparent)]
    Store(StateStoreError),
    /// Another attempt holds this key now: nothing ran (retry later).
    #[error("{0} is in progress")]
    InProgress(String),
    /// The key was used before with another payload: nothing ran (logged; do not retry).
    #[error("idempotency key {0} reused with another payload")]
    PayloadMismatch(String),
    /// The work failed: its claims are released, so a retry runs it again.
    #[error(transparent)]
    Failed(E),
}

impl OnceError<crate::response::ApiError> {
    /// The answer to an HTTP sender: the work's own error; 500 `store_failed` when the state
    /// store failed and 503 `in_progress` while another attempt runs (both retried by the
    /// sender); 400 `mismatch` for a key reused with another payload.
    pub fn into_api_error(
        self,
        store_failed: &str,
        in_progress: &str,
        mismatch: &str,
    ) -> crate::response::ApiError {
        use crate::response::ApiError;
        match self {
            Self::Failed(error) => error,
            Self::Store(error) => ApiError::upstream(store_failed, error),
            Self::InProgress(key) => ApiError::Unavailable {
                message: in_progress.into(),
                detail: format!("{key} is in progress"),
            },
            Self::PayloadMismatch(_) => ApiError::BadRequest(mismatch.into()),
        }
    }
}

/// What [`Idempotency::begin`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Begun {
    /// First attempt (or the retry of a failed or timed-out one): run, then complete or release.
    New(Claim),
    /// Already done: the stored response.
    Completed(Value),
    /// Another attempt is running now: answer so that the sender retries later.
    InProgress,
    /// The key was used with a different payload: refuse.
    PayloadMismatch,
}

const IN_PROGRESS: &str = "in_progress";
/// Claims tried when the conflicting record vanishes in between.
const RACES: usize = 3;
const COMPLETED: &str = "completed";

/// SHA-256 (hex) of a payload.
pub fn payload_hash(payload: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, payload)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl<S: StateStore> Idempotency<S> {
    /// Completed records are kept for `ttl` (a duplicate after that runs again).
    pub fn new(store: S, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    /// The state store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Runs `work` at most once per delivery known under `keys` (see [`Idempotency::begin_all`]):
    /// a first attempt runs it and records `record(&outcome)` for its duplicates, a failed one
    /// releases its claims so that the sender's retry runs it again.
    pub async fn once<T, E>(
        &self,
        keys: &[String],
        payload: &[u8],
        deadline: i64,
        work: impl Future<Output = Result<T, E>>,
        record: impl FnOnce(&T) -> Value,
    ) -> Result<Once<T>, OnceError<E>> {
        let claims = match self
            .begin_all(keys, payload, deadline)
            .await
            .map_err(OnceError::Store)?
        {
            BegunAll::New(claims) => claims,
            BegunAll::Completed(response) => {
                crate::metrics::duplicate();
                return Ok(Once::Duplicate(response));
            }
            BegunAll::InProgress(key) => return Err(OnceError::InProgress(key)),
            BegunAll::PayloadMismatch(key) => {
                tracing::warn!(%key, "idempotency key reused with another payload");
                return Err(OnceError::PayloadMismatch(key));
            }
        };
        match work.await {
            Ok(outcome) => {
                self.complete_all(claims, &record(&outcome)).await;
                Ok(Once::Ran(outcome))
            }
            Err(error) => {
                self.release_all(claims).await;
                Err(OnceError::Failed(error))
            }
        }
    }

    /// Claims every one of `keys` for an attempt on `payload` (see [`Idempotency::begin`]): all,
    /// or none when one of them was seen — the keys claimed before it are released again.
    ///
    /// The keys are claimed one after the other, in the order given, never together: the first
    /// key serialises racing copies of a delivery (only its winner goes on to the second). Claimed
    /// together, two copies could each win one key, see the other's claim on the other, and both
    /// give up, over and over.
    pub async fn begin_all(
        &self,
        keys: &[String],
        payload: &[u8],
        deadline: i64,
    ) -> Result<BegunAll, StateStoreError> {
        let mut claims = Vec::new();
        for key in keys {
            let begun = match self.begin(key, payload, deadline).await {
                Ok(begun) => begun,
                Err(error) => {
                    self.release_all(claims).await;
                    return Err(error);
                }
            };
            let outcome = match begun {
                Begun::New(claim) => {
                    claims.push(claim);
                    continue;
                }
                Begun::Completed(response) => BegunAll::Completed(response),
                Begun::InProgress => BegunAll::InProgress(key.clone()),
                Begun::PayloadMismatch => BegunAll::PayloadMismatch(key.clone()),
            };
            self.release_all(claims).await;
            return Ok(outcome);
        }
        Ok(BegunAll::New(claims))
    }

    /// Completes every claim with `response`, concurrently; a claim that cannot be recorded is
    /// logged (its key runs again on a retry).
    pub async fn complete_all(&self, claims: Vec<Claim>, response: &Value) {
        let keys: Vec<String> = claims.iter().map(|claim| claim.key.clone()).collect();
        let completed = futures::future::join_all(
            claims
                .into_iter()
                .map(|claim| self.complete(claim, response)),
        )
        .await;
        for (key, completed) in keys.iter().zip(completed) {
            match completed {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(%key, "claim taken over by a retry; its outcome stands")
                }
                Err(error) => {
                    tracing::warn!(%key, %error, "outcome not recorded; a retry runs again")
                }
            }
        }
    }

    /// Releases every claim, concurrently (best effort: one not released expires at its
    /// deadline).
    pub async fn release_all(&self, claims: Vec<Claim>) {
        let keys: Vec<String> = claims.iter().map(|claim| claim.key.clone()).collect();
        let released =
            futures::future::join_all(claims.into_iter().map(|claim| self.release(claim))).await;
        for (key, released) in keys.iter().zip(released) {
            if let Err(error) = released {
                tracing::warn!(%key, %error, "claim not released; it expires at the deadline");
            }
        }
    }

    /// Claims `key` for an attempt on `payload` that must be done by `deadline` (seconds since
    /// the epoch: the invocation's deadline).
    pub async fn begin(
        &self,
        key: &str,
        payload: &[u8],
        deadline: i64,
    ) -> Result<Begun, StateStoreError> {
        let hash = payload_hash(payload);
        let record = json!({"status": IN_PROGRESS, "payload_sha256": hash});
        // A conflict whose record was gone (expired, released) by the time it was read back is
        // raced again; a live record decides. Should that keep happening, the sender retries.
        for _ in 0..RACES {
            match self
                .store
                .put(key, &record, Some(deadline), Expect::Absent)
                .await?
            {
                Written::Done(version) => {
                    return Ok(Begun::New(Claim {
                        key: key.to_owned(),
                        version,
                        hash,
                    }));
                }
                Written::Conflict(None) => continue,
                Written::Conflict(Some(current)) => {
                    if current.data["payload_sha256"].as_str() != Some(hash.as_str()) {
                        return Ok(Begun::PayloadMismatch);
                    }
                    return Ok(match current.data["status"].as_str() {
                        Some(COMPLETED) => Begun::Completed(
                            current.data.get("response").cloned().unwrap_or_default(),
                        ),
                        _ => Begun::InProgress,
                    });
                }
            }
        }
        Ok(Begun::InProgress)
    }

    /// Records the attempt's `response`. `false` when the claim was lost: the attempt outlived
    /// its deadline and a retry took the key over (the retry's outcome stands).
    pub async fn complete(&self, claim: Claim, response: &Value) -> Result<bool, StateStoreError> {
        let expires_at = crate::state::now()
            .saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX));
        let record = json!({
            "status": COMPLETED,
            "payload_sha256": claim.hash,
            "response": response,
        });
        let written = self
            .store
            .put(
                &claim.key,
                &record,
                Some(expires_at),
                Expect::Version(claim.version),
            )
            .await?;
        Ok(matches!(written, Written::Done(_)))
    }

    /// Gives the key up after a failed attempt, so a retry runs at once.
    pub async fn release(&self, claim: Claim) -> Result<(), StateStoreError> {
        self.store
            .delete(&claim.key, claim.version)
            .await
            .map(|_| ())
    }
}
