//! The note-dispatcher handler end to end over real parts: webhooks signed by the sandbox with
//! the customer policy it created at installation (delivered over HTTP to a capture server and
//! replayed as the API Gateway REST event API Gateway would build), the Fun Translations fake,
//! the capture server as the customer's target URL and a LocalSecretStore (one test against
//! AWS Secrets Manager in moto). Tests are named after the original's (docs/original.md#tests-of-the-original) and
//! this engine's scenarios.
#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

use std::time::Duration;

use app_builder_core::context::{ContextConfig, ContextLoader};
use app_builder_core::fourme::{ClientSettings, Endpoints};
use app_builder_core::secrets::{
    AwsSecretStore, LocalSecretStore, SecretDocument, SecretStore, customer_secret_name,
    offering_settings_secret_name,
};
use app_builder_core::state::LocalStateStore;
use app_builder_core::webhook::{EXPECTED_JWT_MESSAGE, WEBHOOK_VERIFIED_MESSAGE};
use app_builder_sandbox::fakes::{
    CaptureServer, CapturedRequest, FunTranslations, RATE_LIMIT_MESSAGE,
};
use app_builder_sandbox::{InstallOptions, InstalledApp, Sandbox};
use lambda_http::{Body, Request, Response};
use note_dispatcher::config::DispatcherConfig;
use note_dispatcher::guard::UrlGuard;
use note_dispatcher::handler::{
    COMPLETE_MESSAGE, FAILED_MESSAGE, MISSING_ACCOUNT_MESSAGE, NO_CUSTOMER_CONTEXT_MESSAGE,
};
use note_dispatcher::{FunTranslationsClient, NoteDispatcher, TRANSLATIONS, Translation};
use serde_json::{Value, json};

const APP: &str = "4me-app-builder";
const OFFERING: &str = "note-dispatcher";
const PROVIDER: &str = "wdc";
const CUSTOMER: &str = "customer1";
const OTHER_CUSTOMER: &str = "customer2";
const WAIT: Duration = Duration::from_secs(10);

/// The sandbox with the offering installed for two customers, the fakes and the store.
struct World {
    sandbox: Sandbox,
    /// Receives the sandbox's webhook deliveries (stands in for API Gateway).
    gateway: CaptureServer,
    translations: FunTranslations,
    /// The customer's target URL.
    target: CaptureServer,
    store: LocalSecretStore,
    /// The engine's state table (dispatched deliveries), shared by every dispatcher built here
    /// as by every container of the function.
    state: LocalStateStore,
    _dir: tempfile::TempDir,
    customer: InstalledApp,
    other: InstalledApp,
}

