//! Test environment of the Lansweeper function: the 4me sandbox, the Lansweeper fake, a secret
//! store and API Gateway shaped requests for the real handlers.
#![allow(dead_code)] // each test crate uses a subset
#![allow(clippy::unwrap_used)] // fixture helpers unwrap on test-generated data

use std::sync::Arc;
use std::time::Duration;

use app_builder_core::bus::LifecycleStep;
use app_builder_core::context::{ContextConfig, ContextLoader};
use app_builder_core::events::EngineEvent;
use app_builder_core::fourme::instances::{InstanceUpdate, update_app_instance};
use app_builder_core::fourme::{ClientSettings, Credentials, FourMeClient};
use app_builder_core::secrets::{
    SecretDocument, SecretName, SecretStore, customer_secret_name, provider_secret_name,
};
use app_builder_core::state::LocalStateStore;
use app_builder_sandbox::lansweeper::LansweeperFake;
use app_builder_sandbox::{InstallOptions, OAuthCredentials, Sandbox};
use lansweeper::api::{ApiSettings, LansweeperApi};
use lansweeper::{FunctionSettings, InMemoryQueue, LansweeperFunction};
use serde_json::{Value, json};

pub const APP: &str = "4me-app-builder";
pub const PROVIDER: &str = "wdc";
pub const OFFERING: &str = "lansweeper";
pub const FUNCTION_ARN: &str =
    "arn:aws:lambda:eu-west-1:123456789012:function:lansweeper-IntegrationFunction-AbC123";
pub const API_URL: &str =
    "https://gt0ead5in8.execute-api.eu-west-1.amazonaws.com/Prod/integration/";
pub const API_HOST: &str = "gt0ead5in8.execute-api.eu-west-1.amazonaws.com";

pub type Function<S> = LansweeperFunction<S, Arc<InMemoryQueue>, LocalStateStore>;

pub struct Env<S: SecretStore + Clone + 'static> {
    pub sandbox: Sandbox,
    pub lansweeper: LansweeperFake,
    pub store: S,
    pub queue: Arc<InMemoryQueue>,
    pub function: Function<S>,
    pub provider: FourMeClient,
    /// The engine's state store (the sync lease), in a directory of its own.
    pub state: LocalStateStore,
    _state_dir: tempfile::TempDir,
}

pub struct Customer {
    pub account: String,
    pub instance_id: String,
    pub lansweeper_app: OAuthCredentials,
    /// Where 4me sends the installing user, when the offering has a configuration URI.
    pub configuration_url: Option<String>,
}

use app_builder_test_support::sandbox_endpoints as endpoints;

fn fast_settings() -> ClientSettings {
    ClientSettings {
        min_request_spacing: Duration::ZERO,
        rate_limit_requests: 0,
        ..ClientSettings::default()
    }
}

pub use app_builder_test_support::doc;

pub fn api_settings(fake: &LansweeperFake) -> ApiSettings {
    ApiSettings {
        api_url: fake.api_url(),
        app_url: fake.app_url(),
        min_request_interval: Duration::ZERO,
        max_attempts: 2,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(2),
        ..ApiSettings::default()
    }
}

