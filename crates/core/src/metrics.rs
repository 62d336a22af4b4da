//! What every function counts, written as CloudWatch Embedded Metric Format (EMF).
//!
//! Each invocation runs inside [`record`]: handlers anywhere below it add to the invocation's
//! counters ([`count`], [`rejected`], [`duplicate`], [`http_outcome`]) without a parameter
//! threaded through every call, and at the end the counters become one EMF document
//! ([`Counters::emf`]). In Lambda, [`emit`] writes it to stdout as one line; CloudWatch Logs
//! extracts the metrics from it (no agent, no `PutMetricData` call, no extra permission). The
//! local engine takes the same counters for its console.
//!
//! The format (CloudWatch's "Specification: Embedded metric format"): a JSON object with an
//! `_aws` member holding `Timestamp` (ms since the epoch) and `CloudWatchMetrics`, a list of
//! directives naming the `Namespace`, the `Dimensions` (lists of member names) and the `Metrics`
//! (`Name`, `Unit`); the dimension values and metric values are members of the object itself.
//!
//! - Namespace: one per engine, `<app>/<domain>` (`4me-app-builder/4me.com`).
//! - Dimensions: `function` (the binary: `secrets`, `typeform`, ...) and `offering` (the
//!   integration's offering reference; `engine` for the shared secrets function). Never an
//!   account: a dimension value is a separate metric per value, and customers are many.
//!
//! Why not a metrics crate: the `metrics` facade keeps one process-wide recorder, while the local
//! engine runs every function in one process and needs each invocation's counters apart; the
//! format itself is one JSON object.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::config::{ENV_BOOTSTRAP_APP, ENV_DOMAIN, ENV_OFFERING_REFERENCE, Settings};

/// Invocations (1 per invocation).
pub const INVOCATIONS: &str = "Invocations";
/// Time the invocation took, in milliseconds.
pub const DURATION: &str = "Duration";
/// HTTP requests answered 2xx that did work (a duplicate counts as [`DELIVERIES_DUPLICATE`]).
pub const DELIVERIES_ACCEPTED: &str = "DeliveriesAccepted";
/// HTTP requests answered 2xx without doing the work again: a delivery seen before.
pub const DELIVERIES_DUPLICATE: &str = "DeliveriesDuplicate";
/// HTTP requests answered 4xx; each also counts one `Rejection.<check>`.
pub const DELIVERIES_REJECTED: &str = "DeliveriesRejected";
/// HTTP requests answered 5xx (the sender retries).
pub const DELIVERIES_FAILED: &str = "DeliveriesFailed";
/// Prefix of the rejection counters, by the check that refused the request
/// (`Rejection.signature`, `Rejection.expired`, ...).
pub const REJECTED_PREFIX: &str = "Rejection.";
/// The check named when a 4xx named none.
pub const UNNAMED_CHECK: &str = "request";
/// Work seen before and not done again: a delivery, an event or a queue message handled once
/// already (an idempotency record).
pub const DUPLICATES: &str = "Duplicates";
/// Events that ended in a function error (Lambda retries them, then keeps them in the
/// failed-events queue).
pub const EVENTS_FAILED: &str = "EventsFailed";
/// `Installation changed` events the secrets function published.
pub const INSTALLATION_EVENTS_PUBLISHED: &str = "InstallationEventsPublished";
/// `Installation changed` events an integration handled.
pub const INSTALLATION_EVENTS_HANDLED: &str = "InstallationEventsHandled";
/// Syncs the schedule queued.
pub const SYNCS_QUEUED: &str = "SyncsQueued";
/// Assets a sync read.
pub const SYNC_ASSETS: &str = "SyncAssets";
/// Pages a sync read.
pub const SYNC_PAGES: &str = "SyncPages";
/// 4me answers 429 Too Many Requests.
pub const FOURME_THROTTLED: &str = "FourMeThrottled";
/// 4me requests retried after a 5xx, a timeout or a connection error.
pub const FOURME_RETRIES: &str = "FourMeRetries";
/// Lansweeper answers 429 Too Many Requests.
pub const LANSWEEPER_THROTTLED: &str = "LansweeperThrottled";
/// Lansweeper requests retried after a 5xx, a timeout or a connection error.
pub const LANSWEEPER_RETRIES: &str = "LansweeperRetries";

/// Every metric name the functions write, but the rejections by check ([`REJECTED_PREFIX`]).
pub const ALL: [&str; 17] = [
    INVOCATIONS,
    DURATION,
    DELIVERIES_ACCEPTED,
    DELIVERIES_DUPLICATE,
    DELIVERIES_REJECTED,
    DELIVERIES_FAILED,
    DUPLICATES,
    EVENTS_FAILED,
    INSTALLATION_EVENTS_PUBLISHED,
    INSTALLATION_EVENTS_HANDLED,
    SYNCS_QUEUED,
    SYNC_ASSETS,
    SYNC_PAGES,
    FOURME_THROTTLED,
    FOURME_RETRIES,
    LANSWEEPER_THROTTLED,
    LANSWEEPER_RETRIES,
];

