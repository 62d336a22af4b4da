//! Any bytes as a webhook token: the verifier refuses or accepts, never panics.
#![no_main]

use app_builder_core::policy::{Algorithm, Audience, PolicyKey, Verifier, WebhookPolicy};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    Verifier::for_account(
        WebhookPolicy {
            algorithm: Algorithm::HS256,
            key: PolicyKey::shared_secret(b"a shared secret for fuzzing".to_vec()).expect("a key"),
            audience: Audience::Exact("integrations provided by wdc@4me-demo.com".into()),
        },
        "wdc",
        "4me-demo.com",
    )
    .expect("a verifier")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = VERIFIER.verify::<serde_json::Value>(token);
    }
});
