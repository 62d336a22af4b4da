//! End to end with the 4me sandbox: the handler is served over HTTP, the sandbox creates the
//! provider webhook (verified through the real `webhook.verify` callback) and installs an app,
//! delivering real signed `app_instance.secrets-update` webhooks; the secrets end up in the store
//! (a local store, and AWS Secrets Manager on moto).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::sync::Arc;
use std::time::Duration;

use app_builder_core::config::EnabledOfferings;
use app_builder_core::context::{ContextConfig, ContextLoader};
use app_builder_core::fourme::{ClientSettings, Endpoints};
use app_builder_core::secrets::{
    AwsSecretStore, LocalSecretStore, SecretDocument, SecretStore, customer_secret_name,
    provider_secret_name,
};
use app_builder_core::state::LocalStateStore;
use app_builder_sandbox::{InstallOptions, Sandbox};
use serde_json::{Value, json};
use support::{Recorder, handler_with, serve};

/// A GraphQL session of one sandbox account.
struct Gql {
    url: String,
    token: String,
    account: String,
}

impl Gql {
    async fn login(sb: &Sandbox, account: &str, client_id: &str, secret: &str) -> Gql {
        let body: Value = reqwest::Client::new()
            .post(sb.oauth_url())
            .json(&json!({"client_id": client_id, "client_secret": secret,
                          "grant_type": "client_credentials"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Gql {
            url: sb.graphql_url(),
            token: body["access_token"].as_str().unwrap().to_owned(),
            account: account.to_owned(),
        }
    }

    async fn run(&self, query: &str, variables: Value) -> Value {
        let body: Value = reqwest::Client::new()
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("X-4me-Account", &self.account)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(body.get("errors").is_none(), "GraphQL errors: {body}");
        body["data"].clone()
    }
}

/// What the scenario leaves behind for store-specific checks.
struct Installed {
    customer_secret: app_builder_core::secrets::SecretName,
    first_delivery: app_builder_sandbox::Delivery,
    url: String,
    /// Keeps the sandbox (and its deliveries) alive for the checks.
    _sandbox: Sandbox,
    /// Keeps the state store's files (the applied deliveries) for the checks.
    _state_dir: tempfile::TempDir,
}

/// Provider set-up, webhook creation and verification, app installation: the full flow.
async fn install_through_sandbox<S: SecretStore + Clone + 'static>(
    store: S,
    app: &str,
    provider: &str,
) -> Installed {
    let sb = Sandbox::start().await.unwrap();
    let creds = sb.add_oauth_application(provider);
    let audience = format!("integrations provided by {provider}@{}", sb.domain());
    let policy = sb
        .create_webhook_policy(provider, "es512", Some(&audience))
        .unwrap();

    // The provider secret as the bootstrap writes it (docs/original.md#provider-secret).
    let provider_secret = SecretDocument::try_from(json!({
        "clientID": creds.client_id,
        "token": creds.client_secret,
        "policy": {"jwtAlg": policy.jwt_alg, "jwtAudience": audience,
                   "publicKeyPem": policy.public_key_pem},
    }))
    .unwrap();
    store
        .upsert(
            &provider_secret_name(app, sb.domain(), provider).unwrap(),
            provider_secret,
        )
        .await
        .unwrap();

    let config = ContextConfig {
        domain: sb.domain().to_owned(),
        app: app.to_owned(),
        provider_account: provider.to_owned(),
        offering_reference: None,
    };
    let state_dir = tempfile::tempdir().unwrap();
    let handler = handler_with(
        store.clone(),
        LocalStateStore::new(state_dir.path()),
        Recorder::default(),
        config.clone(),
        EnabledOfferings::parse("typeform, note-dispatcher"),
        Duration::from_secs(5),
    );
    let url = serve(Arc::new(handler)).await;

    // webhookCreate → the sandbox sends webhook.verify → the handler GETs the callback.
    let gql = Gql::login(&sb, provider, &creds.client_id, &creds.client_secret).await;
    let data = gql
        .run(
            "mutation($uri: String!, $policyId: String) { webhookCreate(input: {event: \"app_instance.secrets-update\", uri: $uri, webhookPolicyId: $policyId}) { errors { path message } webhook { id } } }",
            json!({"uri": url, "policyId": policy.id}),
        )
        .await;
    assert_eq!(data["webhookCreate"]["errors"], json!([]), "{data}");
    let webhook_id = data["webhookCreate"]["webhook"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deliveries = sb.wait_for_deliveries(1, Duration::from_secs(10)).await;
    assert_eq!(deliveries[0].event, "webhook.verify");
    assert_eq!(
        deliveries[0].status,
        Some(200),
        "handles verification of webhook"
    );
    assert_eq!(sb.record(&webhook_id).unwrap()["active"], true);

    // An offering, then its installation for customer `cust`.
    let service_instance = sb.seed_service_instance(provider, "Mainframe 1");
    let data = gql
        .run(
            "mutation($input: AppOfferingCreateInput!) { appOfferingCreate(input: $input) { errors { path message } appOffering { id } } }",
            json!({"input": {"name": "Note dispatcher", "reference": "note-dispatcher",
                "serviceInstanceId": service_instance, "policyJwtAlg": "rs256",
                "webhookUriTemplate": "http://127.0.0.1:1/hook?account={account}",
                "newScopes": [{"effect": "allow", "actions": ["read"]}]}}),
        )
        .await;
    assert_eq!(data["appOfferingCreate"]["errors"], json!([]), "{data}");

    let mut secrets = serde_json::Map::new();
    secrets.insert("api_key".into(), json!("k-123"));
    let installed = sb
        .install_app(
            "note-dispatcher",
            "cust",
            InstallOptions {
                secrets,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(installed.deliveries.len(), 2);
    for delivery in &installed.deliveries {
        assert_eq!(delivery.status, Some(200), "{}", delivery.event);
        assert_eq!(delivery.attempts, 1);
    }

    // Both deliveries (application, then policy + secrets) are in the customer secret.
    let customer_secret =
        customer_secret_name(app, "note-dispatcher", sb.domain(), "cust").unwrap();
    let stored = Value::from(store.get(&customer_secret).await.unwrap().unwrap());
    assert_eq!(
        stored["application"]["client_id"],
        installed.customer_credentials.client_id.as_str()
    );
    assert_eq!(
        stored["application"]["client_secret"],
        installed.customer_credentials.client_secret.as_str()
    );
    assert_eq!(
        stored["policy"]["public_key"].as_str(),
        installed.customer_policy.public_key_pem.as_deref()
    );
    assert_eq!(stored["policy"]["algorithm"], "RS256");
    assert_eq!(stored["secrets"], json!({"api_key": "k-123"}));
    // Customer secrets hold secrets only: which deliveries were applied is in the state store.
    let mut keys: Vec<&String> = stored.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["application", "policy", "secrets"]);

    // The integration's reader (customer context) works on it.
    let loader = ContextLoader::new(
        ContextConfig {
            offering_reference: Some("note-dispatcher".into()),
            ..config.clone()
        },
        store.clone(),
        Endpoints::for_domain(sb.domain()).unwrap(),
        ClientSettings::default(),
    )
    .unwrap();
    let customer = loader.customer("cust").await.unwrap();
    assert!(customer.client().is_ok());
    assert!(customer.verifier().is_ok());

    Installed {
        customer_secret,
        first_delivery: installed.deliveries[0].clone(),
        url,
        _sandbox: sb,
        _state_dir: state_dir,
    }
}

/// Re-posts a delivery exactly as the sandbox sent it (same `X-4me-Delivery`).
async fn replay(url: &str, delivery: &app_builder_sandbox::Delivery) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("X-4me-Delivery", &delivery.id)
        .header(
            "User-Agent",
            "4me/1.0 (https://developer.4me.com/v1/webhooks)",
        )
        .json(&json!({"jwt": delivery.jwt}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn sandbox_install_stores_application_and_policy_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalSecretStore::new(dir.path());
    let installed = install_through_sandbox(store.clone(), "4me-app-builder", "wdc").await;
    let path = store.path_of(&installed.customer_secret);
    let before = std::fs::read_to_string(&path).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();

    // A replayed delivery: acknowledged, not applied again.
    let (status, body) = replay(&installed.url, &installed.first_delivery).await;
    assert_eq!((status, body), (200, json!({"message": "Secrets stored"})));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );
}

#[tokio::test]
async fn sandbox_install_stores_application_and_policy_in_secrets_manager_on_moto() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        !endpoint.is_empty(),
        "AWS_ENDPOINT_URL is not set: start moto (`moto_server -H 127.0.0.1 -p 5055`) and run with \
         AWS_ENDPOINT_URL=http://127.0.0.1:5055 AWS_ACCESS_KEY_ID=testing \
         AWS_SECRET_ACCESS_KEY=testing AWS_REGION=eu-west-1 (see the README)"
    );
    let store = AwsSecretStore::from_env().await;
    let app = format!("e2e-{}", uuid::Uuid::new_v4().simple());
    let installed = install_through_sandbox(store.clone(), &app, "wdc").await;

    let current_version = || async {
        store
            .client()
            .get_secret_value()
            .secret_id(installed.customer_secret.as_str())
            .version_stage("AWSCURRENT")
            .send()
            .await
            .unwrap()
            .version_id()
            .unwrap()
            .to_owned()
    };
    let before = current_version().await;
    let (status, body) = replay(&installed.url, &installed.first_delivery).await;
    assert_eq!((status, body), (200, json!({"message": "Secrets stored"})));
    assert_eq!(
        current_version().await,
        before,
        "a replay created a new version"
    );
    let versions = store
        .client()
        .list_secret_version_ids()
        .secret_id(installed.customer_secret.as_str())
        .send()
        .await
        .unwrap();
    // CreateSecret (application) + PutSecretValue (policy): one version per applied delivery.
    assert_eq!(versions.versions().len(), 2);
}