/// The `offering` dimension of a function that serves every offering (the secrets function).
pub const ENGINE_OFFERING: &str = "engine";

/// Where an invocation's metrics go: the namespace and the dimension values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricScope {
    /// `<app>/<domain>`.
    pub namespace: String,
    /// The function's binary name.
    pub function: String,
    /// The offering reference, or [`ENGINE_OFFERING`].
    pub offering: String,
}

impl MetricScope {
    /// The scope of `function` from its settings: the namespace from `PARAM_BOOTSTRAP_APP` and
    /// `PARAM_4ME_DOMAIN`, the offering from `PARAM_OFFERING_REFERENCE` ([`ENGINE_OFFERING`]
    /// when unset). Missing settings fail start-up elsewhere; here they read as `unknown`.
    pub fn from_settings<L: Fn(&str) -> Option<String>>(
        settings: &Settings<L>,
        function: &str,
    ) -> MetricScope {
        let part = |name: &str| settings.optional(name).unwrap_or_else(|| "unknown".into());
        MetricScope {
            namespace: format!("{}/{}", part(ENV_BOOTSTRAP_APP), part(ENV_DOMAIN)),
            function: function.to_owned(),
            offering: settings
                .optional(ENV_OFFERING_REFERENCE)
                .unwrap_or_else(|| ENGINE_OFFERING.into()),
        }
    }
}

/// The counters of one invocation (or, summed, of many).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters(BTreeMap<String, f64>);

impl Counters {
    /// The value of `name` (0 when never counted).
    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// Every counter, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(name, value)| (name.as_str(), *value))
    }

    /// Adds every counter of `other` (durations add up too).
    pub fn add(&mut self, other: &Counters) {
        for (name, value) in other.iter() {
            *self.0.entry(name.to_owned()).or_default() += value;
        }
    }

    /// The rejections by check (`signature` → 2, ...).
    pub fn rejections(&self) -> impl Iterator<Item = (&str, f64)> {
        self.iter()
            .filter_map(|(name, value)| Some((name.strip_prefix(REJECTED_PREFIX)?, value)))
    }

    /// The EMF document of these counters in `scope`, stamped `timestamp_ms`.
    pub fn emf(&self, scope: &MetricScope, timestamp_ms: i64) -> Value {
        let definitions: Vec<Value> = self
            .0
            .keys()
            .map(|name| json!({"Name": name, "Unit": unit(name)}))
            .collect();
        let mut document = Map::new();
        document.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": scope.namespace,
                    "Dimensions": [["function", "offering"]],
                    "Metrics": definitions,
                }],
            }),
        );
        document.insert("function".into(), json!(scope.function));
        document.insert("offering".into(), json!(scope.offering));
        for (name, value) in self.iter() {
            document.insert(name.to_owned(), json!(value));
        }
        Value::Object(document)
    }
}

fn unit(name: &str) -> &'static str {
    if name == DURATION {
        "Milliseconds"
    } else {
        "Count"
    }
}

#[derive(Debug, Default)]
struct Recorder {
    counters: Mutex<BTreeMap<String, f64>>,
}

impl Recorder {
    fn add(&self, name: &str, value: f64) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *counters.entry(name.to_owned()).or_default() += value;
    }

    fn has(&self, name: &str) -> bool {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters.get(name).is_some_and(|value| *value > 0.0)
    }

    fn has_prefix(&self, prefix: &str) -> bool {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters.keys().any(|name| name.starts_with(prefix))
    }
}

tokio::task_local! {
    static CURRENT: Arc<Recorder>;
}

/// Runs `invocation` with fresh counters; returns its output and what it counted, plus
/// [`INVOCATIONS`] and [`DURATION`].
pub async fn record<F: Future>(invocation: F) -> (F::Output, Counters) {
    let recorder = Arc::new(Recorder::default());
    let started = Instant::now();
    let output = CURRENT.scope(Arc::clone(&recorder), invocation).await;
    recorder.add(INVOCATIONS, 1.0);
    recorder.add(DURATION, started.elapsed().as_secs_f64() * 1000.0);
    let counters = recorder
        .counters
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    (output, Counters(counters))
}

/// Runs `invocation` under [`record`] and writes its EMF line to stdout (the Lambda `main`s).
pub async fn emit<F: Future>(scope: &MetricScope, invocation: F) -> F::Output {
    emit_to(scope, invocation, &mut std::io::stdout()).await
}

/// [`emit`] writing to `out`.
pub async fn emit_to<F: Future>(
    scope: &MetricScope,
    invocation: F,
    out: &mut (dyn std::io::Write + Send),
) -> F::Output {
    let (output, counters) = record(invocation).await;
    let mut line = counters
        .emf(scope, chrono::Utc::now().timestamp_millis())
        .to_string();
    line.push('\n');
    // One write of one line: CloudWatch Logs reads it as one log event. Losing a metrics line
    // must not fail the invocation.
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    output
}

