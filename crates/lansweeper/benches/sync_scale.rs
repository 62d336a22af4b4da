//! Sync-scale benchmark of the Lansweeper function: syncs of N sandbox assets through the real
//! SQS entry point, as chains of invocations, and the schedule fanning out to many customers.
//!
//! ```sh
//! cargo bench -p lansweeper --bench sync_scale -- [--mode paced|unpaced|both] [--step S]
//!     [--kill-every K] [--customers C] [--concurrency W] [--plot FILE] [--rows FILE] [N ...]
//! ```
//!
//! Three roles of this one binary, chosen by [`ROLE_ENV`]:
//! - the **driver** (no role) plays SQS and Lambda: it starts the servers, keeps the queue, hands
//!   each message to an idle worker with the invocation's deadline, re-delivers what a worker
//!   reports failed (after [`REDELIVERY`], a scaled-down visibility timeout), delivers the
//!   continuations a step sends when their delay is over, and with `--kill-every K` kills the
//!   worker in the middle of every K-th invocation (SIGKILL, as Lambda ends a timed-out
//!   invocation), starts a fresh one and delivers the message again;
//! - a **worker** is one Lambda execution environment: a fresh process (a cold start) that
//!   handles one message at a time with [`LansweeperFunction::handle_sqs`] (or the schedule
//!   with `handle_schedule`), its refresh queue writing each message it sends to stdout; the
//!   driver reads its peak RSS (`VmHWM`) and CPU time from `/proc`, so the emulators' memory is
//!   never counted;
//! - the **server** runs the 4me sandbox and the Lansweeper fake (seeded with the customers and a
//!   site of N assets), prints the setup as one JSON line and answers each `stats` line on its
//!   stdin with the request counters of both servers; it exits when its stdin closes.
//!
//! Workers share the state store and the secret store through one directory (the local stores
//! lock and write atomically across processes), as Lambda environments share DynamoDB and
//! Secrets Manager.
//!
//! `paced` uses the production pacing (Lansweeper 150 requests/min, 4me 20 per 2 s) with both
//! servers enforcing 4me's and Lansweeper's limits; `unpaced` removes client pacing and server
//! limits to show the compute cost. `--step S` forces each invocation's deadline S seconds after
//! it starts (no stop margin), so a sync becomes a chain of steps; without it the deadline is
//! Lambda's 900 s with the production margin.

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use app_builder_core::config::Settings;
use app_builder_core::context::{ContextConfig, ContextLoader};
use app_builder_core::fourme::{ClientSettings, Credentials, Endpoints, FourMeClient};
use app_builder_core::secrets::{
    LocalSecretStore, SecretDocument, SecretStore, customer_secret_name, provider_secret_name,
};
use app_builder_core::state::LocalStateStore;
use app_builder_sandbox::lansweeper::{LansweeperFake, SiteSpec};
use app_builder_sandbox::{InstallOptions, Sandbox};
use aws_lambda_events::sqs::SqsEvent;
use lansweeper::api::{ApiSettings, LansweeperApi};
use lansweeper::queue::{MAX_DELAY, SyncMessage};
use lansweeper::{FunctionSettings, LansweeperFunction, QueueError, RefreshQueue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// Selects the role of a re-executed copy of this binary (`worker` or `server`).
const ROLE_ENV: &str = "SYNC_SCALE_ROLE";
/// The [`RunSpec`] of the run, as JSON.
const RUN_ENV: &str = "SYNC_SCALE_RUN";
/// A worker's [`WorkerSetup`], as JSON.
const WORKER_ENV: &str = "SYNC_SCALE_WORKER";

const APP: &str = "4me-app-builder";
const PROVIDER: &str = "wdc";
const CUSTOMER: &str = "wdc-bench";
const OFFERING: &str = "lansweeper";
/// `LAST_SEEN_DAYS` default: assets unseen for longer are filtered out.
const LAST_SEEN_DAYS: i64 = 30;
/// How long a message a worker reported failed (or was killed on) stays invisible before it is
/// delivered again: SQS's visibility timeout (905 s in the template), scaled down.
const REDELIVERY: Duration = Duration::from_secs(1);
/// Lambda's deadline without `--step`.
const LAMBDA_TIMEOUT: Duration = Duration::from_secs(900);
/// The documented limits, as (requests, window in seconds): Lansweeper per application,
/// 4me per access token (its cost points are charged one per request by the sandbox).
const LANSWEEPER_LIMITS: [(u64, u64); 2] = [(150, 60), (2_000, 3_600)];
const FOURME_LIMITS: [(u64, u64); 2] = [(20, 2), (3_600, 3_600)];

/// One benchmark run.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunSpec {
    paced: bool,
    assets: u64,
    customers: u64,
    /// Workers (concurrent Lambda environments).
    concurrency: usize,
    /// Forced invocation length in seconds, when given.
    step_s: Option<u64>,
    /// Kill the worker during every K-th invocation (0: never).
    kill_every: u64,
}

impl RunSpec {
    fn mode(&self) -> &'static str {
        if self.paced { "paced" } else { "unpaced" }
    }

    fn from_env() -> BoxResult<RunSpec> {
        Ok(serde_json::from_str(&std::env::var(RUN_ENV)?)?)
    }

    /// The customer accounts of the run.
    fn accounts(&self) -> Vec<String> {
        if self.customers == 1 {
            vec![CUSTOMER.to_owned()]
        } else {
            (0..self.customers)
                .map(|i| format!("{CUSTOMER}-{i:04}"))
                .collect()
        }
    }
}

