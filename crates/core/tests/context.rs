//! Provider and customer contexts assembled from a real (local file) secret store, with 4me clients
//! talking to the sandbox and verifiers checking tokens signed in the test with generated keys.
#![allow(clippy::unwrap_used)] // fixture helpers of this test crate unwrap on test-generated data

use std::time::{SystemTime, UNIX_EPOCH};

use app_builder_core::context::{ContextConfig, ContextError, ContextLoader};
use app_builder_core::fourme::ClientSettings;
use app_builder_core::policy::{JwtError, WebhookEnvelope};
use app_builder_core::secrets::{
    LocalSecretStore, SecretDocument, SecretStore, customer_secret_name, provider_secret_name,
};
use app_builder_sandbox::Sandbox;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

const APP: &str = "4me-app-builder";
const PROVIDER: &str = "wdc";
const OFFERING: &str = "note-dispatcher";

struct Fixture {
    sandbox: Sandbox,
    store: LocalSecretStore,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            sandbox: Sandbox::start().await.unwrap(),
            store: LocalSecretStore::new(dir.path()),
            _dir: dir,
        }
    }

    fn loader(&self, offering_reference: Option<&str>) -> ContextLoader<LocalSecretStore> {
        let endpoints = app_builder_test_support::sandbox_endpoints(&self.sandbox);
        let config = ContextConfig {
            domain: self.sandbox.domain().to_owned(),
            app: APP.to_owned(),
            provider_account: PROVIDER.to_owned(),
            offering_reference: offering_reference.map(str::to_owned),
        };
        ContextLoader::new(
            config,
            self.store.clone(),
            endpoints,
            ClientSettings::default(),
        )
        .unwrap()
    }

    async fn store_provider(&self, document: Value) {
        let name = provider_secret_name(APP, self.sandbox.domain(), PROVIDER).unwrap();
        self.store.upsert(&name, doc(document)).await.unwrap();
    }

    async fn store_customer(&self, account: &str, document: Value) {
        let name = customer_secret_name(APP, OFFERING, self.sandbox.domain(), account).unwrap();
        self.store.upsert(&name, doc(document)).await.unwrap();
    }
}

fn doc(value: Value) -> SecretDocument {
    SecretDocument::try_from(value).unwrap()
}

/// A P-256 key pair generated for the test, as 4me would hold it for an `es256` policy.
struct TestKey(EcdsaKeyPair);

