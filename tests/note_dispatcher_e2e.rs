//! End to end, note-dispatcher (docs/original.md#tests-of-the-original): the real `secrets` and
//! `note-dispatcher` handlers, each served over HTTP as API Gateway calls them, built from their
//! Lambda settings, over AWS Secrets Manager on moto; the 4me sandbox installs the offering
//! (its `app_instance.secrets-update` deliveries reach the secrets function, which stores the
//! customer's application and policy), then an automation rule of the sandbox calls the
//! note-dispatcher, which translates through the Fun Translations fake and posts to the capture
//! server. Forged, replayed and cross-customer webhooks are rejected without reaching it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::sync::Arc;

use app_builder_core::context::ContextLoader;
use app_builder_core::events::Invocation;
use app_builder_core::fourme::ClientSettings;
use app_builder_core::secrets::{AwsSecretStore, SecretStore};
use app_builder_core::state::DynamoStateStore;
use app_builder_sandbox::fakes::{CaptureServer, FunTranslations};
use app_builder_sandbox::{Delivery, InstallOptions, InstalledApp};
use base64::Engine as _;
use note_dispatcher::handler::{COMPLETE_MESSAGE, DEFAULT_ATTEMPT_TIME};
use note_dispatcher::installation::FORGOTTEN_MESSAGE;
use note_dispatcher::{DispatcherConfig, NoteDispatcher, TRANSLATIONS};
use serde_json::{Value, json};
use support::gateway::serve_payload;
use support::{PROVIDER, Provider, Subscription, WAIT, moto_store, unique_app};

const OFFERING: &str = "note-dispatcher";
const CUSTOMER: &str = "customer-a";
const OTHER_CUSTOMER: &str = "customer-b";
const FUNCTION_ARN: &str =
    "arn:aws:lambda:eu-west-1:123456789012:function:note-dispatcher-IntegrationFunction-E2e1";

/// The deployed engine: provider + secrets function, the served note-dispatcher, the fakes.
struct World {
    provider: Provider<AwsSecretStore>,
    translations: FunTranslations,
    /// The customer's target URL (`payload.url`).
    target: CaptureServer,
    dispatcher_url: String,
    dispatcher: Arc<NoteDispatcher<AwsSecretStore, DynamoStateStore>>,
    /// What the stack's `InstallationChanged` rule delivers (an SQS target on moto).
    installations: Subscription,
}

impl World {
    async fn start() -> World {
        World::with_enabled_offerings("typeform, note-dispatcher").await
    }

    /// The engine whose secrets function has `PARAM_ENABLED_OFFERINGS=enabled`.
    async fn with_enabled_offerings(enabled: &str) -> World {
        let store = moto_store().await;
        let app = unique_app("e2e-nd");
        let provider = Provider::start(store, &app, enabled).await;
        let translations = FunTranslations::start().await.unwrap();
        let target = CaptureServer::start().await.unwrap();

        // The note-dispatcher as its main builds it, from its Lambda environment.
        let env = provider
            .integration_env(OFFERING)
            .with("FUNTRANSLATIONS_API_URL", translations.url())
            .with("NOTE_DISPATCHER_ALLOW_PRIVATE_URLS", "true");
        let settings = env.settings();
        let context = settings.context_config(true).unwrap();
        let config = DispatcherConfig::from_settings(&settings).unwrap();
        let endpoints = env.endpoints(&context.domain);
        let loader = ContextLoader::new(
            context,
            provider.store.clone(),
            endpoints,
            ClientSettings::default(),
        )
        .unwrap();
        let state = DynamoStateStore::from_env(env.get("STATE_TABLE").unwrap()).await;
        let dispatcher = Arc::new(NoteDispatcher::new(loader, state, config).unwrap());
        let served_dispatcher = Arc::clone(&dispatcher);
        // Served as Lambda runs it: every payload through the one entry point.
        let served = serve_payload("/integration", move |payload| {
            let dispatcher = Arc::clone(&served_dispatcher);
            async move {
                let invocation = Invocation::new(FUNCTION_ARN, DEFAULT_ATTEMPT_TIME);
                dispatcher.handle_payload(payload, invocation).await
            }
        })
        .await;
        let installations = provider
            .bus
            .subscribe(
                "crates/note-dispatcher/template.yaml",
                provider.sandbox.domain(),
                OFFERING,
            )
            .await;

        // The offering as the provider configured it (docs/original.md#note-dispatcher: RS512 policy).
        provider.sandbox.seed_app_offering(
            PROVIDER,
            OFFERING,
            json!({
                "name": "Log Note Dispatcher Integration",
                "policyJwtAlg": "rs512",
                "webhookUriTemplate": format!("{}?account={{account}}", served.url),
            }),
        );
        World {
            provider,
            translations,
            target,
            dispatcher_url: served.url,
            dispatcher,
            installations,
        }
    }