impl<S: SecretStore + Clone + 'static> Env<S> {
    pub async fn new(store: S, provider_account: &str) -> Env<S> {
        Self::with_api(store, provider_account, |_| {}).await
    }

    /// An environment whose Lansweeper client settings `adjust` changes.
    pub async fn with_api(
        store: S,
        provider_account: &str,
        adjust: impl FnOnce(&mut ApiSettings),
    ) -> Env<S> {
        let sandbox = Sandbox::start().await.unwrap();
        let lansweeper = LansweeperFake::start().await.unwrap();
        let domain = sandbox.domain().to_owned();
        let creds = sandbox.add_oauth_application(provider_account);
        store
            .upsert(
                &provider_secret_name(APP, &domain, provider_account).unwrap(),
                doc(json!({"clientID": creds.client_id, "token": creds.client_secret})),
            )
            .await
            .unwrap();
        let provider = FourMeClient::new(
            endpoints(&sandbox),
            provider_account,
            Credentials::new(creds.client_id.clone(), creds.client_secret.clone()),
            fast_settings(),
        )
        .unwrap();
        let config = ContextConfig {
            domain,
            app: APP.into(),
            provider_account: provider_account.into(),
            offering_reference: Some(OFFERING.into()),
        };
        let loader =
            ContextLoader::new(config, store.clone(), endpoints(&sandbox), fast_settings())
                .unwrap();
        let queue = Arc::new(InMemoryQueue::new());
        let state_dir = tempfile::tempdir().unwrap();
        let state = LocalStateStore::new(state_dir.path());
        let mut settings = api_settings(&lansweeper);
        adjust(&mut settings);
        let function = LansweeperFunction::new(
            loader,
            LansweeperApi::new(settings).unwrap(),
            queue.clone(),
            state.clone(),
            FunctionSettings {
                instance_retry_wait: Duration::from_millis(10),
                ..FunctionSettings::default()
            },
        );
        let si = sandbox.seed_service_instance(provider_account, "Mainframe 1");
        let _: Value = provider
            .mutation(
                "mutation($input: AppOfferingCreateInput!) { appOfferingCreate(input: $input) { errors { path message } appOffering { id } } }",
                &json!({"input": {"name": "Lansweeper", "reference": OFFERING, "serviceInstanceId": si}}),
            )
            .await
            .unwrap();
        sandbox.seed_configuration_item(
            provider_account,
            json!({
                "name": "Lansweeper integration Authorize / Refresh service",
                "label": "lambda-lansweeper-1",
                "systemID": FUNCTION_ARN,
                "customFields": [{"id": "api_url", "value": API_URL}],
            }),
        );
        Env {
            sandbox,
            lansweeper,
            store,
            queue,
            function,
            provider,
            state,
            _state_dir: state_dir,
        }
    }

    /// Installs the offering for `account` (client id in the instance, client secret in the
    /// customer secret, `connection_status = pending_callback_url`) as the secrets function would
    /// have stored it.
    pub async fn install(&self, account: &str) -> Customer {
        let app = self.lansweeper.add_client();
        let mut custom_fields = serde_json::Map::new();
        custom_fields.insert("client_id".into(), json!(app.client_id));
        custom_fields.insert("connection_status".into(), json!("pending_callback_url"));
        let installed = self
            .sandbox
            .install_app(
                OFFERING,
                account,
                InstallOptions {
                    custom_fields,
                    ..InstallOptions::default()
                },
            )
            .await
            .unwrap();
        let secret = json!({
            "application": {
                "client_id": installed.customer_credentials.client_id,
                "client_secret": installed.customer_credentials.client_secret,
            },
            "policy": {
                "algorithm": installed.customer_policy.jwt_alg.to_uppercase(),
                "audience": installed.customer_policy.audience,
                "public_key": installed.customer_policy.public_key_pem,
            },
            "secrets": { "client_secret": app.client_secret },
        });
        self.store
            .upsert(&self.secret_name(account), doc(secret))
            .await
            .unwrap();
        Customer {
            account: account.to_owned(),
            instance_id: installed.app_instance_id,
            lansweeper_app: app,
            configuration_url: installed.configuration_url,
        }
    }

    pub fn secret_name(&self, account: &str) -> SecretName {
        customer_secret_name(APP, OFFERING, self.sandbox.domain(), account).unwrap()
    }

    pub async fn secret(&self, account: &str) -> SecretDocument {
        self.store
            .get(&self.secret_name(account))
            .await
            .unwrap()
            .unwrap()
    }

    /// Runs the installation handler on the event of `account`'s secrets being stored:
    /// (status, message).
    pub async fn installation(&self, account: &str) -> (u16, String) {
        self.installation_event(&installation_event(
            self.sandbox.domain(),
            "lansweeper",
            account,
            LifecycleStep::SecretsUpdated,
        ))
        .await
    }

    /// Runs the installation handler on `event` (as EventBridge delivers it).
    pub async fn installation_event(&self, event: &Value) -> (u16, String) {
        let EngineEvent::Installation(event) = EngineEvent::classify(event.clone()).unwrap() else {
            panic!("not an installation event")
        };
        let resp = self
            .function
            .handle_installation(&event, FUNCTION_ARN)
            .await;
        response_parts(resp)
    }

    /// The app instance record as the provider sees it.
    pub fn instance(&self, id: &str) -> Value {
        self.sandbox.record(id).unwrap()
    }

    /// Custom field `id` of the instance record.
    pub fn custom_field(&self, instance_id: &str, id: &str) -> Value {
        self.instance(instance_id)["customFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .map(|f| f["value"].clone())
            .unwrap_or(Value::Null)
    }

    /// The stored `sync_summary` of an instance, parsed (it is JSON in a code fence).
    pub fn summary(&self, instance_id: &str) -> Value {
        let summary = self.custom_field(instance_id, "sync_summary");
        let text = summary
            .as_str()
            .unwrap()
            .strip_prefix("```\n")
            .unwrap()
            .strip_suffix("\n```\n")
            .unwrap();
        serde_json::from_str(text).unwrap()
    }

    /// A customer installed, authorized through the OAuth callback and set to import type
    /// `all`.
    pub async fn authorized(&self, account: &str) -> Customer {
        let customer = self.install(account).await;
        assert_eq!(self.installation(account).await.0, 200);
        let secret = self
            .secret(account)
            .await
            .get_str("callback_secret")
            .unwrap()
            .to_owned();
        let code = self.lansweeper.authorize(
            &customer.lansweeper_app.client_id,
            &format!("{API_URL}{account}/{secret}"),
        );
        let resp = self
            .get(&format!("{account}/{secret}"), &[("code", &code)])
            .await;
        assert_eq!(resp.status(), 302);
        self.set_fields(&customer.instance_id, &[("import_type", json!("all"))])
            .await;
        customer
    }

    /// Gives the offering its configuration URI (`<api url>configure`), as deploy does, and the
    /// provider the secrets webhook and policy 4me signs configuration links with (its public
    /// key in the provider secret, as bootstrap stores it); returns the policy.
    pub async fn use_configuration_page(&self) -> app_builder_sandbox::PolicyInfo {
        let domain = self.sandbox.domain().to_owned();
        let audience = format!("integrations provided by {PROVIDER}@{domain}");
        let policy = self
            .sandbox
            .create_webhook_policy(PROVIDER, "es512", Some(&audience))
            .unwrap();
        // Deliveries to it fail fast (nothing listens): these tests run the handlers directly.
        self.sandbox
            .create_webhook(
                PROVIDER,
                "app_instance.secrets-update",
                "http://127.0.0.1:9/secrets",
                Some(&policy.id),
                true,
            )
            .unwrap();
        let name = provider_secret_name(APP, &domain, PROVIDER).unwrap();
        self.store
            .update(&name, |current| {
                let mut next = current.cloned()?;
                next.insert(
                    "policy",
                    json!({"jwtAlg": policy.jwt_alg, "jwtAudience": audience,
                           "publicKeyPem": policy.public_key_pem}),
                );
                Some(next)
            })
            .await
            .unwrap();
        let data: Value = self
            .provider
            .query(
                "query($ref: String!) { appOfferings(first: 1, filter: {published: false, reference: {values: [$ref]}}) { nodes { id } } }",
                &json!({"ref": OFFERING}),
            )
            .await
            .unwrap();
        let id = data["appOfferings"]["nodes"][0]["id"].as_str().unwrap();
        let _: Value = self
            .provider
            .mutation(
                "mutation($input: AppOfferingUpdateInput!) { appOfferingUpdate(input: $input) { errors { path message } appOffering { id } } }",
                &json!({"input": {"id": id, "configurationUriTemplate": format!("{API_URL}configure")}}),
            )
            .await
            .unwrap();
        policy
    }

    /// Sets custom fields of an app instance (provider client).
    pub async fn set_fields(&self, instance_id: &str, fields: &[(&str, Value)]) {
        update_app_instance(
            &self.provider,
            instance_id,
            &InstanceUpdate {
                custom_fields: fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                ..InstanceUpdate::default()
            },
        )
        .await
        .unwrap();
    }

    /// How many of the `total` assets of `site` a sync uploads when `keep` selects them: those
    /// with inventory data (`assetCustom`), not `Location`s, seen in the last 30 days.
    pub fn expected_uploads(&self, site: &str, total: u64, keep: impl Fn(&Value) -> bool) -> usize {
        let cut_off = (chrono::Utc::now() - chrono::Duration::days(30))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        (0..total)
            .map(|i| self.lansweeper.asset(site, i).unwrap())
            .filter(|a| {
                a.get("assetCustom").is_some()
                    && a["assetBasicInfo"]["type"] != "Location"
                    && a["assetBasicInfo"]["lastSeen"]
                        .as_str()
                        .is_none_or(|l| l > cut_off.as_str())
                    && keep(a)
            })
            .count()
    }

    /// The discovered (physical asset) CIs of `account` as raw sandbox records, by `sourceID`,
    /// found through the customer's own 4me API.
    pub async fn discovered(&self, account: &str) -> std::collections::HashMap<String, Value> {
        #[derive(serde::Deserialize)]
        struct Node {
            id: String,
        }
        let nodes: Vec<Node> = self
            .customer_client(account)
            .await
            .paged_all(
                "query Cis($previousEndCursor: String) { configurationItems(first: 100, after: $previousEndCursor, filter: {ruleSet: {values: [physical_asset]}}) { pageInfo { hasNextPage endCursor } nodes { id } } }",
                &json!({}),
            )
            .await
            .unwrap();
        let count = nodes.len();
        let by_source: std::collections::HashMap<String, Value> = nodes
            .into_iter()
            .map(|n| self.sandbox.record(&n.id).unwrap())
            .map(|r| (r["sourceID"].as_str().unwrap().to_owned(), r))
            .collect();
        assert_eq!(by_source.len(), count, "one CI per Lansweeper asset");
        by_source
    }

    /// A 4me client of the customer account (its credentials from the customer secret).
    pub async fn customer_client(&self, account: &str) -> FourMeClient {
        let secret = self.secret(account).await;
        let app = secret.get("application").unwrap();
        FourMeClient::new(
            endpoints(&self.sandbox),
            account,
            Credentials::new(
                app["client_id"].as_str().unwrap(),
                app["client_secret"].as_str().unwrap(),
            ),
            fast_settings(),
        )
        .unwrap()
    }

    /// GET through the HTTP handler as API Gateway delivers it.
    pub async fn get(
        &self,
        proxy: &str,
        query: &[(&str, &str)],
    ) -> lambda_http::Response<lambda_http::Body> {
        self.request("GET", proxy, query).await
    }

    pub async fn request(
        &self,
        method: &str,
        proxy: &str,
        query: &[(&str, &str)],
    ) -> lambda_http::Response<lambda_http::Body> {
        let event = apigw_v1_event(method, proxy, query);
        let EngineEvent::Http(req) = EngineEvent::classify(event).unwrap() else {
            panic!("not an HTTP event")
        };
        self.function.handle_http(&req).await
    }
}

