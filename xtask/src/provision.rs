//! `cargo xtask bootstrap` and `cargo xtask deploy <integration>` (in progress).
//!
//! What exists so far: the input gathering ([`crate::input`]), the templates
//! ([`crate::config4me`]) and the SAM commands ([`crate::sam`]). The 4me record sync, Secrets
//! Manager writes and the SAM deploys are not implemented yet, so both commands print the
//! gathered input (never a secret), the records and the SAM commands, and stop: with `--dry-run`
//! successfully, otherwise with an error saying what is missing.

use std::path::Path;
use std::process::ExitCode;

use app_builder_core::fourme::{Endpoints, FourMeError};
use app_builder_core::secrets::{AwsSecretStore, SecretStore, SecretStoreError};
use clap::Args;

use crate::config4me;
use crate::deployer::{DeployError, SamDeployer, StackDeployer};
use crate::input::{self, Answers, InputArgs, Question, StdioPrompter};
use crate::sam;
use crate::sync::Action;

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
    /// AWS region (default: the SDK's, e.g. AWS_REGION or the profile's).
    #[arg(long)]
    region: Option<String>,
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
    /// AWS region (default: the SDK's, e.g. AWS_REGION or the profile's).
    #[arg(long)]
    region: Option<String>,
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
    /// A 4me call failed.
    #[error("4me: {0}")]
    FourMe(#[from] FourMeError),
    /// A secret store call failed.
    #[error("secret store: {0}")]
    Store(#[from] SecretStoreError),
    /// The stack deploy failed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// 4me or a stack answered something bootstrap/deploy cannot use.
    #[error("{0}")]
    Unexpected(String),
    /// Writing progress failed.
    #[error("cannot write progress: {0}")]
    Output(#[from] std::io::Error),
}

/// One record or resource handled by bootstrap or deploy, and what was (or, in a dry run, would
/// be) done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The kind of record (`product`, `webhook`, `AWS stack`, ...).
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// What was done; in a dry run `Create` has no id and the others the existing record's id.
    pub action: Action,
}

/// What `bootstrap` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapReport {
    /// Every record and resource, in order.
    pub steps: Vec<Step>,
    /// The engine stack's outputs (empty in a dry run).
    pub outputs: crate::deployer::StackOutputs,
    /// The URL the `app_instance.secrets-update` webhook delivers to (`SecretsApi` output).
    pub secrets_url: Option<String>,
}

/// What `deploy <integration>` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployReport {
    /// Every record and resource, in order.
    pub steps: Vec<Step>,
    /// The integration stack's outputs (empty in a dry run).
    pub outputs: crate::deployer::StackOutputs,
    /// The app offering's reference.
    pub offering_reference: String,
    /// The app offering's node id (`None` in a dry run before it exists).
    pub offering_id: Option<String>,
    /// The app offering's page in the provider's 4me account.
    pub offering_url: String,
}

impl BootstrapReport {
    /// Whether anything was (or would be) created, updated or deleted.
    pub fn changed(&self) -> bool {
        changed(&self.steps)
    }
}

impl DeployReport {
    /// Whether anything was (or would be) created, updated or deleted.
    pub fn changed(&self) -> bool {
        changed(&self.steps)
    }
}

fn changed(steps: &[Step]) -> bool {
    steps
        .iter()
        .any(|step| !matches!(step.action, Action::Unchanged(_)))
}

/// Bootstrap and deploy against explicit 4me endpoints, secret store and stack deployer: the CLI
/// wires AWS ones, the local demo its own; nothing is read from the process environment here.
pub struct Provisioner<'a, S: SecretStore, D: StackDeployer> {
    /// Workspace root (`config_4me/`, templates).
    pub root: &'a Path,
    /// Gathered input (domain, account, service instance, client id and secret, ...).
    pub answers: &'a Answers,
    /// 4me endpoints (the sandbox's in tests and the demo).
    pub endpoints: Endpoints,
    /// Where the provider secret is kept.
    pub store: &'a S,
    /// Deploys the stacks.
    pub deployer: &'a D,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Progress lines (never secrets).
    pub out: &'a mut dyn std::io::Write,
}

