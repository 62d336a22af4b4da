//! End to end, Typeform: the real `secrets` and `typeform` functions, built from their Lambda
//! settings over AWS Secrets Manager, DynamoDB and EventBridge on moto, the secrets function
//! served as the provider's webhook and the Typeform function served as its API Gateway
//! integration. The sandbox installs the offering (the secrets function stores the customer's
//! application, policy and Typeform token and announces each change on the engine's bus); the
//! Typeform template's rule, deployed on moto with a queue as its target, delivers the events
//! to the Typeform function, which registers a webhook with a secret at the
//! Typeform fake; a survey response signed by the fake becomes a note on the sandbox request,
//! while forged, replayed and cross-customer deliveries add nothing.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::sync::Arc;

use app_builder_core::context::ContextLoader;
use app_builder_core::events::{Invocation, InvocationFailed};
use app_builder_core::fourme::ClientSettings;
use app_builder_core::secrets::{AwsSecretStore, SecretStore};
use app_builder_core::state::DynamoStateStore;
use app_builder_sandbox::typeform::{TypeformDelivery, TypeformFake, sign};
use app_builder_sandbox::{InstallOptions, SeededRequest};
use serde_json::{Value, json};
use support::gateway::serve_payload;
use support::{Provider, Subscription, moto_store, unique_app};
use typeform::{
    DEFAULT_ATTEMPT_TIME, FunctionSettings, TYPEFORM_SECRET_KEY, TypeformFunction,
    typeform_api_from_settings,
};

const OFFERING: &str = "typeform";

/// The tag of the webhook the function registers for `account`'s installation.
fn tag(account: &str) -> String {
    typeform::api::webhook_tag(support::PROVIDER, OFFERING, account)
}
const FUNCTION_ARN: &str =
    "arn:aws:lambda:eu-west-1:123456789012:function:typeform-IntegrationFunction-E2e123";

/// The deployed engine: provider + secrets function, the Typeform function (served, and
/// invocable with EventBridge events), the Typeform fake.
struct World {
    provider: Provider<AwsSecretStore>,
    typeform: TypeformFake,
    function: Arc<TypeformFunction<AwsSecretStore, DynamoStateStore>>,
    /// The Typeform function's API URL (its configuration item's `api_url`).
    api_url: String,
    /// The Typeform stack's rule on the engine's bus (its target stands in for the function).
    installations: Subscription,
}

/// A customer with the offering installed.
struct Customer {
    account: String,
    form_id: String,
    instance_id: String,
    request: SeededRequest,
    /// The payload of the installation's second secrets delivery (policy + secrets).
    secrets_payload: Value,
}

impl World {
    async fn start() -> World {
        let store = moto_store().await;
        let app = unique_app("e2e-tf");
        let provider = Provider::start(store, &app, "typeform, note-dispatcher").await;
        let typeform = TypeformFake::start().await.unwrap();

        // The Typeform function as its main builds it, from its Lambda environment.
        let env = provider
            .integration_env(OFFERING)
            .with("TYPEFORM_API_URL", typeform.url())
            .with("INSTANCE_RETRY_TIMEOUT", "50");
        let settings = env.settings();
        let context = settings.context_config(true).unwrap();
        let api = typeform_api_from_settings(&settings).unwrap();
        let function_settings = FunctionSettings::from_settings(&settings);
        let endpoints = env.endpoints(&context.domain);
        let loader = ContextLoader::new(
            context,
            provider.store.clone(),
            endpoints.clone(),
            ClientSettings::default(),
        )
        .unwrap();
        let state = DynamoStateStore::from_env(env.get("STATE_TABLE").unwrap()).await;
        let function = Arc::new(TypeformFunction::new(loader, api, state, function_settings));
        let served_function = Arc::clone(&function);
        let served = serve_payload("/integration", move |event| {
            let function = Arc::clone(&served_function);
            async move {
                let invocation = Invocation::new(FUNCTION_ARN, DEFAULT_ATTEMPT_TIME);
                function.handle_payload(event, invocation).await
            }
        })
        .await;

        provider
            .deploy_integration(
                OFFERING,
                "Typeform Integration",
                "Typeform integration Typeform webhook",
                FUNCTION_ARN,
                &served.url,
            )
            .await;
        let installations = provider
            .bus
            .subscribe(
                "crates/typeform/template.yaml",
                provider.sandbox.domain(),
                OFFERING,
            )
            .await;
        World {
            provider,
            typeform,
            function,
            api_url: served.url,
            installations,
        }
    }

