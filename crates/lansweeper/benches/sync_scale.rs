//! Sync-scale benchmark of the Lansweeper function (issue 4): one customer sync of N sandbox
//! assets through the real SQS handler, reporting wall time, peak RSS and the requests made to
//! each API.
//!
//! `cargo bench -p lansweeper --bench sync_scale -- [--mode paced|unpaced|both] [N ...]`
//! (default: both modes, N = 10000 100000).
//!
//! Three roles of this one binary, chosen by [`ROLE_ENV`]:
//! - the driver (no role) runs one `sync` process per mode and N and prints the table;
//! - `sync` is the measured process, a fresh process per run like a Lambda cold start: it starts a
//!   `server` child, runs [`LansweeperFunction::handle_sqs`] against it and reports its own peak
//!   RSS (`VmHWM`), so the emulators' memory (the 4me sandbox stores every uploaded CI) is never
//!   counted;
//! - `server` runs the 4me sandbox and the Lansweeper fake (seeded with N assets; the customer
//!   account with the software and people they refer to), prints the setup as one JSON line and then answers each `stats` line on its stdin with the request
//!   counters of both servers; it exits when its stdin closes.
//!
//! `paced` uses the production pacing (Lansweeper 150 requests/min, 4me 20 per 2 s) with both
//! servers enforcing those limits; `unpaced` removes client pacing and server limits to show the
//! compute cost.

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
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
use lansweeper::{FunctionSettings, InMemoryQueue, LansweeperFunction};
use serde_json::{Value, json};

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// Selects the role of a re-executed copy of this binary (`sync` or `server`).
const ROLE_ENV: &str = "SYNC_SCALE_ROLE";
/// Number of assets of the run.
const ASSETS_ENV: &str = "SYNC_SCALE_ASSETS";
/// `paced` or `unpaced`.
const MODE_ENV: &str = "SYNC_SCALE_MODE";

const APP: &str = "4me-app-builder";
const PROVIDER: &str = "wdc";
const CUSTOMER: &str = "wdc-bench";
const OFFERING: &str = "lansweeper";
/// `LAST_SEEN_DAYS` default: assets unseen for longer are filtered out.
const LAST_SEEN_DAYS: i64 = 30;

fn main() -> BoxResult<()> {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("server") => server(),
        Ok("sync") => sync(),
        _ => driver(),
    }
}

fn env_assets() -> BoxResult<u64> {
    Ok(std::env::var(ASSETS_ENV)?.parse()?)
}

