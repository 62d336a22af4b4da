//! A [`SecretStore`] keeping one JSON file per secret under a directory (local runs, sandbox).
//!
//! - A secret name is encoded into a file name: `A-Z a-z 0-9 - _ . @ + =` are kept, `/` (and
//!   anything else) becomes `%XX`, and `.json` is appended; e.g.
//!   `4me-app-builder/4me-demo.com/wdc` → `4me-app-builder%2F4me-demo.com%2Fwdc.json`.
//! - Writes are atomic: a temporary file (mode `0600`) is written and `fsync`ed, renamed over the
//!   secret file, and the directory is `fsync`ed. Readers never see a partial document.
//! - `update` (and so `upsert`) and `delete` hold an exclusive lock (`flock` via
//!   [`std::fs::File::lock`]) on a per-secret `.lock` file around read-modify-write, so concurrent
//!   writers — threads or processes — never lose an update. The blocking work (locking, reading,
//!   writing) runs in `spawn_blocking`; the `update` closure runs on the calling task while the
//!   lock is held, and the lock is released by the blocking write itself, so a cancelled caller
//!   cannot release it while a write is still in flight.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::localfs::{create_dir, lock, sync_dir, write_atomic};

use super::{SecretDocument, SecretName, SecretStore, SecretStoreError, without_nulls};

/// File-based secret store rooted at a directory (created on first write, mode `0700`).
#[derive(Debug, Clone)]
pub struct LocalSecretStore {
    dir: PathBuf,
}

impl LocalSecretStore {
    /// A store keeping its files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory holding the secret files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds secret `name`.
    pub fn path_of(&self, name: &SecretName) -> PathBuf {
        self.dir.join(format!("{}.json", encode_name(name)))
    }

    fn lock_path(&self, name: &SecretName) -> PathBuf {
        self.dir.join(format!("{}.lock", encode_name(name)))
    }

    async fn blocking<T: Send + 'static>(
        name: &SecretName,
        operation: &'static str,
        work: impl FnOnce() -> Result<T, SecretStoreError> + Send + 'static,
    ) -> Result<T, SecretStoreError> {
        crate::localfs::blocking(work, io_err(name, operation)).await
    }
}

/// Encodes a secret name into a file-name stem (see the module docs).
fn encode_name(name: &SecretName) -> String {
    crate::localfs::encode_file_stem(name.as_str())
}

fn io_err(
    name: &SecretName,
    operation: &'static str,
) -> impl FnOnce(io::Error) -> SecretStoreError {
    let name = name.clone();
    move |source| SecretStoreError::Io {
        name,
        operation,
        source,
    }
}

fn read_document(
    path: &Path,
    name: &SecretName,
) -> Result<Option<SecretDocument>, SecretStoreError> {
    match fs::read_to_string(path) {
        Ok(raw) => SecretDocument::from_json_str(&raw)
            .map(Some)
            .map_err(|source| SecretStoreError::InvalidJson {
                name: name.clone(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(name, "read")(e)),
    }
}

impl SecretStore for LocalSecretStore {
    async fn get(&self, name: &SecretName) -> Result<Option<SecretDocument>, SecretStoreError> {
        let path = self.path_of(name);
        let owned = name.clone();
        Self::blocking(name, "read", move || read_document(&path, &owned)).await
    }

    async fn update<F>(
        &self,
        name: &SecretName,
        mut f: F,
    ) -> Result<Option<SecretDocument>, SecretStoreError>
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        let dir = self.dir.clone();
        let path = self.path_of(name);
        let lock_path = self.lock_path(name);
        let owned = name.clone();
        let (guard, current) = Self::blocking(name, "write", move || {
            let name = &owned;
            create_dir(&dir).map_err(io_err(name, "create directory"))?;
            let guard = lock(&lock_path).map_err(io_err(name, "lock"))?;
            let current = read_document(&path, name)?;
            Ok((guard, current))
        })
        .await?;
        let Some(next) = f(current.as_ref()) else {
            drop(guard);
            return Ok(None);
        };
        let next = without_nulls(next);
        let contents = next.to_json_string();
        let dir = self.dir.clone();
        let path = self.path_of(name);
        let owned = name.clone();
        Self::blocking(name, "write", move || {
            let result = write_atomic(&dir, &path, contents.as_bytes());
            // The lock is held until the write is complete, even if the caller went away.
            drop(guard);
            result.map_err(io_err(&owned, "write"))
        })
        .await?;
        Ok(Some(next))
    }

    /// Moves the file into `.deleted/` (restored by moving it back; nothing removes it later).
    async fn schedule_deletion(
        &self,
        name: &SecretName,
        _recovery_days: u32,
    ) -> Result<(), SecretStoreError> {
        let dir = self.dir.clone();
        let path = self.path_of(name);
        let lock_path = self.lock_path(name);
        let owned = name.clone();
        Self::blocking(name, "schedule deletion", move || {
            let name = &owned;
            if !path.exists() {
                return Ok(());
            }
            let _guard = lock(&lock_path).map_err(io_err(name, "lock"))?;
            let deleted = dir.join(".deleted");
            create_dir(&deleted).map_err(io_err(name, "create directory"))?;
            let target = deleted.join(path.file_name().unwrap_or_default());
            match fs::rename(&path, &target) {
                Ok(()) => sync_dir(&dir).map_err(io_err(name, "schedule deletion")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(name, "schedule deletion")(e)),
            }
        })
        .await
    }

    async fn delete(&self, name: &SecretName) -> Result<(), SecretStoreError> {
        let dir = self.dir.clone();
        let path = self.path_of(name);
        let lock_path = self.lock_path(name);
        let owned = name.clone();
        Self::blocking(name, "delete", move || {
            let name = &owned;
            if !dir.exists() {
                return Ok(());
            }
            let _guard = lock(&lock_path).map_err(io_err(name, "lock"))?;
            match fs::remove_file(&path) {
                Ok(()) => sync_dir(&dir).map_err(io_err(name, "delete")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(name, "delete")(e)),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_slashes_and_keeps_safe_characters() {
        let name = SecretName::new("4me-app-builder/4me-demo.com/a_b+c=d@e").unwrap();
        assert_eq!(
            encode_name(&name),
            "4me-app-builder%2F4me-demo.com%2Fa_b+c=d@e"
        );
    }
}