    /// Installs the offering for `customer`; both secrets deliveries must have been stored.
    async fn install(&self, customer: &str) -> InstalledApp {
        let installed = self
            .provider
            .sandbox
            .install_app(OFFERING, customer, InstallOptions::default())
            .await
            .unwrap();
        assert_eq!(installed.deliveries.len(), 2, "application + policy");
        for delivery in &installed.deliveries {
            assert_eq!(delivery.event, "app_instance.secrets-update");
            assert_eq!(delivery.uri, self.provider.secrets_url);
            assert_eq!(delivery.status, Some(200), "secrets function answered");
        }
        installed
    }

    fn note_payload(&self, text: &str) -> Value {
        json!({"text": text, "url": format!("{}/notes", self.target.url())})
    }

    /// The automation rule of `installed` fires for a note with `text`.
    async fn automation_rule(&self, installed: &InstalledApp, text: &str) -> Delivery {
        self.provider
            .sandbox
            .trigger_app_webhook(&installed.app_instance_id, self.note_payload(text))
            .await
            .unwrap()
    }

    /// POSTs `{"jwt": jwt}` to the served note-dispatcher for `account` as 4me would.
    async fn post(&self, account: &str, delivery_id: &str, jwt: &str) -> (u16, String) {
        let response = reqwest::Client::new()
            .post(format!("{}?account={account}", self.dispatcher_url))
            .header("X-4me-Delivery", delivery_id)
            .header(
                "User-Agent",
                "4me/1.0 (https://developer.4me.com/v1/webhooks)",
            )
            .json(&json!({ "jwt": jwt }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body["message"].as_str().unwrap().to_owned())
    }

    /// One note went through (translation + target), used before a rejection is tried.
    async fn dispatched_once(&self, installed: &InstalledApp) -> Delivery {
        let delivery = self.automation_rule(installed, "a first note").await;
        assert_eq!(
            delivery.status,
            Some(200),
            "the genuine note was dispatched"
        );
        assert_eq!(self.target.wait_for(1, WAIT).await.len(), 1);
        assert_eq!(self.translations.calls().len(), 1);
        delivery
    }

    /// After a rejection: still only the one genuine dispatch.
    fn assert_nothing_more_dispatched(&self) {
        assert_eq!(
            self.translations.calls().len(),
            1,
            "the rejected webhook was translated"
        );
        assert_eq!(
            self.target.requests().len(),
            1,
            "the rejected webhook reached the customer's URL"
        );
    }
}

/// The claims of a compact JWS (read without verification, to forge variants of them).
fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn installs_note_dispatcher_and_dispatches_translated_note_through_secrets_manager() {
    let world = World::start().await;
    let installed = world.install(CUSTOMER).await;

    // The secrets function stored the customer's application and policy in Secrets Manager.
    let name = world.provider.customer_secret(OFFERING, CUSTOMER);
    let stored = Value::from(world.provider.store.get(&name).await.unwrap().unwrap());
    assert_eq!(
        stored["application"]["client_id"],
        installed.customer_credentials.client_id.as_str()
    );
    assert_eq!(
        stored["application"]["client_secret"],
        installed.customer_credentials.client_secret.as_str()
    );
    assert_eq!(stored["policy"]["algorithm"], "RS512");
    assert_eq!(
        stored["policy"]["public_key"].as_str(),
        installed.customer_policy.public_key_pem.as_deref()
    );

    // A note: the automation rule reaches the served note-dispatcher.
    let delivery = world.automation_rule(&installed, "Hello there").await;
    assert_eq!(
        delivery.uri,
        format!("{}?account={CUSTOMER}", world.dispatcher_url)
    );
    assert_eq!(delivery.status, Some(200));
    assert_eq!(delivery.attempts, 1);

    // The Fun Translations fake was asked for a random style.
    let calls = world.translations.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].text.as_deref(), Some("Hello there"));
    assert!(TRANSLATIONS.contains(&calls[0].style.as_str()));

    // The capture server received {input, translationResponse}.
    let posted = world.target.wait_for(1, WAIT).await;
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].method, "POST");
    assert_eq!(posted[0].path, "/notes");
    let body = posted[0].json().unwrap();
    assert_eq!(body["input"], delivery.data);
    assert_eq!(body["input"]["event"], "automation_rule");
    assert_eq!(body["input"]["payload"]["text"], "Hello there");
    assert_eq!(
        body["translationResponse"]["translated"],
        FunTranslations::translate(&calls[0].style, "Hello there")
    );
    assert_eq!(body["translationResponse"]["text"], "Hello there");
    assert_eq!(body["translationResponse"]["translation"], calls[0].style);
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["input", "translationResponse"]);
}

