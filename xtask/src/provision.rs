//! `cargo xtask bootstrap` and `cargo xtask deploy <integration>` (in progress).
//!
//! What exists so far: the input gathering ([`crate::input`]), the templates
//! ([`crate::config4me`]) and the SAM commands ([`crate::sam`]). The 4me record sync, Secrets
//! Manager writes and the SAM deploys are not implemented yet, so both commands print the
//! gathered input (never a secret), the records and the SAM commands, and stop: with `--dry-run`
//! successfully, otherwise with an error saying what is missing.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::config4me;
use crate::input::{self, Answers, InputArgs, Question, StdioPrompter};
use crate::sam::{self, Stack};

/// The integrations `cargo xtask deploy` knows.
pub const INTEGRATIONS: [&str; 3] = ["note-dispatcher", "typeform", "lansweeper"];

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
    /// A SAM command would be wrong.
    #[error(transparent)]
    Sam(#[from] sam::SamError),
    /// The integration has no SAM template yet.
    #[error("no SAM template for `{0}` yet")]
    NoStack(String),
    /// The requested step is not implemented yet.
    #[error("{0} is not implemented yet (issue 5); use --dry-run to check the input")]
    NotImplemented(&'static str),
}

/// Checks that `name` is a known integration, else the error listing the known ones.
pub fn known_integration(name: &str) -> Result<(), ProvisionError> {
    if INTEGRATIONS.contains(&name) {
        Ok(())
    } else {
        Err(ProvisionError::UnknownIntegration {
            name: name.to_owned(),
            known: INTEGRATIONS.join(", "),
        })
    }
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
    eprintln!("xtask {command}: 4me records (create or update)");
    for line in lines {
        eprintln!("xtask {command}:   {line}");
    }
}

/// Prints the SAM commands the command runs.
fn print_sam(command: &str, stack: &Stack, profile: &str, overrides: &[(String, String)]) {
    eprintln!(
        "xtask {command}: AWS stack {} (create or update)",
        stack.name
    );
    eprintln!(
        "xtask {command}:   sam {}",
        sam::build_args(stack).join(" ")
    );
    eprintln!(
        "xtask {command}:   sam {}",
        sam::deploy_args(stack, profile, None, overrides).join(" ")
    );
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
    let overrides = sam::engine_overrides(
        answers.get(&input::DOMAIN),
        answers.get(&input::ACCOUNT),
        answers.get(&input::ENABLED_OFFERINGS),
    );
    sam::check_overrides(root, &sam::ENGINE, &overrides)?;
    print_sam(
        "bootstrap",
        &sam::ENGINE,
        answers.get(&input::PROFILE),
        &overrides,
    );
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    Err(ProvisionError::NotImplemented("bootstrap"))
}

/// Runs `cargo xtask deploy <integration>`.
pub fn deploy(root: &Path, args: &DeployArgs) -> Result<ExitCode, ProvisionError> {
    known_integration(&args.integration)?;
    let config = config4me::load_integration(root, &args.integration)?;
    let stack = sam::integration_stack(&args.integration)
        .ok_or_else(|| ProvisionError::NoStack(args.integration.clone()))?;
    let answers = gather(&input::DEPLOY_QUESTIONS, &args.input)?;
    print_answers("deploy", &answers);
    eprintln!(
        "xtask deploy: 4me account https://{}.{}",
        answers.get(&input::ACCOUNT),
        answers.get(&input::DOMAIN)
    );
    let reference = config
        .offering
        .input
        .get("reference")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(&args.integration);
    let overrides = sam::integration_overrides(
        answers.get(&input::DOMAIN),
        answers.get(&input::ACCOUNT),
        reference,
    );
    sam::check_overrides(root, &stack, &overrides)?;
    print_sam("deploy", &stack, answers.get(&input::PROFILE), &overrides);
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
    fn unknown_integrations_list_the_known_ones() {
        known_integration("typeform").unwrap();
        let err = known_integration("slack").unwrap_err().to_string();
        assert!(
            err.contains("note-dispatcher, typeform, lansweeper"),
            "{err}"
        );
        assert!(err.contains("slack"), "{err}");
    }
}