fn env_paced() -> BoxResult<bool> {
    match std::env::var(MODE_ENV)?.as_str() {
        "paced" => Ok(true),
        "unpaced" => Ok(false),
        other => Err(format!("unknown mode {other:?}").into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Driver

fn driver() -> BoxResult<()> {
    let mut modes = vec!["paced", "unpaced"];
    let mut sizes = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // Passed by `cargo bench` to every bench binary.
            "--bench" => {}
            "--mode" => {
                modes = match args.next().as_deref() {
                    Some("paced") => vec!["paced"],
                    Some("unpaced") => vec!["unpaced"],
                    Some("both") => vec!["paced", "unpaced"],
                    other => return Err(format!("--mode paced|unpaced|both, not {other:?}").into()),
                }
            }
            n => sizes.push(
                n.parse::<u64>()
                    .map_err(|_| format!("not an asset count: {n:?}"))?,
            ),
        }
    }
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000];
    }
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for mode in &modes {
        for n in &sizes {
            eprintln!("sync_scale: {mode} sync of {n} assets...");
            let out = Command::new(&exe)
                .env(ROLE_ENV, "sync")
                .env(ASSETS_ENV, n.to_string())
                .env(MODE_ENV, mode)
                .stderr(Stdio::inherit())
                .output()?;
            if !out.status.success() {
                return Err(format!("{mode} run of {n} assets failed ({})", out.status).into());
            }
            let text = String::from_utf8(out.stdout)?;
            let line = text
                .lines()
                .last()
                .ok_or("the sync process printed nothing")?;
            let row: Value = serde_json::from_str(line)?;
            eprintln!("sync_scale: {row}");
            rows.push(row);
        }
    }
    println!();
    println!(
        "| Mode | Assets | CIs synced | Wall time | Assets/s | Sync CPU | Servers CPU | Peak RSS (VmHWM) | RSS before sync | RSS after sync | LS token | LS GraphQL | 4me OAuth | 4me GraphQL | 4me async results | LS 429s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let mib = |key: &str| r[key].as_f64().unwrap_or_default() / 1024.0;
        let wall = r["wall_s"].as_f64().unwrap_or_default();
        let req = &r["requests"];
        println!(
            "| {} | {} | {} | {:.1} s | {:.0} | {:.1} s | {:.1} s | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} | {} | {} | {} | {} | {} |",
            r["mode"].as_str().unwrap_or_default(),
            r["assets"],
            r["cis"],
            wall,
            r["assets"].as_f64().unwrap_or_default() / wall.max(f64::EPSILON),
            r["sync_cpu_s"].as_f64().unwrap_or_default(),
            r["servers_cpu_s"].as_f64().unwrap_or_default(),
            mib("peak_rss_kib"),
            mib("rss_before_kib"),
            mib("rss_after_kib"),
            req["lansweeper_token"],
            req["lansweeper_graphql"],
            req["fourme_oauth"],
            req["fourme_graphql"],
            req["fourme_async_results"],
            req["lansweeper_429"],
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Server role

fn server() -> BoxResult<()> {
    let n = env_assets()?;
    let paced = env_paced()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let (sandbox, fake, setup, operating_systems) = runtime.block_on(seed_servers(n, paced))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{setup}")?;
    out.flush()?;
    // The servers run on the runtime's worker threads while this thread answers `stats`.
    for line in std::io::stdin().lock().lines() {
        if line?.trim() == "stats" {
            let s = sandbox.stats();
            let l = fake.stats();
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
                "cpu_ns": cpu_ns()?,
            });
            writeln!(out, "{stats}")?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Starts both servers and seeds the provider, the installed offering and a site of `n` assets;
/// returns the setup the `sync` process needs.
async fn seed_servers(
    n: u64,
    paced: bool,
) -> BoxResult<(Sandbox, LansweeperFake, Value, Vec<String>)> {
    let sandbox = Sandbox::start().await?;
    let fake = LansweeperFake::start().await?;
    if paced {
        // Lansweeper's documented limit; the sandbox enforces 4me's 20 per 2 s by default.
        fake.set_rate_limit(Some((150, Duration::from_secs(60))));
    } else {
        sandbox.set_rate_window(Duration::ZERO);
        sandbox.set_hourly_limits(u32::MAX, u32::MAX, 0);
    }
    let provider = sandbox.add_oauth_application(PROVIDER);
    let service_instance = sandbox.seed_service_instance(PROVIDER, "Mainframe 1");
    sandbox.seed_app_offering(
        PROVIDER,
        OFFERING,
        json!({"name": "Lansweeper", "serviceInstanceId": service_instance}),
    );
    let app = fake.add_client();
    let mut custom_fields = serde_json::Map::new();
    custom_fields.insert("client_id".into(), json!(app.client_id));
    custom_fields.insert("connection_status".into(), json!("success"));
    custom_fields.insert("import_type".into(), json!("all"));
    let installed = sandbox
        .install_app(
            OFFERING,
            CUSTOMER,
            InstallOptions {
                custom_fields,
                ..InstallOptions::default()
            },
        )
        .await?;
    let references = seed_references(&sandbox, &installed.customer_credentials).await?;
    let site = fake.add_site(SiteSpec {
        name: "HQ".into(),
        asset_count: n,
        installations: vec!["Main".into(), "Branch".into()],
        seed: 7,
    });
    // What the sync must upload (the filters and conversion rules the `sync` test checks):
    // seen within LAST_SEEN_DAYS or never, not a Location, with assetCustom.
    let cut_off = (chrono::Utc::now() - chrono::Duration::days(LAST_SEEN_DAYS))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let expected = (0..n)
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
        "customer": {
            "client_id": installed.customer_credentials.client_id,
            "client_secret": installed.customer_credentials.client_secret,
        },
        "lansweeper": {
            "api_url": fake.api_url(),
            "client_secret": app.client_secret,
            "refresh_token": fake.issue_refresh_token(&app.client_id),
        },
        "expected_cis": expected,
        "seeded_cis": references.software_cis,
    });
    Ok((sandbox, fake, setup, references.operating_systems))
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
// Sync role (the measured process)

/// The `server` child; killed when dropped.
struct Servers {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Servers {
    fn start(n: u64, mode: &str) -> BoxResult<(Servers, Value)> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(ROLE_ENV, "server")
            .env(ASSETS_ENV, n.to_string())
            .env(MODE_ENV, mode)
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

/// CPU time (user + system, all threads) this process has used so far, in nanoseconds: fields
/// 14 and 15 of `/proc/self/stat`, in clock ticks of 1/100 s (`USER_HZ` on Linux).
fn cpu_ns() -> BoxResult<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_comm = stat.rsplit_once(')').ok_or("malformed /proc/self/stat")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks =
        |i: usize| -> BoxResult<u64> { Ok(fields.get(i).ok_or("short /proc/self/stat")?.parse()?) };
    Ok((ticks(11)? + ticks(12)?) * 10_000_000)
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process in KiB.
fn memory_kib() -> BoxResult<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> BoxResult<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| format!("{name} not in /proc/self/status"))?;
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

fn sync() -> BoxResult<()> {
    let n = env_assets()?;
    let paced = env_paced()?;
    let mode = if paced { "paced" } else { "unpaced" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let (mut servers, setup) = Servers::start(n, mode)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let endpoints = Endpoints {
        oauth: str_at(&setup, "/oauth")?.parse()?,
        graphql: str_at(&setup, "/graphql")?.parse()?,
        rest: str_at(&setup, "/rest")?.parse()?,
    };
    let domain = str_at(&setup, "/domain")?.to_owned();
    // Production settings (environment included), the APIs pointed at the servers.
    let mut client_settings = ClientSettings::from_env();
    let mut api_settings = ApiSettings::from_settings(&Settings::from_env())?;
    api_settings.api_url = str_at(&setup, "/lansweeper/api_url")?.to_owned();
    if !paced {
        client_settings.min_request_spacing = Duration::ZERO;
        client_settings.rate_limit_requests = 0;
        api_settings.min_request_interval = Duration::ZERO;
        api_settings.requests_per_hour = 0;
    }
    let dir = tempfile::tempdir()?;
    let store = LocalSecretStore::new(dir.path());
    let api = LansweeperApi::new(api_settings)?;
    let function = runtime.block_on(async {
        store
            .upsert(
                &provider_secret_name(APP, &domain, PROVIDER)?,
                doc(json!({
                    "clientID": str_at(&setup, "/provider/client_id")?,
                    "token": str_at(&setup, "/provider/client_secret")?,
                }))?,
            )
            .await?;
        store
            .upsert(
                &customer_secret_name(APP, OFFERING, &domain, CUSTOMER)?,
                doc(json!({
                    "application": {
                        "client_id": str_at(&setup, "/customer/client_id")?,
                        "client_secret": str_at(&setup, "/customer/client_secret")?,
                    },
                    "secrets": {"client_secret": str_at(&setup, "/lansweeper/client_secret")?},
                    "refresh_token": str_at(&setup, "/lansweeper/refresh_token")?,
                }))?,
            )
            .await?;
        let config = ContextConfig {
            domain: domain.clone(),
            app: APP.into(),
            provider_account: PROVIDER.into(),
            offering_reference: Some(OFFERING.into()),
        };
        let loader = ContextLoader::new(config, store, endpoints.clone(), client_settings.clone())?;
        BoxResult::Ok(LansweeperFunction::new(
            loader,
            api.clone(),
            InMemoryQueue::new(),
            LocalStateStore::new(dir.path().join("state")),
            FunctionSettings::default(),
        ))
    })?;
    let event: SqsEvent = serde_json::from_value(json!({"Records": [{
        "messageId": "bench-1", "receiptHandle": "r", "body": CUSTOMER,
        "attributes": {}, "messageAttributes": {}, "md5OfBody": "x",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:lansweeper-refresh-trigger",
        "awsRegion": "eu-west-1"
    }]}))?;

    let before = servers.stats()?;
    let (_, rss_before) = memory_kib()?;
    let cpu_before = cpu_ns()?;
    let start = Instant::now();
    let deadline =
        app_builder_core::events::Invocation::new("bench", Duration::from_secs(900)).deadline;
    let response = runtime.block_on(function.handle_sqs(&event, deadline));
    let wall = start.elapsed();
    let cpu = cpu_ns()? - cpu_before;
    let (peak, rss_after) = memory_kib()?;
    let after = servers.stats()?;
    if !response.batch_item_failures.is_empty() {
        return Err("the sync failed (see the log above)".into());
    }

    // Outside the measurement: how many CIs the customer account now holds.
    let customer = FourMeClient::new(
        endpoints,
        CUSTOMER,
        Credentials::new(
            str_at(&setup, "/customer/client_id")?,
            str_at(&setup, "/customer/client_secret")?,
        ),
        client_settings,
    )?;
    let count: Value = runtime.block_on(customer.query(
        "query Count { configurationItems(first: 1) { totalCount } }",
        &json!({}),
    ))?;
    let cis = count
        .pointer("/configurationItems/totalCount")
        .and_then(Value::as_u64)
        .ok_or("no totalCount")?;
    // The seeded software CIs are counted with the discovered ones.
    let cis = cis.saturating_sub(setup["seeded_cis"].as_u64().ok_or("no seeded_cis")?);
    let expected = setup["expected_cis"].as_u64().ok_or("no expected_cis")?;
    if cis != expected {
        return Err(format!("4me holds {cis} CIs, expected {expected}").into());
    }
    // The seeded OS CIs got their end-of-support dates: the references were exercised.
    let os_stored = after["os_end_of_support_stored"].as_u64().unwrap_or(0);
    if os_stored == 0 {
        return Err("no OS end-of-support date was stored".into());
    }
    let delta = |key: &str| {
        after[key]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(before[key].as_u64().unwrap_or(0))
    };
    let client = api.counts();
    let result = json!({
        "mode": mode,
        "assets": n,
        "cis": cis,
        "wall_s": wall.as_secs_f64(),
        "sync_cpu_s": cpu as f64 / 1e9,
        "servers_cpu_s": delta("cpu_ns") as f64 / 1e9,
        "peak_rss_kib": peak,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "os_end_of_support_stored": os_stored,
        "requests": {
            "lansweeper_token": delta("lansweeper_token"),
            "lansweeper_graphql": delta("lansweeper_graphql"),
            "lansweeper_asset_pages": delta("lansweeper_asset_pages"),
            "lansweeper_assets_served": delta("lansweeper_assets_served"),
            "fourme_oauth": delta("fourme_oauth"),
            "fourme_graphql": delta("fourme_graphql"),
            "fourme_rest": delta("fourme_rest"),
            "fourme_async_results": delta("fourme_async_results"),
            "lansweeper_429": delta("lansweeper_rate_limited"),
            "client_lansweeper_graphql": client.graphql,
            "client_lansweeper_token": client.token,
        },
    });
    println!("{result}");
    drop(servers);
    Ok(())
}
