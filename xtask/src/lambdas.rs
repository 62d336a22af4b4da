//! `cargo xtask build-lambdas` and `cargo xtask package`: release builds of every Lambda binary
//! with cargo-lambda (`package`: arm64 zips and a table of their sizes).
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

/// Arguments of `cargo xtask package`.
#[derive(Debug, Args)]
pub struct PackageArgs {
    /// Python interpreter used to create the cached cargo-lambda venv.
    #[arg(long, env = "XTASK_PYTHON", default_value = "python3")]
    python: String,
}

/// The Rust target of arm64 Lambda functions.
pub const ARM64_TARGET: &str = "aarch64-unknown-linux-gnu";

/// The binaries to build: `requested` (each must be declared), or every declared one.
fn select_binaries(root: &Path, requested: &[String]) -> Result<Vec<String>, BuildError> {
    let declared = all_binaries(root)?;
    if declared.is_empty() {
        return Err(BuildError::NoBinaries);
    }
    if requested.is_empty() {
        return Ok(declared);
    }
    if let Some(unknown) = requested.iter().find(|bin| !declared.contains(bin)) {
        return Err(BuildError::UnknownBinary(unknown.clone()));
    }
    Ok(requested.to_vec())
}

/// Runs `cargo lambda build --release` for `bins`; `Ok(false)` when the build failed.
fn cargo_lambda_build(
    root: &Path,
    python: &str,
    x86_64: bool,
    zip: bool,
    bins: &[String],
) -> Result<bool, BuildError> {
    let venv = venv::ensure(python, &root.join("xtask").join("requirements-lambda.txt"))?;
    let mut command = Command::new(cargo());
    command
        .current_dir(root)
        .env("PATH", path_with(&venv.dir().join("bin")))
        .args(["lambda", "build", "--release"]);
    if x86_64 {
        command.args(["--x86-64", "--compiler", "cargo"]);
    } else {
        command.arg("--arm64");
    }
    if zip {
        command.args(["--output-format", "zip"]);
    }
    for bin in bins {
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
    if !status.success() {
        eprintln!("xtask: cargo lambda build failed ({status})");
        return Ok(false);
    }
    eprintln!(
        "xtask: built in {:.0} s ({})",
        started.elapsed().as_secs_f64(),
        if x86_64 { "x86_64" } else { "arm64" }
    );
    Ok(true)
}

/// Builds the binaries and prints where they are and how large; returns the exit code.
pub fn run(root: &Path, args: &BuildLambdasArgs) -> Result<ExitCode, BuildError> {
    let bins = select_binaries(root, &args.bins)?;
    if !cargo_lambda_build(root, &args.python, args.x86_64, args.zip, &bins)? {
        return Ok(ExitCode::FAILURE);
    }
    let lambda_dir = target_directory(root)?.join("lambda");
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

/// Whether `rustup` reports `target` as installed; `None` when rustup cannot be asked (e.g. a
/// toolchain not managed by rustup), in which case the build itself is the test.
fn rustup_has_target(target: &str) -> Option<bool> {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|line| line.trim() == target),
    )
}

/// What to do when the arm64 package build cannot run or failed.
pub fn arm64_fallback_message(target_installed: Option<bool>) -> String {
    let mut message = String::new();
    if target_installed == Some(false) {
        message.push_str(&format!(
            "the Rust target {ARM64_TARGET} is not installed: run `rustup target add {ARM64_TARGET}`.\n"
        ));
    }
    message.push_str(
        "arm64 packages need that target and zig (installed by xtask into its cargo-lambda venv \
         from xtask/requirements-lambda.txt; check that `python3 -m venv` and pip work).\n\
         Fallback: `cargo xtask build-lambdas --x86-64 --zip` builds x86_64 packages with the host \
         toolchain; switch the templates' `Architectures` to [x86_64] to deploy them.",
    );
    message
}

/// The package table: one row per binary with its zip size (`None` when the zip is missing).
pub fn package_table(rows: &[(String, Option<u64>)]) -> String {
    let width = rows
        .iter()
        .map(|(name, _)| name.len())
        .chain(["function".len()])
        .max()
        .unwrap_or_default();
    let mut table = format!("{:<width$}  {:>10}\n", "function", "zip size");
    for (name, size) in rows {
        let size = match size {
            Some(bytes) => format!("{:.2} MiB", *bytes as f64 / (1024.0 * 1024.0)),
            None => "missing".to_owned(),
        };
        table.push_str(&format!("{name:<width$}  {size:>10}\n"));
    }
    table
}

