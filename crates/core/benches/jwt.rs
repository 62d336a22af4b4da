//! Throughput of webhook-policy JWT verification for the two algorithms 4me deliveries use most:
//! ES512 (the provider policy created by the bootstrap) and RS256 with a 2048-bit key (customer
//! policies).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use app_builder_core::policy::{
    Algorithm, Audience, PolicyKey, Verifier, WebhookEnvelope, WebhookPolicy,
};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

const NOW: i64 = 1_700_000_000;
const AUDIENCE: &str = "integrations provided by wdc@4me-staging.com";

fn claims() -> serde_json::Value {
    json!({
        "jti": "4f1c2e", "sub": "12", "iss": "https://wdc.4me-staging.com", "aud": AUDIENCE,
        "iat": NOW, "nbf": NOW,
        "data": {
            "webhook_id": 12, "webhook_nodeID": "NG1lLXN0YWdpbmcuY29tL1dlYmhvb2svMTI",
            "account_id": "wdc", "account": "https://wdc.4me-staging.com",
            "name": "app_instance.secrets-update", "event": "app_instance.secrets-update",
            "object_id": 7, "object_nodeID": "NG1lLXN0YWdpbmcuY29tL0FwcEluc3RhbmNlLzc",
            "person_id": 3, "person_nodeID": "NG1lLXN0YWdpbmcuY29tL1BlcnNvbi8z",
            "person_name": "Howard Tanner",
            "payload": {"customer_account_id": "wna-it", "app_offering": {"reference": "typeform"}}
        }
    })
}

fn signing_input(alg: &str) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"typ": "JWT", "alg": alg}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    )
}

fn verifier(alg: Algorithm, spki_der: &[u8]) -> Verifier {
    let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki_der.to_vec()));
    Verifier::for_account(
        WebhookPolicy {
            algorithm: alg,
            key: PolicyKey::from_pem(&pem).unwrap(),
            audience: Audience::Exact(AUDIENCE.to_owned()),
        },
        "wdc",
        "4me-staging.com",
    )
    .unwrap()
}

fn es512() -> (Verifier, String) {
    let kp = EcdsaKeyPair::generate(&signature::ECDSA_P521_SHA512_FIXED_SIGNING).unwrap();
    let input = signing_input("ES512");
    let sig = kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    let spki = kp.public_key().as_der().unwrap();
    (verifier(Algorithm::ES512, spki.as_ref()), token)
}

fn rs256() -> (Verifier, String) {
    let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let input = signing_input("RS256");
    let mut sig = vec![0; kp.public_modulus_len()];
    kp.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
    let spki = kp.public_key().as_der().unwrap();
    (verifier(Algorithm::RS256, spki.as_ref()), token)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt_verify");
    for (name, (v, token)) in [("es512", es512()), ("rs256_2048", rs256())] {
        // Make sure the benchmark measures successful verifications.
        v.verify_at::<WebhookEnvelope>(&token, NOW).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                v.verify_at::<WebhookEnvelope>(black_box(&token), NOW)
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