impl World {
    async fn new() -> World {
        let sandbox = Sandbox::start().await.unwrap();
        let gateway = CaptureServer::start().await.unwrap();
        let translations = FunTranslations::start().await.unwrap();
        let target = CaptureServer::start().await.unwrap();
        sandbox.add_account(PROVIDER);
        sandbox.seed_app_offering(
            PROVIDER,
            OFFERING,
            json!({
                "name": "Log Note Dispatcher Integration",
                "policyJwtAlg": "rs512",
                "webhookUriTemplate": format!("{}/Prod/integration/?account={{account}}", gateway.url()),
            }),
        );
        let mut custom_fields = serde_json::Map::new();
        custom_fields.insert("url".into(), json!(format!("{}/notes", target.url())));
        let options = InstallOptions {
            custom_fields,
            ..InstallOptions::default()
        };
        let customer = sandbox
            .install_app(OFFERING, CUSTOMER, options.clone())
            .await
            .unwrap();
        let other = sandbox
            .install_app(OFFERING, OTHER_CUSTOMER, options)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().join("secrets"));
        let state = LocalStateStore::new(dir.path().join("state"));
        let world = World {
            sandbox,
            gateway,
            translations,
            target,
            store,
            state,
            _dir: dir,
            customer,
            other,
        };
        world.store_secret(&world.store, &world.customer).await;
        world.store_secret(&world.store, &world.other).await;
        world
    }

    /// Stores the customer secret as the secrets function does from the sandbox's
    /// `app_instance.secrets-update` deliveries (docs/original.md#customer-secret shape).
    async fn store_secret<S: SecretStore>(&self, store: &S, installed: &InstalledApp) {
        let name = customer_secret_name(
            APP,
            OFFERING,
            self.sandbox.domain(),
            &installed.customer_account,
        )
        .unwrap();
        let policy = &installed.customer_policy;
        let document = SecretDocument::from_map(
            json!({
                "application": {
                    "client_id": installed.customer_credentials.client_id,
                    "client_secret": installed.customer_credentials.client_secret,
                },
                "policy": {
                    "algorithm": policy.jwt_alg.to_uppercase(),
                    "audience": policy.audience,
                    "public_key": policy.public_key_pem,
                },
            })
            .as_object()
            .unwrap()
            .clone(),
        );
        store.upsert(&name, document).await.unwrap();
    }

    fn config(&self, guard: UrlGuard) -> DispatcherConfig {
        DispatcherConfig {
            funtranslations_url: self.translations.url().parse().unwrap(),
            guard,
            timeout: Duration::from_secs(5),
        }
    }

    fn dispatcher_over<S: SecretStore>(
        &self,
        store: S,
        guard: UrlGuard,
    ) -> NoteDispatcher<S, LocalStateStore> {
        let context = ContextConfig {
            domain: self.sandbox.domain().to_owned(),
            app: APP.to_owned(),
            provider_account: PROVIDER.to_owned(),
            offering_reference: Some(OFFERING.to_owned()),
        };
        let sandbox_url = self.sandbox.url();
        let endpoints = Endpoints::from_lookup(self.sandbox.domain(), |name| match name {
            "FOURME_OAUTH_URL" => Some(format!("{sandbox_url}/oauth/token")),
            "FOURME_GRAPHQL_URL" => Some(format!("{sandbox_url}/graphql")),
            "FOURME_REST_URL" => Some(format!("{sandbox_url}/v1")),
            _ => None,
        })
        .unwrap();
        let loader =
            ContextLoader::new(context, store, endpoints, ClientSettings::default()).unwrap();
        NoteDispatcher::new(loader, self.state.clone(), self.config(guard)).unwrap()
    }

    /// The dispatcher as the local engine runs it (private target URLs allowed).
    fn dispatcher(&self) -> NoteDispatcher<&LocalSecretStore, LocalStateStore> {
        self.dispatcher_over(&self.store, UrlGuard::allowing_private())
    }

    fn target_url(&self) -> String {
        format!("{}/notes", self.target.url())
    }

    /// Lets the sandbox call the offering webhook of `installed` with `payload` (as the automation
    /// rule does) and returns the HTTP request it sent.
    async fn automation_rule(&self, installed: &InstalledApp, payload: Value) -> CapturedRequest {
        let before = self.gateway.requests().len();
        self.sandbox
            .trigger_app_webhook(&installed.app_instance_id, payload)
            .await
            .unwrap();
        let requests = self.gateway.wait_for(before + 1, WAIT).await;
        requests[before].clone()
    }

    async fn note(&self, text: &str) -> CapturedRequest {
        self.automation_rule(
            &self.customer,
            json!({"text": text, "url": self.target_url()}),
        )
        .await
    }
}

