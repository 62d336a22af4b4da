//! Test support: a provider key pair that signs webhook JWTs, API Gateway REST (v1) requests
//! built as API Gateway delivers them, and handler construction over a real store.
#![allow(clippy::unwrap_used, dead_code)] // test support code: a failed unwrap is a failed test

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use app_builder_core::bus::{EventPublisher, InstallationChanged, PublishError};
use app_builder_core::config::EnabledOfferings;
use app_builder_core::context::{ContextConfig, ContextLoader};
use app_builder_core::fourme::{ClientSettings, Endpoints};
use app_builder_core::secrets::{
    SecretDocument, SecretName, SecretStore, customer_secret_name, provider_secret_name,
};
use app_builder_core::state::StateStore;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lambda_http::{Body, Request, Response};
use secrets::SecretsHandler;
use serde_json::{Value, json};

/// The environment of the original's secrets-lambda tests (docs/original.md#tests-of-the-original).
pub const DOMAIN: &str = "4me-staging.com";
pub const APP: &str = "my-app";
pub const PROVIDER: &str = "not-default";
pub const AUDIENCE: &str = "integrations provided by not-default@4me-staging.com";

pub mod aws;

/// An ECDSA key pair standing in for a 4me webhook policy (ES256, or ES512 as 4me's default).
pub struct Signer {
    key: EcdsaKeyPair,
    alg: &'static str,
}

impl Signer {
    pub fn generate() -> Self {
        Self {
            key: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            alg: "ES256",
        }
    }

    /// An ES512 (P-521) key, the algorithm of 4me's provider webhook policies by default.
    pub fn generate_es512() -> Self {
        Self {
            key: EcdsaKeyPair::generate(&ECDSA_P521_SHA512_FIXED_SIGNING).unwrap(),
            alg: "ES512",
        }
    }

    /// The policy's `jwtAlg` (`es256`, `es512`).
    pub fn jwt_alg(&self) -> String {
        self.alg.to_lowercase()
    }

    /// The SPKI public key PEM, as 4me shows it (`publicKeyPem`).
    pub fn public_key_pem(&self) -> String {
        let der = self.key.public_key().as_der().unwrap();
        pem::encode(&pem::Pem::new("PUBLIC KEY", der.as_ref().to_vec()))
    }

    /// A compact JWS (`ES256`) over `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(json!({"typ": "JWT", "alg": self.alg}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
        let signing_input = format!("{header}.{payload}");
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .unwrap();
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

pub fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Claims as 4me sends them to the provider webhook (docs/original.md#provider-webhook).
pub fn claims(event: &str, payload: Value) -> Value {
    json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": "17",
        "iss": format!("https://{PROVIDER}.{DOMAIN}"),
        "aud": AUDIENCE,
        "iat": now(),
        "nbf": now(),
        "data": {
            "webhook_id": 17,
            "webhook_nodeID": "NG1lLXN0YWdpbmcuY29tL1dlYmhvb2svMTc",
            "account_id": PROVIDER,
            "account": format!("https://{PROVIDER}.{DOMAIN}"),
            "name": "Secrets",
            "event": event,
            "object_id": 1,
            "object_nodeID": "NG1lLXN0YWdpbmcuY29tL0FwcEluc3RhbmNlLzE",
            "person_id": 6,
            "person_nodeID": "NG1lLXN0YWdpbmcuY29tL1BlcnNvbi82",
            "person_name": "Howard Tanner",
            "payload": payload,
        }
    })
}

/// An `app_instance.secrets-update` payload for `reference` / `customer` with `parts`
/// (`application`, `policy`, `secrets`, ...).
pub fn secrets_payload(reference: &str, customer: &str, parts: Value) -> Value {
    let mut payload = json!({
        "audit_line_id": 123,
        "audit_line_nodeID": "NG1lLXN0YWdpbmcuY29tL0F1ZGl0TGluZS8xMjM",
        "app_offering": {"reference": reference, "id": 5, "nodeID": "NG1lLXN0YWdpbmcuY29tL0FwcE9mZmVyaW5nLzU"},
        "customer_account_id": customer,
    });
    for (key, value) in parts.as_object().unwrap() {
        payload[key] = value.clone();
    }
    payload
}

/// The provider secret with `signer`'s public key as policy (docs/original.md#provider-secret shape).
pub fn provider_secret(signer: &Signer, audience: &str) -> SecretDocument {
    SecretDocument::try_from(json!({
        "clientID": "provider-client",
        "token": "provider-token",
        "policy": {"jwtAlg": signer.jwt_alg(), "jwtAudience": audience, "publicKeyPem": signer.public_key_pem()},
    }))
    .unwrap()
}

pub fn provider_name() -> SecretName {
    provider_secret_name(APP, DOMAIN, PROVIDER).unwrap()
}

pub fn customer_name(reference: &str, customer: &str) -> SecretName {
    customer_secret_name(APP, reference, DOMAIN, customer).unwrap()
}

pub fn context_config(domain: &str, provider: &str) -> ContextConfig {
    ContextConfig {
        domain: domain.to_owned(),
        app: APP.to_owned(),
        provider_account: provider.to_owned(),
        offering_reference: None,
    }
}

/// A stand-in for the engine's bus that records what is published (and fails on demand).
#[derive(Clone, Default)]
pub struct Recorder {
    published: std::sync::Arc<std::sync::Mutex<Vec<InstallationChanged>>>,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    /// Everything published so far.
    pub fn published(&self) -> Vec<InstallationChanged> {
        self.published.lock().unwrap().clone()
    }

