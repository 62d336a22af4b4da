//! The secrets-webhook handler over a real `LocalSecretStore` (tempdir), with requests built as
//! API Gateway (REST v1) delivers them and tokens signed by a generated provider key.
//! Test names follow the original's checklist (docs/original.md#tests-of-the-original) and this engine's own scenarios.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::sync::Arc;
use std::time::Duration;

use app_builder_core::bus::EventPublisher;
use app_builder_core::config::EnabledOfferings;
use app_builder_core::secrets::{LocalSecretStore, SecretDocument, SecretStore};
use app_builder_core::state::{LocalStateStore, StateStore};
use axum::routing::get;
use secrets::{DELIVERIES_KEY, PAYLOAD_MISMATCH_MESSAGE, SecretsHandler, apply_delivery};
use serde_json::{Value, json};
use support::*;

struct Fixture {
    _dir: tempfile::TempDir,
    store: LocalSecretStore,
    state: LocalStateStore,
    bus: Recorder,
    signer: Signer,
}

/// A store holding the provider secret of a freshly generated provider key.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalSecretStore::new(dir.path().join("secrets"));
    let signer = Signer::generate();
    store
        .upsert(&provider_name(), provider_secret(&signer, AUDIENCE))
        .await
        .unwrap();
    Fixture {
        state: LocalStateStore::new(dir.path().join("state")),
        bus: Recorder::default(),
        _dir: dir,
        store,
        signer,
    }
}

impl Fixture {
    fn handler(
        &self,
        enabled: &str,
    ) -> SecretsHandler<&LocalSecretStore, &LocalStateStore, Recorder> {
        handler_on(&self.store, &self.state, self.bus.clone(), enabled)
    }

    async fn stored(&self, reference: &str, customer: &str) -> Option<Value> {
        self.store
            .get(&customer_name(reference, customer))
            .await
            .unwrap()
            .map(Value::from)
    }

    /// Names of all customer secret files (everything but the provider secret).
    fn customer_files(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.store.dir()) else {
            return Vec::new();
        };
        entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json") && n.contains("instances"))
            .collect()
    }
}

fn application() -> Value {
    json!({"application": {"nodeID": "NG1lL0FwcC8x", "client_id": "cid", "client_secret": "csecret-value"}})
}

fn policy() -> Value {
    json!({"policy": {"nodeID": "NG1lL1BvbGljeS8x", "audience": null, "algorithm": "RS256", "public_key": "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"}})
}

async fn send(
    handler: &SecretsHandler<impl SecretStore, impl StateStore, impl EventPublisher>,
    jwt: &str,
    delivery: Option<&str>,
) -> (u16, String) {
    status_and_message(&handler.handle(delivery_request(jwt, delivery)).await)
}

// ---------------------------------------------------------------------------------------------
// docs/original.md#tests-of-the-original handler-secrets.test.js

#[tokio::test]
async fn all_applications_enabled_handles_receiving_application() {
    let f = fixture().await;
    let jwt = f.signer.sign(&claims(
        "app_instance.secrets-update",
        secrets_payload("wdc_siebel", "wdc", application()),
    ));
    let (status, message) = send(&f.handler("*"), &jwt, Some("d-1")).await;
    assert_eq!((status, message.as_str()), (200, "Secrets stored"));
    assert_eq!(
        f.stored("wdc_siebel", "wdc").await,
        Some(json!({
            "application": application()["application"],
        }))
    );
}

#[tokio::test]
async fn all_applications_enabled_handles_receiving_policy() {
    let f = fixture().await;
    let jwt = f.signer.sign(&claims(
        "app_instance.secrets-update",
        secrets_payload("typeform", "wdc-test", policy()),
    ));
    let (status, message) = send(&f.handler("*"), &jwt, Some("d-2")).await;
    assert_eq!((status, message.as_str()), (200, "Secrets stored"));
    let stored = f.stored("typeform", "wdc-test").await.unwrap();
    assert_eq!(stored["policy"], policy()["policy"]);
    assert_eq!(f.customer_files().len(), 1);
}

#[tokio::test]
async fn limited_env_empty_star_single_and_list_are_handled() {
    for (i, enabled) in [
        "",
        "*",
        "wdc_siebel",
        "typeform,wdc_siebel",
        " typeform , wdc_siebel ",
        "typeform, *",
    ]
    .into_iter()
    .enumerate()
    {
        let f = fixture().await;
        let jwt = f.signer.sign(&claims(
            "app_instance.secrets-update",
            secrets_payload("wdc_siebel", "wdc", application()),
        ));
        let handler = handler_with(
            &f.store,
            &f.state,
            f.bus.clone(),
            context_config(DOMAIN, PROVIDER),
            // An empty PARAM_ENABLED_OFFERINGS is "unset" for Settings, i.e. all.
            if enabled.is_empty() {
                EnabledOfferings::All
            } else {
                EnabledOfferings::parse(enabled)
            },
            Duration::from_secs(5),
        );
        let id = format!("d-{i}");
        let (status, message) = send(&handler, &jwt, Some(&id)).await;
        assert_eq!(
            (status, message.as_str()),
            (200, "Secrets stored"),
            "{enabled:?}"
        );
        assert!(f.stored("wdc_siebel", "wdc").await.is_some(), "{enabled:?}");
    }
}