/// The API Gateway REST (v1) proxy event for `captured` as delivered to `/integration`, parsed
/// by lambda_http as the runtime does; `account` replaces the query string when given.
fn gateway_request(
    method: &str,
    query_account: Option<&str>,
    captured: &CapturedRequest,
) -> Request {
    let mut headers = serde_json::Map::new();
    let mut multi = serde_json::Map::new();
    for (name, value) in &captured.headers {
        let name = match name.as_str() {
            "x-4me-delivery" => "X-4me-Delivery",
            "user-agent" => "User-Agent",
            "content-type" => "Content-Type",
            "host" | "content-length" => continue,
            other => other,
        };
        headers.insert(name.to_owned(), json!(value));
        multi.insert(name.to_owned(), json!([value]));
    }
    headers.insert(
        "Host".into(),
        json!("abc123defg.execute-api.eu-west-1.amazonaws.com"),
    );
    let event = json!({
        "resource": "/integration",
        "path": "/integration/",
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": query_account.map(|a| json!({"account": a})),
        "multiValueQueryStringParameters": query_account.map(|a| json!({"account": [a]})),
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "resourceId": "k1m2n3",
            "resourcePath": "/integration",
            "httpMethod": method,
            "path": "/Prod/integration/",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "Prod",
            "domainPrefix": "abc123defg",
            "requestId": "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b",
            "identity": {"sourceIp": "203.0.113.7"},
            "domainName": "abc123defg.execute-api.eu-west-1.amazonaws.com",
            "apiId": "abc123defg"
        },
        "body": String::from_utf8(captured.body.clone()).unwrap(),
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// The request as delivered, with the account from its own query string.
fn delivered(captured: &CapturedRequest, account: &str) -> Request {
    assert!(
        captured.path.ends_with(&format!("?account={account}")),
        "{}",
        captured.path
    );
    gateway_request("POST", Some(account), captured)
}

/// A request carrying `body` (and no delivery id) for `account`.
fn request_with_body(method: &str, account: Option<&str>, body: &str) -> Request {
    let captured = CapturedRequest {
        method: method.to_owned(),
        path: "/Prod/integration/".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    };
    gateway_request(method, account, &captured)
}

fn status_and_message(response: &Response<Body>) -> (u16, String) {
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    (
        response.status().as_u16(),
        body["message"].as_str().unwrap().to_owned(),
    )
}

fn jwt_of(captured: &CapturedRequest) -> String {
    captured.json().unwrap()["jwt"].as_str().unwrap().to_owned()
}

/// The claims of a token (unverified, for crafting variants).
fn claims_of(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn assert_nothing_dispatched(world: &World) {
    assert!(world.translations.calls().is_empty(), "translation called");
    assert!(world.target.requests().is_empty(), "target URL called");
}

// ------------------------------------------------------------------------------------------
// docs/original.md#tests-of-the-original note-dispatcher-lambda.test.js
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn handles_note_dispatcher_event() {
    let world = World::new().await;
    let captured = world.note("a new note").await;
    let response = world
        .dispatcher()
        .handle(&delivered(&captured, CUSTOMER))
        .await;
    assert_eq!(
        status_and_message(&response),
        (200, COMPLETE_MESSAGE.to_owned())
    );

    // The random translation was called with the note text, as a form field.
    let calls = world.translations.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].text.as_deref(), Some("a new note"));
    assert!(TRANSLATIONS.contains(&calls[0].style.as_str()));
    assert_eq!(
        calls[0].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );

    // Without the provider's API secret: the public plan (no secret header).
    assert_eq!(calls[0].api_secret, None);

    // The store POSTed {input: <data>, translationResponse} to the payload URL.
    let posted = world.target.requests();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].method, "POST");
    assert_eq!(posted[0].path, "/notes");
    assert!(
        posted[0]
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body = posted[0].json().unwrap();
    let data = claims_of(&jwt_of(&captured))["data"].clone();
    assert_eq!(body["input"], data);
    assert_eq!(body["input"]["event"], "automation_rule");
    assert_eq!(body["input"]["payload"]["text"], "a new note");
    let style = calls[0].style.as_str();
    assert_eq!(
        body["translationResponse"],
        json!({
            "translated": FunTranslations::translate(style, "a new note"),
            "text": "a new note",
            "translation": style,
        })
    );
    assert_eq!(body.as_object().unwrap().len(), 2);
}

