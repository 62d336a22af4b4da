//! `cargo xtask schema pull`: takes a newer 4me schema snapshot by introspection from a real 4me
//! account (the provider's OAuth application, as bootstrap uses it), prints what changed against
//! the committed snapshot (`crates/schema/4me.graphql`) and writes the new one.
//!
//! The introspection query and its conversion to SDL come from `cynic-introspection`; the
//! comparison is `app_builder_schema::diff`. The committed header (where the snapshot came from
//! and where it is lenient) is kept and a line says when and from where it was refreshed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use app_builder_core::fourme::{ClientSettings, Credentials, Endpoints, FourMeClient};
use app_builder_schema::{Change, Contract, SNAPSHOT_FILE, diff, snapshot};
use clap::{Args, Subcommand};
use cynic_introspection::{IntrospectionQuery, SpecificationVersion};
use serde_json::Value;

use crate::input::{self, InputArgs, Question};
use crate::provision::ProvisionError;

/// `cargo xtask schema ...`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    #[command(subcommand)]
    command: SchemaCommand,
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Introspect a 4me account, print the difference with the snapshot, write the new one.
    Pull(PullArgs),
}

/// Flags of `cargo xtask schema pull`.
#[derive(Debug, Args)]
struct PullArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Where to write the new snapshot (default: the committed `crates/schema/4me.graphql`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the difference only; write nothing.
    #[arg(long)]
    check: bool,
}

/// What `schema pull` asks: the account to introspect and the provider's OAuth application.
const QUESTIONS: [Question; 4] = [
    input::DOMAIN,
    input::ACCOUNT,
    input::CLIENT_ID,
    input::CLIENT_SECRET,
];

/// Runs `cargo xtask schema ...`.
pub async fn run(root: &Path, args: &SchemaArgs) -> Result<ExitCode, ProvisionError> {
    match &args.command {
        SchemaCommand::Pull(pull) => pull_snapshot(root, pull).await,
    }
}

async fn pull_snapshot(root: &Path, args: &PullArgs) -> Result<ExitCode, ProvisionError> {
    let answers = crate::provision::gather(&QUESTIONS, &args.input)?;
    let domain = answers.get(&input::DOMAIN);
    let account = answers.get(&input::ACCOUNT);
    let secret = crate::provision::client_secret(&answers)?;
    let endpoints =
        Endpoints::from_env(domain).map_err(|err| ProvisionError::Unexpected(err.to_string()))?;
    let client = FourMeClient::new(
        endpoints,
        account,
        Credentials::new(answers.get(&input::CLIENT_ID), secret),
        ClientSettings::from_env(),
    )
    .map_err(|err| ProvisionError::Unexpected(err.to_string()))?;
    let operation =
        IntrospectionQuery::with_capabilities(SpecificationVersion::June2018.capabilities());
    let data: Value = client
        .query(&operation.query, &serde_json::json!({}))
        .await?;
    let sdl = to_sdl(data)?;
    let pulled = Contract::parse(&sdl, "introspection.graphql").map_err(|e| {
        ProvisionError::Unexpected(format!("the introspected schema is not valid: {e}"))
    })?;
    let changes = diff(snapshot().schema(), pulled.schema());
    print_changes(&changes);
    if args.check {
        return Ok(ExitCode::SUCCESS);
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("crates/schema").join(SNAPSHOT_FILE));
    let content = format!(
        "{}# Refreshed by `cargo xtask schema pull`: introspection of {account} on {domain}, {}.\n#\n{sdl}",
        header(),
        today()
    );
    std::fs::write(&out, content).map_err(ProvisionError::Output)?;
    println!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The introspection answer as SDL.
fn to_sdl(data: Value) -> Result<String, ProvisionError> {
    let answer: IntrospectionQuery = serde_json::from_value(data)
        .map_err(|e| ProvisionError::Unexpected(format!("unexpected introspection answer: {e}")))?;
    let schema = answer
        .into_schema()
        .map_err(|e| ProvisionError::Unexpected(format!("unusable introspection answer: {e}")))?;
    Ok(schema.to_sdl())
}

/// The committed snapshot's leading comment block (its provenance), without refresh lines.
fn header() -> String {
    app_builder_schema::SNAPSHOT_SDL
        .lines()
        .take_while(|line| line.starts_with('#'))
        .filter(|line| !line.starts_with("# Refreshed by"))
        .map(|line| format!("{line}\n"))
        .collect()
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

fn print_changes(changes: &[Change]) {
    let count = |f: fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
    println!(
        "schema: {} added, {} removed, {} changed against the snapshot",
        count(|c| matches!(c, Change::Added(_))),
        count(|c| matches!(c, Change::Removed(_))),
        count(|c| matches!(c, Change::Changed(..))),
    );
    for change in changes {
        println!("  {change}");
    }
}