    /// From now on publishing fails (`true`) or succeeds.
    pub fn fail(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }
}

impl EventPublisher for Recorder {
    async fn publish(&self, event: &InstallationChanged) -> Result<(), PublishError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(PublishError {
                bus: "test".into(),
                detail_type: app_builder_core::bus::INSTALLATION_CHANGED,
                message: "ServiceUnavailable: injected".into(),
            });
        }
        self.published.lock().unwrap().push(event.clone());
        Ok(())
    }
}

/// The handler as `main` builds it, over `store`, the state store `state` and `bus`.
pub fn handler_with<S: SecretStore, T: StateStore, P: EventPublisher>(
    store: S,
    state: T,
    bus: P,
    config: ContextConfig,
    enabled: EnabledOfferings,
    verify_timeout: Duration,
) -> SecretsHandler<S, T, P> {
    let endpoints = Endpoints::for_domain(&config.domain).unwrap();
    let loader = ContextLoader::new(config, store, endpoints, ClientSettings::default()).unwrap();
    SecretsHandler::new(loader, state, bus, enabled, verify_timeout).unwrap()
}

pub fn handler<S: SecretStore, T: StateStore>(
    store: S,
    state: T,
    enabled: &str,
) -> SecretsHandler<S, T, Recorder> {
    handler_on(store, state, Recorder::default(), enabled)
}

pub fn handler_on<S: SecretStore, T: StateStore>(
    store: S,
    state: T,
    bus: Recorder,
    enabled: &str,
) -> SecretsHandler<S, T, Recorder> {
    handler_with(
        store,
        state,
        bus,
        context_config(DOMAIN, PROVIDER),
        EnabledOfferings::parse(enabled),
        Duration::from_secs(5),
    )
}

/// An API Gateway REST (v1) proxy request for `POST /secrets` (or another method), deserialised
/// by lambda_http exactly as in Lambda.
pub fn api_gateway_request(method: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Request {
    let event = api_gateway_event(method, body, headers);
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// The raw Lambda payload of [`api_gateway_request`].
pub fn api_gateway_event(method: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Value {
    let mut single = serde_json::Map::new();
    let mut multi = serde_json::Map::new();
    let defaults = [
        ("Content-Type", "application/json; charset=utf-8"),
        (
            "User-Agent",
            "4me/1.0 (https://developer.4me.com/v1/webhooks)",
        ),
        ("Host", "abc123defg.execute-api.eu-west-1.amazonaws.com"),
    ];
    for (name, value) in defaults.iter().chain(headers) {
        single.insert((*name).to_owned(), json!(value));
        multi.insert((*name).to_owned(), json!([value]));
    }
    json!({
        "resource": "/secrets",
        "path": "/secrets",
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "resourceId": "k1m2n3",
            "resourcePath": "/secrets",
            "httpMethod": method,
            "path": "/Prod/secrets",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "Prod",
            "requestId": uuid::Uuid::new_v4().to_string(),
            "identity": {"sourceIp": "203.0.113.7"},
            "domainName": "abc123defg.execute-api.eu-west-1.amazonaws.com",
            "apiId": "abc123defg"
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// `POST /secrets` with `{"jwt": jwt}` and an `X-4me-Delivery` header when `delivery` is given.
pub fn delivery_request(jwt: &str, delivery: Option<&str>) -> Request {
    let body = json!({ "jwt": jwt }).to_string();
    match delivery {
        Some(id) => api_gateway_request("POST", Some(&body), &[("X-4me-Delivery", id)]),
        None => api_gateway_request("POST", Some(&body), &[]),
    }
}

/// Status and `message` of a handler response.
pub fn status_and_message(response: &Response<Body>) -> (u16, String) {
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    (
        response.status().as_u16(),
        body["message"].as_str().unwrap().to_owned(),
    )
}

/// Delivers `jwt` under `delivery` as 4me does: again after a 503 (the answer to a delivery that
/// meets another update of the same secret in progress), until it gets another answer.
pub async fn deliver_until_done<S: SecretStore, T: StateStore, P: EventPublisher>(
    handler: &SecretsHandler<S, T, P>,
    jwt: &str,
    delivery: &str,
) -> (u16, String) {
    for _ in 0..200 {
        let answer =
            status_and_message(&handler.handle(delivery_request(jwt, Some(delivery))).await);
        if answer.0 != 503 {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("delivery {delivery} still answered 503 after 200 attempts");
}

/// Serves `handler` over HTTP on 127.0.0.1 (so that the sandbox can deliver to it): each request
/// is turned into the API Gateway REST (v1) event Lambda would receive. Returns the URL of
/// `/secrets`.
pub async fn serve<
    S: SecretStore + 'static,
    T: StateStore + 'static,
    P: EventPublisher + 'static,
>(
    handler: std::sync::Arc<SecretsHandler<S, T, P>>,
) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode};

    let app =
        axum::Router::new().fallback(move |method: Method, headers: HeaderMap, body: Bytes| {
            let handler = std::sync::Arc::clone(&handler);
            async move {
                let headers: Vec<(String, String)> = headers
                    .iter()
                    .filter_map(|(name, value)| {
                        Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                    })
                    .collect();
                let borrowed: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let body = String::from_utf8_lossy(&body).into_owned();
                let request = api_gateway_request(
                    method.as_str(),
                    (!body.is_empty()).then_some(body.as_str()),
                    &borrowed,
                );
                let response = handler.handle(request).await;
                let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
                (status, response.body().as_ref().to_vec())
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/secrets", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}