// ------------------------------------------------------------------------------------------
// docs/original.md#tests-of-the-original fun_translations_helper.test.js (against the fake instead of the live API)
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_providers_api_secret_puts_translations_on_the_paid_plan() {
    let world = World::new().await;
    let name = offering_settings_secret_name(APP, OFFERING, world.sandbox.domain()).unwrap();
    let mut settings = SecretDocument::new();
    settings.insert("funtranslationsApiSecret", "paid-plan-secret");
    world.store.upsert(&name, settings).await.unwrap();
    world.translations.set_api_secret("paid-plan-secret");
    // The public plan's hourly limit is spent; the paid plan is not limited by it.
    world.translations.rate_limit_next(5);
    let dispatcher = world.dispatcher();
    for text in ["first note", "second note"] {
        let captured = world.note(text).await;
        let response = dispatcher.handle(&delivered(&captured, CUSTOMER)).await;
        assert_eq!(
            status_and_message(&response),
            (200, COMPLETE_MESSAGE.to_owned())
        );
    }
    let calls = world.translations.calls();
    assert_eq!(calls.len(), 2);
    for call in &calls {
        assert_eq!(call.status, 200);
        assert_eq!(call.api_secret.as_deref(), Some("paid-plan-secret"));
    }
    let posted = world.target.requests();
    let body: Value = serde_json::from_slice(&posted[1].body).unwrap();
    assert!(body["translationResponse"].get("error").is_none(), "{body}");
}

#[tokio::test]
async fn can_translate() {
    let fake = FunTranslations::start().await.unwrap();
    let client = FunTranslationsClient::new(fake.url().parse().unwrap(), WAIT).unwrap();
    let result = client
        .translate("yoda", "Master Obiwan has lost a planet.", None)
        .await
        .unwrap();
    assert_eq!(
        result,
        Translation::Translated(json!({
            "translated": "Master Obiwan has lost a planet., hmm.",
            "text": "Master Obiwan has lost a planet.",
            "translation": "yoda",
        }))
    );
}

#[tokio::test]
async fn supports_multiple_translations() {
    assert_eq!(
        TRANSLATIONS,
        ["yoda", "pirate", "gungan", "minion", "morse"]
    );
    let fake = FunTranslations::start().await.unwrap();
    let client = FunTranslationsClient::new(fake.url().parse().unwrap(), WAIT).unwrap();
    for style in TRANSLATIONS {
        let Translation::Translated(contents) = client.translate(style, "sos", None).await.unwrap()
        else {
            panic!("{style}: not translated");
        };
        assert_eq!(contents["translation"], style);
        assert_eq!(
            contents["translated"],
            FunTranslations::translate(style, "sos")
        );
    }
    assert_eq!(
        client.translate("morse", "sos", None).await.unwrap(),
        Translation::Translated(
            json!({"translated": "... --- ...", "text": "sos", "translation": "morse"})
        )
    );
}

#[test]
fn can_generate_random_translation() {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..500 {
        let style = note_dispatcher::translate::random_translation();
        assert!(TRANSLATIONS.contains(&style), "{style}");
        seen.insert(style);
    }
    // Uniform over five styles: missing one in 500 draws has probability < 1e-47.
    assert_eq!(seen.len(), TRANSLATIONS.len());
}

#[tokio::test]
async fn translation_rate_limit_is_a_soft_result() {
    let world = World::new().await;
    world.translations.rate_limit_next(1);
    let captured = world.note("a rate limited note").await;
    let response = world
        .dispatcher()
        .handle(&delivered(&captured, CUSTOMER))
        .await;
    assert_eq!(
        status_and_message(&response),
        (200, COMPLETE_MESSAGE.to_owned())
    );
    let calls = world.translations.calls();
    assert_eq!(calls[0].status, 429);
    let body = world.target.requests()[0].json().unwrap();
    assert_eq!(
        body["translationResponse"],
        json!({
            "translation": calls[0].style,
            "text": "a rate limited note",
            "error": RATE_LIMIT_MESSAGE,
        })
    );
}

#[tokio::test]
async fn translation_failure_is_500_and_nothing_is_posted() {
    let world = World::new().await;
    world.translations.fail_next(503);
    let captured = world.note("a note").await;
    let response = world
        .dispatcher()
        .handle(&delivered(&captured, CUSTOMER))
        .await;
    assert_eq!(
        status_and_message(&response),
        (500, FAILED_MESSAGE.to_owned())
    );
    assert!(world.target.requests().is_empty());
}

#[tokio::test]
async fn target_url_error_is_500() {
    let world = World::new().await;
    world.target.set_status(503);
    let captured = world.note("a note").await;
    let response = world
        .dispatcher()
        .handle(&delivered(&captured, CUSTOMER))
        .await;
    assert_eq!(
        status_and_message(&response),
        (500, FAILED_MESSAGE.to_owned())
    );
    assert_eq!(world.target.requests().len(), 1);
}