#[tokio::test]
async fn forged_token_signed_with_another_key_is_rejected_and_not_dispatched() {
    let world = World::start().await;
    let installed = world.install(CUSTOMER).await;
    let genuine = world.dispatched_once(&installed).await;

    // The same claims (new jti), signed with a key 4me never gave this customer.
    let forger = world
        .provider
        .sandbox
        .create_webhook_policy(
            CUSTOMER,
            "rs512",
            installed.customer_policy.audience.as_deref(),
        )
        .unwrap();
    let mut claims = claims_of(&genuine.jwt);
    claims["jti"] = json!(uuid::Uuid::new_v4().to_string());
    claims["data"]["payload"]["text"] = json!("forged note");
    let forged = world
        .provider
        .sandbox
        .sign_claims(&forger.id, &claims)
        .unwrap();

    let (status, message) = world
        .post(CUSTOMER, &uuid::Uuid::new_v4().to_string(), &forged)
        .await;
    assert_eq!(status, 400, "{message}");
    assert!(message.starts_with("Bad JWT - "), "{message}");
    world.assert_nothing_more_dispatched();
}

#[tokio::test]
async fn replayed_delivery_is_not_dispatched_again() {
    let world = World::start().await;
    let installed = world.install(CUSTOMER).await;
    let genuine = world.dispatched_once(&installed).await;

    // Exactly the same delivery again (same X-4me-Delivery, same token): acknowledged, so
    // that 4me stops retrying, but not dispatched a second time.
    let (status, message) = world.post(CUSTOMER, &genuine.id, &genuine.jwt).await;
    assert_eq!((status, message.as_str()), (200, COMPLETE_MESSAGE));
    world.assert_nothing_more_dispatched();

    // The same token under a new delivery id: the token id still identifies it.
    let (status, message) = world
        .post(CUSTOMER, &uuid::Uuid::new_v4().to_string(), &genuine.jwt)
        .await;
    assert_eq!((status, message.as_str()), (200, COMPLETE_MESSAGE));
    world.assert_nothing_more_dispatched();
}

#[tokio::test]
async fn cross_customer_token_is_rejected_and_not_dispatched() {
    let world = World::start().await;
    world.install(CUSTOMER).await;
    let other = world.install(OTHER_CUSTOMER).await;

    // Customer B's genuine note goes through for B ...
    let genuine_b = world.dispatched_once(&other).await;
    assert_eq!(
        genuine_b.uri,
        format!("{}?account={OTHER_CUSTOMER}", world.dispatcher_url)
    );

    // ... but B's token sent for account A is refused (A's policy, A's issuer).
    let (status, message) = world
        .post(CUSTOMER, &uuid::Uuid::new_v4().to_string(), &genuine_b.jwt)
        .await;
    assert_eq!(status, 400, "{message}");
    assert!(message.starts_with("Bad JWT - "), "{message}");
    assert!(message.ends_with(&format!(" - {CUSTOMER}")), "{message}");
    world.assert_nothing_more_dispatched();
}

#[tokio::test]
async fn offering_not_enabled_stores_nothing_and_notes_are_not_dispatched() {
    let world = World::with_enabled_offerings("typeform").await;
    let installed = world
        .provider
        .sandbox
        .install_app(OFFERING, CUSTOMER, InstallOptions::default())
        .await
        .unwrap();
    // The secrets function acknowledges both deliveries (no retries) but stores nothing.
    assert_eq!(installed.deliveries.len(), 2);
    for delivery in &installed.deliveries {
        assert_eq!(delivery.status, Some(200));
    }
    let name = world.provider.customer_secret(OFFERING, CUSTOMER);
    assert!(world.provider.store.get(&name).await.unwrap().is_none());

    // Without a customer secret the note-dispatcher refuses the automation rule's webhook.
    let delivery = world.automation_rule(&installed, "Hello there").await;
    assert_eq!(delivery.status, Some(400));
    let (status, message) = world
        .post(CUSTOMER, &uuid::Uuid::new_v4().to_string(), &delivery.jwt)
        .await;
    assert_eq!(
        (status, message.as_str()),
        (400, "Unable to determine customer context")
    );
    assert!(world.translations.calls().is_empty(), "translation called");
    assert!(world.target.requests().is_empty(), "target URL called");
}

