//! File-system primitives of the local adapters (secret store, state store): one file per
//! record, written atomically (temporary file, `fsync`, rename, directory `fsync`), a per-record
//! lock file taken with `flock` ([`std::fs::File::lock`]) around read-modify-write, private
//! permissions (`0700` directories, `0600` files).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// A record key as a file-name stem: `A-Z a-z 0-9 - _ . @ + =` are kept, every other byte
/// (including `/`) becomes `%XX`.
pub(crate) fn encode_file_stem(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'@' | b'+' | b'=') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Runs blocking file work off the async runtime; a panicked or cancelled task becomes
/// `join_error` of an I/O error.
pub(crate) async fn blocking<T: Send + 'static, E: Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
    join_error: impl FnOnce(io::Error) -> E,
) -> Result<T, E> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| join_error(io::Error::other(join.to_string())))?
}

pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

pub(crate) fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Takes the exclusive lock of `lock_path`; released when the returned file is dropped.
pub(crate) fn lock(lock_path: &Path) -> io::Result<File> {
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path)?;
    file.lock()?;
    Ok(file)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `contents` to `path` atomically (temp file + fsync + rename + directory fsync).
pub(crate) fn write_atomic(dir: &Path, path: &Path, contents: &[u8]) -> io::Result<()> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut file = private_options().write(true).create_new(true).open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Best effort: the temporary file is garbage once the write failed.
        let _ = fs::remove_file(&tmp);
    }
    result
}