#[tokio::test]
async fn missing_text_or_url_is_500_as_the_original() {
    let world = World::new().await;
    for payload in [
        json!({"url": world.target_url()}),
        json!({"text": "", "url": world.target_url()}),
        json!({"text": "a note"}),
    ] {
        let captured = world.automation_rule(&world.customer, payload).await;
        let response = world
            .dispatcher()
            .handle(&delivered(&captured, CUSTOMER))
            .await;
        assert_eq!(
            status_and_message(&response),
            (500, FAILED_MESSAGE.to_owned())
        );
    }
    assert_nothing_dispatched(&world);
}

// ------------------------------------------------------------------------------------------
// Inherited from the generic receiver (docs/original.md#webhook-receiver)
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn method_not_allowed_405() {
    let world = World::new().await;
    let captured = world.note("a note").await;
    for method in ["GET", "PUT", "DELETE"] {
        let response = world
            .dispatcher()
            .handle(&gateway_request(method, Some(CUSTOMER), &captured))
            .await;
        assert_eq!(
            status_and_message(&response),
            (405, "Method not allowed. Use POST instead.".to_owned())
        );
    }
    assert_nothing_dispatched(&world);
}

#[tokio::test]
async fn missing_account_parameter_400() {
    let world = World::new().await;
    let captured = world.note("a note").await;
    let response = world
        .dispatcher()
        .handle(&gateway_request("POST", None, &captured))
        .await;
    assert_eq!(
        status_and_message(&response),
        (400, MISSING_ACCOUNT_MESSAGE.to_owned())
    );
    let response = world
        .dispatcher()
        .handle(&gateway_request("POST", Some(""), &captured))
        .await;
    assert_eq!(
        status_and_message(&response),
        (400, MISSING_ACCOUNT_MESSAGE.to_owned())
    );
    assert_nothing_dispatched(&world);
}

#[tokio::test]
async fn unknown_account_400() {
    let world = World::new().await;
    let captured = world.note("a note").await;
    for account in ["nobody", "../customer1", "customer1/../x"] {
        let response = world
            .dispatcher()
            .handle(&gateway_request("POST", Some(account), &captured))
            .await;
        assert_eq!(
            status_and_message(&response),
            (400, NO_CUSTOMER_CONTEXT_MESSAGE.to_owned()),
            "{account}"
        );
    }
    assert_nothing_dispatched(&world);
}

#[tokio::test]
async fn secret_without_policy_400() {
    let world = World::new().await;
    let name = customer_secret_name(APP, OFFERING, world.sandbox.domain(), "appl-only").unwrap();
    let document = SecretDocument::from_map(
        json!({"application": {"client_id": "id", "client_secret": "secret"}})
            .as_object()
            .unwrap()
            .clone(),
    );
    world.store.upsert(&name, document).await.unwrap();
    let captured = world.note("a note").await;
    let response = world
        .dispatcher()
        .handle(&gateway_request("POST", Some("appl-only"), &captured))
        .await;
    assert_eq!(
        status_and_message(&response),
        (400, NO_CUSTOMER_CONTEXT_MESSAGE.to_owned())
    );
    assert_nothing_dispatched(&world);
}

#[tokio::test]
async fn expected_jwt_in_body_400() {
    let world = World::new().await;
    for body in [
        "",
        "not json",
        "{}",
        r#"{"jwt": null}"#,
        r#"{"jwt": ""}"#,
        r#"{"jwt": 42}"#,
        "[]",
    ] {
        let response = world
            .dispatcher()
            .handle(&request_with_body("POST", Some(CUSTOMER), body))
            .await;
        assert_eq!(
            status_and_message(&response),
            (400, EXPECTED_JWT_MESSAGE.to_owned()),
            "{body}"
        );
    }
    assert_nothing_dispatched(&world);
}