fn main() -> BoxResult<()> {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("server") => server(),
        Ok("worker") => worker(),
        _ => driver(),
    }
}

// ---------------------------------------------------------------------------------------------
// Driver

fn driver() -> BoxResult<()> {
    let mut modes = vec![true, false];
    let mut sizes = Vec::new();
    let mut base = RunSpec {
        paced: true,
        assets: 0,
        customers: 1,
        concurrency: 1,
        step_s: None,
        kill_every: 0,
    };
    let mut plot = None;
    let mut earlier = Vec::new();
    let mut args = std::env::args().skip(1);
    let number = |args: &mut std::iter::Skip<std::env::Args>, flag: &str| -> BoxResult<u64> {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        value
            .parse::<u64>()
            .map_err(|_| format!("{flag}: not a number: {value:?}").into())
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // Passed by `cargo bench` to every bench binary.
            "--bench" => {}
            "--mode" => {
                modes = match args.next().as_deref() {
                    Some("paced") => vec![true],
                    Some("unpaced") => vec![false],
                    Some("both") => vec![true, false],
                    other => return Err(format!("--mode paced|unpaced|both, not {other:?}").into()),
                }
            }
            "--step" => base.step_s = Some(number(&mut args, "--step")?.max(1)),
            "--kill-every" => base.kill_every = number(&mut args, "--kill-every")?,
            "--customers" => base.customers = number(&mut args, "--customers")?.max(1),
            "--concurrency" => {
                base.concurrency = usize::try_from(number(&mut args, "--concurrency")?)?.max(1)
            }
            "--plot" => plot = Some(args.next().ok_or("--plot needs a file")?),
            // Rows of earlier runs (the `sync_scale: {...}` lines a run prints), added to the
            // table and the plot.
            "--rows" => {
                let path = args.next().ok_or("--rows needs a file")?;
                for line in std::fs::read_to_string(&path)?.lines() {
                    if let Some(row) = line
                        .strip_prefix("sync_scale: ")
                        .and_then(|json| serde_json::from_str::<Value>(json).ok())
                        .filter(|row| row.get("mode").is_some())
                    {
                        earlier.push(row);
                    }
                }
            }
            n => sizes.push(
                n.parse::<u64>()
                    .map_err(|_| format!("not an asset count: {n:?}"))?,
            ),
        }
    }
    if sizes.is_empty() && earlier.is_empty() {
        sizes = vec![10_000, 100_000];
    }
    let mut rows = earlier;
    for paced in &modes {
        for n in &sizes {
            let spec = RunSpec {
                paced: *paced,
                assets: *n,
                ..base.clone()
            };
            eprintln!("sync_scale: {spec:?}...");
            let row = run(&spec)?;
            eprintln!("sync_scale: {row}");
            rows.push(row);
        }
    }
    print_table(&rows);
    if let Some(path) = plot {
        std::fs::write(&path, svg_plot(&rows))?;
        eprintln!("sync_scale: plot written to {path}");
    }
    Ok(())
}

fn print_table(rows: &[Value]) {
    println!();
    println!(
        "| Mode | Assets | Customers | Step | CIs synced | Wall time | Quota floor | Invocations | Killed | Workers | Peak RSS (VmHWM) | Worker CPU | Servers CPU | LS requests | 4me requests (busiest account) | 4me busiest 2 s (token / account) | 429s (4me / LS) | Fan-out |"
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let f = |key: &str| r[key].as_f64().unwrap_or_default();
        let req = &r["requests"];
        println!(
            "| {} | {} | {} | {} | {} | {:.1} s | {:.0} s | {} | {} | {} | {:.1} MiB | {:.1} s | {:.1} s | {} | {} | {} | {} / {} | {} |",
            r["mode"].as_str().unwrap_or_default(),
            r["assets"],
            r["customers"],
            r["step_s"]
                .as_u64()
                .map_or("900 s".to_owned(), |s| format!("{s} s")),
            r["cis"],
            f("wall_s"),
            f("floor_s"),
            r["invocations"],
            r["killed"],
            r["workers"],
            f("peak_rss_kib") / 1024.0,
            f("worker_cpu_s"),
            f("servers_cpu_s"),
            req["lansweeper"],
            req["fourme_busiest_account"],
            // Without server limits the window is not measured.
            if r["mode"] == "paced" {
                format!(
                    "{} / {}",
                    req["fourme_busiest_window"], req["fourme_busiest_account_window"]
                )
            } else {
                "–".to_owned()
            },
            req["fourme_429"],
            req["lansweeper_429"],
            r["fan_out_s"]
                .as_f64()
                .map_or("–".to_owned(), |s| format!("{s:.2} s")),
        );
    }
}

/// Shortest time in which `requests` fit the `limits` (requests per window in seconds): a full
/// window's worth at once, then one more window per further window's worth.
fn quota_floor(requests: u64, limits: &[(u64, u64)]) -> u64 {
    limits
        .iter()
        .map(|(limit, window)| requests.div_ceil(*limit).saturating_sub(1) * window)
        .max()
        .unwrap_or(0)
}

/// A message on the driver's queue.
#[derive(Clone, Debug)]
struct Delivery {
    id: String,
    body: String,
    visible_at: Instant,
    /// Deliveries before this one (SQS's `ApproximateReceiveCount` − 1).
    attempt: u32,
}

/// A worker process and the invocation it is handling.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    busy: Option<(Delivery, Option<Instant>)>,
}

