//! The cached Python virtual environment holding the test tools (moto server, cfn-lint).
//!
//! The venv lives under `${XDG_CACHE_HOME:-~/.cache}/app-builder/venv-test-<hash>`, where the hash
//! is taken over `xtask/requirements-test.txt`: changing the pins yields a new venv, an unchanged
//! file reuses the existing one without touching the network. A marker file written after a
//! successful `pip install` distinguishes a complete venv from an interrupted one, and a lock file
//! serialises concurrent runs.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Name of the marker file written once the venv is complete.
const COMPLETE_MARKER: &str = ".xtask-complete";

/// Errors raised while locating or building the venv.
#[derive(Debug, thiserror::Error)]
pub enum VenvError {
    /// Neither `XDG_CACHE_HOME` nor `HOME` is set.
    #[error("cannot locate a cache directory: neither XDG_CACHE_HOME nor HOME is set")]
    NoCacheDir,
    /// The requirements file cannot be read.
    #[error("cannot read {path}: {source}")]
    Requirements {
        /// Path of the requirements file.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A file system operation on the cache failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// Path involved.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A command could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// Program that failed to start.
        program: String,
        /// Underlying error.
        source: io::Error,
    },
    /// `python3 -m venv` failed.
    #[error(
        "`{python} -m venv` failed ({status}); on Debian/Ubuntu install the python3-venv package"
    )]
    Create {
        /// Python interpreter used.
        python: String,
        /// Exit status.
        status: std::process::ExitStatus,
    },
    /// `pip install` failed.
    #[error("`pip install -r {requirements}` failed ({status})")]
    Install {
        /// Requirements file.
        requirements: PathBuf,
        /// Exit status.
        status: std::process::ExitStatus,
    },
}

/// A ready-to-use virtual environment.
#[derive(Debug, Clone)]
pub struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// Path of an executable installed in the venv (`<venv>/bin/<name>`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// Root directory of the venv.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// 64-bit FNV-1a: a stable, dependency-free content hash (std's `DefaultHasher` is not
/// guaranteed stable across Rust releases).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// The cache root: `$XDG_CACHE_HOME` when set to an absolute path, else `$HOME/.cache`.
fn cache_root() -> Result<PathBuf, VenvError> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME") {
        let xdg = PathBuf::from(xdg);
        if xdg.is_absolute() {
            return Ok(xdg);
        }
    }
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| PathBuf::from(home).join(".cache"))
        .ok_or(VenvError::NoCacheDir)
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VenvError {
    let path = path.to_path_buf();
    move |source| VenvError::Io {
        action,
        path,
        source,
    }
}

/// Returns the venv for `requirements`, creating it with `<python> -m venv` and `pip install`
/// only when no complete venv for this exact requirements content exists yet.
pub fn ensure(python: &str, requirements: &Path) -> Result<Venv, VenvError> {
    let content = fs::read(requirements).map_err(|source| VenvError::Requirements {
        path: requirements.to_path_buf(),
        source,
    })?;
    let base = cache_root()?.join("app-builder");
    fs::create_dir_all(&base).map_err(io_err("cannot create", &base))?;
    let name = format!("venv-test-{:016x}", fnv1a64(&content));
    let dir = base.join(&name);
    let venv = Venv { dir: dir.clone() };
    let marker = dir.join(COMPLETE_MARKER);

    let lock_path = base.join(format!("{name}.lock"));
    let lock = File::create(&lock_path).map_err(io_err("cannot create", &lock_path))?;
    lock.lock().map_err(io_err("cannot lock", &lock_path))?;

    if marker.is_file() {
        return Ok(venv);
    }
    if dir.exists() {
        eprintln!("xtask: removing incomplete venv {}", dir.display());
        fs::remove_dir_all(&dir).map_err(io_err("cannot remove", &dir))?;
    }

    eprintln!("xtask: creating test venv {}", dir.display());
    let status = Command::new(python)
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .map_err(|source| VenvError::Spawn {
            program: python.to_owned(),
            source,
        })?;
    if !status.success() {
        // Do not leave a half-made venv behind; a failure to clean up is reported by the next run.
        let _ = fs::remove_dir_all(&dir);
        return Err(VenvError::Create {
            python: python.to_owned(),
            status,
        });
    }

    eprintln!(
        "xtask: installing {} (first run only)",
        requirements.display()
    );
    let pip = venv.bin("python");
    let status = Command::new(&pip)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(requirements)
        .status()
        .map_err(|source| VenvError::Spawn {
            program: pip.display().to_string(),
            source,
        })?;
    if !status.success() {
        return Err(VenvError::Install {
            requirements: requirements.to_path_buf(),
            status,
        });
    }
    fs::write(&marker, b"").map_err(io_err("cannot write", &marker))?;
    Ok(venv)
}

#[cfg(test)]
mod tests {
    use super::fnv1a64;

    #[test]
    fn fnv1a64_matches_reference_vectors() {
        // Reference values of the FNV-1a 64-bit specification.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