#[tokio::test]
async fn forged_token_rejected() {
    let world = World::new().await;
    let captured = world.note("a forged note").await;
    // Same claims, signed with a key 4me never published for this customer.
    let forger = world
        .sandbox
        .create_webhook_policy(
            CUSTOMER,
            "rs512",
            world.customer.customer_policy.audience.as_deref(),
        )
        .unwrap();
    let forged = world
        .sandbox
        .sign_claims(&forger.id, &claims_of(&jwt_of(&captured)))
        .unwrap();
    let body = json!({ "jwt": forged }).to_string();
    let response = world
        .dispatcher()
        .handle(&request_with_body("POST", Some(CUSTOMER), &body))
        .await;
    let (status, message) = status_and_message(&response);
    assert_eq!(status, 400);
    assert!(
        message.starts_with("Bad JWT - (-) Incorrect request: "),
        "{message}"
    );
    assert!(
        message.ends_with(&format!("\n{} - {CUSTOMER}", world.sandbox.domain())),
        "{message}"
    );

    // A tampered payload with the original signature.
    let jwt = jwt_of(&captured);
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let mut claims = claims_of(&jwt);
    claims["data"]["payload"]["url"] = json!("http://attacker.example/");
    use base64::Engine as _;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let body = json!({ "jwt": parts.join(".") }).to_string();
    let response = world
        .dispatcher()
        .handle(&request_with_body("POST", Some(CUSTOMER), &body))
        .await;
    assert_eq!(status_and_message(&response).0, 400);
    assert_nothing_dispatched(&world);
}

#[tokio::test]
async fn cross_customer_token_rejected() {
    let world = World::new().await;
    // customer2's genuine delivery replayed against customer1's endpoint.
    let captured = world
        .automation_rule(
            &world.other,
            json!({"text": "a note", "url": world.target_url()}),
        )
        .await;
    let response = world
        .dispatcher()
        .handle(&gateway_request("POST", Some(CUSTOMER), &captured))
        .await;
    let (status, message) = status_and_message(&response);
    assert_eq!(status, 400);
    assert!(message.starts_with("Bad JWT - ("), "{message}");

    // Even with customer1's key, a token issued by customer2's account is refused: the
    // verifier binds the issuer to the account of the URL.
    let mut claims = claims_of(&jwt_of(&captured));
    claims["iss"] = json!(format!(
        "https://{OTHER_CUSTOMER}.{}",
        world.sandbox.domain()
    ));
    let token = world
        .sandbox
        .sign_claims(&world.customer.customer_policy.id, &claims)
        .unwrap();
    let body = json!({ "jwt": token }).to_string();
    let response = world
        .dispatcher()
        .handle(&request_with_body("POST", Some(CUSTOMER), &body))
        .await;
    let (status, message) = status_and_message(&response);
    assert_eq!(status, 400);
    assert!(message.contains("iss"), "{message}");
    assert_nothing_dispatched(&world);

    // The same delivery is accepted at its own account.
    let response = world
        .dispatcher()
        .handle(&delivered(&captured, OTHER_CUSTOMER))
        .await;
    assert_eq!(
        status_and_message(&response),
        (200, COMPLETE_MESSAGE.to_owned())
    );
}

#[tokio::test]
async fn refused_private_target_url() {
    let world = World::new().await;
    let strict = world.dispatcher_over(&world.store, UrlGuard::strict());
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/".to_owned(),
        world.target_url(),
        world.target_url().replace("127.0.0.1", "localhost"),
        "http://[::ffff:127.0.0.1]/".to_owned(),
        "http://10.0.0.8/hook".to_owned(),
        "file:///etc/passwd".to_owned(),
    ] {
        let captured = world
            .automation_rule(&world.customer, json!({"text": "a note", "url": url}))
            .await;
        let response = strict.handle(&delivered(&captured, CUSTOMER)).await;
        let (status, message) = status_and_message(&response);
        assert_eq!(status, 400, "{url}");
        assert!(
            message.starts_with("Refused target URL: the target URL "),
            "{message}"
        );
    }
    assert_nothing_dispatched(&world);
}

