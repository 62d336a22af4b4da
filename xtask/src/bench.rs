//! `cargo xtask bench cold-start`: cold starts of the Lambda binaries under the runtime API
//! emulator (`crates/runtime-emulator`), on a moto server started for the run; and
//! `cargo xtask bench hot-text`, which profiles those cold starts to lay out the binary
//! (`crate::hot_text`).
//!
//! The measuring program is the `cold_start` bench of each function crate; this command builds
//! the function as deployed (`cargo build --release`), provides what the bench needs (moto, test
//! credentials) and passes `--runs` and the binary. The figures are in `BENCHMARKS.md`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::hot_text::{self, HotTextError};
use crate::moto::MotoServer;
use crate::test::{TestError, cargo_status, io_error, moto_environment, workspace_root};
use crate::venv;

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Each function binary started N times as a new Lambda execution environment: init,
    /// first response, peak RSS and binary size.
    ColdStart {
        /// Python interpreter used to create the cached test venv (moto).
        #[arg(long, env = "XTASK_PYTHON", default_value = "python3")]
        python: String,
        /// Cold starts per binary.
        #[arg(long, default_value_t = 20)]
        runs: u32,
        /// Measure this build of the function instead of the workspace's (say, one of an older
        /// commit, to compare the two on the same machine at the same time).
        #[arg(long)]
        binary: Option<std::path::PathBuf>,
    },
    /// Profile the secrets function's cold starts (valgrind's callgrind) and write the linker
    /// script that gathers the code they run (`crates/secrets/hot-text.ld`).
    HotText {
        /// Python interpreter used to create the cached test venv (moto).
        #[arg(long, env = "XTASK_PYTHON", default_value = "python3")]
        python: String,
        /// Cold starts profiled.
        #[arg(long, default_value_t = 2)]
        runs: u32,
    },
}

/// The function crates with a `cold_start` bench.
const COLD_START_BENCHES: [&str; 1] = ["secrets"];

/// Runs the bench and returns the exit code.
pub fn run(args: &BenchArgs) -> Result<ExitCode, HotTextError> {
    match &args.what {
        Bench::ColdStart {
            python,
            runs,
            binary,
        } => Ok(cold_start(python, *runs, binary.as_deref())?),
        Bench::HotText { python, runs } => hot_text::run(python, *runs),
    }
}

/// The cold-start bench of every function that has one: `runs` cold starts of its release
/// build, or of `binary`.
pub fn cold_start(python: &str, runs: u32, binary: Option<&Path>) -> Result<ExitCode, TestError> {
    let root = workspace_root();
    let venv = venv::ensure(python, &root.join("xtask").join("requirements-test.txt"))?;
    let moto = MotoServer::start(&venv)?;
    let env = moto_environment(&moto);
    let copies = tempfile::tempdir().map_err(io_error(&root))?;
    for package in COLD_START_BENCHES {
        let binary = match binary {
            Some(binary) => binary.to_owned(),
            // The build that is deployed: `cargo bench` builds the binary again with the
            // dev-dependencies' features added to its dependencies, which is another program,
            // into the same path, so the bench measures a copy.
            None => match deployed_build(&root, package, copies.path())? {
                Some(copy) => copy,
                None => return Ok(ExitCode::FAILURE),
            },
        };
        let mut options = vec![OsString::from("--runs"), OsString::from(runs.to_string())];
        options.extend([OsString::from("--binary"), binary.into_os_string()]);
        let status = cargo_status(
            &root,
            &["bench", "-p", package, "--bench", "cold_start", "--"],
            &options,
            &env,
        )?;
        if !status.success() {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cargo build --release` of the function `package`, copied into `dir`; `None` if the build
/// failed.
fn deployed_build(root: &Path, package: &str, dir: &Path) -> Result<Option<PathBuf>, TestError> {
    let build = ["build", "--release", "-p", package, "--bin", package];
    if !cargo_status(root, &build, &[], &[])?.success() {
        return Ok(None);
    }
    let copy = dir.join(package);
    let built = root.join("target").join("release").join(package);
    std::fs::copy(&built, &copy).map_err(io_error(&copy))?;
    Ok(Some(copy))
}
