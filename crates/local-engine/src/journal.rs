//! What the engine handled: one [`Entry`] per invocation, for the console, replays and
//! recordings.
//!
//! An entry keeps the function, where the invocation came from, the verdict, the status, the
//! duration, the invocation's log lines (its EMF metrics line last, as in CloudWatch Logs) and
//! its counters, and the [`Input`] that started it, so that it can be sent again. The input of
//! an HTTP request is kept as received, body included, and is never shown: a 4me
//! `app_instance.secrets-update` delivery carries the customer's secrets. A recording
//! ([`Journal::record_to`]) writes the inputs, one JSON line each, to a file only its owner can
//! read.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

use app_builder_core::bus::InstallationChanged;
use app_builder_core::metrics::{self, Counters};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How many entries the engine keeps (the oldest go first).
pub const KEPT_ENTRIES: usize = 1000;

/// What started an invocation, enough to start it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Input {
    /// An HTTP request as it reached the engine (routed by its path again).
    Http {
        /// The method.
        method: String,
        /// Path and query.
        uri: String,
        /// The headers, in order.
        headers: Vec<(String, String)>,
        /// The body, base64.
        body: String,
    },
    /// An event put on the engine's bus (delivered by the rules again).
    Event {
        /// The event's detail.
        detail: InstallationChanged,
    },
    /// A scheduled event for one function.
    Schedule {
        /// The function (`<stack>-<LogicalId>`).
        function: String,
    },
    /// A message of one function's queue.
    Queue {
        /// The function.
        function: String,
        /// The message body.
        body: String,
    },
}

/// A recorded input: the id of the entry it started, and the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The entry's id in the engine that recorded it.
    pub id: u64,
    /// The input.
    pub input: Input,
}

/// What became of an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Verdict {
    /// Handled (for a webhook: verified and applied).
    Accepted,
    /// Seen before: answered without doing the work again.
    Duplicate,
    /// Refused (4xx) by the checks named.
    Rejected {
        /// The checks (`signature`, `expired`, `account`, ...).
        checks: Vec<String>,
    },
    /// Failed (5xx or a function error): the sender retries.
    Failed,
}

impl Verdict {
    /// The verdict of an invocation answered `status` that counted `counters`.
    pub fn of(status: u16, counters: &Counters) -> Verdict {
        if status >= 500 {
            Verdict::Failed
        } else if status >= 400 {
            Verdict::Rejected {
                checks: counters
                    .rejections()
                    .map(|(check, _)| check.to_owned())
                    .collect(),
            }
        } else if counters.get(metrics::DUPLICATES) > 0.0 {
            Verdict::Duplicate
        } else {
            Verdict::Accepted
        }
    }

    /// The outcome's name (`accepted`, `duplicate`, `rejected`, `failed`).
    pub fn outcome(&self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Duplicate => "duplicate",
            Verdict::Rejected { .. } => "rejected",
            Verdict::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Rejected { checks } if !checks.is_empty() => {
                write!(f, "rejected: {}", checks.join(", "))
            }
            other => f.write_str(other.outcome()),
        }
    }
}

/// One invocation the engine ran.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Its number, counting from 1 in the order invocations ended.
    pub id: u64,
    /// When it started (RFC 3339).
    pub at: String,
    /// The function (`<stack>-<LogicalId>`).
    pub function: String,
    /// Where it came from (`POST /secrets/`, `Installation changed (installed)`, `schedule`,
    /// `queue message`).
    pub source: String,
    /// The webhook delivery id, if the request carried one.
    pub delivery: Option<String>,
    /// The customer account it was about, when known.
    pub account: Option<String>,
    /// The status answered (for a queue message: 200, or 500 when it failed).
    pub status: u16,
    /// What became of it.
    pub verdict: Verdict,
    /// How long it took.
    pub duration_ms: f64,
    /// Its log lines, the EMF metrics line last.
    pub logs: Vec<String>,
    /// What it counted.
    pub metrics: BTreeMap<String, f64>,
    /// The entry it replays.
    pub replay_of: Option<u64>,
    /// What started it (never shown: see the module docs).
    #[serde(skip)]
    pub input: Input,
}

/// The customer account an invocation was about: the `account` its log lines carry (a
/// field of the line or of its span), else the event's.
pub fn account_of(input: &Input, logs: &[String]) -> Option<String> {
    let from_logs = logs.iter().find_map(|line| {
        let line: Value = serde_json::from_str(line).ok()?;
        [&line["span"]["account"], &line["fields"]["account"]]
            .into_iter()
            .find_map(|value| value.as_str().filter(|a| !a.is_empty()))
            .map(str::to_owned)
    });
    from_logs.or_else(|| match input {
        Input::Event { detail } => Some(detail.account.clone()),
        _ => None,
    })
}

