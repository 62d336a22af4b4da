//! `cargo xtask replay`: sends a recording of `cargo xtask local --record FILE` to a local
//! engine again, or (`--dlq <integration>`) re-drives an integration's dead-letter queues on
//! AWS ([`crate::redrive`]).
//!
//! A recording holds one [`Recorded`] input per line. Each is posted to the engine's
//! `/_console/inject`, which sends it as the console's replay button does: a 4me delivery the
//! engine's own local 4me issued is signed again (a new token of the same delivery, so the
//! functions see it as the duplicate it is), any other request as received, an event put on
//! the bus again. Without `--engine` a local engine is started for the replay, as
//! `cargo xtask local` starts one: its local 4me has new keys, so a recorded 4me delivery fails
//! its signature check there — as a token signed for another engine should.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use app_builder_local::Recorded;
use clap::Args;

use crate::redrive::{self, Redrive};

/// Arguments of `cargo xtask replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A recording of `cargo xtask local --record FILE`.
    #[arg(required_unless_present = "dlq", conflicts_with = "dlq")]
    pub file: Option<PathBuf>,
    /// Only the recorded entry with this id (repeat for more).
    #[arg(long, value_name = "ID")]
    pub only: Vec<u64>,
    /// The running local engine to send to (the URL `cargo xtask local` prints); without it a
    /// local engine is started for the replay.
    #[arg(long, value_name = "URL")]
    pub engine: Option<String>,
    /// Re-drives the dead-letter queues of this integration (`lansweeper`, `typeform`,
    /// `note-dispatcher`) on AWS instead.
    #[arg(long, value_name = "INTEGRATION")]
    pub dlq: Option<String>,
    /// The integration's offering reference (default: its name).
    #[arg(long, requires = "dlq")]
    pub offering: Option<String>,
    /// The engine's application name (the engine's bus is `<app>-<domain>`).
    #[arg(long, default_value = "4me-app-builder", requires = "dlq")]
    pub app: String,
    /// The AWS profile.
    #[arg(long, default_value = "default", requires = "dlq")]
    pub profile: String,
    /// The AWS region (default: the profile's).
    #[arg(long, requires = "dlq")]
    pub region: Option<String>,
    /// Counts and lists what would be re-driven; changes nothing.
    #[arg(long, requires = "dlq")]
    pub dry_run: bool,
    /// Re-drives without asking.
    #[arg(long, short = 'y', requires = "dlq")]
    pub yes: bool,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The recording cannot be read.
    #[error("{path}: {message}")]
    Recording {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The engine could not be reached or refused an input.
    #[error("engine {url}: {message}")]
    Engine {
        /// The engine's URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// Starting a local engine failed.
    #[error(transparent)]
    Local(#[from] crate::demo::DemoError),
    /// The re-drive failed.
    #[error(transparent)]
    Redrive(#[from] redrive::RedriveError),
    /// Output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs `cargo xtask replay`.
pub async fn replay(root: &Path, args: &ReplayArgs) -> Result<ExitCode, ReplayError> {
    if let Some(integration) = &args.dlq {
        return redrive_dlq(integration, args).await;
    }
    let Some(path) = &args.file else {
        return Ok(ExitCode::FAILURE);
    };
    let recorded = read_recording(path, &args.only)?;
    let mut out = std::io::stdout();
    match &args.engine {
        Some(url) => {
            send_all(url, &recorded, &mut out).await?;
        }
        None => {
            let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let local = crate::demo::LocalArgs {
                engine_listen: any,
                sandbox_listen: any,
                schedule_secs: 0,
                record: None,
            };
            let stage = crate::demo::start_local(root, &local).await?;
            writeln!(out)?;
            writeln!(out, "== Replaying into the local engine at {}", stage.url())?;
            send_all(stage.url(), &recorded, &mut out).await?;
            stage.settle().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The inputs of the recording at `path`, only those with an id in `only` if any.
pub fn read_recording(path: &Path, only: &[u64]) -> Result<Vec<Recorded>, ReplayError> {
    let failed = |message: String| ReplayError::Recording {
        path: path.to_owned(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    let mut recorded = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| failed(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: Recorded =
            serde_json::from_str(&line).map_err(|e| failed(format!("line {}: {e}", number + 1)))?;
        if only.is_empty() || only.contains(&entry.id) {
            recorded.push(entry);
        }
    }
    if let Some(missing) = only
        .iter()
        .find(|id| !recorded.iter().any(|r| r.id == **id))
    {
        return Err(failed(format!("no entry #{missing}")));
    }
    Ok(recorded)
}

/// Posts each input to the engine at `url`, then prints what the engine made of them; returns
/// the engine's entries since (id, one line each).
pub async fn send_all(
    url: &str,
    recorded: &[Recorded],
    out: &mut dyn Write,
) -> Result<Vec<(u64, String)>, ReplayError> {
    let url = url.trim_end_matches('/');
    let failed = |message: String| ReplayError::Engine {
        url: url.to_owned(),
        message,
    };
    let http = reqwest::Client::new();
    let before = entries_after(&http, url, 0)
        .await
        .map_err(failed)?
        .last()
        .map_or(0, |entry| entry.0);
    for entry in recorded {
        let answer = http
            .post(format!("{url}/_console/inject"))
            .json(&entry.input)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        let message = body["message"].as_str().unwrap_or_default();
        if !status.is_success() {
            return Err(failed(format!("#{}: {message}", entry.id)));
        }
        writeln!(out, "  #{} {}: {message}", entry.id, describe(&entry.input))?;
    }
    // Events the replay put on the bus are handled after the answers: wait a moment for them.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let handled = entries_after(&http, url, before).await.map_err(failed)?;
    writeln!(out, "The engine handled:")?;
    for (id, line) in &handled {
        writeln!(out, "  #{id} {line}")?;
    }
    Ok(handled)
}

/// The engine's entries after `after`: (id, one line about it).
async fn entries_after(
    http: &reqwest::Client,
    url: &str,
    after: u64,
) -> Result<Vec<(u64, String)>, String> {
    let entries: serde_json::Value = http
        .get(format!("{url}/_console/entries?after={after}"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(entries
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let verdict = &entry["verdict"];
            let checks: Vec<&str> = verdict["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str())
                .collect();
            let mut outcome = verdict["outcome"].as_str().unwrap_or("?").to_owned();
            if !checks.is_empty() {
                outcome = format!("{outcome}: {}", checks.join(", "));
            }
            (
                entry["id"].as_u64().unwrap_or(0),
                format!(
                    "{} <- {} -> {} {outcome}",
                    entry["function"].as_str().unwrap_or("?"),
                    entry["source"].as_str().unwrap_or("?"),
                    entry["status"]
                ),
            )
        })
        .collect())
}

fn describe(input: &app_builder_local::Input) -> String {
    match input {
        app_builder_local::Input::Http { method, uri, .. } => format!("{method} {uri}"),
        app_builder_local::Input::Event { detail } => {
            format!("Installation changed ({})", detail.step.as_str())
        }
        app_builder_local::Input::Schedule { function } => format!("schedule of {function}"),
        app_builder_local::Input::Queue { function, .. } => format!("queue message of {function}"),
    }
}

async fn redrive_dlq(integration: &str, args: &ReplayArgs) -> Result<ExitCode, ReplayError> {
    if !crate::provision::INTEGRATIONS.contains(&integration) {
        eprintln!(
            "xtask replay: unknown integration `{integration}` (known: {})",
            crate::provision::INTEGRATIONS.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    let offering = args.offering.as_deref().unwrap_or(integration);
    let config = crate::provision::aws_config(&args.profile, args.region.as_deref()).await;
    let redrive = Redrive::new(&config, &args.app);
    let steps = redrive.plan(integration, offering).await?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "Dead-letter queues of {integration} (offering {offering}):"
    )?;
    let mut confirm = |question: &str| {
        print!("{question} [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).is_ok()
            && matches!(answer.trim(), "y" | "Y" | "yes")
    };
    redrive::redrive(
        &redrive,
        &steps,
        args.dry_run,
        args.yes,
        &mut out,
        &mut confirm,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits until the install's deliveries are all handled. The local 4me sends its webhooks
    /// on tasks of its own, which `settle` (the bus) does not count: the engine's journal must
    /// also have had no new entry for half a second.
    async fn quiet(running: &crate::demo::Running, http: &reqwest::Client) {
        let mut last = None;
        loop {
            assert!(running.settle().await);
            let entries = entries_after(http, running.url(), 0).await.unwrap();
            let now = entries.last().map(|entry| entry.0);
            if now.is_some() && now == last {
                return;
            }
            last = now;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// A recording of a local engine sent to it again: each 4me delivery is signed again by
    /// its local 4me and answered as the duplicate it is; `--only` picks entries; sent to
    /// another engine (another local 4me, other keys) the deliveries fail their signature.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recording_sent_again_is_handled_once() {
        let root = crate::test::workspace_root();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.jsonl");
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let args = crate::demo::LocalArgs {
            engine_listen: any,
            sandbox_listen: any,
            schedule_secs: 0,
            record: Some(file.clone()),
        };
        let running = crate::demo::start_local(&root, &args).await.unwrap();
        let http = reqwest::Client::new();
        let installed = http
            .post(format!("{}/_console/actions/install", running.url()))
            .form(&[("offering", "typeform"), ("account", "acme")])
            .send()
            .await
            .unwrap();
        assert!(installed.status().is_success(), "{installed:?}");
        quiet(&running, &http).await;

        let recorded = read_recording(&file, &[]).unwrap();
        let deliveries: Vec<&Recorded> = recorded
            .iter()
            .filter(|r| matches!(&r.input, app_builder_local::Input::Http { uri, .. } if uri.starts_with("/secrets")))
            .collect();
        assert!(deliveries.len() >= 3, "{recorded:?}");
        assert!(
            recorded
                .iter()
                .any(|r| matches!(r.input, app_builder_local::Input::Event { .. })),
            "the installation events are recorded too"
        );
        let mut out = Vec::new();
        let handled = send_all(running.url(), &recorded, &mut out).await.unwrap();
        let printed = String::from_utf8_lossy(&out);
        assert!(
            printed.contains("signed again by the local 4me"),
            "{printed}"
        );
        let secrets: Vec<&String> = handled
            .iter()
            .map(|(_, line)| line)
            .filter(|line| line.contains("<- POST /secrets/"))
            .collect();
        assert_eq!(secrets.len(), deliveries.len(), "{handled:?}");
        for line in secrets {
            assert!(line.ends_with("200 duplicate"), "{line}");
        }

        let first = deliveries[0].id;
        assert_eq!(read_recording(&file, &[first]).unwrap().len(), 1);
        assert!(read_recording(&file, &[u64::MAX]).is_err());

        let other = crate::demo::start_local(
            &root,
            &crate::demo::LocalArgs {
                record: None,
                ..args
            },
        )
        .await
        .unwrap();
        let only = read_recording(&file, &[first]).unwrap();
        let handled = send_all(other.url(), &only, &mut out).await.unwrap();
        assert_eq!(handled.len(), 1, "{handled:?}");
        assert!(
            handled[0].1.ends_with("400 rejected: signature"),
            "{handled:?}"
        );
    }
}
