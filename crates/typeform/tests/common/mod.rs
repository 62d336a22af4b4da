//! Test environment of the Typeform function: the 4me sandbox, the Typeform fake, a secret store,
//! and a local "API Gateway" that turns HTTP requests into REST API (v1) proxy events for the
//! real handler — so Typeform deliveries travel over HTTP exactly as in AWS.
#![allow(dead_code)] // each test crate uses a subset
#![allow(clippy::unwrap_used)] // fixture helpers unwrap on test-generated data

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app_builder_core::bus::LifecycleStep;
use app_builder_core::context::{ContextConfig, ContextLoader};
use app_builder_core::events::Invocation;
use app_builder_core::fourme::{ClientSettings, Credentials, FourMeClient};
use app_builder_core::secrets::{
    SecretDocument, SecretStore, customer_secret_name, provider_secret_name,
};
use app_builder_core::state::LocalStateStore;
use app_builder_sandbox::typeform::TypeformFake;
use app_builder_sandbox::{InstallOptions, Sandbox, SeededRequest};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use typeform::{DEFAULT_ATTEMPT_TIME, FunctionSettings, TypeformApi, TypeformFunction};

/// The tag of the webhook the function registers for `account`'s installation.
pub fn tag(account: &str) -> String {
    typeform::api::webhook_tag(PROVIDER, OFFERING, account)
}

/// An invocation of the function as Lambda makes it.
pub fn invocation() -> Invocation<'static> {
    Invocation::new(FUNCTION_ARN, DEFAULT_ATTEMPT_TIME)
}

pub const APP: &str = "4me-app-builder";
pub const PROVIDER: &str = "wdc";
pub const OFFERING: &str = "typeform";
pub const FUNCTION_ARN: &str =
    "arn:aws:lambda:eu-west-1:123456789012:function:typeform-IntegrationFunction-AbC123";
pub const FORM_ID: &str = "u6nXL7";

/// Everything a Typeform test needs.
pub struct Env<S: SecretStore + Clone + 'static> {
    pub sandbox: Sandbox,
    pub typeform: TypeformFake,
    pub store: S,
    pub function: Arc<TypeformFunction<S, LocalStateStore>>,
    /// The engine's state store (processed deliveries), in a directory of its own.
    pub state: LocalStateStore,
    _state_dir: tempfile::TempDir,
    /// The function's API URL (`api_url` of its configuration item).
    pub api_url: String,
    /// Provider-side 4me client (for setting up and inspecting the sandbox).
    pub provider: FourMeClient,
    pub ci_id: String,
}

/// A customer with the app installed.
pub struct Customer {
    pub account: String,
    pub instance_id: String,
    pub request: SeededRequest,
    pub token: String,
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

impl<S: SecretStore + Clone + 'static> Env<S> {
    pub async fn new(store: S) -> Env<S> {
        Self::with_provider(store, PROVIDER).await
    }