/// The entries, the counters summed per function, and the recording.
#[derive(Debug, Default)]
pub struct Journal {
    inner: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    next: u64,
    entries: VecDeque<Entry>,
    totals: BTreeMap<String, Counters>,
    recording: Option<std::fs::File>,
}

impl Journal {
    /// Appends every input from now on to `path` (created, owner-only), one [`Recorded`] per
    /// line.
    pub fn record_to(&self, path: &Path) -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        self.lock().recording = Some(file);
        Ok(())
    }

    /// Keeps `entry` under the next id (returned): adds its counters to its function's and
    /// records its input. Ids follow the order invocations end in, so that a reader asking for
    /// the entries after the last one it saw misses none.
    pub fn push(&self, mut entry: Entry, counters: &Counters) -> u64 {
        let mut kept = self.lock();
        kept.next += 1;
        entry.id = kept.next;
        let id = entry.id;
        kept.totals
            .entry(entry.function.clone())
            .or_default()
            .add(counters);
        if let Some(file) = kept.recording.as_mut() {
            let line = serde_json::to_string(&Recorded {
                id: entry.id,
                input: entry.input.clone(),
            })
            .unwrap_or_default();
            if let Err(error) = writeln!(file, "{line}") {
                tracing::warn!(%error, "cannot write the recording");
            }
        }
        kept.entries.push_back(entry);
        if kept.entries.len() > KEPT_ENTRIES {
            kept.entries.pop_front();
        }
        id
    }

    /// The entries after `after`, oldest first.
    pub fn entries_after(&self, after: u64) -> Vec<Entry> {
        self.lock()
            .entries
            .iter()
            .filter(|entry| entry.id > after)
            .cloned()
            .collect()
    }

    /// The entry `id`, if still kept.
    pub fn entry(&self, id: u64) -> Option<Entry> {
        self.lock()
            .entries
            .iter()
            .find(|entry| entry.id == id)
            .cloned()
    }

    /// Every function's counters summed since the start.
    pub fn totals(&self) -> BTreeMap<String, Counters> {
        self.lock().totals.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verdicts_follow_the_status_the_duplicate_and_the_checks() {
        let counted = |work: fn()| async move { metrics::record(async { work() }).await.1 };
        let plain = counted(|| {}).await;
        assert_eq!(Verdict::of(200, &plain), Verdict::Accepted);
        assert_eq!(Verdict::of(502, &plain), Verdict::Failed);
        let seen = counted(metrics::duplicate).await;
        assert_eq!(Verdict::of(200, &seen).to_string(), "duplicate");
        let refused = counted(|| metrics::rejected("signature")).await;
        assert_eq!(
            Verdict::of(400, &refused).to_string(),
            "rejected: signature"
        );
    }

    #[test]
    fn the_account_comes_from_the_log_lines_else_the_event() {
        let logs = vec![
            r#"{"level":"INFO","fields":{"message":"x"}}"#.to_owned(),
            r#"{"level":"INFO","fields":{"message":"y"},"span":{"account":"acme","name":"delivery"}}"#.to_owned(),
        ];
        let http = Input::Http {
            method: "POST".into(),
            uri: "/".into(),
            headers: Vec::new(),
            body: String::new(),
        };
        assert_eq!(account_of(&http, &logs).as_deref(), Some("acme"));
        assert_eq!(account_of(&http, &logs[..1]), None);
    }

    #[test]
    fn a_recording_is_one_json_line_per_input_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("run.jsonl");
        let journal = Journal::default();
        journal.record_to(&path).expect("recording");
        let input = Input::Queue {
            function: "f".into(),
            body: "{}".into(),
        };
        let id = journal.push(
            Entry {
                id: 0,
                at: String::new(),
                function: "f".into(),
                source: "queue message".into(),
                delivery: None,
                account: None,
                status: 200,
                verdict: Verdict::Accepted,
                duration_ms: 1.0,
                logs: Vec::new(),
                metrics: BTreeMap::new(),
                replay_of: None,
                input: input.clone(),
            },
            &Counters::default(),
        );
        let text = std::fs::read_to_string(&path).expect("recorded");
        let recorded: Recorded = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(recorded, Recorded { id, input });
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(journal.entries_after(0).len(), 1);
        assert!(journal.entry(id).is_some());
        assert_eq!(
            serde_json::to_value(journal.entry(id)).expect("json")["input"],
            Value::Null,
            "the input is never shown"
        );
    }
}
