//! A [`StateStore`] keeping one JSON file per record under a directory (the local engine, tests).
//!
//! Same semantics as the DynamoDB adapter: every write is a read-check-write under the record's
//! exclusive lock (`flock` on a `.lock` file beside it, see `crate::localfs`), files are written
//! atomically, and an expired record counts as absent (it is replaced, never returned).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Expect, Hold, StateRecord, StateStore, StateStoreError, Written, check_key, is_live, now,
};
use crate::localfs::{create_dir, encode_file_stem, lock, sync_dir, write_atomic};

/// File-based state store rooted at a directory (created on first write, mode `0700`).
#[derive(Debug, Clone)]
pub struct LocalStateStore {
    dir: PathBuf,
}

/// The file format of one record.
#[derive(Serialize, Deserialize)]
struct Stored {
    /// `None`: a key held before it was first written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    held_until: Option<i64>,
}

impl LocalStateStore {
    /// A store keeping its files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory holding the record files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        let stem = encode_file_stem(key);
        (
            self.dir.join(format!("{stem}.state.json")),
            self.dir.join(format!("{stem}.state.lock")),
        )
    }

    /// Decides, under the record's lock, what to write from the live stored record, the
    /// version a write gets and the time; writes it (if anything) and returns the outcome.
    async fn change<T: Send + 'static>(
        &self,
        key: &str,
        operation: &'static str,
        decide: impl FnOnce(Option<Stored>, u64, i64) -> (Option<Stored>, T) + Send + 'static,
    ) -> Result<T, StateStoreError> {
        check_key(key)?;
        let dir = self.dir.clone();
        let (path, lock_path) = self.paths(key);
        let owned = key.to_owned();
        Self::blocking(key, operation, move || {
            let key = owned.as_str();
            create_dir(&dir).map_err(io_err(key, "create directory"))?;
            let _guard = lock(&lock_path).map_err(io_err(key, "lock"))?;
            let stored = read(&path, key)?;
            // Versions keep counting across expiry, so a version names one write of the key.
            let version = stored.as_ref().map_or(0, |s| s.version) + 1;
            let now = now();
            let (write, outcome) = decide(live_stored(stored, now), version, now);
            if let Some(write) = write {
                write_atomic(&dir, &path, &encode(key, &write)?).map_err(io_err(key, operation))?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        key: &str,
        operation: &'static str,
        work: impl FnOnce() -> Result<T, StateStoreError> + Send + 'static,
    ) -> Result<T, StateStoreError> {
        crate::localfs::blocking(work, io_err(key, operation)).await
    }
}

fn io_err(key: &str, operation: &'static str) -> impl FnOnce(std::io::Error) -> StateStoreError {
    let key = key.to_owned();
    move |source| StateStoreError::Io {
        key,
        operation,
        source,
    }
}

/// The stored record, live or not.
fn read(path: &Path, key: &str) -> Result<Option<Stored>, StateStoreError> {
    match std::fs::read(path) {
        Ok(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| StateStoreError::Corrupt {
                key: key.to_owned(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(key, "read")(e)),
    }
}

/// The stored record if it is live (a held key without data included).
fn live_stored(stored: Option<Stored>, now: i64) -> Option<Stored> {
    stored.filter(|s| is_live(s.expires_at, now))
}

/// The live record, as `get` returns it.
fn live(stored: Option<Stored>, now: i64) -> Option<StateRecord> {
    live_stored(stored, now).and_then(|s| {
        Some(StateRecord {
            data: s.data?,
            version: s.version,
            expires_at: s.expires_at,
        })
    })
}

fn encode(key: &str, stored: &Stored) -> Result<Vec<u8>, StateStoreError> {
    serde_json::to_vec(stored).map_err(|e| io_err(key, "encode")(std::io::Error::other(e)))
}

impl StateStore for LocalStateStore {
    async fn get(&self, key: &str) -> Result<Option<StateRecord>, StateStoreError> {
        check_key(key)?;
        let (path, _) = self.paths(key);
        let owned = key.to_owned();
        Self::blocking(key, "read", move || Ok(live(read(&path, &owned)?, now()))).await
    }

    async fn put(
        &self,
        key: &str,
        data: &Value,
        expires_at: Option<i64>,
        expect: Expect,
    ) -> Result<Written, StateStoreError> {
        let data = data.clone();
        self.change(key, "write", move |current, version, now| {
            let holds = match expect {
                Expect::Absent => current.is_none(),
                Expect::Version(v) => current.as_ref().is_some_and(|c| c.version == v),
            };
            if !holds {
                return (None, Written::Conflict(live(current, now)));
            }
            let written = Stored {
                data: Some(data),
                version,
                expires_at,
                held_until: None,
            };
            (Some(written), Written::Done(version))
        })
        .await
    }

    async fn delete(&self, key: &str, version: u64) -> Result<bool, StateStoreError> {
        check_key(key)?;
        let dir = self.dir.clone();
        let (path, lock_path) = self.paths(key);
        let owned = key.to_owned();
        Self::blocking(key, "delete", move || {
            let key = owned.as_str();
            if !dir.exists() {
                return Ok(false);
            }
            let _guard = lock(&lock_path).map_err(io_err(key, "lock"))?;
            let live_at_version =
                live_stored(read(&path, key)?, now()).is_some_and(|c| c.version == version);
            if !live_at_version {
                return Ok(false);
            }
            std::fs::remove_file(&path).map_err(io_err(key, "delete"))?;
            sync_dir(&dir).map_err(io_err(key, "delete"))?;
            Ok(true)
        })
        .await
    }

    async fn hold(&self, key: &str, until: i64) -> Result<Hold, StateStoreError> {
        self.change(key, "hold", move |current, version, now| {
            if current
                .as_ref()
                .and_then(|c| c.held_until)
                .is_some_and(|held| held > now)
            {
                return (None, Hold::Busy);
            }
            let (data, expires_at) = current.map_or((None, None), |c| (c.data, c.expires_at));
            let held = Stored {
                data: data.clone(),
                version,
                expires_at,
                held_until: Some(until),
            };
            let taken = Hold::Taken {
                version,
                data,
                expires_at,
            };
            (Some(held), taken)
        })
        .await
    }
}