#[tokio::test]
async fn forged_secrets_update_cannot_plant_a_policy_for_forged_notes() {
    let world = World::start().await;
    let installed = world.install(CUSTOMER).await;
    let name = world.provider.customer_secret(OFFERING, CUSTOMER);
    let before = Value::from(world.provider.store.get(&name).await.unwrap().unwrap());

    // An attacker copies the genuine policy delivery but puts in their own public key, signed
    // with their own key, and posts it to the public secrets endpoint.
    let attacker = world
        .provider
        .sandbox
        .create_webhook_policy("attacker", "rs512", None)
        .unwrap();
    let mut claims = claims_of(&installed.deliveries[1].jwt);
    claims["jti"] = json!(uuid::Uuid::new_v4().to_string());
    claims["data"]["payload"]["policy"]["public_key"] = json!(attacker.public_key_pem);
    let forged = world
        .provider
        .sandbox
        .sign_claims(&attacker.id, &claims)
        .unwrap();
    let response = reqwest::Client::new()
        .post(&world.provider.secrets_url)
        .header("X-4me-Delivery", uuid::Uuid::new_v4().to_string())
        .json(&json!({ "jwt": forged }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().starts_with("Bad JWT - "),
        "{body}"
    );
    let after = Value::from(world.provider.store.get(&name).await.unwrap().unwrap());
    assert_eq!(
        after, before,
        "the forged update changed the customer secret"
    );

    // A note signed with the attacker's key is therefore still refused.
    let genuine = world.dispatched_once(&installed).await;
    let mut note = claims_of(&genuine.jwt);
    note["jti"] = json!(uuid::Uuid::new_v4().to_string());
    let forged_note = world
        .provider
        .sandbox
        .sign_claims(&attacker.id, &note)
        .unwrap();
    let (status, message) = world
        .post(CUSTOMER, &uuid::Uuid::new_v4().to_string(), &forged_note)
        .await;
    assert_eq!(status, 400, "{message}");
    world.assert_nothing_more_dispatched();
}

#[tokio::test]
async fn uninstall_reaches_the_dispatcher_on_the_bus_and_its_customer_secret_goes() {
    let world = World::start().await;
    let installed = world.install(CUSTOMER).await;
    let genuine = world.dispatched_once(&installed).await;
    // The stack's rule asks for uninstalls only: the installation's secrets updates and
    // lifecycle steps so far never reached the function.
    assert_eq!(world.installations.events().await, Vec::<Value>::new());

    let sent = world
        .provider
        .sandbox
        .uninstall_app(&installed.app_instance_id)
        .await
        .unwrap();
    assert_eq!(sent[0].status, Some(200));
    let events = world.installations.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"]["step"], "deleted");
    assert_eq!(events[0]["detail"]["account"], CUSTOMER);
    let invocation = Invocation::new(FUNCTION_ARN, DEFAULT_ATTEMPT_TIME);
    let result = world
        .dispatcher
        .handle_payload(events[0].clone(), invocation)
        .await
        .unwrap();
    assert_eq!(result["statusCode"], 200, "{result}");
    let body: Value = serde_json::from_str(result["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["message"], FORGOTTEN_MESSAGE);

    // The customer secret is scheduled for deletion (recoverable for 30 days) ...
    let name = world.provider.customer_secret(OFFERING, CUSTOMER);
    assert_eq!(world.provider.store.get(&name).await.unwrap(), None);
    assert!(
        world
            .provider
            .store
            .scheduled_for_deletion(&name)
            .await
            .unwrap()
    );
    // ... so a token signed for the uninstalled account is no longer dispatched.
    let (status, message) = world.post(CUSTOMER, "after-uninstall", &genuine.jwt).await;
    assert_eq!(
        (status, message.as_str()),
        (400, note_dispatcher::handler::NO_CUSTOMER_CONTEXT_MESSAGE)
    );
    world.assert_nothing_more_dispatched();
}