#[tokio::test]
async fn limited_env_typeform_gives_no_action_and_stores_nothing() {
    let f = fixture().await;
    let jwt = f.signer.sign(&claims(
        "app_instance.secrets-update",
        secrets_payload("wdc_siebel", "wdc", application()),
    ));
    let (status, message) = send(&f.handler("typeform"), &jwt, Some("d-3")).await;
    assert_eq!(
        (status, message.as_str()),
        (200, "No action for app_reference: wdc_siebel")
    );
    assert!(f.customer_files().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Request validation (proper 4xx instead of the original's crashes)

#[tokio::test]
async fn non_post_is_405() {
    let f = fixture().await;
    for method in ["GET", "PUT", "DELETE"] {
        let response = f
            .handler("*")
            .handle(api_gateway_request(method, None, &[]))
            .await;
        assert_eq!(
            status_and_message(&response),
            (405, "Method not allowed. Use POST instead.".to_owned())
        );
    }
}

#[tokio::test]
async fn invalid_json_body_is_400_expected_jwt() {
    let f = fixture().await;
    for body in ["{not json", "", "[\"jwt\"]", "\"jwt\""] {
        let response = f
            .handler("*")
            .handle(api_gateway_request("POST", Some(body), &[]))
            .await;
        assert_eq!(
            status_and_message(&response),
            (400, "Expected jwt in body".to_owned()),
            "{body:?}"
        );
    }
}

#[tokio::test]
async fn missing_jwt_is_400_expected_jwt() {
    let f = fixture().await;
    for body in [
        "{}",
        "{\"token\":\"x\"}",
        "{\"jwt\":null}",
        "{\"jwt\":42}",
        "{\"jwt\":\"\"}",
    ] {
        let response = f
            .handler("*")
            .handle(api_gateway_request("POST", Some(body), &[]))
            .await;
        assert_eq!(
            status_and_message(&response),
            (400, "Expected jwt in body".to_owned()),
            "{body:?}"
        );
    }
}

#[tokio::test]
async fn missing_provider_secret_is_400_unable_to_determine_provider_context() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalSecretStore::new(dir.path());
    let state = LocalStateStore::new(dir.path().join("state"));
    let jwt = Signer::generate().sign(&claims("webhook.verify", json!({})));
    let (status, message) = send(&handler(&store, &state, "*"), &jwt, None).await;
    assert_eq!(
        (status, message.as_str()),
        (400, "Unable to determine provider context")
    );
}

#[tokio::test]
async fn unreadable_provider_secret_is_500_unable_to_determine_provider_context() {
    // A store failure is our fault: 5xx so that 4me retries the delivery.
    let f = fixture().await;
    std::fs::write(f.store.path_of(&provider_name()), "not json").unwrap();
    let jwt = f.signer.sign(&claims(
        "app_instance.secrets-update",
        secrets_payload("typeform", "wdc", application()),
    ));
    let (status, message) = send(&f.handler("*"), &jwt, Some("d")).await;
    assert_eq!(
        (status, message.as_str()),
        (500, "Unable to determine provider context")
    );
    assert!(f.customer_files().is_empty());
}

/// Sends a token that must be rejected; returns the 400 message and checks nothing was stored.
async fn rejected(
    f: &Fixture,
    handler: &SecretsHandler<impl SecretStore, impl StateStore, impl EventPublisher>,
    jwt: &str,
) -> String {
    let (status, message) = send(handler, jwt, Some("bad-delivery")).await;
    assert_eq!(status, 400, "{message}");
    assert!(
        message.starts_with("Bad JWT - (bad-delivery) Incorrect request: "),
        "{message}"
    );
    assert!(
        message.ends_with(&format!("\n{DOMAIN} - {PROVIDER}")),
        "{message}"
    );
    assert!(f.customer_files().is_empty(), "something was stored");
    assert!(!message.contains("csecret-value"));
    message
}

fn update_claims() -> Value {
    claims(
        "app_instance.secrets-update",
        secrets_payload("typeform", "wdc", application()),
    )
}

#[tokio::test]
async fn forged_signature_from_another_key_is_400_bad_jwt() {
    let f = fixture().await;
    let forged = Signer::generate().sign(&update_claims());
    let message = rejected(&f, &f.handler("*"), &forged).await;
    assert!(
        message.contains("signature verification failed"),
        "{message}"
    );

    // A token whose payload was swapped after signing fails the same way.
    let genuine = f.signer.sign(&update_claims());
    let other = f.signer.sign(&claims(
        "app_instance.secrets-update",
        secrets_payload("typeform", "evil", application()),
    ));
    let parts: Vec<&str> = genuine.split('.').collect();
    let other_payload = other.split('.').nth(1).unwrap();
    let tampered = format!("{}.{}.{}", parts[0], other_payload, parts[2]);
    let message = rejected(&f, &f.handler("*"), &tampered).await;
    assert!(
        message.contains("signature verification failed"),
        "{message}"
    );
}

#[tokio::test]
async fn wrong_audience_is_400_bad_jwt() {
    let f = fixture().await;
    let mut claims = update_claims();
    claims["aud"] = json!("integrations provided by someone-else@4me-staging.com");
    let message = rejected(&f, &f.handler("*"), &f.signer.sign(&claims)).await;
    assert!(
        message.contains("unexpected \"aud\" claim value"),
        "{message}"
    );
}

#[tokio::test]
async fn wrong_issuer_is_400_bad_jwt() {
    let f = fixture().await;
    for issuer in [
        "https://wdc.4me-staging.com",
        "https://not-default.4me-staging.com.evil",
        "http://not-default.4me-staging.com",
    ] {
        let mut claims = update_claims();
        claims["iss"] = json!(issuer);
        let message = rejected(&f, &f.handler("*"), &f.signer.sign(&claims)).await;
        assert!(
            message.contains("unexpected \"iss\" claim value"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn xurrent_issuer_is_accepted() {
    let f = fixture().await;
    let mut claims = update_claims();
    claims["iss"] = json!("https://not-default.xurrent-staging.com");
    let (status, message) = send(&f.handler("*"), &f.signer.sign(&claims), Some("x")).await;
    assert_eq!((status, message.as_str()), (200, "Secrets stored"));
}

#[tokio::test]
async fn expired_token_is_400_bad_jwt() {
    let f = fixture().await;
    let mut claims = update_claims();
    claims["exp"] = json!(now() - 3600);
    let message = rejected(&f, &f.handler("*"), &f.signer.sign(&claims)).await;
    assert!(message.contains("token expired"), "{message}");
}

#[tokio::test]
async fn malformed_token_and_unsigned_token_are_400_bad_jwt() {
    let f = fixture().await;
    let message = rejected(&f, &f.handler("*"), "not.a.jwt").await;
    assert!(message.contains("malformed token"), "{message}");
    // alg "none": never accepted.
    let signed = f.signer.sign(&update_claims());
    let payload = signed.split('.').nth(1).unwrap();
    let header = base64_url(br#"{"typ":"JWT","alg":"none"}"#);
    let message = rejected(&f, &f.handler("*"), &format!("{header}.{payload}.")).await;
    assert!(message.contains("algorithm"), "{message}");
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn unsupported_event_is_400_and_stores_nothing() {
    let f = fixture().await;
    let jwt = f.signer.sign(&claims(
        "request.update",
        secrets_payload("typeform", "wdc", application()),
    ));
    let (status, message) = send(&f.handler("*"), &jwt, Some("d")).await;
    assert_eq!(
        (status, message.as_str()),
        (400, "Unsupported event: request.update")
    );
    assert!(f.customer_files().is_empty());
    assert!(f.bus.published().is_empty());
}

/// `app_instance.delete` of an instance the engine never saw created (installed before the
/// lifecycle webhooks existed): the payload names offering and account; announced once.
#[tokio::test]
async fn a_deleted_instance_is_announced_once() {
    let f = fixture().await;
    let update = f.signer.sign(&claims(
        "app_instance.secrets-update",
        secrets_payload("typeform", "wdc", application()),
    ));
    assert_eq!(send(&f.handler("*"), &update, Some("upd-1")).await.0, 200);
    let name = customer_name("typeform", "wdc");
    assert!(
        f.state
            .get(&secrets::applied_key(name.as_str()))
            .await
            .unwrap()
            .is_some()
    );
    let jwt = f.signer.sign(&claims(
        "app_instance.delete",
        secrets_payload("typeform", "wdc", json!({})),
    ));
    for _ in 0..2 {
        assert_eq!(
            send(&f.handler("*"), &jwt, Some("del-1")).await,
            (200, secrets::LIFECYCLE_PUBLISHED_MESSAGE.to_owned())
        );
    }
    let published: Vec<_> = f
        .bus
        .published()
        .into_iter()
        .filter(|event| event.step == app_builder_core::bus::LifecycleStep::Deleted)
        .collect();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(
        (
            published[0].offering.as_str(),
            published[0].account.as_str()
        ),
        ("typeform", "wdc")
    );
    assert!(published[0].keys.is_empty());

    // The engine forgot the installation's durable records.
    let name = customer_name("typeform", "wdc");
    assert_eq!(
        f.state
            .get(&secrets::applied_key(name.as_str()))
            .await
            .unwrap(),
        None
    );

    // Nothing to go by: acknowledged, nothing announced.
    let mut bare = claims("app_instance.delete", json!({}));
    bare["data"]["object_nodeID"] = json!("NG1lLXN0YWdpbmcuY29tL0FwcEluc3RhbmNlLzk5");
    let (status, message) = send(&f.handler("*"), &f.signer.sign(&bare), Some("del-2")).await;
    assert_eq!(status, 200);
    assert!(message.starts_with("Unknown app instance"), "{message}");
    // Without the instance's node id the event is refused.
    let mut broken = claims("app_instance.delete", json!({}));
    broken["data"]["object_nodeID"] = json!("");
    assert_eq!(
        send(&f.handler("*"), &f.signer.sign(&broken), Some("del-3")).await,
        (400, "Missing object_nodeID".to_owned())
    );
    assert_eq!(f.bus.published().len(), 2, "the update and the deletion");
}

#[tokio::test]
async fn secrets_update_without_offering_or_customer_is_400() {
    let f = fixture().await;
    let mut payload = secrets_payload("typeform", "wdc", application());
    payload.as_object_mut().unwrap().remove("app_offering");
    let jwt = f
        .signer
        .sign(&claims("app_instance.secrets-update", payload));
    let (status, message) = send(&f.handler("*"), &jwt, Some("d")).await;
    assert_eq!(
        (status, message.as_str()),
        (400, "Missing app_offering.reference")
    );
    let jwt = f.signer.sign(&claims(
        "app_instance.secrets-update",
        secrets_payload("typeform", "", application()),
    ));
    let (status, message) = send(&f.handler("*"), &jwt, Some("d")).await;
    assert_eq!(
        (status, message.as_str()),
        (400, "Missing customer_account_id")
    );
    // A reference that would shift the secret name is refused.
    let jwt = f.signer.sign(&claims(
        "app_instance.secrets-update",
        secrets_payload("type/form", "wdc", application()),
    ));
    let (status, _) = send(&f.handler("*"), &jwt, Some("d")).await;
    assert_eq!(status, 400);
    assert!(f.customer_files().is_empty());
}

#[tokio::test]
async fn all_four_parts_are_stored_and_falsy_parts_skipped() {
    let f = fixture().await;
    let parts = json!({
        "application": {"client_id": "a", "client_secret": "b"},
        "authorization_application": {"client_id": "c", "client_secret": "d"},
        "policy": {"algorithm": "ES512", "audience": null, "public_key": "k"},
        "secrets": {"typeform_token": "tf"},
        "unrelated": "not stored",
    });
    let jwt = f.signer.sign(&claims(
        "app_instance.secrets-update",
        secrets_payload("typeform", "acme", parts.clone()),
    ));
    assert_eq!(send(&f.handler("*"), &jwt, Some("d-a")).await.0, 200);
    let stored = f.stored("typeform", "acme").await.unwrap();
    for key in [
        "application",
        "authorization_application",
        "policy",
        "secrets",
    ] {
        assert_eq!(stored[key], parts[key], "{key}");
    }
    assert!(stored.get("unrelated").is_none());
    assert!(stored.get("audit_line_id").is_none());

    // null / empty parts are not stored and do not remove the stored ones.
    let jwt = f.signer.sign(&claims(
        "app_instance.secrets-update",
        secrets_payload(
            "typeform",
            "acme",
            json!({"application": null, "secrets": ""}),
        ),
    ));
    assert_eq!(send(&f.handler("*"), &jwt, Some("d-b")).await.0, 200);
    let after = f.stored("typeform", "acme").await.unwrap();
    assert_eq!(after["application"], parts["application"]);
    assert_eq!(after["secrets"], parts["secrets"]);
}

// ---------------------------------------------------------------------------------------------
// Exactly-once deliveries

fn update_of(secrets: Value) -> Value {
    claims(
        "app_instance.secrets-update",
        secrets_payload("typeform", "acme", json!({ "secrets": secrets })),
    )
}

#[tokio::test]
async fn replayed_delivery_is_acknowledged_and_not_applied_twice() {
    let f = fixture().await;
    let first = f.signer.sign(&update_of(json!({"typeform_token": "v1"})));
    assert_eq!(
        send(&f.handler("*"), &first, Some("delivery-1")).await,
        (200, "Secrets stored".to_owned())
    );
    let path = f.store.path_of(&customer_name("typeform", "acme"));
    let inode = file_inode(&path);

    // The same delivery again (4me retry): 200, no write at all.
    assert_eq!(
        send(&f.handler("*"), &first, Some("delivery-1")).await,
        (200, "Secrets stored".to_owned())
    );
    // The same delivery id with other content is refused and writes nothing.
    let other = f.signer.sign(&update_of(json!({"typeform_token": "v2"})));
    assert_eq!(
        send(&f.handler("*"), &other, Some("delivery-1")).await,
        (400, PAYLOAD_MISMATCH_MESSAGE.to_owned())
    );
    assert_eq!(file_inode(&path), inode, "the secret was rewritten");
    let stored = f.stored("typeform", "acme").await.unwrap();
    assert_eq!(stored["secrets"], json!({"typeform_token": "v1"}));
    assert!(stored.get(DELIVERIES_KEY).is_none(), "secrets only");

    // A new delivery is applied.
    assert_eq!(
        send(&f.handler("*"), &other, Some("delivery-2")).await.0,
        200
    );
    let stored = f.stored("typeform", "acme").await.unwrap();
    assert_eq!(stored["secrets"], json!({"typeform_token": "v2"}));
}

#[tokio::test]
async fn a_captured_token_replayed_under_a_new_delivery_id_is_not_applied() {
    let f = fixture().await;
    let old = f.signer.sign(&update_of(json!({"typeform_token": "old"})));
    let new = f
        .signer
        .sign(&update_of(json!({"typeform_token": "rotated"})));
    assert_eq!(send(&f.handler("*"), &old, Some("d-1")).await.0, 200);
    assert_eq!(send(&f.handler("*"), &new, Some("d-2")).await.0, 200);
    // The old token again, under a delivery id never seen: it is known by its iss + jti.
    assert_eq!(
        send(&f.handler("*"), &old, Some("d-fresh")).await,
        (200, "Secrets stored".to_owned())
    );
    assert_eq!(
        f.stored("typeform", "acme").await.unwrap()["secrets"],
        json!({"typeform_token": "rotated"}),
        "the rotated token was rolled back"
    );
}

#[tokio::test]
async fn a_re_signed_redelivery_is_a_duplicate() {
    let f = fixture().await;
    let content = update_of(json!({"typeform_token": "t"}));
    let signed = f.signer.sign(&content);
    assert_eq!(send(&f.handler("*"), &signed, Some("d-1")).await.0, 200);
    let path = f.store.path_of(&customer_name("typeform", "acme"));
    let inode = file_inode(&path);
    // 4me signs the same delivery again (a new jti): the delivery id identifies it.
    let mut again = content.clone();
    again["jti"] = json!(format!("{}-resigned", content["jti"].as_str().unwrap()));
    assert_eq!(
        send(&f.handler("*"), &f.signer.sign(&again), Some("d-1")).await,
        (200, "Secrets stored".to_owned())
    );
    assert_eq!(file_inode(&path), inode, "the secret was rewritten");
}

/// An update issued earlier than the one applied (4me retrying an old delivery late, or an old
/// token replayed once its delivery record has expired) is acknowledged and not applied, key by
/// key: a newer `policy` stays while an older `secrets` would roll back.
#[tokio::test]
async fn an_update_older_than_the_applied_one_is_acknowledged_and_not_applied() {
    let f = fixture().await;
    let mut newer = update_of(json!({"typeform_token": "rotated"}));
    newer["iat"] = json!(now() - 10);
    let mut older = update_of(json!({"typeform_token": "old"}));
    older["iat"] = json!(now() - 500);
    older["data"]["payload"]["policy"] = policy()["policy"].clone();
    assert_eq!(
        send(&f.handler("*"), &f.signer.sign(&newer), Some("n"))
            .await
            .0,
        200
    );
    assert_eq!(
        send(&f.handler("*"), &f.signer.sign(&older), Some("o")).await,
        (200, "Secrets stored".to_owned())
    );
    let stored = f.stored("typeform", "acme").await.unwrap();
    assert_eq!(stored["secrets"], json!({"typeform_token": "rotated"}));
    // The older delivery's other key had never been applied: it is stored.
    assert_eq!(stored["policy"], policy()["policy"]);
    let announced: Vec<Vec<String>> = f.bus.published().into_iter().map(|e| e.keys).collect();
    assert_eq!(
        announced,
        vec![vec!["secrets".to_owned()], vec!["policy".to_owned()]]
    );
    // And an update issued in the same second as the applied one still applies.
    let mut same_second = update_of(json!({"typeform_token": "same-second"}));
    same_second["iat"] = newer["iat"].clone();
    assert_eq!(
        send(&f.handler("*"), &f.signer.sign(&same_second), Some("s"))
            .await
            .0,
        200
    );
    assert_eq!(
        f.stored("typeform", "acme").await.unwrap()["secrets"],
        json!({"typeform_token": "same-second"})
    );
}

/// Each applied update is announced once on the engine's bus, with the names of the keys that
/// changed (never their values); a duplicate announces nothing.
#[tokio::test]
async fn an_applied_update_is_announced_once_on_the_bus() {
    let f = fixture().await;
    let mut content = claims(
        "app_instance.secrets-update",
        secrets_payload("typeform", "acme", application()),
    );
    content["data"]["payload"]["secrets"] = json!({"typeform_token": "tok-secret-value"});
    let jwt = f.signer.sign(&content);
    assert_eq!(send(&f.handler("*"), &jwt, Some("a-1")).await.0, 200);
    assert_eq!(send(&f.handler("*"), &jwt, Some("a-1")).await.0, 200);
    let published = f.bus.published();
    assert_eq!(published.len(), 1, "{published:?}");
    let event = &published[0];
    assert_eq!(
        serde_json::to_value(event).unwrap(),
        json!({
            "domain": DOMAIN, "offering": "typeform", "account": "acme",
            "step": "secrets-updated", "keys": ["application", "secrets"],
            "change": format!("secrets/token/https://{PROVIDER}.{DOMAIN}/{}", content["jti"].as_str().unwrap()),
        })
    );
    assert!(
        !serde_json::to_string(event)
            .unwrap()
            .contains("tok-secret-value")
    );
}

/// A change that cannot be announced fails the delivery (4me retries); the retry applies the
/// same values again and announces them: one announcement, the secret as sent.
#[tokio::test]
async fn a_failed_publish_fails_the_delivery_and_the_retry_announces_it() {
    let f = fixture().await;
    let jwt = f.signer.sign(&update_of(json!({"typeform_token": "t1"})));
    f.bus.fail(true);
    assert_eq!(
        send(&f.handler("*"), &jwt, Some("p-1")).await,
        (500, secrets::PUBLISH_FAILED_MESSAGE.to_owned())
    );
    assert!(f.bus.published().is_empty());
    f.bus.fail(false);
    assert_eq!(
        send(&f.handler("*"), &jwt, Some("p-1")).await,
        (200, "Secrets stored".to_owned())
    );
    assert_eq!(f.bus.published().len(), 1);
    assert_eq!(
        f.stored("typeform", "acme").await.unwrap()["secrets"],
        json!({"typeform_token": "t1"})
    );
}

/// The function dies while it applies a delivery (the invocation is killed mid-flight): until
/// the invocation's deadline a retry is told to come back later; after it, the retry applies
/// the delivery — once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_killed_mid_flight_runs_once_when_retried_after_its_deadline() {
    let f = fixture().await;
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hanging = HangingStore {
        inner: f.store.clone(),
        entered: Arc::new(tokio::sync::Notify::new()),
    };
    let jwt = f
        .signer
        .sign(&update_of(json!({"typeform_token": "killed"})));
    let deadline_ms = u64::try_from(now() + 2).unwrap() * 1000;
    let request = with_deadline(delivery_request(&jwt, Some("k-1")), deadline_ms);
    let stuck = handler(hanging.clone(), f.state.clone(), "*");
    let entered = hanging.entered.clone();
    let attempt = tokio::spawn(async move { stuck.handle(request).await.status().as_u16() });
    entered.notified().await;
    attempt.abort();
    assert!(attempt.await.unwrap_err().is_cancelled());

    let store = CountingStore {
        inner: f.store.clone(),
        writes: writes.clone(),
    };
    let retry = handler(store, f.state.clone(), "*");
    assert_eq!(
        send(&retry, &jwt, Some("k-1")).await.0,
        503,
        "a retry before the deadline must wait"
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        send(&retry, &jwt, Some("k-1")).await,
        (200, "Secrets stored".to_owned())
    );
    assert_eq!(
        send(&retry, &jwt, Some("k-1")).await,
        (200, "Secrets stored".to_owned())
    );
    assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        f.stored("typeform", "acme").await.unwrap()["secrets"],
        json!({"typeform_token": "killed"})
    );
}

/// `request` as Lambda hands it over: with an invocation context whose deadline is
/// `deadline_ms` (milliseconds since the epoch).
fn with_deadline(request: lambda_http::Request, deadline_ms: u64) -> lambda_http::Request {
    use lambda_http::RequestExt as _;
    let mut context = lambda_http::Context::default();
    context.deadline = deadline_ms;
    request.with_lambda_context(context)
}

/// A secret store whose writes never finish (the function is killed inside one).
#[derive(Clone)]
struct HangingStore {
    inner: LocalSecretStore,
    entered: Arc<tokio::sync::Notify>,
}

impl SecretStore for HangingStore {
    async fn get(
        &self,
        name: &app_builder_core::secrets::SecretName,
    ) -> Result<Option<SecretDocument>, app_builder_core::secrets::SecretStoreError> {
        self.inner.get(name).await
    }

    async fn update<F>(
        &self,
        _name: &app_builder_core::secrets::SecretName,
        _f: F,
    ) -> Result<Option<SecretDocument>, app_builder_core::secrets::SecretStoreError>
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        self.entered.notify_one();
        std::future::pending().await
    }

    async fn delete(
        &self,
        name: &app_builder_core::secrets::SecretName,
    ) -> Result<(), app_builder_core::secrets::SecretStoreError> {
        self.inner.delete(name).await
    }

    async fn schedule_deletion(
        &self,
        name: &app_builder_core::secrets::SecretName,
        recovery_days: u32,
    ) -> Result<(), app_builder_core::secrets::SecretStoreError> {
        self.inner.schedule_deletion(name, recovery_days).await
    }
}

fn file_inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[tokio::test]
async fn xurrent_delivery_header_and_jti_identify_deliveries() {
    let f = fixture().await;
    let claims_a = update_of(json!({"n": 1}));
    let jwt = f.signer.sign(&claims_a);
    // No delivery header: the token's jti identifies it.
    assert_eq!(send(&f.handler("*"), &jwt, None).await.0, 200);
    assert_eq!(send(&f.handler("*"), &jwt, None).await.0, 200);
    let path = f.store.path_of(&customer_name("typeform", "acme"));
    let inode = file_inode(&path);
    // Another payload under the same iss + jti is refused.
    let mut reused = update_of(json!({"n": 2}));
    reused["jti"] = claims_a["jti"].clone();
    assert_eq!(
        send(&f.handler("*"), &f.signer.sign(&reused), None).await,
        (400, PAYLOAD_MISMATCH_MESSAGE.to_owned())
    );
    assert_eq!(file_inode(&path), inode);
    assert_eq!(
        f.stored("typeform", "acme").await.unwrap()["secrets"],
        json!({"n": 1})
    );

    // The Xurrent-branded header (any casing) is honoured.
    let content = update_of(json!({"n": 3}));
    let request = |jwt: String| {
        let body = json!({ "jwt": jwt }).to_string();
        api_gateway_request("POST", Some(&body), &[("X-Xurrent-Delivery", "xd-1")])
    };
    assert_eq!(
        status_and_message(
            &f.handler("*")
                .handle(request(f.signer.sign(&content)))
                .await
        )
        .0,
        200
    );
    assert_eq!(
        f.stored("typeform", "acme").await.unwrap()["secrets"],
        json!({"n": 3})
    );
    let inode = file_inode(&path);
    let mut resigned = content.clone();
    resigned["jti"] = json!("another-jti");
    assert_eq!(
        status_and_message(
            &f.handler("*")
                .handle(request(f.signer.sign(&resigned)))
                .await
        )
        .0,
        200
    );
    assert_eq!(file_inode(&path), inode, "xd-1 was applied twice");
}

#[test]
fn legacy_delivery_ids_are_read_once_and_dropped() {
    let update = SecretDocument::try_from(json!({"secrets": {"a": 1}})).unwrap();
    let legacy =
        SecretDocument::try_from(json!({"secrets": {"a": 0}, DELIVERIES_KEY: ["old-1", "old-2"]}))
            .unwrap();
    // A delivery the earlier version recorded is still a duplicate.
    assert!(apply_delivery(Some(&legacy), &update, Some("old-2")).is_none());
    // The next write drops the key.
    let next = apply_delivery(Some(&legacy), &update, Some("new")).unwrap();
    assert_eq!(serde_json::Value::from(next), json!({"secrets": {"a": 1}}));
    let next = apply_delivery(Some(&legacy), &update, None).unwrap();
    assert!(next.get(DELIVERIES_KEY).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_for_one_customer_lose_nothing() {
    let f = fixture().await;
    let handler = Arc::new(handler(f.store.clone(), f.state.clone(), "*"));
    let parts = [
        json!({"application": {"client_id": "a", "client_secret": "s"}}),
        json!({"policy": {"algorithm": "RS256", "audience": null, "public_key": "k"}}),
        json!({"authorization_application": {"client_id": "c", "client_secret": "d"}}),
        json!({"secrets": {"typeform_token": "t"}}),
    ];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let handler = Arc::clone(&handler);
        let jwt = f.signer.sign(&claims(
            "app_instance.secrets-update",
            secrets_payload("typeform", "busy", parts[i % parts.len()].clone()),
        ));
        tasks.push(tokio::spawn(async move {
            let id = format!("concurrent-{i}");
            deliver_until_done(&*handler, &jwt, &id).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), (200, "Secrets stored".to_owned()));
    }
    let stored = f.stored("typeform", "busy").await.unwrap();
    for part in &parts {
        let (key, value) = part.as_object().unwrap().iter().next().unwrap();
        assert_eq!(&stored[key], value, "{key} lost");
    }
    assert!(stored.get(DELIVERIES_KEY).is_none(), "secrets only");
}

/// One delivery arriving many times at once (4me retries while the first attempt still runs,
/// in several containers): it is applied exactly once; the others are duplicates or told to
/// retry later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_copies_of_one_delivery_are_applied_once() {
    let f = fixture().await;
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store = CountingStore {
        inner: f.store.clone(),
        writes: writes.clone(),
    };
    let jwt = f.signer.sign(&update_of(json!({"typeform_token": "once"})));
    let mut tasks = Vec::new();
    for _ in 0..12 {
        // A handler per copy: the containers share only the stores.
        let handler = handler(store.clone(), f.state.clone(), "*");
        let jwt = jwt.clone();
        tasks.push(tokio::spawn(async move {
            status_and_message(&handler.handle(delivery_request(&jwt, Some("same"))).await).0
        }));
    }
    for task in tasks {
        let status = task.await.unwrap();
        assert!(status == 200 || status == 503, "{status}");
    }
    assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        send(&f.handler("*"), &jwt, Some("same")).await,
        (200, "Secrets stored".to_owned())
    );
    assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A secret store counting the writes that happen.
#[derive(Clone)]
struct CountingStore {
    inner: LocalSecretStore,
    writes: Arc<std::sync::atomic::AtomicUsize>,
}

impl SecretStore for CountingStore {
    async fn get(
        &self,
        name: &app_builder_core::secrets::SecretName,
    ) -> Result<Option<SecretDocument>, app_builder_core::secrets::SecretStoreError> {
        self.inner.get(name).await
    }

    async fn update<F>(
        &self,
        name: &app_builder_core::secrets::SecretName,
        f: F,
    ) -> Result<Option<SecretDocument>, app_builder_core::secrets::SecretStoreError>
    where
        F: FnMut(Option<&SecretDocument>) -> Option<SecretDocument> + Send,
    {
        let written = self.inner.update(name, f).await?;
        if written.is_some() {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(written)
    }

    async fn delete(
        &self,
        name: &app_builder_core::secrets::SecretName,
    ) -> Result<(), app_builder_core::secrets::SecretStoreError> {
        self.inner.delete(name).await
    }

    async fn schedule_deletion(
        &self,
        name: &app_builder_core::secrets::SecretName,
        recovery_days: u32,
    ) -> Result<(), app_builder_core::secrets::SecretStoreError> {
        self.inner.schedule_deletion(name, recovery_days).await
    }
}

// ---------------------------------------------------------------------------------------------
// docs/original.md#tests-of-the-original handler-verification.test.js

/// A callback server answering `status` on `/verify`, or never answering on `/hang`.
async fn callback_server(status: u16) -> String {
    let app = axum::Router::new()
        .route(
            "/verify",
            get(move || async move { axum::http::StatusCode::from_u16(status).unwrap() }),
        )
        .route(
            "/hang",
            get(|| async {
                std::future::pending::<()>().await;
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn verify_claims(callback: &str) -> Value {
    claims("webhook.verify", json!({ "callback": callback }))
}

#[tokio::test]
async fn handles_verification_of_webhook() {
    let f = fixture().await;
    let base = callback_server(200).await;
    let jwt = f.signer.sign(&verify_claims(&format!(
        "{base}/verify?code=abc&expires_at=1"
    )));
    assert_eq!(
        send(&f.handler("*"), &jwt, Some("v-1")).await,
        (200, "Webhook verified".to_owned())
    );
    assert!(f.customer_files().is_empty());
}

#[tokio::test]
async fn handles_failed_verification() {
    let f = fixture().await;
    for status in [401, 204, 500] {
        let base = callback_server(status).await;
        let jwt = f
            .signer
            .sign(&verify_claims(&format!("{base}/verify?code=abc")));
        assert_eq!(
            send(&f.handler("*"), &jwt, Some("v-2")).await,
            (500, "Unable to verify webhook".to_owned()),
            "{status}"
        );
    }
    // Unreachable callback, missing callback, non-http callback.
    for payload in [
        json!({"callback": "http://127.0.0.1:9/verify"}),
        json!({}),
        json!({"callback": "file:///etc/passwd"}),
    ] {
        let jwt = f.signer.sign(&claims("webhook.verify", payload.clone()));
        assert_eq!(
            send(&f.handler("*"), &jwt, Some("v-3")).await,
            (500, "Unable to verify webhook".to_owned()),
            "{payload}"
        );
    }
}

#[tokio::test]
async fn verification_callback_that_hangs_times_out_with_500() {
    let f = fixture().await;
    let base = callback_server(200).await;
    let handler = handler_with(
        &f.store,
        &f.state,
        f.bus.clone(),
        context_config(DOMAIN, PROVIDER),
        EnabledOfferings::All,
        Duration::from_millis(200),
    );
    let jwt = f.signer.sign(&verify_claims(&format!("{base}/hang")));
    assert_eq!(
        send(&handler, &jwt, Some("v-4")).await,
        (500, "Unable to verify webhook".to_owned())
    );
}

// ---------------------------------------------------------------------------------------------
// Raw Lambda payloads, as the function is served in Lambda

/// Through `handle_payload` (the Lambda entry): a delivery is stored and answered in the REST
/// format it came in; a body said to be base64 that is not (the event library panics on it)
/// gets 400 and one above the limit 413, neither writing anything; a bus event gets 400.
#[tokio::test]
async fn raw_payloads_are_answered_and_bad_bodies_refused_without_a_write() {
    use app_builder_core::events::{Invocation, MAX_BODY_BYTES};
    let f = fixture().await;
    let handler = f.handler("*");
    let invocation = Invocation::new(
        "arn:aws:lambda:eu-west-1:1:function:secrets",
        Duration::from_secs(30),
    );
    let answer = |payload: Value| handler.handle_payload(payload, invocation);

    let mut bad = api_gateway_event("POST", Some("%%% not base64 %%%"), &[]);
    bad["isBase64Encoded"] = json!(true);
    let refused = answer(bad).await;
    assert_eq!(refused["statusCode"], 400, "{refused}");
    assert!(
        refused["body"]
            .as_str()
            .unwrap()
            .contains("not valid base64")
    );

    let huge = format!("{{\"jwt\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES));
    let refused = answer(api_gateway_event("POST", Some(&huge), &[])).await;
    assert_eq!(refused["statusCode"], 413, "{refused}");

    let event = json!({"id": "1", "source": "aws.events", "detail-type": "Scheduled Event",
        "account": "1", "time": "2026-01-01T00:00:00Z", "region": "eu-west-1",
        "resources": [], "detail": {}});
    assert_eq!(answer(event).await["statusCode"], 400);
    assert_eq!(f.stored("wdc_siebel", "wdc").await, None);
    assert!(f.bus.published().is_empty());

    let jwt = f.signer.sign(&claims(
        "app_instance.secrets-update",
        secrets_payload("wdc_siebel", "wdc", application()),
    ));
    let body = json!({ "jwt": jwt }).to_string();
    let accepted = answer(api_gateway_event(
        "POST",
        Some(&body),
        &[("X-4me-Delivery", "d-raw")],
    ))
    .await;
    assert_eq!(accepted["statusCode"], 200, "{accepted}");
    // The REST (v1) proxy response format: multi-value headers.
    assert!(accepted.get("multiValueHeaders").is_some(), "{accepted}");
    assert!(f.stored("wdc_siebel", "wdc").await.is_some());
}

/// A provider policy rotated by `bootstrap` while the function is warm: the cached provider
/// context fails the new delivery, is read again once, and the delivery is accepted; a token
/// from a key that is no policy's is still refused.
#[tokio::test]
async fn a_rotated_provider_policy_is_picked_up_by_a_warm_function() {
    use app_builder_core::context::ContextLoader;
    use app_builder_core::fourme::{ClientSettings, Endpoints};
    let f = fixture().await;
    let loader = ContextLoader::new(
        context_config(DOMAIN, PROVIDER),
        &f.store,
        Endpoints::for_domain(DOMAIN).unwrap(),
        ClientSettings::default(),
    )
    .unwrap()
    .with_provider_cache(Duration::from_secs(300), Duration::ZERO);
    let handler = SecretsHandler::new(
        loader,
        &f.state,
        f.bus.clone(),
        EnabledOfferings::All,
        Duration::from_secs(5),
    )
    .unwrap();
    let update = |signer: &Signer| {
        signer.sign(&claims(
            "app_instance.secrets-update",
            secrets_payload("wdc_siebel", "wdc", application()),
        ))
    };
    assert_eq!(send(&handler, &update(&f.signer), Some("r-1")).await.0, 200);

    let rotated = Signer::generate();
    f.store
        .upsert(&provider_name(), provider_secret(&rotated, AUDIENCE))
        .await
        .unwrap();
    assert_eq!(
        send(&handler, &update(&rotated), Some("r-2")).await,
        (200, "Secrets stored".to_owned())
    );
    let (status, message) = send(&handler, &update(&Signer::generate()), Some("r-3")).await;
    assert_eq!(status, 400, "{message}");
}