#[tokio::test]
async fn unsupported_event_400() {
    let world = World::new().await;
    let webhook = world
        .sandbox
        .create_webhook(
            CUSTOMER,
            "request.update",
            &format!(
                "{}/Prod/integration/?account={CUSTOMER}",
                world.gateway.url()
            ),
            Some(&world.customer.customer_policy.id),
            true,
        )
        .unwrap();
    let (_, jwt) = world
        .sandbox
        .webhook_event(
            &webhook,
            "request.update",
            json!({"text": "x", "url": world.target_url()}),
        )
        .unwrap();
    let body = json!({ "jwt": jwt }).to_string();
    let response = world
        .dispatcher()
        .handle(&request_with_body("POST", Some(CUSTOMER), &body))
        .await;
    assert_eq!(
        status_and_message(&response),
        (400, "Unsupported event: request.update".to_owned())
    );
    assert_nothing_dispatched(&world);
}

#[tokio::test]
async fn webhook_verify_activates_the_webhook() {
    let world = World::new().await;
    let webhook = world
        .sandbox
        .create_webhook(
            CUSTOMER,
            "automation_rule",
            &format!(
                "{}/Prod/integration/?account={CUSTOMER}",
                world.gateway.url()
            ),
            Some(&world.customer.customer_policy.id),
            false,
        )
        .unwrap();
    let captured = world.gateway.wait_for(1, WAIT).await[0].clone();
    assert_eq!(
        claims_of(&jwt_of(&captured))["data"]["event"],
        "webhook.verify"
    );
    assert_ne!(
        world.sandbox.record(&webhook).unwrap()["active"],
        json!(true)
    );
    let response = world
        .dispatcher()
        .handle(&delivered(&captured, CUSTOMER))
        .await;
    assert_eq!(
        status_and_message(&response),
        (200, WEBHOOK_VERIFIED_MESSAGE.to_owned())
    );
    assert_eq!(
        world.sandbox.record(&webhook).unwrap()["active"],
        json!(true)
    );
    assert_nothing_dispatched(&world);
}

#[tokio::test]
async fn delivery_id_is_reported_in_bad_jwt_message() {
    let world = World::new().await;
    let captured = world.note("a note").await;
    let mut tampered = captured.clone();
    let jwt = jwt_of(&captured);
    tampered.body = json!({ "jwt": format!("{jwt}x") }).to_string().into_bytes();
    let delivery = captured.header("x-4me-delivery").unwrap().to_owned();
    let response = world
        .dispatcher()
        .handle(&delivered(&tampered, CUSTOMER))
        .await;
    let (status, message) = status_and_message(&response);
    assert_eq!(status, 400);
    assert!(
        message.starts_with(&format!("Bad JWT - ({delivery}) ")),
        "{message}"
    );
}

// ------------------------------------------------------------------------------------------
// AWS Secrets Manager (moto)
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn handles_note_dispatcher_event_with_secrets_manager() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()),
        "AWS_ENDPOINT_URL is not set: run the tests through `cargo xtask test` (it starts moto), \
         or start moto and export AWS_ENDPOINT_URL, AWS_REGION and test credentials"
    );
    let world = World::new().await;
    let store = AwsSecretStore::from_env().await;
    // A unique offering-free customer per run keeps reruns against one moto independent.
    world.store_secret(&store, &world.customer).await;
    let dispatcher = world.dispatcher_over(store.clone(), UrlGuard::allowing_private());
    let captured = world.note("a note via Secrets Manager").await;
    let response = dispatcher.handle(&delivered(&captured, CUSTOMER)).await;
    assert_eq!(
        status_and_message(&response),
        (200, COMPLETE_MESSAGE.to_owned())
    );
    let body = world.target.requests()[0].json().unwrap();
    assert_eq!(
        body["input"]["payload"]["text"],
        "a note via Secrets Manager"
    );
    let name = customer_secret_name(APP, OFFERING, world.sandbox.domain(), CUSTOMER).unwrap();
    store.delete(&name).await.unwrap();
}