    /// The customer fills in the installation form (form URL, Typeform token, request) and
    /// installs; the secrets function must have stored both deliveries.
    async fn install(&self, account: &str, form_id: &str, token: &str) -> Customer {
        self.typeform.add_form(form_id, token);
        let request = self
            .provider
            .sandbox
            .seed_request(account, "Survey results");
        let mut custom_fields = serde_json::Map::new();
        custom_fields.insert(
            "form_url".into(),
            json!(format!("https://mysite.typeform.com/to/{form_id}")),
        );
        custom_fields.insert(
            "request_id".into(),
            json!(request.request_id.parse::<u64>().unwrap()),
        );
        let mut secrets = serde_json::Map::new();
        secrets.insert("typeform_token".into(), json!(token));
        let installed = self
            .provider
            .sandbox
            .install_app(
                OFFERING,
                account,
                InstallOptions {
                    secrets,
                    custom_fields,
                    ..InstallOptions::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(installed.deliveries.len(), 2, "application + policy");
        for delivery in &installed.deliveries {
            assert_eq!(delivery.uri, self.provider.secrets_url);
            assert_eq!(delivery.status, Some(200), "secrets function answered");
        }
        Customer {
            account: account.to_owned(),
            form_id: form_id.to_owned(),
            instance_id: installed.app_instance_id,
            request,
            secrets_payload: installed.deliveries[1].data["payload"].clone(),
        }
    }

    async fn stored(&self, account: &str) -> Value {
        let name = self.provider.customer_secret(OFFERING, account);
        Value::from(self.provider.store.get(&name).await.unwrap().unwrap())
    }

    /// EventBridge invokes the function with the `Installation changed` events the secrets
    /// function published for `account` (through the Typeform stack's rule).
    async fn secret_events(&self, account: &str) {
        for (step, result) in self.secret_event_results(account).await {
            let result = result.unwrap_or_else(|failed| panic!("{step}: {failed}"));
            assert_eq!(result["statusCode"], 200, "{step}: {result}");
        }
    }

    /// As [`World::secret_events`], returning each event's step and invocation result.
    async fn secret_event_results(
        &self,
        account: &str,
    ) -> Vec<(String, Result<Value, InvocationFailed>)> {
        let events = self.installations.events().await;
        assert!(
            !events.is_empty(),
            "no installation event reached the rule's target"
        );
        let mut results = Vec::new();
        for event in events {
            // A late event of another customer is handled as EventBridge would, not reported.
            let ours = event["detail"]["account"] == account;
            let step = event["detail"]["step"].as_str().unwrap().to_owned();
            let invocation = Invocation::new(FUNCTION_ARN, DEFAULT_ATTEMPT_TIME);
            let result = self.function.handle_payload(event, invocation).await;
            if ours {
                results.push((step, result));
            }
        }
        results
    }

    /// The customer changes the Typeform token in 4me: 4me sends an
    /// `app_instance.secrets-update` with the new `secrets` to the provider webhook (the served
    /// secrets function), which announces the change on the engine's bus.
    async fn change_token(&self, customer: &Customer, token: &str) -> Value {
        let mut payload = customer.secrets_payload.clone();
        let payload_map = payload.as_object_mut().unwrap();
        payload_map.remove("policy");
        payload_map.insert("secrets".into(), json!({ "typeform_token": token }));
        let delivery = self
            .provider
            .sandbox
            .deliver_webhook_event(
                &self.provider.webhook_id,
                "app_instance.secrets-update",
                payload,
            )
            .await
            .unwrap();
        assert_eq!(delivery.status, Some(200), "secrets function answered");
        let results = self.secret_event_results(&customer.account).await;
        let mut updates: Vec<Value> = results
            .into_iter()
            .filter(|(step, _)| step == "secrets-updated")
            .map(|(_, result)| result.unwrap_or_else(|failed| panic!("{failed}")))
            .collect();
        assert_eq!(updates.len(), 1, "one change, one event");
        updates.remove(0)
    }

    /// POSTs a Typeform delivery to the function's API URL for `account` → (status, message).
    async fn post(&self, account: &str, body: &[u8], signature: Option<&str>) -> (u16, String) {
        self.post_as(account, body, signature, false).await
    }

    /// As [`World::post`]; with `base64` API Gateway hands the body over base64-encoded.
    async fn post_as(
        &self,
        account: &str,
        body: &[u8],
        signature: Option<&str>,
        base64: bool,
    ) -> (u16, String) {
        let mut request = reqwest::Client::new()
            .post(&self.api_url)
            .query(&[("account", account)])
            .header("content-type", "application/json")
            .header("user-agent", "Typeform Webhooks")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("Typeform-Signature", signature);
        }
        if base64 {
            request = request.header(support::gateway::BASE64_BODY_HEADER, "1");
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body["message"].as_str().unwrap().to_owned())
    }

    fn notes(&self, customer: &Customer) -> Vec<String> {
        self.provider.sandbox.request_notes(&customer.request.id)
    }

    /// Install, EventBridge, a first survey response noted: the state each rejection starts from.
    async fn installed_with_one_note(
        &self,
        account: &str,
        form_id: &str,
    ) -> (Customer, TypeformDelivery) {
        let customer = self
            .install(account, form_id, &format!("tfp_{account}"))
            .await;
        self.secret_events(account).await;
        let delivery = self
            .typeform
            .send_response(form_id, survey_response(form_id, true))
            .await
            .unwrap();
        assert_eq!(delivery.status, 200, "{}", delivery.response);
        assert_eq!(self.notes(&customer).len(), 1);
        (customer, delivery)
    }
}

/// A `form_response` of a one-question (yes/no) survey.
fn survey_response(form_id: &str, happy: bool) -> Value {
    json!({
        "form_id": form_id,
        "token": uuid::Uuid::new_v4().simple().to_string(),
        "submitted_at": "2026-11-23T10:00:00Z",
        "definition": {"id": form_id, "title": "Customer survey", "fields": [
            {"id": "f1", "title": "Happy?", "type": "yes_no", "ref": "happy"}
        ]},
        "answers": [{"type": "boolean", "boolean": happy,
                     "field": {"id": "f1", "type": "yes_no", "ref": "happy"}}]
    })
}

const YES_NOTE: &str = "Received answer for \"Customer survey\":\n - \"Happy?\": Yes";

#[tokio::test]
async fn installs_typeform_registers_webhook_and_notes_survey_response_through_secrets_manager() {
    let world = World::start().await;
    let customer = world
        .install("customer-a", "FormA1", "tfp_customer_a")
        .await;

    // The secrets function stored the Typeform token entered at installation.
    let stored = world.stored(&customer.account).await;
    assert_eq!(stored["secrets"]["typeform_token"], "tfp_customer_a");
    assert!(stored.get(TYPEFORM_SECRET_KEY).is_none());

    // EventBridge: the Typeform webhook is registered once, with a secret, at our API URL.
    world.secret_events(&customer.account).await;
    let webhook = world
        .typeform
        .webhook(&customer.form_id, &tag(&customer.account))
        .unwrap();
    assert_eq!(
        webhook.url,
        format!("{}?account={}", world.api_url, customer.account)
    );
    assert!(webhook.enabled);
    assert_eq!(webhook.writes, 1, "the second event registered again");
    let secret = webhook.secret.clone().unwrap();
    assert_eq!(secret.len(), 128, "64 random bytes, hex");
    let stored = world.stored(&customer.account).await;
    assert_eq!(stored[TYPEFORM_SECRET_KEY], secret.as_str());
    let instance = world
        .provider
        .sandbox
        .record(&customer.instance_id)
        .unwrap();
    assert_eq!(instance["suspended"], false, "{instance}");

    // A survey response, signed by Typeform, becomes a note on the request.
    let delivery = world
        .typeform
        .send_response(&customer.form_id, survey_response(&customer.form_id, true))
        .await
        .unwrap();
    assert_eq!(delivery.signature, Some(sign(&secret, &delivery.body)));
    assert_eq!(delivery.status, 200, "{}", delivery.response);
    assert_eq!(world.notes(&customer), vec![YES_NOTE.to_owned()]);

    // Another response signed with the registered secret, handed over by API Gateway with a
    // base64-encoded body (binary media type): the signature is checked over the raw bytes.
    let event = json!({
        "event_id": "01E2E0BASE64",
        "event_type": "form_response",
        "form_response": survey_response(&customer.form_id, false),
    });
    let body = serde_json::to_vec(&event).unwrap();
    let (status, message) = world
        .post_as(&customer.account, &body, Some(&sign(&secret, &body)), true)
        .await;
    assert_eq!(status, 200, "{message}");
    assert_eq!(
        world.notes(&customer),
        vec![
            YES_NOTE.to_owned(),
            "Received answer for \"Customer survey\":\n - \"Happy?\": No".to_owned()
        ]
    );
}

#[tokio::test]
async fn forged_typeform_delivery_is_rejected_and_adds_no_note() {
    let world = World::start().await;
    let (customer, genuine) = world.installed_with_one_note("customer-a", "FormF1").await;

    // A new event signed with a secret that is not the registered one.
    let mut event: Value = serde_json::from_slice(&genuine.body).unwrap();
    event["event_id"] = json!("FORGED0001");
    let body = serde_json::to_vec(&event).unwrap();
    let forged_signature = sign(&"f".repeat(128), &body);
    let (status, message) = world
        .post(&customer.account, &body, Some(&forged_signature))
        .await;
    assert_eq!((status, message.as_str()), (400, "Bad signature"));

    // The genuine signature over altered bytes, and no signature at all.
    let (status, _) = world
        .post(&customer.account, &body, genuine.signature.as_deref())
        .await;
    assert_eq!(status, 400);
    let (status, _) = world.post(&customer.account, &body, None).await;
    assert!(matches!(status, 400 | 401), "unsigned delivery: {status}");

    assert_eq!(world.notes(&customer), vec![YES_NOTE.to_owned()]);
}

#[tokio::test]
async fn replayed_typeform_delivery_adds_no_second_note() {
    let world = World::start().await;
    let (customer, genuine) = world.installed_with_one_note("customer-a", "FormR1").await;

    // Typeform retries the delivery byte for byte: acknowledged, no second note.
    let replay = world.typeform.redeliver(&genuine).await.unwrap();
    assert_eq!(replay.status, 200, "{}", replay.response);
    assert_eq!(world.notes(&customer), vec![YES_NOTE.to_owned()]);
}

#[tokio::test]
async fn cross_customer_typeform_delivery_is_rejected_and_adds_no_note() {
    let world = World::start().await;
    let (customer_a, _) = world.installed_with_one_note("customer-a", "FormX1").await;
    let (customer_b, genuine_b) = world.installed_with_one_note("customer-b", "FormX2").await;
    let secret_a = world.stored(&customer_a.account).await[TYPEFORM_SECRET_KEY].clone();
    let secret_b = world.stored(&customer_b.account).await[TYPEFORM_SECRET_KEY].clone();
    assert_ne!(
        secret_a, secret_b,
        "each customer has its own webhook secret"
    );

    // B's genuinely signed delivery sent for account A: A's secret does not verify it.
    let (status, message) = world
        .post(
            &customer_a.account,
            &genuine_b.body,
            genuine_b.signature.as_deref(),
        )
        .await;
    assert_eq!((status, message.as_str()), (400, "Bad signature"));
    assert_eq!(world.notes(&customer_a), vec![YES_NOTE.to_owned()]);
    assert_eq!(world.notes(&customer_b), vec![YES_NOTE.to_owned()]);
}

#[tokio::test]
async fn wrong_typeform_token_suspends_instance_until_customer_fixes_token() {
    let world = World::start().await;
    // The form belongs to another token than the one the customer entered.
    let customer = world.install("customer-a", "FormT1", "tfp_mistyped").await;
    world.typeform.revoke_token("tfp_mistyped");
    world.typeform.add_form("FormT1", "tfp_real");

    // EventBridge: Typeform refuses the registration, the instance is suspended.
    let results = world.secret_event_results(&customer.account).await;
    let updates = results.iter().filter(|(step, _)| step == "secrets-updated");
    assert_eq!(updates.clone().count(), 2, "{results:?}");
    for (step, result) in updates {
        // Only the customer can fix the token: acknowledged with 400 rather than a function
        // error Lambda would retry in vain.
        let result = result.as_ref().unwrap();
        assert_eq!(result["statusCode"], 400, "{step}: {result}");
        let body: Value = serde_json::from_str(result["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["message"], "Unable to create Typeform webhook");
    }
    assert!(
        world
            .typeform
            .webhook("FormT1", &tag(&customer.account))
            .is_none()
    );
    let instance = world
        .provider
        .sandbox
        .record(&customer.instance_id)
        .unwrap();
    assert_eq!(instance["suspended"], true, "{instance}");
    assert_eq!(
        instance["suspensionComment"],
        "Error creating Typeform webhook. Please check the Typeform token and Form ID."
    );
    assert!(
        world
            .stored(&customer.account)
            .await
            .get(TYPEFORM_SECRET_KEY)
            .is_none(),
        "no webhook secret without a registration"
    );

    // The customer enters the right token: stored by the secrets function, registered, resumed.
    let result = world.change_token(&customer, "tfp_real").await;
    assert_eq!(result["statusCode"], 200, "{result}");
    let stored = world.stored(&customer.account).await;
    assert_eq!(stored["secrets"]["typeform_token"], "tfp_real");
    let webhook = world
        .typeform
        .webhook("FormT1", &tag(&customer.account))
        .unwrap();
    assert_eq!(
        stored[TYPEFORM_SECRET_KEY],
        webhook.secret.unwrap().as_str()
    );
    let instance = world
        .provider
        .sandbox
        .record(&customer.instance_id)
        .unwrap();
    assert_eq!(instance["suspended"], false, "{instance}");

    let delivery = world
        .typeform
        .send_response("FormT1", survey_response("FormT1", true))
        .await
        .unwrap();
    assert_eq!(delivery.status, 200, "{}", delivery.response);
    assert_eq!(world.notes(&customer), vec![YES_NOTE.to_owned()]);
}

/// The customer disables the app: the Typeform function deletes exactly its own webhook (another
/// app's webhook on the same form stays); enabling registers a new one; uninstalling deletes it
/// again and schedules the customer secret for deletion.
#[tokio::test]
async fn disable_enable_and_uninstall_remove_only_our_webhook() {
    let world = World::start().await;
    let (customer, _) = world.installed_with_one_note("customer-u", "FormU1").await;
    let token = format!("tfp_{}", customer.account);
    // Another integration's webhook on the same form.
    let other = typeform::api::WebhookRegistration {
        url: "https://hooks.example.com/other-app",
        enabled: true,
        secret: "other-secret",
        verify_ssl: true,
    };
    typeform::TypeformApi::new(world.typeform.url().parse().unwrap())
        .unwrap()
        .put_webhook(&token, "FormU1", "other-app", &other)
        .await
        .unwrap();
    let first_secret = world
        .typeform
        .webhook("FormU1", &tag(&customer.account))
        .unwrap()
        .secret;

    // Disabled by the customer: app_instance.update → `disabled` on the bus.
    let sent = world
        .provider
        .sandbox
        .set_app_instance_enabled(&customer.instance_id, false)
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, Some(200), "the secrets function answered");
    let results = world.secret_event_results(&customer.account).await;
    let disabled = results.iter().find(|(step, _)| step == "disabled").unwrap();
    assert_eq!(
        disabled.1.as_ref().unwrap()["statusCode"],
        200,
        "{results:?}"
    );
    assert!(
        world
            .typeform
            .webhook("FormU1", &tag(&customer.account))
            .is_none()
    );
    assert_eq!(
        world.typeform.webhook("FormU1", "other-app").unwrap().url,
        "https://hooks.example.com/other-app"
    );
    assert!(
        world
            .stored(&customer.account)
            .await
            .get(TYPEFORM_SECRET_KEY)
            .is_none()
    );

    // Enabled again: registered anew, with a new secret.
    world
        .provider
        .sandbox
        .set_app_instance_enabled(&customer.instance_id, true)
        .await
        .unwrap();
    world.secret_events(&customer.account).await;
    let again = world
        .typeform
        .webhook("FormU1", &tag(&customer.account))
        .unwrap();
    assert_ne!(again.secret, first_secret);
    assert_eq!(
        world.stored(&customer.account).await[TYPEFORM_SECRET_KEY],
        again.secret.unwrap().as_str()
    );

    // An update that leaves the instance enabled is no change of state: `updated`, and the
    // webhook stays as it is.
    world
        .provider
        .sandbox
        .set_app_instance_enabled(&customer.instance_id, true)
        .await
        .unwrap();
    let results = world.secret_event_results(&customer.account).await;
    let steps: Vec<&str> = results.iter().map(|(step, _)| step.as_str()).collect();
    assert_eq!(steps, ["updated"], "{results:?}");
    assert_eq!(
        world
            .typeform
            .webhook("FormU1", &tag(&customer.account))
            .unwrap()
            .secret,
        Some(
            world.stored(&customer.account).await[TYPEFORM_SECRET_KEY]
                .as_str()
                .unwrap()
                .to_owned()
        )
    );

    // Uninstalled: app_instance.delete → `deleted`.
    let sent = world
        .provider
        .sandbox
        .uninstall_app(&customer.instance_id)
        .await
        .unwrap();
    assert_eq!(sent[0].status, Some(200));
    let results = world.secret_event_results(&customer.account).await;
    let deleted = results.iter().find(|(step, _)| step == "deleted").unwrap();
    assert_eq!(
        deleted.1.as_ref().unwrap()["statusCode"],
        200,
        "{results:?}"
    );
    assert!(
        world
            .typeform
            .webhook("FormU1", &tag(&customer.account))
            .is_none()
    );
    assert!(world.typeform.webhook("FormU1", "other-app").is_some());
    let name = world.provider.customer_secret(OFFERING, &customer.account);
    assert_eq!(world.provider.store.get(&name).await.unwrap(), None);
    assert!(
        world
            .provider
            .store
            .scheduled_for_deletion(&name)
            .await
            .unwrap(),
        "scheduled for deletion, recoverable"
    );
}
