//! Project automation (`cargo xtask ...`).
//!
//! Subcommands live in their own modules:
//!
//! - `test` ([`test`]): lint every SAM template with cfn-lint, start a moto server and run the
//!   whole workspace test suite (nextest, then doc tests) against it.

mod cfn_lint;
mod moto;
mod test;
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
    }
}
