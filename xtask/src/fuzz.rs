//! `cargo xtask fuzz --seconds N`: the fuzz targets of `fuzz/` (cargo fuzz, libFuzzer), each for
//! a bounded time. Not part of `cargo xtask test`: fuzzing finds new inputs, a test must be
//! repeatable. A crash leaves its input in `fuzz/artifacts/<target>/`; make it a test of the
//! crate concerned (and fix it) before committing.
//!
//! cargo fuzz needs a nightly compiler (sanitizer flags). With a nightly toolchain installed it
//! is used (`cargo +nightly fuzz`); otherwise the stable compiler is run with
//! `RUSTC_BOOTSTRAP=1`, which lets it accept those flags. cargo-fuzz is installed from crates.io
//! when missing. New inputs libFuzzer finds go into `fuzz/corpus/<target>/`, which is committed.

use std::process::{Command, ExitCode};

use clap::Args;

use crate::test::workspace_root;

/// The fuzz targets (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: [&str; 4] = [
    "jwt_verify",
    "classify",
    "form_response_note",
    "asset_discovery",
];

/// Arguments of `cargo xtask fuzz`.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// How long to fuzz each target.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    /// Only these targets (default: all).
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
}

/// Errors that stop `cargo xtask fuzz` before a target ran.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    /// A command could not be started.
    #[error("cannot run `{0}`: {1}")]
    Spawn(String, std::io::Error),
    /// `cargo install cargo-fuzz` failed.
    #[error("installing cargo-fuzz failed")]
    Install,
    /// A target that does not exist was asked for.
    #[error("unknown fuzz target {0} (known: {TARGETS:?})")]
    UnknownTarget(String),
}

/// Runs the targets and returns the exit code (failure when any target found a crash).
pub fn run(args: &FuzzArgs) -> Result<ExitCode, FuzzError> {
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets
            .iter()
            .map(|name| {
                TARGETS
                    .iter()
                    .find(|known| *known == name)
                    .copied()
                    .ok_or_else(|| FuzzError::UnknownTarget(name.clone()))
            })
            .collect::<Result<_, _>>()?
    };
    ensure_cargo_fuzz()?;
    let nightly = has_nightly();
    let mut crashed = Vec::new();
    for target in targets {
        let mut command = Command::new("cargo");
        if nightly {
            command.arg("+nightly");
        } else {
            command.env("RUSTC_BOOTSTRAP", "1");
        }
        command
            .args([
                "fuzz",
                "run",
                target,
                "--",
                &format!("-max_total_time={}", args.seconds),
            ])
            .current_dir(workspace_root());
        eprintln!("xtask fuzz: {target} for {} s", args.seconds);
        let status = command
            .status()
            .map_err(|e| FuzzError::Spawn(format!("cargo fuzz run {target}"), e))?;
        if !status.success() {
            crashed.push(target);
        }
    }
    if crashed.is_empty() {
        eprintln!("xtask fuzz: no crash");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "xtask fuzz: {crashed:?} failed; the inputs are in fuzz/artifacts/<target>/: make each a test"
        );
        Ok(ExitCode::FAILURE)
    }
}

fn ensure_cargo_fuzz() -> Result<(), FuzzError> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if present {
        return Ok(());
    }
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .map_err(|e| FuzzError::Spawn("cargo install cargo-fuzz".into(), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(FuzzError::Install)
    }
}

fn has_nightly() -> bool {
    Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("nightly"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target has its source, a `[[bin]]` entry and a committed seed corpus.
    #[test]
    fn every_fuzz_target_has_its_source_manifest_entry_and_corpus() {
        let fuzz = workspace_root().join("fuzz");
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap_or_default();
        for target in TARGETS {
            assert!(
                fuzz.join("fuzz_targets")
                    .join(format!("{target}.rs"))
                    .is_file(),
                "{target}: no source"
            );
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target}: not in fuzz/Cargo.toml"
            );
            let seeds = std::fs::read_dir(fuzz.join("corpus").join(target))
                .map(|dir| dir.count())
                .unwrap_or_default();
            assert!(seeds > 0, "{target}: no committed corpus");
        }
    }
}