#[tokio::test]
async fn replayed_delivery_is_acknowledged_and_not_dispatched_twice() {
    let world = World::new().await;
    let dispatcher = world.dispatcher();

    // A failed attempt is not remembered: 4me's retry dispatches.
    world.target.set_status(500);
    let captured = world.note("a note sent once").await;
    let response = dispatcher.handle(&delivered(&captured, CUSTOMER)).await;
    assert_eq!(status_and_message(&response).0, 500);
    world.target.set_status(200);
    let response = dispatcher.handle(&delivered(&captured, CUSTOMER)).await;
    assert_eq!(
        status_and_message(&response),
        (200, COMPLETE_MESSAGE.to_owned())
    );
    assert_eq!(world.target.requests().len(), 2);

    // Once dispatched, the same token again is acknowledged without a second POST.
    let response = dispatcher.handle(&delivered(&captured, CUSTOMER)).await;
    assert_eq!(
        status_and_message(&response),
        (200, COMPLETE_MESSAGE.to_owned())
    );
    assert_eq!(world.target.requests().len(), 2);
    assert_eq!(world.translations.calls().len(), 2);

    // A new note (new token) is dispatched.
    let next = world.note("another note").await;
    let response = dispatcher.handle(&delivered(&next, CUSTOMER)).await;
    assert_eq!(
        status_and_message(&response),
        (200, COMPLETE_MESSAGE.to_owned())
    );
    assert_eq!(world.target.requests().len(), 3);
}

#[tokio::test]
async fn expired_token_rejected() {
    let world = World::new().await;
    let captured = world.note("a late note").await;
    let mut claims = claims_of(&jwt_of(&captured));
    let now = claims["iat"].as_i64().unwrap();
    claims["exp"] = json!(now - 3600);
    let token = world
        .sandbox
        .sign_claims(&world.customer.customer_policy.id, &claims)
        .unwrap();
    let body = json!({ "jwt": token }).to_string();
    let response = world
        .dispatcher()
        .handle(&request_with_body("POST", Some(CUSTOMER), &body))
        .await;
    let (status, message) = status_and_message(&response);
    assert_eq!(status, 400);
    assert!(
        message.contains("Incorrect request: token expired"),
        "{message}"
    );
    assert_nothing_dispatched(&world);
}

#[tokio::test]
async fn http_api_v2_event_with_base64_body() {
    use base64::Engine as _;
    let world = World::new().await;
    let captured = world.note("a note through an HTTP API").await;
    let delivery = captured.header("x-4me-delivery").unwrap();
    let event = json!({
        "version": "2.0",
        "routeKey": "POST /integration",
        "rawPath": "/integration",
        "rawQueryString": format!("account={CUSTOMER}"),
        "headers": {
            "content-type": "application/json",
            "x-4me-delivery": delivery,
            "user-agent": "4me/1.0 (https://developer.4me.com/v1/webhooks)",
            "host": "abc123.execute-api.eu-west-1.amazonaws.com"
        },
        "queryStringParameters": {"account": CUSTOMER},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "POST",
                "path": "/integration",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "4me/1.0"
            },
            "requestId": "id",
            "routeKey": "POST /integration",
            "stage": "$default",
            "time": "23/Nov/2026:09:15:02 +0000",
            "timeEpoch": 1795425302000u64
        },
        "body": base64::engine::general_purpose::STANDARD.encode(&captured.body),
        "isBase64Encoded": true
    });
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = world.dispatcher().handle(&request).await;
    assert_eq!(
        status_and_message(&response),
        (200, COMPLETE_MESSAGE.to_owned())
    );
    assert_eq!(world.target.requests().len(), 1);
}

/// One delivery reaching several containers at once (4me retrying while the first attempt still
/// runs): each container is its own dispatcher, they share only the stores. The note reaches the
/// customer's URL once; copies that meet the first in progress are told to retry (503), and
/// their retries are acknowledged without a second dispatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_copies_in_several_containers_are_dispatched_once() {
    let world = std::sync::Arc::new(World::new().await);
    let captured = world.note("once, whatever the containers").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let world = std::sync::Arc::clone(&world);
        let captured = captured.clone();
        tasks.push(tokio::spawn(async move {
            let container = world.dispatcher();
            loop {
                let response = container.handle(&delivered(&captured, CUSTOMER)).await;
                let (status, message) = status_and_message(&response);
                if status != 503 {
                    return (status, message);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), (200, COMPLETE_MESSAGE.to_owned()));
    }
    assert_eq!(world.target.requests().len(), 1, "dispatched once");
    assert_eq!(world.translations.calls().len(), 1);
}
