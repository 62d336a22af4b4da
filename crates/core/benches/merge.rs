//! Benchmark of the secret merge: a 10-key document updated with 3 keys (one of them a removal).
#![allow(missing_docs)]

use std::hint::black_box;

use app_builder_core::secrets::{SecretDocument, merge};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

fn document(value: Value) -> SecretDocument {
    SecretDocument::try_from(value).unwrap_or_default()
}

fn bench_merge(c: &mut Criterion) {
    let current = document(json!({
        "application": {"nodeID": "NG1lLmNvbS9BcHAvMQ", "client_id": "abc", "client_secret": "def"},
        "policy": {"nodeID": "NG1lLmNvbS9Qb2xpY3kvMQ", "audience": null, "algorithm": "RS256",
                   "public_key": "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----\n"},
        "secrets": {"typeform_token": "tfp_0123456789abcdef", "form_url": "https://example.typeform.com/to/x"},
        "typeform_secret": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "callback_secret": "0123456789abcdef0123456789abcdef",
        "refresh_token": "rt-0123456789",
        "k7": 7,
        "k8": "eight",
        "k9": [1, 2, 3],
        "k10": true,
    }));
    let update = document(json!({
        "secrets": {"typeform_token": "tfp_new"},
        "refresh_token": "rt-new",
        "k10": null,
    }));
    assert_eq!(current.len(), 10);
    c.bench_function("merge 10-key doc with 3-key update", |b| {
        b.iter_batched(
            || current.clone(),
            |current| merge(Some(black_box(current)), black_box(&update)),
            criterion::BatchSize::SmallInput,
        );
    });
    c.bench_function("merge 3-key update on create", |b| {
        b.iter(|| merge(None, black_box(&update)));
    });
}

criterion_group!(benches, bench_merge);
criterion_main!(benches);