/// An SQS event with one new message (a fresh message id, as SQS gives each message) whose
/// body is `account`.
pub fn sqs_event(account: &str) -> aws_lambda_events::sqs::SqsEvent {
    sqs_message(account)
}

/// An SQS event with one new message whose body is `body`.
pub fn sqs_message(body: &str) -> aws_lambda_events::sqs::SqsEvent {
    serde_json::from_value(json!({"Records": [{
        "messageId": uuid::Uuid::new_v4().to_string(), "receiptHandle": "r", "body": body,
        "attributes": {}, "messageAttributes": {}, "md5OfBody": "x",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:lansweeper-refresh-trigger",
        "awsRegion": "eu-west-1"
    }]}))
    .unwrap()
}

/// The deadline of an invocation starting now (seconds since the epoch).
pub fn deadline() -> i64 {
    app_builder_core::events::Invocation::new(FUNCTION_ARN, lansweeper::DEFAULT_ATTEMPT_TIME)
        .deadline
}

pub fn response_parts(resp: lambda_http::Response<lambda_http::Body>) -> (u16, String) {
    let status = resp.status().as_u16();
    let body = match resp.body() {
        lambda_http::Body::Text(t) => t.clone(),
        lambda_http::Body::Binary(b) => String::from_utf8(b.clone()).unwrap(),
        _ => String::new(),
    };
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(body);
    (status, message)
}