    /// Like [`Env::new`] with another provider account (a store shared between test processes,
    /// such as moto, needs a unique provider secret name per test).
    pub async fn with_provider(store: S, provider_account: &str) -> Env<S> {
        let sandbox = Sandbox::start().await.unwrap();
        let typeform = TypeformFake::start().await.unwrap();
        let domain = sandbox.domain().to_owned();
        let creds = sandbox.add_oauth_application(provider_account);
        let provider_name = provider_secret_name(APP, &domain, provider_account).unwrap();
        store
            .upsert(
                &provider_name,
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
        let api = TypeformApi::new(typeform.url().parse().unwrap()).unwrap();
        let state_dir = tempfile::tempdir().unwrap();
        let state = LocalStateStore::new(state_dir.path());
        let function = Arc::new(TypeformFunction::new(
            loader,
            api,
            state.clone(),
            FunctionSettings {
                instance_retry_wait: Duration::from_millis(10),
            },
        ));
        let gateway = start_gateway(function.clone()).await;
        let api_url = format!("http://{gateway}/Prod/integration/");

        // The provider's offering and the function's configuration item (bootstrap/deploy).
        let si = sandbox.seed_service_instance(provider_account, "Mainframe 1");
        let _: Value = provider
            .mutation(
                "mutation($input: AppOfferingCreateInput!) { appOfferingCreate(input: $input) { errors { path message } appOffering { id } } }",
                &json!({"input": {"name": "Typeform Integration", "reference": OFFERING, "serviceInstanceId": si}}),
            )
            .await
            .unwrap();
        let ci_id = sandbox.seed_configuration_item(
            provider_account,
            json!({
                "name": "Typeform integration Typeform webhook",
                "label": "lambda-typeform-1",
                "systemID": FUNCTION_ARN,
                "customFields": [{"id": "api_url", "value": api_url}],
            }),
        );
        Env {
            sandbox,
            typeform,
            store,
            function,
            state,
            _state_dir: state_dir,
            api_url,
            provider,
            ci_id,
        }
    }

    /// Installs the offering for `account` with a form URL and a Typeform token (both optional)
    /// and stores the customer secret as the secrets function would have.
    pub async fn install(
        &self,
        account: &str,
        form_url: Option<&str>,
        token: Option<&str>,
    ) -> Customer {
        let request = self.sandbox.seed_request(account, "Survey results");
        let mut custom_fields = serde_json::Map::new();
        if let Some(form_url) = form_url {
            custom_fields.insert("form_url".into(), json!(form_url));
        }
        custom_fields.insert(
            "request_id".into(),
            json!(request.request_id.parse::<u64>().unwrap()),
        );
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
        let mut secret = json!({
            "application": {
                "client_id": installed.customer_credentials.client_id,
                "client_secret": installed.customer_credentials.client_secret,
            },
            "policy": {
                "algorithm": installed.customer_policy.jwt_alg.to_uppercase(),
                "audience": installed.customer_policy.audience,
                "public_key": installed.customer_policy.public_key_pem,
            },
        });
        if let Some(token) = token {
            secret["secrets"] = json!({ "typeform_token": token });
        }
        self.store
            .upsert(&self.customer_secret_name(account), doc(secret))
            .await
            .unwrap();
        Customer {
            account: account.to_owned(),
            instance_id: installed.app_instance_id,
            request,
            token: token.unwrap_or_default().to_owned(),
        }
    }

    pub fn customer_secret_name(&self, account: &str) -> app_builder_core::secrets::SecretName {
        customer_secret_name(APP, OFFERING, self.sandbox.domain(), account).unwrap()
    }

    pub async fn customer_secret(&self, account: &str) -> SecretDocument {
        self.store
            .get(&self.customer_secret_name(account))
            .await
            .unwrap()
            .unwrap()
    }

    /// The `Installation changed` event of `step` for `account`, as the Typeform stack's rule
    /// delivers it.
    pub fn installation_event(&self, step: LifecycleStep, account: &str) -> Value {
        installation_event(self.sandbox.domain(), OFFERING, account, step)
    }

    /// Runs a non-HTTP payload through the function: (status, message); a 5xx is always a
    /// function error (Lambda retries the event), reported here with its status.
    pub async fn invoke(&self, payload: Value) -> (u16, String) {
        let (status, body) = match self.function.handle_payload(payload, invocation()).await {
            Ok(result) => (
                result["statusCode"].as_u64().unwrap() as u16,
                result["body"].as_str().unwrap().to_owned(),
            ),
            Err(failed) => (failed.status, failed.body),
        };
        let body: Value = serde_json::from_str(&body).unwrap();
        (
            status,
            body["message"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// The event of `account`'s secrets being stored → (status, message).
    pub async fn installation(&self, account: &str) -> (u16, String) {
        self.invoke(self.installation_event(LifecycleStep::SecretsUpdated, account))
            .await
    }

    /// The app instance as the provider sees it.
    pub async fn instance(&self, id: &str) -> Value {
        self.sandbox.record(id).unwrap()
    }

    pub async fn set_suspended(&self, instance_id: &str, suspended: bool) {
        let _: Value = self
            .provider
            .mutation(
                "mutation($input: AppInstanceUpdateInput!) { appInstanceUpdate(input: $input) { errors { path message } appInstance { id } } }",
                &json!({"input": {"id": instance_id, "suspended": suspended, "suspensionComment": if suspended { "manual" } else { "" }}}),
            )
            .await
            .unwrap();
    }

    pub async fn set_form_url(&self, instance_id: &str, form_url: &str) {
        let _: Value = self
            .provider
            .mutation(
                "mutation($input: AppInstanceUpdateInput!) { appInstanceUpdate(input: $input) { errors { path message } appInstance { id } } }",
                &json!({"input": {"id": instance_id, "customFields": [{"id": "form_url", "value": form_url}]}}),
            )
            .await
            .unwrap();
    }

    /// POSTs `body` to the function's API URL with `?account=<account>` and the given
    /// `Typeform-Signature` → (status, message).
    pub async fn post_webhook(
        &self,
        account: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> (u16, String) {
        let mut request = reqwest::Client::new()
            .post(&self.api_url)
            .query(&[("account", account)])
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("Typeform-Signature", signature);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (
            status,
            body["message"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

pub use app_builder_test_support::installation_event;

/// A REST API (v1) proxy event as API Gateway builds it for `POST /integration`.
pub fn apigw_v1_event(
    method: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
    base64_body: bool,
) -> Value {
    let mut single = serde_json::Map::new();
    let mut multi = serde_json::Map::new();
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            // API Gateway REST keeps the sender's casing; reqwest sends lowercase, so use the
            // canonical casing Typeform uses for its header to exercise case-insensitivity.
            let name = if name.as_str() == "typeform-signature" {
                "Typeform-Signature".to_owned()
            } else {
                name.as_str().to_owned()
            };
            single.insert(name.clone(), json!(value));
            multi.insert(name, json!([value]));
        }
    }
    let (query_single, query_multi) = if query.is_empty() {
        (Value::Null, Value::Null)
    } else {
        (
            json!(query),
            Value::Object(query.iter().map(|(k, v)| (k.clone(), json!([v]))).collect()),
        )
    };
    let body = if base64_body {
        json!(STANDARD.encode(body))
    } else if body.is_empty() {
        Value::Null
    } else {
        json!(String::from_utf8(body.to_vec()).unwrap())
    };
    json!({
        "resource": "/integration",
        "path": "/integration/",
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": query_single,
        "multiValueQueryStringParameters": query_multi,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "resourceId": "p9q8r7",
            "resourcePath": "/integration",
            "httpMethod": method,
            "path": "/Prod/integration/",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "Prod",
            "requestId": uuid_like(),
            "identity": { "sourceIp": "198.51.100.20" },
            "apiId": "sadasda"
        },
        "body": body,
        "isBase64Encoded": base64_body
    })
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "00000000-0000-4000-8000-{:012}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

struct Gateway<S: SecretStore + Clone + 'static> {
    function: Arc<TypeformFunction<S, LocalStateStore>>,
}

/// A local stand-in for API Gateway: every request to `/Prod/integration/` becomes a REST v1
/// proxy event for the real handler (with a base64-encoded body when the request has the header
/// `x-test-base64`); the proxy response is sent back.
async fn start_gateway<S: SecretStore + Clone + 'static>(
    function: Arc<TypeformFunction<S, LocalStateStore>>,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Gateway { function });
    let app = axum::Router::new()
        .route("/Prod/integration/", axum::routing::any(gateway::<S>))
        .with_state(state);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

async fn gateway<S: SecretStore + Clone + 'static>(
    State(gateway): State<Arc<Gateway<S>>>,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let base64_body = headers.get("x-test-base64").is_some();
    let event = apigw_v1_event(method.as_str(), &query, &headers, &body, base64_body);
    let result = gateway
        .function
        .handle_payload(event, invocation())
        .await
        .unwrap();
    let status = StatusCode::from_u16(result["statusCode"].as_u64().unwrap() as u16).unwrap();
    let body = result["body"].as_str().unwrap_or_default().to_owned();
    (status, [("content-type", "application/json")], body).into_response()
}
