//! `cargo xtask bootstrap` and `cargo xtask deploy <integration>` (in progress).
//!
//! What exists so far: the input gathering ([`crate::input`]) and the integration names. The
//! 4me record sync, Secrets Manager writes and the SAM deploys are not implemented yet, so both
//! commands print the gathered input (never a secret) and stop: with `--dry-run` successfully,
//! otherwise with an error saying what is missing.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::config4me;
use crate::input::{self, Answers, InputArgs, Question, StdioPrompter};

/// The integrations `cargo xtask deploy` knows, with their stack names.
pub const INTEGRATIONS: [(&str, &str); 3] = [
    ("note-dispatcher", "app-builder-note-dispatcher"),
    ("typeform", "app-builder-typeform"),
    ("lansweeper", "app-builder-lansweeper"),
];

/// Arguments of `cargo xtask bootstrap`.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Input flags.
    #[command(flatten)]
    input: InputArgs,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Arguments of `cargo xtask deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The integration: note-dispatcher, typeform or lansweeper.
    integration: String,
    /// Input flags.
    #[command(flatten)]
    input: InputArgs,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Errors of bootstrap and deploy.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Input gathering failed.
    #[error(transparent)]
    Input(#[from] input::InputError),
    /// The current directory is unknown.
    #[error("cannot determine the current directory: {0}")]
    CurrentDir(std::io::Error),
    /// `deploy` was given an unknown integration.
    #[error("unknown integration `{name}`; known: {known}")]
    UnknownIntegration {
        /// The name given.
        name: String,
        /// The known names, comma separated.
        known: String,
    },
    /// A `config_4me/` template is missing or invalid.
    #[error(transparent)]
    Config(#[from] config4me::ConfigError),
    /// The requested step is not implemented yet.
    #[error("{0} is not implemented yet (issue 5); use --dry-run to check the input")]
    NotImplemented(&'static str),
}

/// The stack of a known integration, or the error listing the known ones.
pub fn integration_stack(name: &str) -> Result<&'static str, ProvisionError> {
    INTEGRATIONS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, stack)| *stack)
        .ok_or_else(|| ProvisionError::UnknownIntegration {
            name: name.to_owned(),
            known: INTEGRATIONS
                .iter()
                .map(|(known, _)| *known)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Gathers the answers of `questions` from the process (current dir, environment, terminal).
fn gather(questions: &[Question], args: &InputArgs) -> Result<Answers, ProvisionError> {
    let cwd = std::env::current_dir().map_err(ProvisionError::CurrentDir)?;
    let sources = input::Sources::from_process(&cwd, questions)?;
    Ok(input::gather(
        questions,
        args,
        &sources,
        &mut StdioPrompter,
    )?)
}

/// Prints the plain answers (secrets are never part of them).
fn print_answers(command: &str, answers: &Answers) {
    eprintln!("xtask {command}: input");
    for (key, value) in answers.plain() {
        eprintln!("xtask {command}:   {key} = {value}");
    }
}

/// Prints the records the command creates or updates (create/update/unchanged needs the 4me
/// lookups, not implemented yet).
fn print_plan(command: &str, lines: &[String]) {
    eprintln!("xtask {command}: 4me records (create or update, found by source/sourceID)");
    for line in lines {
        eprintln!("xtask {command}:   {line}");
    }
}

/// Runs `cargo xtask bootstrap`.
pub fn bootstrap(root: &Path, args: &BootstrapArgs) -> Result<ExitCode, ProvisionError> {
    let config = config4me::load_bootstrap(root)?;
    let answers = gather(&input::BOOTSTRAP_QUESTIONS, &args.input)?;
    print_answers("bootstrap", &answers);
    let secret_given = answers
        .secret(&input::CLIENT_SECRET)
        .is_some_and(|secret| !secret.expose().is_empty());
    eprintln!(
        "xtask bootstrap:   {} = {}",
        input::CLIENT_SECRET.key,
        if secret_given { "(given)" } else { "(missing)" }
    );
    print_plan("bootstrap", &config.plan_lines());
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    Err(ProvisionError::NotImplemented("bootstrap"))
}

/// Runs `cargo xtask deploy <integration>`.
pub fn deploy(root: &Path, args: &DeployArgs) -> Result<ExitCode, ProvisionError> {
    let stack = integration_stack(&args.integration)?;
    let config = config4me::load_integration(root, &args.integration)?;
    let answers = gather(&input::DEPLOY_QUESTIONS, &args.input)?;
    print_answers("deploy", &answers);
    eprintln!(
        "xtask deploy: stack {stack}, 4me account https://{}.{}",
        answers.get(&input::ACCOUNT),
        answers.get(&input::DOMAIN)
    );
    print_plan("deploy", &config.plan_lines());
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    Err(ProvisionError::NotImplemented("deploy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_integrations_have_their_stacks_and_unknown_ones_list_them() {
        assert_eq!(
            integration_stack("typeform").unwrap(),
            "app-builder-typeform"
        );
        let err = integration_stack("slack").unwrap_err().to_string();
        assert!(
            err.contains("note-dispatcher, typeform, lansweeper"),
            "{err}"
        );
        assert!(err.contains("slack"), "{err}");
    }
}
