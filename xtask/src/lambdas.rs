//! `cargo xtask build-lambdas`: release builds of every Lambda binary with cargo-lambda.
//!
//! The binaries are the `BuildProperties: Binary: <name>` entries of the SAM templates, so the
//! templates stay the one list of deployable functions. cargo-lambda and zig (the arm64 cross
//! linker) come from PyPI into a cached venv (`xtask/requirements-lambda.txt`); the venv's `bin`
//! directory is put first on `PATH` so that `cargo lambda` and `python3 -m ziglang` resolve to it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::Args;

use crate::{cfn_lint, venv};

/// Arguments of `cargo xtask build-lambdas`.
#[derive(Debug, Args)]
pub struct BuildLambdasArgs {
    /// Python interpreter used to create the cached cargo-lambda venv.
    #[arg(long, env = "XTASK_PYTHON", default_value = "python3")]
    python: String,
    /// Build for x86_64 with the host toolchain (no zig, no extra Rust target) instead of arm64;
    /// the templates' `Architectures` must then be switched to `[x86_64]`.
    #[arg(long)]
    x86_64: bool,
    /// Also write `bootstrap.zip` next to each binary (`--output-format zip`).
    #[arg(long)]
    zip: bool,
    /// Build only these binaries (default: every binary named in a template).
    #[arg(long = "bin", value_name = "NAME")]
    bins: Vec<String>,
}

/// Errors that stop `cargo xtask build-lambdas`.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The venv could not be prepared.
    #[error(transparent)]
    Venv(#[from] venv::VenvError),
    /// Templates could not be listed.
    #[error(transparent)]
    Templates(#[from] cfn_lint::LintError),
    /// A template could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The template.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// No template names a binary.
    #[error("no template.yaml names a `Binary:` to build")]
    NoBinaries,
    /// `--bin` named a binary no template declares.
    #[error("no template declares the binary `{0}`")]
    UnknownBinary(String),
    /// A command could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// `cargo metadata` printed something unexpected.
    #[error("cannot read the target directory from `cargo metadata`: {0}")]
    Metadata(String),
}

/// The `Binary:` values of a SAM template's `BuildProperties`, in order of appearance.
///
/// A line scan is enough for the templates of this repository (block style YAML, one
/// `Binary: <name>` line per function); quotes around the name are removed.
pub fn template_binaries(template: &str) -> Vec<String> {
    template
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Binary:"))
        .map(|value| {
            let value = value.split('#').next().unwrap_or_default().trim();
            value.trim_matches(|c| c == '"' || c == '\'').to_owned()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// Every binary named by the templates below `root`, sorted and without duplicates.
pub fn all_binaries(root: &Path) -> Result<Vec<String>, BuildError> {
    let mut names = Vec::new();
    for path in cfn_lint::find_templates(root)? {
        let text = std::fs::read_to_string(&path).map_err(|source| BuildError::Read {
            path: path.clone(),
            source,
        })?;
        names.extend(template_binaries(&text));
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The cargo binary running us (`$CARGO`), else `cargo` from `PATH`.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// The workspace's target directory (honours `CARGO_TARGET_DIR` and cargo configuration).
fn target_directory(root: &Path) -> Result<PathBuf, BuildError> {
    let output = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .map_err(|source| BuildError::Spawn {
            program: "cargo metadata".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(BuildError::Metadata(format!(
            "exit status {}",
            output.status
        )));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|err| BuildError::Metadata(err.to_string()))?;
    metadata
        .get("target_directory")
        .and_then(serde_json::Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| BuildError::Metadata("no target_directory".into()))
}

/// `PATH` with `dir` in front.
fn path_with(dir: &Path) -> OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(current) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&current));
    }
    std::env::join_paths(paths).unwrap_or_else(|_| dir.as_os_str().to_owned())
}

/// Builds the binaries and prints where they are and how large; returns the exit code.
pub fn run(root: &Path, args: &BuildLambdasArgs) -> Result<ExitCode, BuildError> {
    let declared = all_binaries(root)?;
    if declared.is_empty() {
        return Err(BuildError::NoBinaries);
    }
    let bins = if args.bins.is_empty() {
        declared
    } else {
        if let Some(unknown) = args.bins.iter().find(|bin| !declared.contains(bin)) {
            return Err(BuildError::UnknownBinary(unknown.clone()));
        }
        args.bins.clone()
    };

    let venv = venv::ensure(
        &args.python,
        &root.join("xtask").join("requirements-lambda.txt"),
    )?;
    let mut command = Command::new(cargo());
    command
        .current_dir(root)
        .env("PATH", path_with(&venv.dir().join("bin")))
        .args(["lambda", "build", "--release"]);
    if args.x86_64 {
        command.args(["--x86-64", "--compiler", "cargo"]);
    } else {
        command.arg("--arm64");
    }
    if args.zip {
        command.args(["--output-format", "zip"]);
    }
    for bin in &bins {
        command.args(["--bin", bin]);
    }
    eprintln!(
        "xtask: cargo lambda build --release for {}",
        bins.join(", ")
    );
    let started = Instant::now();
    let status = command.status().map_err(|source| BuildError::Spawn {
        program: "cargo lambda build".into(),
        source,
    })?;
    let elapsed = started.elapsed();
    if !status.success() {
        eprintln!("xtask: cargo lambda build failed ({status})");
        return Ok(ExitCode::FAILURE);
    }

    let lambda_dir = target_directory(root)?.join("lambda");
    eprintln!(
        "xtask: built in {:.0} s ({}):",
        elapsed.as_secs_f64(),
        if args.x86_64 { "x86_64" } else { "arm64" }
    );
    for bin in &bins {
        for file in ["bootstrap", "bootstrap.zip"] {
            let path = lambda_dir.join(bin).join(file);
            if let Ok(meta) = std::fs::metadata(&path) {
                let mib = meta.len() as f64 / (1024.0 * 1024.0);
                eprintln!("xtask:   {} {:.1} MiB", path.display(), mib);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{all_binaries, template_binaries};
    use std::fs;

    #[test]
    fn reads_binary_names_of_build_properties() {
        let template = "Resources:\n  F:\n    Metadata:\n      BuildMethod: rust-cargolambda\n      \
                        BuildProperties:\n        Binary: note-dispatcher # the binary\n  G:\n    \
                        Metadata:\n      BuildProperties:\n        Binary: \"typeform\"\n";
        assert_eq!(
            template_binaries(template),
            vec!["note-dispatcher".to_owned(), "typeform".to_owned()]
        );
        assert!(template_binaries("Resources: {}\n").is_empty());
    }

    #[test]
    fn repository_templates_name_the_function_binaries() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let names = all_binaries(&root).unwrap();
        for expected in ["note-dispatcher", "secrets", "typeform"] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
    }

    #[test]
    fn collects_sorted_unique_names_across_templates() {
        let root = std::env::temp_dir().join(format!("xtask-bins-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("a")).unwrap();
        fs::create_dir_all(root.join("b")).unwrap();
        fs::write(
            root.join("a/template.yaml"),
            "Binary: zeta\nBinary: alpha\n",
        )
        .unwrap();
        fs::write(root.join("b/template.yaml"), "Binary: alpha\n").unwrap();
        let names = all_binaries(&root).unwrap();
        let _ = fs::remove_dir_all(&root);
        assert_eq!(names, vec!["alpha".to_owned(), "zeta".to_owned()]);
    }
}