impl TestKey {
    fn generate() -> TestKey {
        TestKey(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }

    fn public_pem(&self) -> String {
        let der = self.0.public_key().as_der().unwrap();
        pem::encode(&pem::Pem::new("PUBLIC KEY", der.as_ref().to_vec()))
    }

    fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
        let input = format!("{header}.{payload}");
        let signature = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(issuer_account: &str, domain: &str, audience: &str) -> Value {
    json!({
        "iss": format!("https://{issuer_account}.{domain}"),
        "aud": audience,
        "sub": "1",
        "jti": "delivery-1",
        "iat": now(),
        "exp": now() + 300,
        "data": {"event": "app_instance.secrets-update", "account_id": 1, "payload": {}}
    })
}

const CI_QUERY: &str = "query { configurationItems(first: 1) { nodes { id } } }";

#[tokio::test]
async fn provider_context_has_a_working_client_and_a_verifier_bound_to_the_provider() {
    let fx = Fixture::new().await;
    let domain = fx.sandbox.domain().to_owned();
    fx.sandbox.add_account(PROVIDER);
    let app = fx.sandbox.add_oauth_application(PROVIDER);
    let key = TestKey::generate();
    let audience = format!("integrations provided by {PROVIDER}@{domain}");
    fx.store_provider(json!({
        "clientID": app.client_id,
        "token": app.client_secret,
        "policy": {"id": "NG1lLmNvbS9XZWJob29rUG9saWN5LzE", "jwtAlg": "es256",
                   "jwtAudience": audience, "publicKeyPem": key.public_pem()},
    }))
    .await;

    let context = fx.loader(None).provider().await.unwrap();
    assert_eq!(context.account(), PROVIDER);
    assert_eq!(
        context.secret_name().as_str(),
        format!("{APP}/{domain}/{PROVIDER}")
    );
    let data: Value = context
        .client()
        .unwrap()
        .query(CI_QUERY, &json!({}))
        .await
        .unwrap();
    assert!(data["configurationItems"]["nodes"].is_array(), "{data}");

    let verifier = context.verifier().unwrap();
    let token = key.sign(&claims(PROVIDER, &domain, &audience));
    let verified = verifier.verify::<WebhookEnvelope>(&token).unwrap();
    assert_eq!(verified.data.event, "app_instance.secrets-update");
    let wrong_audience = key.sign(&claims(PROVIDER, &domain, "someone else"));
    assert!(matches!(
        verifier.verify::<WebhookEnvelope>(&wrong_audience),
        Err(JwtError::WrongAudience)
    ));
}

#[tokio::test]
async fn a_replaced_provider_policy_stays_accepted_until_its_grace_period_ends() {
    let fx = Fixture::new().await;
    let domain = fx.sandbox.domain().to_owned();
    let audience = format!("integrations provided by {PROVIDER}@{domain}");
    let (old, new) = (TestKey::generate(), TestKey::generate());
    let previous = |until: u64| {
        json!({"id": "old", "jwtAlg": "es256", "jwtAudience": "an earlier audience",
               "publicKeyPem": old.public_pem(), "acceptedUntil": until})
    };
    let policy = json!({"id": "new", "jwtAlg": "es256", "jwtAudience": audience,
                        "publicKeyPem": new.public_pem()});
    fx.store_provider(json!({"policy": policy, "previousPolicy": previous(now() + 3600)}))
        .await;
    let context = fx.loader(None).provider().await.unwrap();
    let verifier = context.verifier().unwrap();
    let signed_before_the_switch = old.sign(&claims(PROVIDER, &domain, "an earlier audience"));
    verifier
        .verify::<WebhookEnvelope>(&signed_before_the_switch)
        .unwrap();
    verifier
        .verify::<WebhookEnvelope>(&new.sign(&claims(PROVIDER, &domain, &audience)))
        .unwrap();
    // The previous key does not widen the other checks: another account's token stays refused.
    assert!(matches!(
        verifier.verify::<WebhookEnvelope>(&old.sign(&claims(
            "other",
            &domain,
            "an earlier audience"
        ))),
        Err(JwtError::BadSignature | JwtError::WrongIssuer)
    ));

    fx.store_provider(json!({"previousPolicy": previous(now() - 1)}))
        .await;
    let context = fx.loader(None).provider().await.unwrap();
    assert!(matches!(
        context
            .verifier()
            .unwrap()
            .verify::<WebhookEnvelope>(&signed_before_the_switch),
        Err(JwtError::BadSignature)
    ));
}

#[tokio::test]
async fn customer_context_uses_the_customer_application_and_rejects_other_accounts_tokens() {
    let fx = Fixture::new().await;
    let domain = fx.sandbox.domain().to_owned();
    fx.sandbox.add_account("acme");
    let app = fx.sandbox.add_oauth_application("acme");
    let key = TestKey::generate();
    fx.store_customer(
        "acme",
        json!({
            "application": {"nodeID": "x", "client_id": app.client_id, "client_secret": app.client_secret},
            "policy": {"nodeID": "y", "audience": null, "algorithm": "ES256", "public_key": key.public_pem()},
            "secrets": {"token": "s3cr3t"},
        }),
    )
    .await;

    let context = fx.loader(Some(OFFERING)).customer("acme").await.unwrap();
    assert_eq!(context.account(), "acme");
    assert_eq!(
        context.secrets().get("secrets"),
        Some(&json!({"token": "s3cr3t"}))
    );
    let client = context.client().unwrap();
    assert_eq!(client.account(), "acme");
    client
        .query::<_, Value>(CI_QUERY, &json!({}))
        .await
        .unwrap();

    let verifier = context.verifier().unwrap();
    verifier
        .verify::<WebhookEnvelope>(&key.sign(&claims("acme", &domain, "any")))
        .unwrap();
    // Same key, but the token claims another customer account: cross-customer replay.
    let other = key.sign(&claims("globex", &domain, "any"));
    assert!(matches!(
        verifier.verify::<WebhookEnvelope>(&other),
        Err(JwtError::WrongIssuer)
    ));
    // The context's Debug output does not leak the stored secret values.
    let debug = format!("{context:?}");
    assert!(
        !debug.contains("s3cr3t") && !debug.contains(&app.client_secret),
        "{debug}"
    );
}

#[tokio::test]
async fn missing_and_empty_secrets_are_explicit_errors() {
    let fx = Fixture::new().await;
    let loader = fx.loader(Some(OFFERING));
    assert!(matches!(
        loader.provider().await,
        Err(ContextError::NotFound(_))
    ));
    assert!(matches!(
        loader.customer("nobody").await,
        Err(ContextError::NotFound(_))
    ));
    fx.store_customer("empty", json!({"secrets": {"a": "b"}}))
        .await;
    assert!(matches!(
        loader.customer("empty").await,
        Err(ContextError::Empty(_))
    ));
    assert!(matches!(
        loader.customer("../etc").await,
        Err(ContextError::InvalidName(_))
    ));
    assert!(matches!(
        fx.loader(None).customer("acme").await,
        Err(ContextError::NoOfferingReference)
    ));
}

#[tokio::test]
async fn a_secret_with_only_one_part_loads_and_the_missing_part_is_the_error() {
    let fx = Fixture::new().await;
    let key = TestKey::generate();
    fx.store_customer(
        "policy-only",
        json!({"policy": {"algorithm": "ES256", "public_key": key.public_pem(), "audience": null}}),
    )
    .await;
    fx.store_customer(
        "app-only",
        json!({"application": {"client_id": "id", "client_secret": "secret"}}),
    )
    .await;
    let loader = fx.loader(Some(OFFERING));

    let policy_only = loader.customer("policy-only").await.unwrap();
    assert!(policy_only.verifier().is_ok());
    assert!(matches!(
        policy_only.client(),
        Err(ContextError::MissingCredentials { .. })
    ));
    let app_only = loader.customer("app-only").await.unwrap();
    assert!(app_only.client().is_ok());
    assert!(matches!(
        app_only.verifier(),
        Err(ContextError::MissingPolicy(_))
    ));
}

#[tokio::test]
async fn unusable_policies_are_rejected_without_echoing_the_key() {
    let fx = Fixture::new().await;
    let domain = fx.sandbox.domain().to_owned();
    let garbage_key = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----",
        STANDARD.encode(b"not a key at all, but private-looking")
    );
    fx.store_customer(
        "bad-key",
        json!({"policy": {"algorithm": "RS256", "public_key": garbage_key, "audience": null}}),
    )
    .await;
    fx.store_customer(
        "bad-alg",
        json!({"policy": {"algorithm": "none", "public_key": TestKey::generate().public_pem()}}),
    )
    .await;
    // An RS256 policy with an EC key: the key does not suit the pinned algorithm.
    fx.store_customer(
        "mismatch",
        json!({"policy": {"algorithm": "RS256", "public_key": TestKey::generate().public_pem()}}),
    )
    .await;
    // The provider policy must name its audience: without one any token would pass that check.
    fx.store_provider(json!({
        "clientID": "id", "token": "secret",
        "policy": {"jwtAlg": "es256", "publicKeyPem": TestKey::generate().public_pem()},
    }))
    .await;
    let loader = fx.loader(Some(OFFERING));

    for account in ["bad-key", "bad-alg", "mismatch"] {
        let error = loader.customer(account).await.unwrap_err();
        assert!(
            matches!(error, ContextError::InvalidPolicy { .. }),
            "{account}: {error}"
        );
        assert!(!error.to_string().contains("BEGIN"), "{error}");
    }
    let error = loader.provider().await.unwrap_err();
    assert!(
        matches!(&error, ContextError::InvalidPolicy { reason, .. } if reason.contains("jwtAudience")),
        "{error} ({domain})"
    );
}

/// The provider context is cached: a rotated policy is not seen by `provider()` until the time
/// to live ends, but `refreshed_provider` reads it again after a failed verification, once
/// the cached context is old enough, and only for the context that failed.
#[tokio::test]
async fn the_provider_context_is_cached_and_read_again_after_a_failed_verification() {
    use std::sync::Arc;
    use std::time::Duration;
    let fx = Fixture::new().await;
    let domain = fx.sandbox.domain().to_owned();
    let audience = format!("integrations provided by {PROVIDER}@{domain}");
    let (old, new) = (TestKey::generate(), TestKey::generate());
    let policy = |key: &TestKey| {
        json!({"policy": {"jwtAlg": "es256", "jwtAudience": audience,
                          "publicKeyPem": key.public_pem()}})
    };
    let rotated = new.sign(&claims(PROVIDER, &domain, &audience));
    fx.store_provider(policy(&old)).await;

    // Defaults: cached for minutes, refreshed only when at least seconds old.
    let loader = fx.loader(None);
    let first = loader.provider().await.unwrap();
    fx.store_provider(policy(&new)).await;
    let second = loader.provider().await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "read again within the time to live"
    );
    assert!(
        second
            .verifier()
            .unwrap()
            .verify::<WebhookEnvelope>(&rotated)
            .is_err()
    );
    assert!(
        loader.refreshed_provider(&second).await.unwrap().is_none(),
        "too young"
    );

    // Old enough: the failed context is read again, and the new policy verifies.
    let loader = fx
        .loader(None)
        .with_provider_cache(Duration::from_secs(300), Duration::ZERO);
    fx.store_provider(policy(&old)).await;
    let cached = loader.provider().await.unwrap();
    fx.store_provider(policy(&new)).await;
    let fresh = loader.refreshed_provider(&cached).await.unwrap().unwrap();
    fresh
        .verifier()
        .unwrap()
        .verify::<WebhookEnvelope>(&rotated)
        .unwrap();
    assert!(
        Arc::ptr_eq(&fresh, &loader.provider().await.unwrap()),
        "the fresh one is cached"
    );
    // A context that is no longer the cached one is not a reason to read again.
    assert!(loader.refreshed_provider(&cached).await.unwrap().is_none());

    // No time to live: every call reads the secret.
    let loader = fx
        .loader(None)
        .with_provider_cache(Duration::ZERO, Duration::ZERO);
    let a = loader.provider().await.unwrap();
    assert!(!Arc::ptr_eq(&a, &loader.provider().await.unwrap()));
}
