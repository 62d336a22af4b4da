//! `cargo xtask bench cold-start`: cold starts of the Lambda binaries under the runtime API
//! emulator (`crates/runtime-emulator`), on a moto server started for the run.
//!
//! The measuring program is the `cold_start` bench of each function crate (cargo builds it and
//! the function binary with the release profile, as deployed); this command provides what it
//! needs (moto, test credentials) and passes `--runs`. The figures are in `BENCHMARKS.md`.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::moto::MotoServer;
use crate::test::{TestError, cargo_status, moto_environment, workspace_root};
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
}

/// The function crates with a `cold_start` bench.
const COLD_START_BENCHES: [&str; 1] = ["secrets"];

/// Runs the bench and returns the exit code.
pub fn run(args: &BenchArgs) -> Result<ExitCode, TestError> {
    let Bench::ColdStart {
        python,
        runs,
        binary,
    } = &args.what;
    let root = workspace_root();
    let venv = venv::ensure(python, &root.join("xtask").join("requirements-test.txt"))?;
    let moto = MotoServer::start(&venv)?;
    let env = moto_environment(&moto);
    let mut options = vec![OsString::from("--runs"), OsString::from(runs.to_string())];
    if let Some(binary) = binary {
        options.extend([OsString::from("--binary"), binary.clone().into_os_string()]);
    }
    for package in COLD_START_BENCHES {
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