pub use app_builder_test_support::installation_event;

/// A REST API (v1) proxy event for `ANY /integration/{proxy+}`.
pub fn apigw_v1_event(method: &str, proxy: &str, query: &[(&str, &str)]) -> Value {
    let (single, multi) = if query.is_empty() {
        (Value::Null, Value::Null)
    } else {
        (
            Value::Object(
                query
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), json!(v)))
                    .collect(),
            ),
            Value::Object(
                query
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), json!([v])))
                    .collect(),
            ),
        )
    };
    json!({
        "resource": "/integration/{proxy+}",
        "path": format!("/integration/{proxy}"),
        "httpMethod": method,
        "headers": {"Host": API_HOST, "User-Agent": "Mozilla/5.0"},
        "multiValueHeaders": {"Host": [API_HOST], "User-Agent": ["Mozilla/5.0"]},
        "queryStringParameters": single,
        "multiValueQueryStringParameters": multi,
        "pathParameters": {"proxy": proxy},
        "stageVariables": null,
        "requestContext": {
            "resourceId": "p9q8r7",
            "resourcePath": "/integration/{proxy+}",
            "httpMethod": method,
            "path": format!("/Prod/integration/{proxy}"),
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "Prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": { "sourceIp": "198.51.100.20" },
            "apiId": "gt0ead5in8"
        },
        "body": null,
        "isBase64Encoded": false
    })
}
