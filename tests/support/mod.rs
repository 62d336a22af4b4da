//! Shared support of the end-to-end tests: the API Gateway stand-in ([`gateway`]), Secrets
//! Manager on moto, function settings as Lambda environment variables, and the provider side of
//! a 4me sandbox with the real secrets function served as its `app_instance.secrets-update`
//! webhook.
#![allow(clippy::unwrap_used, dead_code)] // test support: a failed unwrap is a failed test

pub mod gateway;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use app_builder_core::bus::EventBridgePublisher;
use app_builder_core::config::Settings;
use app_builder_core::context::ContextLoader;
use app_builder_core::fourme::{ClientSettings, Endpoints};
use app_builder_core::secrets::{
    SecretDocument, SecretName, SecretStore, customer_secret_name, provider_secret_name,
};
use app_builder_core::state::{DynamoStateStore, StateStore};
use app_builder_local::template::{Template, TemplateValue};
use app_builder_sandbox::{OAuthCredentials, PolicyInfo, Sandbox};
use serde_json::{Value, json};

/// The provider account of every scenario.
pub const PROVIDER: &str = "wdc";
/// How long a test waits for a delivery or a request to arrive.
pub const WAIT: Duration = Duration::from_secs(10);

pub use app_builder_test_support::moto_store;

/// A bootstrap application name unique to one test, so that tests sharing one moto never see
/// each other's secrets.
pub fn unique_app(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The environment variables of one deployed function (as the SAM template sets them).
#[derive(Debug, Clone, Default)]
pub struct FunctionEnv(HashMap<String, String>);

impl FunctionEnv {
    /// The common variables of every function of the engine, with the 4me endpoints pointing
    /// at the sandbox.
    pub fn new(sandbox: &Sandbox, app: &str) -> Self {
        let mut env = HashMap::new();
        env.insert("PARAM_4ME_DOMAIN".to_owned(), sandbox.domain().to_owned());
        env.insert("PARAM_BOOTSTRAP_APP".to_owned(), app.to_owned());
        env.insert("PARAM_BOOTSTRAP_ACCOUNT".to_owned(), PROVIDER.to_owned());
        env.insert("FOURME_OAUTH_URL".to_owned(), sandbox.oauth_url());
        env.insert("FOURME_GRAPHQL_URL".to_owned(), sandbox.graphql_url());
        env.insert("FOURME_REST_URL".to_owned(), sandbox.rest_url());
        Self(env)
    }

    /// Sets one more variable.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.insert(name.to_owned(), value.into());
        self
    }

    /// A variable's value.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// The settings as `Settings::from_env` would read them in Lambda.
    pub fn settings(&self) -> Settings<impl Fn(&str) -> Option<String> + '_> {
        Settings::from_lookup(|name: &str| self.get(name))
    }

    /// The 4me endpoints as `Endpoints::from_env` would read them.
    pub fn endpoints(&self, domain: &str) -> Endpoints {
        Endpoints::from_lookup(domain, |name| self.get(name)).unwrap()
    }
}

/// The secrets function built as its `main` builds it, from `env`, over `store`, `state` and
/// `bus`.
pub fn secrets_function<S: SecretStore, T: StateStore>(
    env: &FunctionEnv,
    store: S,
    state: T,
    bus: EventBridgePublisher,
) -> secrets::SecretsHandler<S, T, EventBridgePublisher> {
    let config = secrets::FunctionConfig::from_settings(&env.settings()).unwrap();
    assert_eq!(config.event_bus, bus.bus());
    let endpoints = env.endpoints(&config.context.domain);
    let loader =
        ContextLoader::new(config.context, store, endpoints, ClientSettings::default()).unwrap();
    secrets::SecretsHandler::new(loader, state, bus, config.enabled, config.verify_timeout).unwrap()
}

/// The engine's event bus on moto (one per test), with the rules the integration templates
/// declare.
pub struct EngineBus {
    /// What the secrets function publishes with.
    pub publisher: EventBridgePublisher,
    events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
}

