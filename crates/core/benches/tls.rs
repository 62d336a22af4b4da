//! Benchmark of building an HTTP client: on the compiled-in roots (`core::tls`, what the
//! functions do) and on the system's (what `reqwest` does by default, reading the certificate
//! bundle and directory).
#![allow(missing_docs)]

use app_builder_core::tls::http_client_builder;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench_client_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("http_client_build");
    group.bench_function("compiled_in_roots", |b| {
        b.iter(|| http_client_builder().build().expect("client"));
    });
    group.bench_function("system_roots", |b| {
        b.iter(|| reqwest::Client::builder().build().expect("client"));
    });
    group.finish();
}

criterion_group!(benches, bench_client_build);
criterion_main!(benches);