/// `cargo xtask package`: arm64 release zips of every function and a table of their sizes.
pub fn package(root: &Path, args: &PackageArgs) -> Result<ExitCode, BuildError> {
    let bins = select_binaries(root, &[])?;
    let target_installed = rustup_has_target(ARM64_TARGET);
    if target_installed == Some(false) {
        eprintln!(
            "xtask package: {}",
            arm64_fallback_message(target_installed)
        );
        return Ok(ExitCode::FAILURE);
    }
    if !cargo_lambda_build(root, &args.python, false, true, &bins)? {
        eprintln!(
            "xtask package: {}",
            arm64_fallback_message(target_installed)
        );
        return Ok(ExitCode::FAILURE);
    }
    let lambda_dir = target_directory(root)?.join("lambda");
    let rows: Vec<(String, Option<u64>)> = bins
        .iter()
        .map(|bin| {
            let path = lambda_dir.join(bin).join("bootstrap.zip");
            (bin.clone(), std::fs::metadata(path).ok().map(|m| m.len()))
        })
        .collect();
    print!("{}", package_table(&rows));
    eprintln!("xtask package: zips in {}", lambda_dir.display());
    if rows.iter().any(|(_, size)| size.is_none()) {
        eprintln!("xtask package: some zips are missing");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{all_binaries, arm64_fallback_message, package_table, template_binaries};
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
        for expected in ["note-dispatcher", "secrets", "typeform", "lansweeper"] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        // The local engine is a library that hosts the functions, not a Lambda: no template,
        // so it is neither built nor packaged.
        assert!(!root.join("crates/local-engine/template.yaml").exists());
        assert!(!names.iter().any(|n| n.contains("local")), "{names:?}");
    }

    /// The `[[bin]]` names of a Cargo manifest (line scan, as the templates).
    fn manifest_bins(manifest: &str) -> Vec<String> {
        let mut bins = Vec::new();
        let mut in_bin = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin && let Some(value) = line.strip_prefix("name") {
                let value = value.trim_start().trim_start_matches('=').trim();
                bins.push(value.trim_matches('"').to_owned());
            }
        }
        bins
    }

    #[test]
    fn every_template_binary_is_a_bin_target_and_code_uri_is_the_workspace_root() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let mut bins = Vec::new();
        for entry in fs::read_dir(root.join("crates")).unwrap() {
            let manifest = entry.unwrap().path().join("Cargo.toml");
            if let Ok(text) = fs::read_to_string(&manifest) {
                bins.extend(manifest_bins(&text));
            }
        }
        for name in all_binaries(&root).unwrap() {
            assert!(
                bins.contains(&name),
                "template binary {name} not in {bins:?}"
            );
        }
        for template in crate::cfn_lint::find_templates(&root).unwrap() {
            let text = fs::read_to_string(&template).unwrap();
            let dir = template.parent().unwrap();
            let uris: Vec<&str> = text
                .lines()
                .filter_map(|line| line.trim().strip_prefix("CodeUri:"))
                .map(str::trim)
                .collect();
            assert!(!uris.is_empty(), "{} has no CodeUri", template.display());
            for uri in uris {
                let resolved = dir.join(uri).canonicalize().unwrap();
                assert_eq!(
                    resolved,
                    root.canonicalize().unwrap(),
                    "CodeUri of {}",
                    template.display()
                );
            }
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

    #[test]
    fn package_table_aligns_names_and_marks_missing_zips() {
        let table = package_table(&[
            ("note-dispatcher".to_owned(), Some(3 * 1024 * 1024 / 2)),
            ("secrets".to_owned(), None),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("function "), "{table}");
        assert!(lines[1].starts_with("note-dispatcher  "), "{table}");
        assert!(lines[1].ends_with("1.50 MiB"), "{table}");
        assert!(lines[2].starts_with("secrets          "), "{table}");
        assert!(lines[2].ends_with("missing"), "{table}");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{table}");
    }

    #[test]
    fn fallback_message_names_the_missing_target_and_the_x86_64_route() {
        let missing = arm64_fallback_message(Some(false));
        assert!(missing.contains("rustup target add aarch64-unknown-linux-gnu"));
        assert!(missing.contains("--x86-64 --zip"));
        let unknown = arm64_fallback_message(None);
        assert!(!unknown.contains("rustup target add"));
        assert!(unknown.contains("zig"));
    }
}
