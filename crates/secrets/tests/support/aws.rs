//! AWS on moto (`AWS_ENDPOINT_URL` must point at a moto server; tests using this fail rather
//! than skip without it): a provider of its own per test, the engine's state table and bus, and
//! the secrets function deployed over them as its binary runs in Lambda.

use app_builder_core::bus::EventBridgePublisher;
use app_builder_core::secrets::{AwsSecretStore, SecretStore, provider_secret_name};
use app_builder_core::state::DynamoStateStore;
use serde_json::{Value, json};

use super::*;

pub async fn moto_store() -> AwsSecretStore {
    // The handler's error lines, in the output of a failed test.
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    app_builder_test_support::moto_store().await
}

/// A provider unique to this test (its own provider secret in the shared moto server).
pub struct Provider {
    pub account: String,
    pub signer: Signer,
}

impl Provider {
    pub async fn create(store: &AwsSecretStore) -> Provider {
        Self::create_with(store, Signer::generate()).await
    }

    /// A provider whose policy key is `signer`.
    pub async fn create_with(store: &AwsSecretStore, signer: Signer) -> Provider {
        let account = format!("p{}", uuid::Uuid::new_v4().simple());
        store
            .upsert(
                &provider_secret_name(APP, DOMAIN, &account).unwrap(),
                provider_secret(&signer, AUDIENCE),
            )
            .await
            .unwrap();
        Provider { account, signer }
    }

    pub fn sign(&self, reference: &str, customer: &str, parts: Value) -> String {
        let mut claims = claims(
            "app_instance.secrets-update",
            secrets_payload(reference, customer, parts),
        );
        claims["iss"] = json!(format!("https://{}.{DOMAIN}", self.account));
        self.signer.sign(&claims)
    }
}

/// The engine's state table on moto (a table of its own per test). The client retries more than
/// the SDK's default three attempts: moto under the whole suite's load answers 5xx now and then.
pub async fn moto_state() -> DynamoStateStore {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(8))
            .build(),
    );
    let state = DynamoStateStore::new(client, format!("state-{}", uuid::Uuid::new_v4().simple()));
    state.create_table().await.unwrap();
    state
}

/// An engine bus of its own on moto, and the publisher on it.
pub async fn moto_bus() -> EventBridgePublisher {
    let bus =
        EventBridgePublisher::from_env(format!("bus-{}", uuid::Uuid::new_v4().simple())).await;
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_eventbridge::Client::new(&config)
        .create_event_bus()
        .name(bus.bus())
        .send()
        .await
        .unwrap();
    bus
}

/// The secrets function deployed on moto: a provider of its own with an ES512 policy (4me's
/// default), a state table and a bus of its own.
pub struct Deployed {
    pub store: AwsSecretStore,
    pub provider: Provider,
    pub state: DynamoStateStore,
    pub bus: EventBridgePublisher,
}

impl Deployed {
    pub async fn create() -> Self {
        let store = moto_store().await;
        let provider = Provider::create_with(&store, Signer::generate_es512()).await;
        Self {
            provider,
            state: moto_state().await,
            bus: moto_bus().await,
            store,
        }
    }

    /// The function's environment as the engine template sets it, and the AWS endpoint and
    /// credentials of this process (moto).
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut environment: Vec<(String, String)> = [
            ("PARAM_4ME_DOMAIN", DOMAIN),
            ("PARAM_BOOTSTRAP_APP", APP),
            ("PARAM_BOOTSTRAP_ACCOUNT", self.provider.account.as_str()),
            ("PARAM_ENABLED_OFFERINGS", "*"),
            ("STATE_TABLE", self.state.table()),
            ("EVENT_BUS", self.bus.bus()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        for name in [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
        ] {
            if let Ok(value) = std::env::var(name) {
                environment.push((name.to_owned(), value));
            }
        }
        environment
    }

    /// The API Gateway (REST) event of a signed `app_instance.secrets-update` delivery of
    /// `customer`'s Typeform token, with delivery id `delivery`.
    pub fn delivery_event(&self, customer: &str, delivery: &str) -> Value {
        let jwt = self.provider.sign(
            "typeform",
            customer,
            json!({"secrets": {"typeform_token": "tfp_cold_start"}}),
        );
        let body = json!({ "jwt": jwt }).to_string();
        api_gateway_event("POST", Some(&body), &[("X-4me-Delivery", delivery)])
    }

    /// The stored customer secret of `customer`'s Typeform instance.
    pub async fn stored(&self, customer: &str) -> Option<Value> {
        self.store
            .get(&customer_name("typeform", customer))
            .await
            .unwrap()
            .map(Value::from)
    }
}
