//! Project automation (`cargo xtask ...`).
//!
//! Subcommands live in their own modules:
//!
//! - `test` ([`test`]): lint every SAM template with cfn-lint, start a moto server and run the
//!   whole workspace test suite (nextest, then doc tests) against it.
//! - `build-lambdas` ([`lambdas`]): release builds (arm64 by default) of every Lambda binary
//!   named in a SAM template, with cargo-lambda from a cached venv.
//! - `package` ([`lambdas`]): arm64 release zips of every function with a table of their sizes.
//! - `bootstrap` and `deploy <integration>` ([`provision`]): input ([`input`]), the 4me records
//!   ([`records`], decisions in [`sync`]), Secrets Manager and SAM ([`deployer`]).
//! - `demo` and `local` ([`demo`]): the whole product on one machine (sandbox 4me, fakes, the
//!   local engine), provisioned by the same bootstrap and deploy.
//! - `schema pull` ([`schema`]): a newer 4me schema snapshot by introspection, with the
//!   difference printed.
//! - `fuzz` ([`fuzz`]): the fuzz targets of `fuzz/` for a bounded time (not in CI).
//! - `bench cold-start` ([`bench`]): cold starts of the function binaries under a Lambda runtime
//!   API emulator.
//! - `replay` ([`replay`]): a recording of `local --record` sent to a local engine again, or an
//!   integration's dead-letter queues re-driven on AWS ([`redrive`]).

mod bench;
mod browser;
mod cfn_lint;
mod config4me;
mod customer;
mod demo;
mod deployer;
mod fuzz;
mod hot_text;
mod input;
mod lambdas;
mod moto;
mod provision;
mod records;
mod redrive;
mod replay;
mod sam;
mod schema;
mod sync;
mod test;
#[cfg(test)]
mod tidy;
mod venv;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Command line of `cargo xtask`.
#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    about = "Project automation for the 4me app builder engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The available subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Lint templates, start moto and run every test of the workspace.
    Test(test::TestArgs),
    /// Build every Lambda binary of the SAM templates with cargo-lambda (release, arm64).
    BuildLambdas(lambdas::BuildLambdasArgs),
    /// Build the arm64 release zip of every function and print their sizes.
    Package(lambdas::PackageArgs),
    /// Set up the provider's 4me account and the engine stack.
    Bootstrap(provision::BootstrapArgs),
    /// Deploy one integration (its stack and its 4me records).
    Deploy(provision::DeployArgs),
    /// The whole product locally: sandbox 4me, fakes and the local engine; bootstrap, deploy,
    /// install both apps, add a note, submit a survey; exit 0 only if every effect was seen.
    Demo(demo::DemoArgs),
    /// Start what `demo` starts and keep it running for your own requests (Ctrl-C stops);
    /// its console is at `<engine>/_console`.
    Local(demo::LocalArgs),
    /// Send a recording of `local --record FILE` to a local engine again, or re-drive an
    /// integration's dead-letter queues on AWS (`--dlq <integration>`).
    Replay(replay::ReplayArgs),
    /// The 4me schema snapshot: `schema pull` refreshes it from a 4me account by introspection.
    Schema(schema::SchemaArgs),
    /// Benchmarks outside criterion: `bench cold-start` (each function binary as a new Lambda
    /// execution environment, under a runtime API emulator, on moto).
    Bench(bench::BenchArgs),
    /// Fuzz the parsers of outside input for a bounded time (`fuzz/`, cargo fuzz; not in CI).
    Fuzz(fuzz::FuzzArgs),
}

/// The multi-thread runtime of the commands that talk to 4me and AWS.
fn runtime() -> Result<tokio::runtime::Runtime, provision::ProvisionError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(provision::ProvisionError::Output)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Test(args) => match test::run(&args) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("xtask test: error: {err}");
                ExitCode::FAILURE
            }
        },
        Command::BuildLambdas(args) => match lambdas::run(&test::workspace_root(), &args) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("xtask build-lambdas: error: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Package(args) => match lambdas::package(&test::workspace_root(), &args) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("xtask package: error: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Bootstrap(args) => match runtime()
            .and_then(|rt| rt.block_on(provision::bootstrap(&test::workspace_root(), &args)))
        {
            Ok(code) => code,
            Err(err) => {
                eprintln!("xtask bootstrap: error: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Demo(args) => {
            match runtime()
                .map_err(demo::DemoError::from)
                .and_then(|rt| rt.block_on(demo::demo(&test::workspace_root(), &args)))
            {
                Ok(code) => code,
                Err(err) => {
                    eprintln!("xtask demo: error: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Local(args) => {
            match runtime()
                .map_err(demo::DemoError::from)
                .and_then(|rt| rt.block_on(demo::local(&test::workspace_root(), &args)))
            {
                Ok(code) => code,
                Err(err) => {
                    eprintln!("xtask local: error: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Fuzz(args) => match fuzz::run(&args) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("xtask fuzz: error: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => match bench::run(&args) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("xtask bench: error: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Replay(args) => match runtime()
            .map_err(demo::DemoError::from)
            .map_err(replay::ReplayError::from)
            .and_then(|rt| rt.block_on(replay::replay(&test::workspace_root(), &args)))
        {
            Ok(code) => code,
            Err(err) => {
                eprintln!("xtask replay: error: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Deploy(args) => match runtime()
            .and_then(|rt| rt.block_on(provision::deploy(&test::workspace_root(), &args)))
        {
            Ok(code) => code,
            Err(err) => {
                eprintln!("xtask deploy: error: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Schema(args) => match runtime()
            .and_then(|rt| rt.block_on(schema::run(&test::workspace_root(), &args)))
        {
            Ok(code) => code,
            Err(err) => {
                eprintln!("xtask schema: error: {err}");
                ExitCode::FAILURE
            }
        },
    }
}