impl<S: SecretStore, D: StackDeployer> Provisioner<'_, S, D> {
    /// `cargo xtask bootstrap` (original-spec §6.5).
    pub async fn bootstrap(&mut self) -> Result<BootstrapReport, ProvisionError> {
        let config = config4me::load_bootstrap(self.root)?;
        let overrides = sam::engine_overrides(
            self.answers.get(&input::DOMAIN),
            self.answers.get(&input::ACCOUNT),
            self.answers.get(&input::ENABLED_OFFERINGS),
        );
        sam::check_overrides(self.root, &sam::ENGINE, &overrides)?;
        for line in config.plan_lines() {
            writeln!(self.out, "  {line}")?;
        }
        if self.dry_run {
            return Ok(BootstrapReport::default());
        }
        let _ = (&self.endpoints, self.store, self.deployer);
        Err(ProvisionError::NotImplemented("bootstrap"))
    }

    /// `cargo xtask deploy <integration>` (original-spec §6.6–6.8).
    pub async fn deploy(&mut self, integration: &str) -> Result<DeployReport, ProvisionError> {
        known_integration(integration)?;
        let config = config4me::load_integration(self.root, integration)?;
        let stack = sam::integration_stack(integration)
            .ok_or_else(|| ProvisionError::NoStack(integration.to_owned()))?;
        let overrides = sam::integration_overrides(
            self.answers.get(&input::DOMAIN),
            self.answers.get(&input::ACCOUNT),
            integration,
        );
        sam::check_overrides(self.root, &stack, &overrides)?;
        for line in config.plan_lines() {
            writeln!(self.out, "  {line}")?;
        }
        if self.dry_run {
            return Ok(DeployReport::default());
        }
        Err(ProvisionError::NotImplemented("deploy"))
    }
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

/// Writes the plain answers (secrets are never part of them).
fn print_answers(out: &mut dyn std::io::Write, answers: &Answers) -> std::io::Result<()> {
    writeln!(out, "input:")?;
    for (key, value) in answers.plain() {
        writeln!(out, "  {key} = {value}")?;
    }
    Ok(())
}

/// The AWS SDK configuration of `profile` and `region` (the SDK's own environment handling:
/// credentials, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...).
async fn aws_config(profile: &str, region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).profile_name(profile);
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    loader.load().await
}

/// The AWS store and SAM deployer of the CLI, and the 4me endpoints of `domain`
/// (`FOURME_*_URL` override them, e.g. for the sandbox).
async fn aws_wiring(
    root: &Path,
    answers: &Answers,
    region: Option<&str>,
) -> Result<(AwsSecretStore, SamDeployer, Endpoints), ProvisionError> {
    let profile = answers.get(&input::PROFILE);
    let config = aws_config(profile, region).await;
    let store = AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&config));
    let region = region
        .map(str::to_owned)
        .or_else(|| config.region().map(ToString::to_string));
    let deployer = SamDeployer::new(root, profile, region);
    let endpoints = Endpoints::from_env(answers.get(&input::DOMAIN))
        .map_err(|err| ProvisionError::Unexpected(err.to_string()))?;
    Ok((store, deployer, endpoints))
}

/// Runs `cargo xtask bootstrap`.
pub async fn bootstrap(root: &Path, args: &BootstrapArgs) -> Result<ExitCode, ProvisionError> {
    let answers = gather(&input::BOOTSTRAP_QUESTIONS, &args.input)?;
    let mut stdout = std::io::stdout();
    print_answers(&mut stdout, &answers)?;
    let (store, deployer, endpoints) = aws_wiring(root, &answers, args.region.as_deref()).await?;
    let mut provisioner = Provisioner {
        root,
        answers: &answers,
        endpoints,
        store: &store,
        deployer: &deployer,
        dry_run: args.dry_run,
        out: &mut stdout,
    };
    provisioner.bootstrap().await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `cargo xtask deploy <integration>`.
pub async fn deploy(root: &Path, args: &DeployArgs) -> Result<ExitCode, ProvisionError> {
    known_integration(&args.integration)?;
    let answers = gather(&input::DEPLOY_QUESTIONS, &args.input)?;
    let mut stdout = std::io::stdout();
    print_answers(&mut stdout, &answers)?;
    let (store, deployer, endpoints) = aws_wiring(root, &answers, args.region.as_deref()).await?;
    let mut provisioner = Provisioner {
        root,
        answers: &answers,
        endpoints,
        store: &store,
        deployer: &deployer,
        dry_run: args.dry_run,
        out: &mut stdout,
    };
    provisioner.deploy(&args.integration).await?;
    Ok(ExitCode::SUCCESS)
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
