//! A [`StateStore`] keeping one JSON file per record under a directory (the local engine, tests).
//!
//! Same semantics as the DynamoDB adapter: every write is a read-check-write under the record's
//! exclusive lock (`flock` on a `.lock` file beside it, see `crate::localfs`), files are written
//! atomically, and an expired record counts as absent (it is replaced, never returned).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Expect, StateRecord, StateStore, StateStoreError, Written, check_key, is_live, now};
use crate::localfs::{create_dir, encode_file_stem, lock, sync_dir, write_atomic};

/// File-based state store rooted at a directory (created on first write, mode `0700`).
#[derive(Debug, Clone)]
pub struct LocalStateStore {
    dir: PathBuf,
}

/// The file format of one record.
#[derive(Serialize, Deserialize)]
struct Stored {
    data: Value,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
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

fn live(stored: Option<Stored>, now: i64) -> Option<StateRecord> {
    stored
        .filter(|s| is_live(s.expires_at, now))
        .map(|s| StateRecord {
            data: s.data,
            version: s.version,
            expires_at: s.expires_at,
        })
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
        check_key(key)?;
        let dir = self.dir.clone();
        let (path, lock_path) = self.paths(key);
        let owned = key.to_owned();
        let data = data.clone();
        Self::blocking(key, "write", move || {
            let key = owned.as_str();
            create_dir(&dir).map_err(io_err(key, "create directory"))?;
            let _guard = lock(&lock_path).map_err(io_err(key, "lock"))?;
            let stored = read(&path, key)?;
            // Versions keep counting across expiry, so a version names one write of the key.
            let last_version = stored.as_ref().map_or(0, |s| s.version);
            let current = live(stored, now());
            let holds = match expect {
                Expect::Absent => current.is_none(),
                Expect::Version(v) => current.as_ref().is_some_and(|c| c.version == v),
            };
            if !holds {
                return Ok(Written::Conflict(current));
            }
            let version = last_version + 1;
            let contents = serde_json::to_vec(&Stored {
                data,
                version,
                expires_at,
            })
            .map_err(|e| io_err(key, "encode")(std::io::Error::other(e)))?;
            write_atomic(&dir, &path, &contents).map_err(io_err(key, "write"))?;
            Ok(Written::Done(version))
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
                live(read(&path, key)?, now()).is_some_and(|c| c.version == version);
            if !live_at_version {
                return Ok(false);
            }
            std::fs::remove_file(&path).map_err(io_err(key, "delete"))?;
            sync_dir(&dir).map_err(io_err(key, "delete"))?;
            Ok(true)
        })
        .await
    }
}