/// What the driver measured of the workers.
#[derive(Default)]
struct WorkerTotals {
    started: u64,
    peak_rss_kib: u64,
    cpu_ns: u64,
}

impl WorkerTotals {
    /// Reads the final figures of `pid` from `/proc` (before it exits or is killed).
    fn record(&mut self, pid: u32) -> BoxResult<()> {
        let (hwm, _) = memory_kib(&format!("/proc/{pid}/status"))?;
        self.peak_rss_kib = self.peak_rss_kib.max(hwm);
        self.cpu_ns += cpu_ns(&format!("/proc/{pid}/stat"))?;
        Ok(())
    }
}

/// A line a worker printed, tagged with its pid.
type WorkerLine = (u32, String);

fn spawn_worker(
    spec: &RunSpec,
    setup: &Value,
    lines: &mpsc::Sender<WorkerLine>,
) -> BoxResult<Worker> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(ROLE_ENV, "worker")
        .env(RUN_ENV, serde_json::to_string(spec)?)
        .env(WORKER_ENV, setup.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdin = child.stdin.take().ok_or("no worker stdin")?;
    let stdout = child.stdout.take().ok_or("no worker stdout")?;
    let pid = child.id();
    let sender = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send((pid, line)).is_err() {
                break;
            }
        }
    });
    Ok(Worker {
        child,
        stdin,
        busy: None,
    })
}

