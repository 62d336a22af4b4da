//! Cold starts of the `secrets` binary (the release build, or another build given with
//! `--binary PATH`, to compare two commits on the same machine at the same time) under the Lambda
//! runtime API emulator (`app-builder-runtime-emulator`), over AWS on moto: each run is a new
//! process, as a new Lambda execution environment, whose first invocation is an accepted
//! ES512-signed `app_instance.secrets-update` delivery and whose second another one (warm). Run
//! it through `cargo xtask bench cold-start`, which starts moto; by hand it needs
//! `AWS_ENDPOINT_URL` and test credentials.
//!
//! Prints, over the runs, the median, the 90th percentile and the extremes of:
//! init (spawn → first `next`), first response (spawn → result posted), handling (the two's
//! difference), the warm delivery's handling, and peak RSS; the binary's size; and the peak
//! RSS of an environment whose first request has a 6 MB body (refused with 413). Every run must store the delivery, or
//! the bench fails.
//!
//! The function reaches moto through a [`FaultProxy`] that injects nothing but notes when each
//! request arrived and was answered: the first delivery's handling splits into the time spent
//! waiting on the backend (requests overlapping counted once) and the function's own time; the
//! first response less that wait is what the function itself takes from spawn to answer.
#![allow(clippy::unwrap_used)] // bench code: a failed unwrap is a failed run

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use app_builder_runtime_emulator::{Outcome, cold_start};
use app_builder_test_support::FaultProxy;
use support::aws::Deployed;

const BINARY: &str = env!("CARGO_BIN_EXE_secrets");

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut runs = 20_usize;
    let mut binary = BINARY.to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            // Another build of the function (an older commit, say), measured the same way.
            "--binary" => binary = args.next().expect("--binary PATH"),
            // Other arguments (`--bench` from cargo) are ignored.
            _ => {}
        }
    }
    let binary = Path::new(&binary);
    let deployed = Deployed::create().await;
    let moto = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (moto)");
    let proxy = FaultProxy::start(&moto).await.unwrap();
    let mut environment = deployed.environment();
    for (name, value) in &mut environment {
        if name == "AWS_ENDPOINT_URL" {
            *value = proxy.endpoint_url();
        }
    }
    let (mut init, mut first, mut handling, mut rss) = (vec![], vec![], vec![], vec![]);
    let (mut warm, mut backend, mut own, mut requests) = (vec![], vec![], vec![], vec![]);
    let mut unwaited = vec![];
    for run in 0..runs {
        let customer = format!("c{}", uuid::Uuid::new_v4().simple());
        let event = deployed.delivery_event(&customer, &format!("bench-{run}-{customer}"));
        let next = deployed.delivery_event(&format!("{customer}-2"), &format!("warm-{customer}"));
        let started = cold_start(
            binary,
            &environment,
            vec![event, next],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        match &started.outcome {
            Outcome::Response(response) if response["statusCode"] == 200 => {}
            other => panic!("run {run} was not accepted: {other:?}"),
        }
        match &started.warm[..] {
            [(took, Outcome::Response(response))] if response["statusCode"] == 200 => {
                warm.push(*took);
            }
            other => panic!("run {run}: the warm delivery was not accepted: {other:?}"),
        }
        let (asked, answered) = (
            started.spawned + started.init,
            started.spawned + started.first_response,
        );
        let waited = proxy.busy(asked, answered);
        init.push(started.init);
        first.push(started.first_response);
        handling.push(started.first_response - started.init);
        backend.push(waited);
        own.push((started.first_response - started.init).saturating_sub(waited));
        unwaited.push(started.first_response.saturating_sub(waited));
        requests.push(proxy.arrived(asked, answered));
        rss.push(started.peak_rss_kib.unwrap_or_default());
    }
    let size = std::fs::metadata(binary)
        .map(|m| m.len())
        .unwrap_or_default();
    println!(
        "secrets, {runs} cold starts, each storing its first delivery and a second, warm one (moto)\n"
    );
    println!("| Figure | median | p90 | min | max |");
    println!("|---|---|---|---|---|");
    for (name, values) in [
        ("init (spawn → first next)", &mut init),
        ("first response (spawn → result)", &mut first),
        ("handling (first next → result)", &mut handling),
        ("… waiting on the backend", &mut backend),
        ("… the function's own time", &mut own),
        ("first response less the backend wait", &mut unwaited),
        ("warm delivery (next → result)", &mut warm),
    ] {
        values.sort();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms(percentile(values, 50)),
            ms(percentile(values, 90)),
            ms(values[0]),
            ms(values[values.len() - 1])
        );
    }
    rss.sort_unstable();
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    println!(
        "| peak RSS | {} | {} | {} | {} |",
        mib(percentile(&rss, 50)),
        mib(percentile(&rss, 90)),
        mib(rss[0]),
        mib(rss[rss.len() - 1])
    );
    requests.sort_unstable();
    println!(
        "\nbackend requests of the first delivery: {}–{}",
        requests[0],
        requests[requests.len() - 1]
    );
    println!(
        "binary: {}, {:.1} MiB",
        binary.display(),
        size as f64 / 1024.0 / 1024.0
    );

    // A 6 MB body (API Gateway accepts up to 10 MB): refused with 413 before it is parsed into
    // a request; the peak RSS shows what the refusal costs.
    let mut refused = vec![];
    for _ in 0..runs.min(10) {
        let mut event = deployed.delivery_event("huge", "huge");
        event["body"] = serde_json::json!("x".repeat(6 * 1024 * 1024));
        let started = cold_start(
            binary,
            &deployed.environment(),
            vec![event],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        match &started.outcome {
            Outcome::Response(response) if response["statusCode"] == 413 => {}
            other => panic!("a 6 MB body was not refused with 413: {other:?}"),
        }
        refused.push(started.peak_rss_kib.unwrap_or_default());
    }
    refused.sort_unstable();
    println!(
        "peak RSS refusing a 6 MB body (413), {} runs: median {}, max {}",
        refused.len(),
        mib(percentile(&refused, 50)),
        mib(refused[refused.len() - 1])
    );
}

/// The `p`-th percentile (nearest rank) of sorted `values`.
fn percentile<T: Copy>(values: &[T], p: usize) -> T {
    let rank = (values.len() * p).div_ceil(100).max(1);
    values[rank - 1]
}
