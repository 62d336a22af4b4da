//! End to end across functions: the sandbox installs the Typeform offering for a customer → its
//! signed `app_instance.secrets-update` deliveries reach the real secrets function (over HTTP,
//! as API Gateway events), which stores application, policy and the Typeform token → the
//! EventBridge secret event reaches the Typeform function → the webhook is registered at the
//! Typeform fake with a secret → a signed survey response becomes a note on the sandbox request.

#![allow(clippy::unwrap_used)] // fixture helpers unwrap on test-generated data

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use app_builder_core::config::EnabledOfferings;
use app_builder_core::context::{ContextConfig, ContextLoader};
use app_builder_core::fourme::{ClientSettings, Endpoints};
use app_builder_core::secrets::{LocalSecretStore, SecretStore, provider_secret_name};
use app_builder_sandbox::InstallOptions;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{APP, Env, FORM_ID, PROVIDER};
use secrets::SecretsHandler;
use serde_json::{Value, json};

type Handler = Arc<SecretsHandler<LocalSecretStore>>;

/// Serves the secrets handler behind a local stand-in for API Gateway (REST v1 events).
async fn serve_secrets(handler: Handler) -> String {
    async fn route(
        State(handler): State<Handler>,
        method: Method,
        Query(query): Query<HashMap<String, String>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let event = common::apigw_v1_event(method.as_str(), &query, &headers, &body, false);
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let response = handler.handle(request).await;
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let body = match response.body() {
            lambda_http::Body::Text(text) => text.clone(),
            _ => String::new(),
        };
        (status, body).into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/Prod/secrets", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/Prod/secrets", axum::routing::any(route))
        .with_state(handler);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn install_through_the_secrets_function_then_survey_response_becomes_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalSecretStore::new(dir.path());
    let env = Env::new(store.clone()).await;
    let sb = &env.sandbox;

    // The provider policy (bootstrap) next to the provider's OAuth application.
    let audience = format!("integrations provided by {PROVIDER}@{}", sb.domain());
    let policy = sb
        .create_webhook_policy(PROVIDER, "es512", Some(&audience))
        .unwrap();
    store
        .upsert(
            &provider_secret_name(APP, sb.domain(), PROVIDER).unwrap(),
            common::doc(
                json!({"policy": {"jwtAlg": policy.jwt_alg, "jwtAudience": audience,
                                          "publicKeyPem": policy.public_key_pem}}),
            ),
        )
        .await
        .unwrap();

    // The secrets function, registered as the provider's secrets-update webhook.
    let loader = ContextLoader::new(
        ContextConfig {
            domain: sb.domain().to_owned(),
            app: APP.into(),
            provider_account: PROVIDER.into(),
            offering_reference: None,
        },
        store.clone(),
        Endpoints {
            oauth: sb.oauth_url().parse().unwrap(),
            graphql: sb.graphql_url().parse().unwrap(),
            rest: sb.rest_url().parse().unwrap(),
        },
        ClientSettings::default(),
    )
    .unwrap();
    let handler =
        SecretsHandler::new(loader, EnabledOfferings::All, Duration::from_secs(5)).unwrap();
    let secrets_url = serve_secrets(Arc::new(handler)).await;
    let created: Value = env
        .provider
        .mutation(
            "mutation($uri: String!, $policyId: ID) { webhookCreate(input: {event: \"app_instance.secrets-update\", uri: $uri, webhookPolicyId: $policyId}) { errors { path message } webhook { id } } }",
            &json!({"uri": secrets_url, "policyId": policy.id}),
        )
        .await
        .unwrap();
    let webhook_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    let verified = sb.wait_for_deliveries(1, Duration::from_secs(10)).await;
    assert_eq!(verified[0].status, Some(200), "webhook.verify answered");
    assert_eq!(sb.record(&webhook_id).unwrap()["active"], json!(true));

    // The customer installs the offering with a form URL, a request id and a Typeform token.
    let request = sb.seed_request("acme", "Survey results");
    let mut custom_fields = serde_json::Map::new();
    custom_fields.insert(
        "form_url".into(),
        json!(format!("https://acme.typeform.com/to/{FORM_ID}")),
    );
    custom_fields.insert(
        "request_id".into(),
        json!(request.request_id.parse::<u64>().unwrap()),
    );
    let mut secrets = serde_json::Map::new();
    secrets.insert("typeform_token".into(), json!("tfp_acme"));
    let installed = sb
        .install_app(
            "typeform",
            "acme",
            InstallOptions {
                secrets,
                custom_fields,
                ..InstallOptions::default()
            },
        )
        .await
        .unwrap();
    for delivery in &installed.deliveries {
        assert_eq!(delivery.status, Some(200), "{}", delivery.event);
    }
    env.typeform.add_form(FORM_ID, "tfp_acme");

    // CloudTrail → EventBridge → the Typeform function.
    assert_eq!(
        env.installation("CreateSecret", "acme").await,
        (200, "OK".to_owned())
    );
    let webhook = env.typeform.webhook(FORM_ID, "4me-webhook").unwrap();
    assert_eq!(webhook.url, format!("{}?account=acme", env.api_url));
    assert_eq!(webhook.secret.as_deref().map(str::len), Some(128));

    // A survey response, its retry, and a forgery.
    let response = json!({
        "form_id": FORM_ID,
        "definition": {"id": FORM_ID, "title": "Service survey", "fields": [
            {"id": "f1", "title": "Score", "type": "rating", "ref": "score"}
        ]},
        "answers": [{"type": "number", "number": 5, "field": {"id": "f1", "type": "rating", "ref": "score"}}]
    });
    let delivery = env.typeform.send_response(FORM_ID, response).await.unwrap();
    assert_eq!(delivery.status, 200, "{}", delivery.response);
    assert_eq!(env.typeform.redeliver(&delivery).await.unwrap().status, 200);
    let forged = typeform::signature::sign("guessed", &delivery.body);
    assert_eq!(
        env.post_webhook("acme", &delivery.body, Some(&forged))
            .await,
        (400, "Bad signature".to_owned())
    );
    assert_eq!(
        sb.request_notes(&request.id),
        vec!["Received answer for \"Service survey\":\n - \"Score\": 5".to_owned()]
    );
}
