//! cfn-lint over every SAM template (`template.yaml`) of the repository.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::venv::Venv;

/// Directories never searched for templates (build output, VCS data, dependencies).
const SKIPPED_DIRS: &[&str] = &["target", "node_modules"];

/// Errors raised while linting.
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    /// A directory could not be listed.
    #[error("cannot list {path}: {source}")]
    ReadDir {
        /// Directory being listed.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// cfn-lint could not be started.
    #[error("cannot run cfn-lint: {0}")]
    Spawn(#[source] io::Error),
}

/// Every `template.yaml` below `root`, sorted, skipping hidden directories (`.git`, `.aws-sam`,
/// ...), `target` and `node_modules`.
pub fn find_templates(root: &Path) -> Result<Vec<PathBuf>, LintError> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|source| LintError::ReadDir {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| LintError::ReadDir {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_ref()) {
                    pending.push(entry.path());
                }
            } else if file_type.is_file() && name == "template.yaml" {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Lints every template found below `root`; `Ok(true)` when all pass or there is none.
pub fn run(venv: &Venv, root: &Path) -> Result<bool, LintError> {
    let templates = find_templates(root)?;
    if templates.is_empty() {
        eprintln!("xtask: no template.yaml in the repository, skipping cfn-lint");
        return Ok(true);
    }
    for template in &templates {
        eprintln!("xtask: cfn-lint {}", template.display());
    }
    let status = Command::new(venv.bin("cfn-lint"))
        .args(&templates)
        .current_dir(root)
        .status()
        .map_err(LintError::Spawn)?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::find_templates;
    use std::fs;

    #[test]
    fn finds_templates_and_skips_build_and_hidden_dirs() {
        let root = std::env::temp_dir().join(format!("xtask-lint-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for dir in ["a/aws", "b", "target/x", ".aws-sam/build", "node_modules/m"] {
            fs::create_dir_all(root.join(dir)).unwrap();
            fs::write(root.join(dir).join("template.yaml"), "x").unwrap();
        }
        fs::write(root.join("b/other.yaml"), "x").unwrap();
        let found = find_templates(&root).unwrap();
        let _ = fs::remove_dir_all(&root);
        assert_eq!(
            found,
            vec![
                root.join("a/aws/template.yaml"),
                root.join("b/template.yaml")
            ]
        );
    }
}
