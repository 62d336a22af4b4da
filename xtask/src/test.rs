//! `cargo xtask test`: cfn-lint, moto server, headless Chromium (installed when missing),
//! `cargo nextest run --workspace`, doc tests.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};

use clap::Args;

use crate::moto::{MotoError, MotoServer};
use crate::{cfn_lint, venv};

/// Arguments of `cargo xtask test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Python interpreter used to create the cached test venv.
    #[arg(long, env = "XTASK_PYTHON", default_value = "python3")]
    python: String,
    /// Extra arguments passed to `cargo nextest run` (e.g. a test filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    nextest_args: Vec<OsString>,
}

/// Errors that stop `cargo xtask test` before the tests report a status.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The venv could not be prepared.
    #[error(transparent)]
    Venv(#[from] venv::VenvError),
    /// The page tests' browser could not be installed.
    #[error(transparent)]
    Browser(#[from] crate::browser::BrowserError),
    /// Template discovery or cfn-lint failed to run.
    #[error(transparent)]
    Lint(#[from] cfn_lint::LintError),
    /// moto could not be started.
    #[error(transparent)]
    Moto(#[from] MotoError),
    /// A cargo command could not be started.
    #[error("cannot run `cargo {args}`: {source}")]
    Cargo {
        /// The cargo arguments.
        args: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A file the run needs could not be read, written or copied.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Installing cargo-nextest failed.
    #[error("`cargo install cargo-nextest --locked` failed ({0})")]
    InstallNextest(ExitStatus),
}

/// An [`TestError::Io`] about `path`.
pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TestError + '_ {
    move |source| TestError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The workspace root (the parent of the xtask crate).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The cargo binary running us (`$CARGO`), else `cargo` from `PATH`.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// The environment that points the AWS SDK at `moto` with test credentials.
pub fn moto_environment(moto: &MotoServer) -> [(&'static str, String); 6] {
    [
        ("AWS_ENDPOINT_URL", moto.endpoint_url()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_REGION", "eu-west-1".to_owned()),
        ("AWS_DEFAULT_REGION", "eu-west-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

pub fn cargo_status(
    root: &Path,
    args: &[&str],
    extra: &[OsString],
    env: &[(&str, String)],
) -> Result<ExitStatus, TestError> {
    let mut command = Command::new(cargo());
    command.args(args).args(extra).current_dir(root);
    // Never let a developer's real credentials or profile reach the tests.
    for var in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"] {
        command.env_remove(var);
    }
    command.envs(env.iter().map(|(key, value)| (key, value)));
    command.status().map_err(|source| TestError::Cargo {
        args: args.join(" "),
        source,
    })
}

/// Installs cargo-nextest when `cargo nextest` is not available.
fn ensure_nextest(root: &Path) -> Result<(), TestError> {
    let present = Command::new(cargo())
        .args(["nextest", "--version"])
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: cargo-nextest not found, installing it");
    let status = cargo_status(root, &["install", "cargo-nextest", "--locked"], &[], &[])?;
    if status.success() {
        Ok(())
    } else {
        Err(TestError::InstallNextest(status))
    }
}

/// Exit code of a finished child (1 when it was killed by a signal).
fn exit_code(status: ExitStatus) -> u8 {
    status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .filter(|code| *code != 0)
        .unwrap_or(1)
}

/// Runs the whole test command and returns the process exit code.
pub fn run(args: &TestArgs) -> Result<ExitCode, TestError> {
    let root = workspace_root();
    let venv = venv::ensure(
        &args.python,
        &root.join("xtask").join("requirements-test.txt"),
    )?;
    eprintln!("xtask: using venv {}", venv.dir().display());

    let mut failure: Option<u8> = None;
    if !cfn_lint::run(&venv, &root)? {
        eprintln!("xtask: cfn-lint reported problems");
        failure = Some(1);
    }

    ensure_nextest(&root)?;
    crate::browser::ensure()?;

    let moto = MotoServer::start(&venv)?;
    eprintln!("xtask: moto server listening on {}", moto.endpoint_url());
    let env = moto_environment(&moto);

    let nextest = cargo_status(
        &root,
        &["nextest", "run", "--workspace", "--no-fail-fast"],
        &args.nextest_args,
        &env,
    )?;
    if !nextest.success() {
        failure = failure.or(Some(exit_code(nextest)));
    }
    let doc = cargo_status(&root, &["test", "--workspace", "--doc"], &[], &env)?;
    if !doc.success() {
        failure = failure.or(Some(exit_code(doc)));
    }
    drop(moto);

    Ok(match failure {
        None => ExitCode::SUCCESS,
        Some(code) => {
            eprintln!("xtask: tests failed");
            ExitCode::from(code)
        }
    })
}