/// Unix time in seconds.
fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// One run: returns its row.
fn run(spec: &RunSpec) -> BoxResult<Value> {
    let (mut servers, setup) = Servers::start(spec)?;
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(store_secrets(&setup, dir.path()))?;
    let worker_setup = json!({
        "domain": setup["domain"], "oauth": setup["oauth"], "graphql": setup["graphql"],
        "rest": setup["rest"], "lansweeper_api": setup["lansweeper"]["api_url"],
        "dir": dir.path(),
    });
    let (line_tx, line_rx) = mpsc::channel::<WorkerLine>();
    let mut workers = Vec::new();
    let mut totals = WorkerTotals::default();
    for _ in 0..spec.concurrency {
        workers.push(spawn_worker(spec, &worker_setup, &line_tx)?);
        totals.started += 1;
    }
    let step = spec.step_s.map_or(LAMBDA_TIMEOUT, Duration::from_secs);

    let before = servers.stats()?;
    let start = Instant::now();
    let mut queue: VecDeque<Delivery> = VecDeque::new();
    let mut next_id = 0u64;
    let mut new_delivery = |body: String, delay: Duration| {
        next_id += 1;
        Delivery {
            id: format!("bench-{next_id}"),
            body,
            visible_at: Instant::now() + delay,
            attempt: 0,
        }
    };
    let mut fan_out_s = None;
    if spec.customers > 1 {
        // The schedule is one invocation of the first worker; what it queues is the work.
        let worker = &mut workers[0];
        let pid = worker.child.id();
        worker
            .stdin
            .write_all(format!("{}\n", json!({"schedule": true})).as_bytes())?;
        loop {
            let (from, line) = line_rx.recv()?;
            if from != pid {
                continue;
            }
            let message: Value = serde_json::from_str(&line)?;
            if let Some(body) = message["send"].as_str() {
                queue.push_back(new_delivery(body.to_owned(), Duration::ZERO));
            } else if message["done"] == true {
                fan_out_s = message["elapsed_s"].as_f64();
                if message["status"] != 200 {
                    return Err(format!("the schedule answered {}", message["status"]).into());
                }
                break;
            }
        }
        if queue.len() as u64 != spec.customers {
            return Err(format!(
                "{} syncs queued for {} customers",
                queue.len(),
                spec.customers
            )
            .into());
        }
    } else {
        queue.push_back(new_delivery(CUSTOMER.to_owned(), Duration::ZERO));
    }

    let (mut invocations, mut killed, mut failed, mut continuations) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let now = Instant::now();
        // Hand visible messages to idle workers.
        for worker in workers.iter_mut().filter(|w| w.busy.is_none()) {
            let Some(pos) = queue.iter().position(|d| d.visible_at <= now) else {
                break;
            };
            let Some(delivery) = queue.remove(pos) else {
                break;
            };
            invocations += 1;
            let deadline = unix_now() + i64::try_from(step.as_secs())?;
            let task = json!({"id": delivery.id, "body": delivery.body, "attempt": delivery.attempt, "deadline": deadline});
            // One write per line: a child's stdin is unbuffered.
            worker.stdin.write_all(format!("{task}\n").as_bytes())?;
            let kill_at =
                (spec.kill_every > 0 && invocations % spec.kill_every == 0).then(|| now + step / 2);
            worker.busy = Some((delivery, kill_at));
        }
        if queue.is_empty() && workers.iter().all(|w| w.busy.is_none()) {
            break;
        }
        // Wait for a worker's line, the next kill, or (when a worker is idle) the next message
        // becoming visible.
        let idle = workers.iter().any(|w| w.busy.is_none());
        let wake = workers
            .iter()
            .filter_map(|w| w.busy.as_ref().and_then(|(_, kill)| *kill))
            .chain(queue.iter().filter(|_| idle).map(|d| d.visible_at))
            .min()
            .map_or(Duration::from_secs(1), |at| {
                at.saturating_duration_since(now)
            })
            .min(Duration::from_secs(1));
        match line_rx.recv_timeout(wake) {
            Ok((pid, line)) => {
                let Some(worker) = workers.iter_mut().find(|w| w.child.id() == pid) else {
                    continue;
                };
                let message: Value = serde_json::from_str(&line)?;
                if let Some(body) = message["send"].as_str() {
                    continuations += 1;
                    let delay = Duration::from_secs(message["delay_s"].as_u64().unwrap_or(0));
                    queue.push_back(new_delivery(body.to_owned(), delay));
                } else if message["done"] == true {
                    let (mut delivery, _) = worker.busy.take().ok_or("a worker finished twice")?;
                    if message["failed"] == true {
                        failed += 1;
                        delivery.attempt += 1;
                        delivery.visible_at = Instant::now() + REDELIVERY;
                        queue.push_back(delivery);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
        // Kill the workers whose invocation is due to die; the message comes back.
        let now = Instant::now();
        for worker in workers.iter_mut() {
            if !matches!(&worker.busy, Some((_, Some(at))) if *at <= now) {
                continue;
            }
            totals.record(worker.child.id())?;
            worker.child.kill()?;
            worker.child.wait()?;
            killed += 1;
            let (mut delivery, _) = worker.busy.take().ok_or("no invocation to kill")?;
            delivery.attempt += 1;
            delivery.visible_at = now + REDELIVERY;
            queue.push_back(delivery);
            *worker = spawn_worker(spec, &worker_setup, &line_tx)?;
            totals.started += 1;
        }
    }
    let wall = start.elapsed();
    for mut worker in workers {
        totals.record(worker.child.id())?;
        drop(worker.stdin);
        worker.child.wait()?;
    }
    let after = servers.stats()?;
    let cis = runtime.block_on(count_cis(&setup, spec))?;
    let expected = setup["expected_cis"].as_u64().ok_or("no expected_cis")? * spec.customers;
    if cis != expected {
        return Err(format!("4me holds {cis} discovered CIs, expected {expected}").into());
    }
    if spec.customers == 1 && after["os_end_of_support_stored"].as_u64().unwrap_or(0) == 0 {
        return Err("no OS end-of-support date was stored".into());
    }
    let delta = |key: &str| {
        after[key]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(before[key].as_u64().unwrap_or(0))
    };
    let fourme = FourMeUsage::between(&before, &after);
    let lansweeper = delta("lansweeper_token") + delta("lansweeper_graphql");
    // Lansweeper's limits are per application: one customer's share of the requests.
    let floor = quota_floor(lansweeper / spec.customers, &LANSWEEPER_LIMITS)
        .max(quota_floor(fourme.busiest_account, &FOURME_LIMITS));
    Ok(json!({
        "mode": spec.mode(),
        "assets": spec.assets,
        "customers": spec.customers,
        "concurrency": spec.concurrency,
        "step_s": spec.step_s,
        "cis": cis,
        "wall_s": wall.as_secs_f64(),
        "floor_s": floor,
        "fan_out_s": fan_out_s,
        "invocations": invocations,
        "continuations": continuations,
        "killed": killed,
        "failed": failed,
        "workers": totals.started,
        "peak_rss_kib": totals.peak_rss_kib,
        "worker_cpu_s": totals.cpu_ns as f64 / 1e9,
        "servers_cpu_s": delta("cpu_ns") as f64 / 1e9,
        "requests": {
            "lansweeper": lansweeper,
            "lansweeper_token": delta("lansweeper_token"),
            "lansweeper_graphql": delta("lansweeper_graphql"),
            "lansweeper_asset_pages": delta("lansweeper_asset_pages"),
            "lansweeper_429": delta("lansweeper_rate_limited"),
            "fourme_oauth": delta("fourme_oauth"),
            "fourme_graphql": delta("fourme_graphql"),
            "fourme_rest": delta("fourme_rest"),
            "fourme_async_results": delta("fourme_async_results"),
            "fourme_busiest_account": fourme.busiest_account,
            "fourme_busiest_window": fourme.busiest_token_window,
            "fourme_busiest_account_window": fourme.busiest_account_window,
            "fourme_429": fourme.refused,
        },
    }))
}

/// What the 4me tokens used between two `stats` answers of the server.
struct FourMeUsage {
    /// Requests of the busiest account, all its tokens together.
    busiest_account: u64,
    /// Requests refused with 429, all tokens.
    refused: u64,
    /// Most requests of one token in one rate window (since the server started).
    busiest_token_window: u64,
    /// Most requests of one account's tokens together in one rate window.
    busiest_account_window: u64,
}

impl FourMeUsage {
    fn between(before: &Value, after: &Value) -> FourMeUsage {
        let tokens = |stats: &Value| stats["tokens"].as_array().cloned().unwrap_or_default();
        let per_account = |stats: &Value| {
            let mut map: HashMap<String, (u64, u64)> = HashMap::new();
            for t in tokens(stats) {
                let entry = map
                    .entry(t["account"].as_str().unwrap_or_default().to_owned())
                    .or_default();
                entry.0 += t["requests"].as_u64().unwrap_or(0);
                entry.1 += t["refused"].as_u64().unwrap_or(0);
            }
            map
        };
        let was = per_account(before);
        let used: Vec<(u64, u64)> = per_account(after)
            .into_iter()
            .map(|(account, (requests, refused))| {
                let (r0, f0) = was.get(&account).copied().unwrap_or_default();
                (requests.saturating_sub(r0), refused.saturating_sub(f0))
            })
            .collect();
        let busiest = |key: &str| {
            tokens(after)
                .iter()
                .filter_map(|t| t[key].as_u64())
                .max()
                .unwrap_or(0)
        };
        FourMeUsage {
            busiest_account: used.iter().map(|(r, _)| *r).max().unwrap_or(0),
            refused: used.iter().map(|(_, f)| *f).sum(),
            busiest_token_window: busiest("busiest"),
            busiest_account_window: busiest("account_busiest"),
        }
    }
}

/// Writes the provider's and each customer's secrets into the secret store the workers share.
async fn store_secrets(setup: &Value, dir: &std::path::Path) -> BoxResult<()> {
    let store = LocalSecretStore::new(dir);
    let domain = str_at(setup, "/domain")?;
    store
        .upsert(
            &provider_secret_name(APP, domain, PROVIDER)?,
            doc(json!({
                "clientID": str_at(setup, "/provider/client_id")?,
                "token": str_at(setup, "/provider/client_secret")?,
            }))?,
        )
        .await?;
    for customer in setup["customers"].as_array().into_iter().flatten() {
        store
            .upsert(
                &customer_secret_name(APP, OFFERING, domain, str_at(customer, "/account")?)?,
                doc(json!({
                    "application": {
                        "client_id": str_at(customer, "/client_id")?,
                        "client_secret": str_at(customer, "/client_secret")?,
                    },
                    "secrets": {"client_secret": str_at(customer, "/lansweeper_client_secret")?},
                    "refresh_token": str_at(customer, "/refresh_token")?,
                }))?,
            )
            .await?;
    }
    Ok(())
}

/// Outside the measurement: the CIs the customer accounts now hold, less the reference CIs
/// seeded before the sync.
async fn count_cis(setup: &Value, spec: &RunSpec) -> BoxResult<u64> {
    let endpoints = endpoints(setup)?;
    let mut settings = ClientSettings::from_env();
    if !spec.paced {
        settings.min_request_spacing = Duration::ZERO;
    }
    let mut total = 0;
    for customer in setup["customers"].as_array().into_iter().flatten() {
        let client = FourMeClient::new(
            endpoints.clone(),
            str_at(customer, "/account")?,
            Credentials::new(
                str_at(customer, "/client_id")?,
                str_at(customer, "/client_secret")?,
            ),
            settings.clone(),
        )?;
        let count: Value = client
            .query(
                "query Count { configurationItems(first: 1) { totalCount } }",
                &json!({}),
            )
            .await?;
        let held = count
            .pointer("/configurationItems/totalCount")
            .and_then(Value::as_u64)
            .ok_or("no totalCount")?;
        total += held.saturating_sub(customer["seeded_cis"].as_u64().unwrap_or(0));
    }
    Ok(total)
}

fn endpoints(setup: &Value) -> BoxResult<Endpoints> {
    Ok(Endpoints {
        oauth: str_at(setup, "/oauth")?.parse()?,
        graphql: str_at(setup, "/graphql")?.parse()?,
        rest: str_at(setup, "/rest")?.parse()?,
    })
}

// ---------------------------------------------------------------------------------------------
// Server role

fn server() -> BoxResult<()> {
    let spec = RunSpec::from_env()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let (sandbox, fake, setup, operating_systems) = runtime.block_on(seed_servers(&spec))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{setup}")?;
    out.flush()?;
    // The servers run on the runtime's worker threads while this thread answers `stats`.
    for line in std::io::stdin().lock().lines() {
        if line?.trim() == "stats" {
            let s = sandbox.stats();
            let l = fake.stats();
            let tokens: Vec<Value> = sandbox
                .token_usage()
                .into_iter()
                .map(|t| {
                    json!({"account": t.account, "requests": t.requests, "refused": t.refused, "busiest": t.busiest_window, "account_busiest": t.account_busiest_window})
                })
                .collect();
            let stats = json!({
                "lansweeper_token": l.token_requests,
                "lansweeper_graphql": l.graphql_requests,
                "lansweeper_asset_pages": l.asset_pages,
                "lansweeper_assets_served": l.assets_served,
                "lansweeper_rate_limited": l.rate_limited,
                "fourme_oauth": s.token_requests,
                "fourme_graphql": s.graphql_requests,
                "fourme_rest": s.rest_requests,
                "fourme_async_results": s.async_result_requests,
                "os_end_of_support_stored": operating_systems
                    .iter()
                    .filter(|id| sandbox.record(id).is_some_and(|r| !r["endOfSupportDate"].is_null()))
                    .count(),
                "tokens": tokens,
                "cpu_ns": cpu_ns("/proc/self/stat")?,
            });
            writeln!(out, "{stats}")?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Starts both servers and seeds the provider, the customers with the offering installed (each
/// with its own Lansweeper application) and one site of `spec.assets` assets that every
/// customer is authorized for; returns the setup the driver needs.
async fn seed_servers(spec: &RunSpec) -> BoxResult<(Sandbox, LansweeperFake, Value, Vec<String>)> {
    let sandbox = Sandbox::start().await?;
    let fake = LansweeperFake::start().await?;
    let provider = sandbox.add_oauth_application(PROVIDER);
    let service_instance = sandbox.seed_service_instance(PROVIDER, "Mainframe 1");
    sandbox.seed_app_offering(
        PROVIDER,
        OFFERING,
        json!({"name": "Lansweeper", "serviceInstanceId": service_instance}),
    );
    let mut customers = Vec::new();
    let mut operating_systems = Vec::new();
    for account in spec.accounts() {
        let app = fake.add_client();
        let mut custom_fields = serde_json::Map::new();
        custom_fields.insert("client_id".into(), json!(app.client_id));
        custom_fields.insert("connection_status".into(), json!("success"));
        custom_fields.insert("import_type".into(), json!("all"));
        let installed = sandbox
            .install_app(
                OFFERING,
                &account,
                InstallOptions {
                    custom_fields,
                    ..InstallOptions::default()
                },
            )
            .await?;
        // One customer gets the software and people its assets refer to; a fan-out's
        // customers are fresh accounts.
        let seeded = if spec.customers == 1 {
            let references = seed_references(&sandbox, &installed.customer_credentials).await?;
            operating_systems = references.operating_systems;
            references.software_cis
        } else {
            0
        };
        customers.push(json!({
            "account": account,
            "client_id": installed.customer_credentials.client_id,
            "client_secret": installed.customer_credentials.client_secret,
            "lansweeper_client_secret": app.client_secret,
            "refresh_token": fake.issue_refresh_token(&app.client_id),
            "seeded_cis": seeded,
        }));
    }
    let site = fake.add_site(SiteSpec {
        name: "HQ".into(),
        asset_count: spec.assets,
        installations: vec!["Main".into(), "Branch".into()],
        seed: 7,
    });
    if spec.paced {
        // Lansweeper's limit is per application; the fake's is global, so it is enforced when
        // one customer syncs. The sandbox enforces 4me's limits per token by default.
        if spec.customers == 1 {
            fake.set_rate_limit(Some((150, Duration::from_secs(60))));
        }
    } else {
        sandbox.set_rate_window(Duration::ZERO);
        sandbox.set_hourly_limits(u32::MAX, u32::MAX, 0);
    }
    // What each sync must upload (the filters and conversion rules the `sync` test checks):
    // seen within LAST_SEEN_DAYS or never, not a Location, with assetCustom.
    let cut_off = (chrono::Utc::now() - chrono::Duration::days(LAST_SEEN_DAYS))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let expected = (0..spec.assets)
        .filter_map(|i| fake.asset(&site, i))
        .filter(|a| {
            a.get("assetCustom").is_some()
                && a["assetBasicInfo"]["type"] != "Location"
                && a["assetBasicInfo"]["lastSeen"]
                    .as_str()
                    .is_none_or(|l| l > cut_off.as_str())
        })
        .count();
    let setup = json!({
        "domain": sandbox.domain(),
        "oauth": sandbox.oauth_url(),
        "graphql": sandbox.graphql_url(),
        "rest": sandbox.rest_url(),
        "provider": {"client_id": provider.client_id, "client_secret": provider.client_secret},
        "customers": customers,
        "lansweeper": {"api_url": fake.api_url()},
        "expected_cis": expected,
    });
    Ok((sandbox, fake, setup, operating_systems))
}

/// Software and people of the customer account that the generated assets refer to.
struct SeededReferences {
    software_cis: usize,
    /// Node ids of the Windows OS CIs, whose end-of-support date the sync stores.
    operating_systems: Vec<String>,
}

/// Seeds what the fake's assets refer to (its software, operating systems and users), so the
/// sync makes the reference lookups and OS end-of-support updates of a real account.
async fn seed_references(
    sandbox: &Sandbox,
    customer: &app_builder_sandbox::OAuthCredentials,
) -> BoxResult<SeededReferences> {
    const SOFTWARE: &[&str] = &[
        "Microsoft Office 365",
        "Google Chrome",
        "Mozilla Firefox",
        "7-Zip 19.00",
        "Adobe Acrobat Reader DC",
        "Visual Studio Code",
        "Zoom",
        "Slack",
        "Notepad++",
        "VLC media player",
        "Git",
        "Python 3.11",
        "OpenSSL",
        "curl",
        "Microsoft Teams",
        "TeamViewer",
        "Ubuntu 22.04.3 LTS",
        "Debian GNU/Linux 12",
        "Rocky Linux 9.2",
    ];
    const WINDOWS: &[&str] = &[
        "Microsoft Windows 10 Enterprise",
        "Microsoft Windows 11 Pro",
        "Microsoft Windows Server 2012 R2 Standard",
    ];
    let client = FourMeClient::new(
        Endpoints {
            oauth: sandbox.oauth_url().parse()?,
            graphql: sandbox.graphql_url().parse()?,
            rest: sandbox.rest_url().parse()?,
        },
        CUSTOMER,
        Credentials::new(&customer.client_id, &customer.client_secret),
        ClientSettings::from_env(),
    )?;
    let created = |payload: Value| -> BoxResult<String> {
        payload
            .pointer("/product/id")
            .or(payload.pointer("/configurationItem/id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("nothing created: {payload}").into())
    };
    let product = created(
        client
            .mutation(
                "mutation($input: ProductCreateInput!) { productCreate(input: $input) { errors { path message } product { id } } }",
                &json!({"input": {"name": "Software", "brand": "Various", "category": "software"}}),
            )
            .await?,
    )?;
    let mut operating_systems = Vec::new();
    for name in SOFTWARE.iter().chain(WINDOWS) {
        let id = created(
            client
                .mutation(
                    "mutation($input: ConfigurationItemCreateInput!) { configurationItemCreate(input: $input) { errors { path message } configurationItem { id } } }",
                    &json!({"input": {"name": name, "productId": product, "status": "in_production"}}),
                )
                .await?,
        )?;
        if WINDOWS.contains(name) {
            operating_systems.push(id);
        }
    }
    for person in [
        json!({"name": "John Doe", "primaryEmail": "john.doe@example.com"}),
        json!({"name": "Anna Smith", "primaryEmail": "anna.smith@example.com"}),
        json!({"name": "Bruce Wayne", "authenticationID": "bwayne"}),
        json!({"name": "Clark Kent", "primaryEmail": "clark.kent@example.com"}),
    ] {
        sandbox.seed_person(CUSTOMER, person);
    }
    Ok(SeededReferences {
        software_cis: SOFTWARE.len() + WINDOWS.len(),
        operating_systems,
    })
}

// ---------------------------------------------------------------------------------------------
// Servers handle (driver side)

/// The `server` child; stopped when dropped.
struct Servers {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Servers {
    fn start(spec: &RunSpec) -> BoxResult<(Servers, Value)> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(ROLE_ENV, "server")
            .env(RUN_ENV, serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no server stdout")?;
        let mut servers = Servers {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        };
        let setup = servers.read_json()?;
        Ok((servers, setup))
    }

    fn read_json(&mut self) -> BoxResult<Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err("the server process exited".into());
        }
        Ok(serde_json::from_str(&line)?)
    }

    fn stats(&mut self) -> BoxResult<Value> {
        let stdin = self.stdin.as_mut().ok_or("server stdin closed")?;
        writeln!(stdin, "stats")?;
        stdin.flush()?;
        self.read_json()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        // Closing its stdin stops the server; kill it if it does not stop within 5 s.
        drop(self.stdin.take());
        let until = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Worker role (a Lambda execution environment)

/// The refresh queue of a worker: each message goes to the driver as a line on stdout.
struct DriverQueue;

impl RefreshQueue for DriverQueue {
    async fn send(&self, message: &SyncMessage, delay: Duration) -> Result<(), QueueError> {
        println!(
            "{}",
            json!({"send": message.body(), "delay_s": delay.min(MAX_DELAY).as_secs()})
        );
        Ok(())
    }
}

fn worker() -> BoxResult<()> {
    let spec = RunSpec::from_env()?;
    let setup: Value = serde_json::from_str(&std::env::var(WORKER_ENV)?)?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    // Production settings (environment included), the APIs pointed at the servers.
    let mut client_settings = ClientSettings::from_env();
    let mut api_settings = ApiSettings::from_settings(&Settings::from_env())?;
    api_settings.api_url = str_at(&setup, "/lansweeper_api")?.to_owned();
    if !spec.paced {
        client_settings.min_request_spacing = Duration::ZERO;
        client_settings.rate_limit_requests = 0;
        api_settings.min_request_interval = Duration::ZERO;
        api_settings.requests_per_hour = 0;
    }
    let mut settings = FunctionSettings::from_settings(&Settings::from_env())?;
    if spec.step_s.is_some() {
        settings.stop_margin = Duration::ZERO;
    }
    let dir = std::path::PathBuf::from(str_at(&setup, "/dir")?);
    let config = ContextConfig {
        domain: str_at(&setup, "/domain")?.to_owned(),
        app: APP.into(),
        provider_account: PROVIDER.into(),
        offering_reference: Some(OFFERING.into()),
    };
    let loader = ContextLoader::new(
        config,
        LocalSecretStore::new(&dir),
        endpoints(&setup)?,
        client_settings,
    )?;
    let function = LansweeperFunction::new(
        loader,
        LansweeperApi::new(api_settings)?,
        DriverQueue,
        LocalStateStore::new(dir.join("state")),
        settings,
    );
    for line in std::io::stdin().lock().lines() {
        let task: Value = serde_json::from_str(&line?)?;
        let start = Instant::now();
        let done = if task["schedule"] == true {
            let response = runtime.block_on(function.handle_schedule(chrono::Utc::now()));
            json!({"done": true, "status": response.status().as_u16(), "elapsed_s": start.elapsed().as_secs_f64()})
        } else {
            let event: SqsEvent = serde_json::from_value(json!({"Records": [{
                "messageId": task["id"], "receiptHandle": "r", "body": task["body"],
                "attributes": {"ApproximateReceiveCount": (task["attempt"].as_u64().unwrap_or(0) + 1).to_string()},
                "messageAttributes": {}, "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:lansweeper-refresh-trigger",
                "awsRegion": "eu-west-1"
            }]}))?;
            let deadline = task["deadline"].as_i64().ok_or("no deadline")?;
            let response = runtime.block_on(function.handle_sqs(&event, deadline));
            json!({"done": true, "failed": !response.batch_item_failures.is_empty(), "elapsed_s": start.elapsed().as_secs_f64()})
        };
        println!("{done}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// CPU time (user + system, all threads) of the process whose `/proc/<pid>/stat` is `path`, in
/// nanoseconds: fields 14 and 15, in clock ticks of 1/100 s (`USER_HZ` on Linux).
fn cpu_ns(path: &str) -> BoxResult<u64> {
    let stat = std::fs::read_to_string(path)?;
    let after_comm = stat.rsplit_once(')').ok_or("malformed stat file")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks =
        |i: usize| -> BoxResult<u64> { Ok(fields.get(i).ok_or("short stat file")?.parse()?) };
    Ok((ticks(11)? + ticks(12)?) * 10_000_000)
}

/// `VmHWM` (peak resident set) and `VmRSS` in KiB from the `/proc/<pid>/status` at `path`.
fn memory_kib(path: &str) -> BoxResult<(u64, u64)> {
    let status = std::fs::read_to_string(path)?;
    let field = |name: &str| -> BoxResult<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| format!("{name} not in {path}"))?;
        Ok(line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?)
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> BoxResult<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("setup lacks {pointer}").into())
}

fn doc(value: Value) -> BoxResult<SecretDocument> {
    Ok(SecretDocument::try_from(value)?)
}

// ---------------------------------------------------------------------------------------------
// Plot

/// An SVG with two panels against N (log scale) for the one-customer rows: wall time of each
/// mode with the quota floor (log scale), and peak RSS (linear, from 0).
fn svg_plot(rows: &[Value]) -> String {
    let rows: Vec<&Value> = rows.iter().filter(|r| r["customers"] == 1).collect();
    let n_of = |r: &Value| r["assets"].as_f64().unwrap_or(1.0).max(1.0);
    let decades = |values: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = values
            .filter(|v| *v > 0.0)
            .map(f64::log10)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                (lo.min(x), hi.max(x))
            });
        if lo < hi {
            (lo.floor(), hi.ceil())
        } else if lo.is_finite() {
            (lo.floor() - 1.0, lo.ceil() + 1.0)
        } else {
            (0.0, 1.0)
        }
    };
    let (xlo, xhi) = decades(&mut rows.iter().map(|r| n_of(r)));
    let (w, h, pad) = (360.0, 240.0, 60.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>"#,
        2.0 * (w + pad) + pad,
        h + 2.0 * pad
    );
    // (title, series as (label, colour, dashed, key, scale), log y)
    type Series = (&'static str, &'static str, bool, &'static str, f64);
    let panels: [(&str, Vec<Series>, bool); 2] = [
        (
            "Wall time (s)",
            vec![
                ("unpaced", "#1f77b4", false, "wall_s", 1.0),
                ("paced", "#d62728", false, "wall_s", 1.0),
                ("quota floor", "#777777", true, "floor_s", 1.0),
            ],
            true,
        ),
        (
            "Peak RSS (MiB)",
            vec![
                ("unpaced", "#1f77b4", false, "peak_rss_kib", 1.0 / 1024.0),
                ("paced", "#d62728", false, "peak_rss_kib", 1.0 / 1024.0),
            ],
            false,
        ),
    ];
    for (p, (title, series, log)) in panels.iter().enumerate() {
        let x0 = pad + p as f64 * (w + pad);
        let value = |r: &Value, key: &str, scale: f64| r[key].as_f64().unwrap_or(0.0) * scale;
        let (ylo, yhi) = if *log {
            decades(&mut rows.iter().flat_map(|r| {
                series
                    .iter()
                    .map(move |(_, _, _, key, scale)| value(r, key, *scale))
            }))
        } else {
            let top = rows
                .iter()
                .flat_map(|r| {
                    series
                        .iter()
                        .map(move |(_, _, _, key, scale)| value(r, key, *scale))
                })
                .fold(0.0_f64, f64::max);
            (0.0, (top * 1.2).max(1.0).ceil())
        };
        let px = |n: f64| x0 + (n.log10() - xlo) / (xhi - xlo) * w;
        let py = |v: f64| {
            let v = if *log {
                v.max(10f64.powf(ylo)).log10()
            } else {
                v
            };
            pad + h - (v - ylo) / (yhi - ylo) * h
        };
        svg += &format!(
            r#"<text x="{x0}" y="{}" font-weight="bold">{title} against assets synced (N)</text>"#,
            pad - 20.0
        );
        svg += &format!(
            r##"<rect x="{x0}" y="{pad}" width="{w}" height="{h}" fill="none" stroke="#999"/>"##
        );
        let ticks: Vec<f64> = if *log {
            (ylo as i32..=yhi as i32).map(|d| 10f64.powi(d)).collect()
        } else {
            (0..=4)
                .map(|t| ylo + (yhi - ylo) * f64::from(t) / 4.0)
                .collect()
        };
        for v in ticks {
            svg += &format!(
                r#"<text x="{}" y="{}" text-anchor="end">{v}</text>"#,
                x0 - 4.0,
                py(v) + 4.0
            );
        }
        for d in xlo as i32..=xhi as i32 {
            let n = 10f64.powi(d);
            svg += &format!(
                r#"<text x="{}" y="{}" text-anchor="middle">{n}</text>"#,
                px(n),
                pad + h + 15.0
            );
        }
        for (i, (mode, colour, dashed, key, scale)) in series.iter().enumerate() {
            let mode_rows = rows.iter().filter(|r| match *mode {
                "paced" => r["mode"] == "paced",
                _ => r["mode"] == "unpaced",
            });
            let points: Vec<(f64, f64)> = mode_rows
                .map(|r| (px(n_of(r)), py(value(r, key, *scale))))
                .collect();
            if points.is_empty() {
                continue;
            }
            let path: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let dash = if *dashed {
                r#" stroke-dasharray="5,4""#
            } else {
                ""
            };
            svg += &format!(
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
                path.join(" ")
            );
            for (x, y) in &points {
                svg += &format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{colour}"/>"#);
            }
            let label = if *dashed {
                format!("{mode} (the same requests at the documented limits)")
            } else {
                (*mode).to_owned()
            };
            svg += &format!(
                r#"<text x="{}" y="{}" fill="{colour}">{label}</text>"#,
                x0 + 8.0,
                pad + 14.0 + 14.0 * i as f64
            );
        }
    }
    svg += "</svg>\n";
    svg
}