/// Adds `value` to the counter `name` of the current invocation (nothing outside [`record`]).
pub fn count(name: &str, value: u64) {
    // Counters stay far below 2^53; the conversion is exact.
    let _ = CURRENT.try_with(|recorder| recorder.add(name, value as f64));
}

/// Counts a request refused by `check` (`Rejection.<check>`).
pub fn rejected(check: &str) {
    count(&format!("{REJECTED_PREFIX}{check}"), 1);
}

/// Counts work found done before (an idempotency record): the invocation's 2xx is a duplicate.
pub fn duplicate() {
    count(DUPLICATES, 1);
}

/// Counts an HTTP answer by status class: accepted, duplicate (a 2xx after [`duplicate`]),
/// rejected (4xx; [`UNNAMED_CHECK`] when no check was counted) or failed (5xx).
pub fn http_outcome(status: http::StatusCode) {
    let _ = CURRENT.try_with(|recorder| {
        let name = if status.is_server_error() {
            DELIVERIES_FAILED
        } else if status.is_client_error() {
            if !recorder.has_prefix(REJECTED_PREFIX) {
                recorder.add(&format!("{REJECTED_PREFIX}{UNNAMED_CHECK}"), 1.0);
            }
            DELIVERIES_REJECTED
        } else if recorder.has(DUPLICATES) {
            DELIVERIES_DUPLICATE
        } else {
            DELIVERIES_ACCEPTED
        };
        recorder.add(name, 1.0);
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scope() -> MetricScope {
        MetricScope::from_settings(
            &Settings::from_lookup(|name| match name {
                "PARAM_BOOTSTRAP_APP" => Some("4me-app-builder".into()),
                "PARAM_4ME_DOMAIN" => Some("4me.com".into()),
                _ => None,
            }),
            "secrets",
        )
    }

    #[tokio::test]
    async fn an_invocation_becomes_one_emf_document() {
        let ((), counters) = record(async {
            rejected("signature");
            http_outcome(http::StatusCode::BAD_REQUEST);
            count(FOURME_THROTTLED, 2);
        })
        .await;
        let document = counters.emf(&scope(), 1_700_000_000_000);
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "4me-app-builder/4me.com");
        assert_eq!(directive["Dimensions"], json!([["function", "offering"]]));
        assert_eq!(document["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(document["function"], "secrets");
        assert_eq!(document["offering"], ENGINE_OFFERING);
        // Every metric the directive names is a member with a number, and the other way round.
        let named: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            named,
            [
                DELIVERIES_REJECTED,
                DURATION,
                FOURME_THROTTLED,
                INVOCATIONS,
                "Rejection.signature"
            ]
        );
        for name in &named {
            assert!(document[*name].is_number(), "{name}");
        }
        assert_eq!(document[FOURME_THROTTLED], 2.0);
        assert_eq!(directive["Metrics"][1]["Unit"], "Milliseconds");
        assert_eq!(directive["Metrics"][0]["Unit"], "Count");
    }

    #[tokio::test]
    async fn the_function_output_is_one_emf_line_per_invocation() {
        let mut out = Vec::new();
        let answer = emit_to(
            &scope(),
            async {
                duplicate();
                http_outcome(http::StatusCode::OK);
                "answer"
            },
            &mut out,
        )
        .await;
        assert_eq!(answer, "answer");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        let document: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(document[DELIVERIES_DUPLICATE], 1.0);
        assert_eq!(document[DUPLICATES], 1.0);
        assert_eq!(document[INVOCATIONS], 1.0);
        assert!(document["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    }

    #[tokio::test]
    async fn outcomes_follow_the_status_and_a_duplicate() {
        let outcome = |status: u16, seen_before: bool| async move {
            record(async {
                if seen_before {
                    duplicate();
                }
                http_outcome(http::StatusCode::from_u16(status).unwrap());
            })
            .await
            .1
        };
        assert_eq!(outcome(200, false).await.get(DELIVERIES_ACCEPTED), 1.0);
        let repeat = outcome(200, true).await;
        assert_eq!(repeat.get(DELIVERIES_DUPLICATE), 1.0);
        assert_eq!(repeat.get(DELIVERIES_ACCEPTED), 0.0);
        assert_eq!(outcome(503, false).await.get(DELIVERIES_FAILED), 1.0);
        // A 4xx without a named check still adds up: rejections by check == rejected deliveries.
        let unnamed = outcome(404, false).await;
        assert_eq!(unnamed.get(DELIVERIES_REJECTED), 1.0);
        assert_eq!(unnamed.rejections().collect::<Vec<_>>(), [("request", 1.0)]);
    }

    #[tokio::test]
    async fn counting_outside_an_invocation_does_nothing_and_counters_sum() {
        count(SYNC_ASSETS, 5);
        let ((), first) = record(async { count(SYNC_ASSETS, 3) }).await;
        let ((), second) = record(async { count(SYNC_ASSETS, 4) }).await;
        let mut total = Counters::default();
        total.add(&first);
        total.add(&second);
        assert_eq!(total.get(SYNC_ASSETS), 7.0);
        assert_eq!(total.get(INVOCATIONS), 2.0);
    }
}