impl EngineBus {
    /// Creates a bus of its own on moto.
    pub async fn create() -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let events = aws_sdk_eventbridge::Client::new(&config);
        let name = format!("engine-{}", uuid::Uuid::new_v4().simple());
        events.create_event_bus().name(&name).send().await.unwrap();
        Self {
            publisher: EventBridgePublisher::new(events.clone(), name),
            events,
            sqs: aws_sdk_sqs::Client::new(&config),
        }
    }

    /// Deploys the `InstallationChanged` rule of the integration template `template` (path from
    /// the repository root) as SAM would for `domain` and `offering`, with an SQS queue as its
    /// target standing in for the function: what reaches the queue is what EventBridge would
    /// invoke the function with.
    pub async fn subscribe(&self, template: &str, domain: &str, offering: &str) -> Subscription {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(template);
        let template = Template::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        let rule = template.functions[0]
            .rules
            .iter()
            .find(|rule| rule.name == "InstallationChanged")
            .expect("the template declares the InstallationChanged rule")
            .clone();
        let pattern = rule.pattern.to_json(&|value| match value {
            TemplateValue::Literal(text) => text.clone(),
            TemplateValue::Ref(name) if name == "4MeDomainParameter" => domain.to_owned(),
            TemplateValue::Ref(name) if name == "OfferingReferenceParameter" => offering.to_owned(),
            other => panic!("unexpected value in the pattern: {other:?}"),
        });
        let queue = format!("target-{}", uuid::Uuid::new_v4().simple());
        let queue_url = self
            .sqs
            .create_queue()
            .queue_name(&queue)
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_owned();
        let queue_arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .unwrap()
            .clone();
        let rule_name = format!("{offering}-installation-changed");
        self.events
            .put_rule()
            .event_bus_name(self.publisher.bus())
            .name(&rule_name)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .unwrap();
        self.events
            .put_targets()
            .event_bus_name(self.publisher.bus())
            .rule(&rule_name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("function")
                    .arn(queue_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        Subscription {
            sqs: self.sqs.clone(),
            queue_url,
        }
    }
}

/// The queue behind one rule of the engine's bus.
pub struct Subscription {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Subscription {
    /// The events the rule delivered since the last call (as EventBridge hands them to the
    /// function), waiting up to a few seconds for the first.
    pub async fn events(&self) -> Vec<Value> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(if events.is_empty() { 1 } else { 0 })
                .send()
                .await
                .unwrap();
            let messages = received.messages();
            for message in messages {
                events.push(serde_json::from_str(message.body().unwrap()).unwrap());
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            if (messages.is_empty() && !events.is_empty())
                || tokio::time::Instant::now() >= deadline
            {
                return events;
            }
        }
    }
}

/// The provider side of the sandbox: its OAuth application and webhook policy, the provider
/// secret (as the bootstrap writes it) in the store, and the secrets function served and
/// registered — and verified through the real `webhook.verify` round trip — as the provider's
/// `app_instance.secrets-update` webhook.
pub struct Provider<S> {
    /// The 4me sandbox.
    pub sandbox: Sandbox,
    /// The store shared by every function of the engine.
    pub store: S,
    /// The bootstrap application name (unique per test).
    pub app: String,
    /// The provider's OAuth application.
    pub credentials: OAuthCredentials,
    /// The provider's webhook policy.
    pub policy: PolicyInfo,
    /// The served secrets function.
    pub secrets_url: String,
    /// The provider webhook (`app_instance.secrets-update`).
    pub webhook_id: String,
    /// The engine's bus the secrets function publishes on.
    pub bus: EngineBus,
    /// The engine's state table on moto.
    pub state_table: String,
}

impl<S: SecretStore + Clone + 'static> Provider<S> {
    /// Sets the provider up; `enabled` is the secrets function's `PARAM_ENABLED_OFFERINGS`.
    pub async fn start(store: S, app: &str, enabled: &str) -> Self {
        let sandbox = Sandbox::start().await.unwrap();
        let credentials = sandbox.add_oauth_application(PROVIDER);
        let audience = format!("integrations provided by {PROVIDER}@{}", sandbox.domain());
        let policy = sandbox
            .create_webhook_policy(PROVIDER, "es512", Some(&audience))
            .unwrap();
        let provider_secret = SecretDocument::try_from(json!({
            "clientID": credentials.client_id,
            "token": credentials.client_secret,
            "policy": {"jwtAlg": policy.jwt_alg, "jwtAudience": audience,
                       "publicKeyPem": policy.public_key_pem},
        }))
        .unwrap();
        store
            .upsert(
                &provider_secret_name(app, sandbox.domain(), PROVIDER).unwrap(),
                provider_secret,
            )
            .await
            .unwrap();

        let state =
            DynamoStateStore::from_env(format!("state-{}", uuid::Uuid::new_v4().simple())).await;
        state.create_table().await.unwrap();
        let bus = EngineBus::create().await;
        let state_table = state.table().to_owned();
        let env = FunctionEnv::new(&sandbox, app)
            .with("PARAM_ENABLED_OFFERINGS", enabled.to_owned())
            .with("STATE_TABLE", state.table().to_owned())
            .with("EVENT_BUS", bus.publisher.bus().to_owned());
        let handler = Arc::new(secrets_function(
            &env,
            store.clone(),
            state,
            bus.publisher.clone(),
        ));
        let served = gateway::serve("/secrets", move |request| {
            let handler = Arc::clone(&handler);
            async move { handler.handle(request).await }
        })
        .await;

        // Created unverified: the sandbox sends webhook.verify, the function GETs the callback.
        // As bootstrap does, the app-instance lifecycle webhooks go to the same function with
        // the same policy.
        let mut webhooks = Vec::new();
        for event in [
            "app_instance.secrets-update",
            "app_instance.create",
            "app_instance.update",
            "app_instance.delete",
        ] {
            webhooks.push(
                sandbox
                    .create_webhook(PROVIDER, event, &served.url, Some(&policy.id), false)
                    .unwrap(),
            );
        }
        let deliveries = sandbox.wait_for_deliveries(webhooks.len(), WAIT).await;
        assert_eq!(
            deliveries.len(),
            webhooks.len(),
            "no webhook.verify deliveries"
        );
        for delivery in &deliveries {
            assert_eq!(delivery.event, "webhook.verify");
            assert_eq!(delivery.status, Some(200), "webhook.verify answered");
        }
        for webhook in &webhooks {
            assert_eq!(
                sandbox.record(webhook).unwrap()["active"],
                true,
                "a webhook was not activated by the function's callback"
            );
        }
        let webhook_id = webhooks.remove(0);

        Self {
            sandbox,
            store,
            app: app.to_owned(),
            credentials,
            policy,
            secrets_url: served.url,
            webhook_id,
            bus,
            state_table,
        }
    }

    /// The customer secret of `offering` for `customer`.
    pub fn customer_secret(&self, offering: &str, customer: &str) -> SecretName {
        customer_secret_name(&self.app, offering, self.sandbox.domain(), customer).unwrap()
    }

    /// What the provider's bootstrap and deployment set up for an integration: the app offering
    /// `offering` (named `offering_name`) and the function's configuration item (`name`,
    /// `systemID` = `function_arn`, custom field `api_url`).
    pub async fn deploy_integration(
        &self,
        offering: &str,
        offering_name: &str,
        ci_name: &str,
        function_arn: &str,
        api_url: &str,
    ) {
        self.sandbox.seed_app_offering(
            PROVIDER,
            offering,
            json!({"name": offering_name, "policyJwtAlg": "es256"}),
        );
        self.sandbox.seed_configuration_item(
            PROVIDER,
            json!({
                "name": ci_name,
                "label": format!("lambda-{offering}-{}", uuid::Uuid::new_v4().simple()),
                "systemID": function_arn,
                "customFields": [{"id": "api_url", "value": api_url}],
            }),
        );
    }

    /// The function environment of an integration of `offering`.
    pub fn integration_env(&self, offering: &str) -> FunctionEnv {
        FunctionEnv::new(&self.sandbox, &self.app)
            .with("PARAM_OFFERING_REFERENCE", offering)
            .with("STATE_TABLE", self.state_table.clone())
    }
}
