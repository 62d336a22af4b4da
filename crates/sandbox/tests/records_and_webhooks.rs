//! The 4me records the engine uses (offerings, rules, UI extensions, instances, requests, people), REST calls,
//! webhook policies and signed webhook deliveries.
#![allow(clippy::unwrap_used)] // helpers of this test crate may unwrap

use std::sync::{Arc, Mutex};
use std::time::Duration;

use app_builder_sandbox::{InstallOptions, OAuthCredentials, Sandbox};
use aws_lc_rs::signature::{self, UnparsedPublicKey};
use axum::extract::State;
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};

struct Client {
    sb: Sandbox,
    token: String,
    account: String,
}

impl Client {
    async fn new(sb: &Sandbox, account: &str) -> Client {
        let creds = sb.add_oauth_application(account);
        Client::with(sb, account, &creds).await
    }

    async fn with(sb: &Sandbox, account: &str, creds: &OAuthCredentials) -> Client {
        let body: Value = reqwest::Client::new()
            .post(sb.oauth_url())
            .json(
                &json!({"client_id": creds.client_id, "client_secret": creds.client_secret,
                          "grant_type": "client_credentials"}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Client {
            sb: sb.clone(),
            token: body["access_token"].as_str().unwrap().to_owned(),
            account: account.to_owned(),
        }
    }

    async fn gql(&self, query: &str, variables: Value) -> Value {
        let resp = reqwest::Client::new()
            .post(self.sb.graphql_url())
            .bearer_auth(&self.token)
            .header("X-4me-Account", &self.account)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    async fn gql_raw(&self, query: &str, variables: Value) -> Value {
        reqwest::Client::new()
            .post(self.sb.graphql_url())
            .bearer_auth(&self.token)
            .header("X-4me-Account", &self.account)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

const OFFERING_CREATE: &str = "mutation($input: AppOfferingCreateInput!) { appOfferingCreate(input: $input) { errors { path message } appOffering { id reference uiExtensionVersion { id uiExtension { id } } automationRules(first: 100) { nodes { id name generic } } scopes { id actions } } } }";
const RULE_CREATE: &str = "mutation($input: AppOfferingAutomationRuleCreateInput!) { appOfferingAutomationRuleCreate(input: $input) { errors { path message } appOfferingAutomationRule { id name } } }";

async fn offering(c: &Client, reference: &str, extra: Value) -> Value {
    let si = c.sb.seed_service_instance(&c.account, "Mainframe 1");
    let mut input = json!({"name": "Note dispatcher", "reference": reference,
        "serviceInstanceId": si, "policyJwtAlg": "rs512",
        "webhookUriTemplate": "http://127.0.0.1:1/hook?account={account}",
        "newScopes": [{"effect": "allow", "actions": ["read"]}]});
    for (k, v) in extra.as_object().unwrap() {
        input[k] = v.clone();
    }
    let data = c.gql(OFFERING_CREATE, json!({"input": input})).await;
    assert_eq!(data["appOfferingCreate"]["errors"], json!([]), "{data}");
    data["appOfferingCreate"]["appOffering"].clone()
}

#[tokio::test]
async fn bootstrap_records_round_trip() {
    let sb = Sandbox::start().await.unwrap();
    let c = Client::new(&sb, "wdc").await;
    let si = sb.seed_service_instance("wdc", "Mainframe 1");

    let q = "query($filter: ServiceInstanceFilter) { serviceInstances(first: 1, filter: $filter) { nodes { id service { id } supportTeam { id } } } }";
    let data = c
        .gql(q, json!({"filter": {"name": {"values": ["Mainframe 1"]}}}))
        .await;
    let node = &data["serviceInstances"]["nodes"][0];
    assert_eq!(node["id"], si.as_str());
    assert!(node["service"]["id"].is_string() && node["supportTeam"]["id"].is_string());

    let data = c.gql("mutation($input: ProductCreateInput!) { productCreate(input: $input) { errors { path message } product { id } } }",
        json!({"input": {"name": "AWS S3 Bucket", "brand": "Amazon", "model": "S3", "category": "other_type_of_hardware",
                         "source": "4me-app-bootstrap", "sourceID": "s3_product", "supportTeamId": node["supportTeam"]["id"]}})).await;
    let product = data["productCreate"]["product"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = c.gql("query($filter: ProductFilter) { products(first: 1, filter: $filter) { nodes { id } } }",
        json!({"filter": {"source": {"values": ["4me-app-bootstrap"]}, "sourceID": {"values": ["s3_product"]}}})).await;
    assert_eq!(data["products"]["nodes"][0]["id"], product.as_str());
    let data = c.gql("mutation($input: ProductUpdateInput!) { productUpdate(input: $input) { errors { path message } product { id } } }",
        json!({"input": {"id": product, "model": "S3 v2"}})).await;
    assert_eq!(data["productUpdate"]["errors"], json!([]));

    let ui = "mutation($input: UiExtensionCreateInput!) { uiExtensionCreate(input: $input) { errors { path message } uiExtension { id name activeVersion { id } } } }";
    let data = c
        .gql(
            ui,
            json!({"input": {"name": "AWS Lambda UI Extension", "title": "Lambda parameters",
        "category": "product", "activate": true, "html": "<p>x</p>", "css": "", "javascript": "",
        "source": "4me-app-bootstrap", "sourceID": "lambda_ui_extension"}}),
        )
        .await;
    let ext = &data["uiExtensionCreate"]["uiExtension"];
    let ext_id = ext["id"].as_str().unwrap().to_owned();
    let v1 = ext["activeVersion"]["id"].as_str().unwrap().to_owned();
    // Category cannot be sent on update: the schema rejects it.
    let body = c.gql_raw("mutation($input: UiExtensionUpdateInput!) { uiExtensionUpdate(input: $input) { errors { path message } } }",
        json!({"input": {"id": ext_id, "category": "product"}})).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("category"),
        "{body}"
    );
    let data = c.gql("mutation($input: UiExtensionUpdateInput!) { uiExtensionUpdate(input: $input) { errors { path message } uiExtension { id name activeVersion { id } } } }",
        json!({"input": {"id": ext_id, "activate": true, "html": "<p>v2</p>"}})).await;
    let v2 = data["uiExtensionUpdate"]["uiExtension"]["activeVersion"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(v1, v2);
    let data = c.gql("query($filter: UiExtensionFilter) { uiExtensions(first: 1, filter: $filter) { nodes { id } } }",
        json!({"filter": {"sourceID": {"values": ["lambda_ui_extension"]}}})).await;
    assert_eq!(data["uiExtensions"]["nodes"][0]["id"], ext_id.as_str());

    // Offering with the extension; draft lookup by reference.
    let off = offering(&c, "note-dispatcher", json!({"uiExtensionId": ext_id,
        "newScopes": [{"effect": "allow", "actions": ["read"]}, {"effect": "allow", "actions": ["update"]}]})).await;
    assert_eq!(off["uiExtensionVersion"]["id"], v2.as_str());
    assert_eq!(
        off["uiExtensionVersion"]["uiExtension"]["id"],
        ext_id.as_str()
    );
    assert_eq!(off["automationRules"]["nodes"], json!([]));
    let q = "query($reference: String) { appOfferings(first: 1, filter: {published: false, reference: {values: [$reference]}}) { nodes { id name scopes { id actions } } } }";
    let data = c.gql(q, json!({"reference": "note-dispatcher"})).await;
    let found = &data["appOfferings"]["nodes"][0];
    assert_eq!(found["id"], off["id"]);
    let scopes = found["scopes"].as_array().unwrap().clone();
    assert_eq!(scopes.len(), 2);

    // Duplicate reference is a payload error.
    let data = c.gql(OFFERING_CREATE, json!({"input": {"name": "x", "reference": "note-dispatcher", "serviceInstanceId": si}})).await;
    assert_eq!(
        data["appOfferingCreate"]["errors"][0]["path"],
        json!(["reference"])
    );

    // Update: first scope kept by id, second deleted, one added.
    let update = "mutation($input: AppOfferingUpdateInput!) { appOfferingUpdate(input: $input) { errors { path message } appOffering { id scopes { id actions } } } }";
    let data = c
        .gql(
            update,
            json!({"input": {"id": off["id"], "newScopes": [
        {"id": scopes[0]["id"], "actions": ["read", "create"]}, {"actions": ["delete"]}],
        "scopesToDelete": [scopes[1]["id"]]}}),
        )
        .await;
    let new_scopes = &data["appOfferingUpdate"]["appOffering"]["scopes"];
    assert_eq!(new_scopes[0]["id"], scopes[0]["id"]);
    assert_eq!(new_scopes[0]["actions"], json!(["read", "create"]));
    assert_eq!(new_scopes[1]["actions"], json!(["delete"]));
    assert_eq!(new_scopes.as_array().unwrap().len(), 2);

    // CI with custom fields found by systemID (bootstrap lookups).
    let data = c.gql("mutation($input: ConfigurationItemCreateInput!) { configurationItemCreate(input: $input) { errors { path message } configurationItem { id } } }",
        json!({"input": {"name": "AWS S3 Bucket - 4me Integrations", "productId": product, "systemID": "bucket-1",
                         "serviceId": node["service"]["id"], "status": "in_production"}})).await;
    assert_eq!(data["configurationItemCreate"]["errors"], json!([]));
}

#[tokio::test]
async fn automation_rules_graphql_deletes_and_avatars() {
    let sb = Sandbox::start().await.unwrap();
    let c = Client::new(&sb, "wdc").await;
    let off = offering(&c, "typeform", json!({})).await;
    let data = c
        .gql(
            RULE_CREATE,
            json!({"input": {"appOfferingId": off["id"], "name": "Call webhook",
        "generic": "request", "trigger": "on note added", "condition": "true",
        "expressions": [{"name": "text", "value": "notes[last].text"}],
        "actions": [{"name": "a1", "value": "call webhook '{app_offering_webhook}' with payload 'text'"}]}}),
        )
        .await;
    let rule = data["appOfferingAutomationRuleCreate"]["appOfferingAutomationRule"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = c
        .gql(
            RULE_CREATE,
            json!({"input": {"appOfferingId": off["id"], "name": "", "trigger": "x", "condition": "true"}}),
        )
        .await;
    assert_eq!(
        data["appOfferingAutomationRuleCreate"]["errors"][0]["path"],
        json!(["name"])
    );
    // appOfferingId is not part of the update input.
    let body = c.gql_raw("mutation($input: AppOfferingAutomationRuleUpdateInput!) { appOfferingAutomationRuleUpdate(input: $input) { errors { path message } } }",
        json!({"input": {"id": rule, "appOfferingId": off["id"]}})).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("appOfferingId"),
        "{body}"
    );
    let data = c.gql("mutation($input: AppOfferingAutomationRuleUpdateInput!) { appOfferingAutomationRuleUpdate(input: $input) { errors { path message } appOfferingAutomationRule { id name } } }",
        json!({"input": {"id": rule, "name": "Renamed"}})).await;
    assert_eq!(
        data["appOfferingAutomationRuleUpdate"]["appOfferingAutomationRule"]["name"],
        "Renamed"
    );
    let q = "query($id: ID!) { node(id: $id) { ... on AppOffering { automationRules(first: 100) { nodes { id name generic } } } } }";
    let data = c.gql(q, json!({"id": off["id"]})).await;
    assert_eq!(
        data["node"]["automationRules"]["nodes"][0]["generic"],
        "request"
    );

    // Deleted through GraphQL (4me's delete mutations take the node id).
    let delete = "mutation($input: AppOfferingAutomationRuleDeleteMutationInput!) { appOfferingAutomationRuleDelete(input: $input) { errors { path message } success } }";
    let data = c.gql(delete, json!({"input": {"id": rule}})).await;
    assert_eq!(data["appOfferingAutomationRuleDelete"]["success"], true);
    let data = c.gql(delete, json!({"input": {"id": rule}})).await;
    assert_eq!(data["appOfferingAutomationRuleDelete"]["success"], false);
    assert_eq!(
        data["appOfferingAutomationRuleDelete"]["errors"][0]["path"],
        json!(["id"])
    );
    let data = c.gql(q, json!({"id": off["id"]})).await;
    assert_eq!(data["node"]["automationRules"]["nodes"], json!([]));

    let client = reqwest::Client::new();
    let avatar_url = format!(
        "{}/app_offerings/{}/avatar",
        sb.rest_url(),
        off["id"].as_str().unwrap()
    );
    let form = reqwest::multipart::Form::new()
        .text("avatar_file_name", "logo.png")
        .part(
            "avatar",
            reqwest::multipart::Part::bytes(vec![137u8, 80, 78, 71]).file_name("logo.png"),
        );
    let resp = client
        .post(&avatar_url)
        .bearer_auth(&c.token)
        .header("X-4me-Account", "wdc")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let form = reqwest::multipart::Form::new().text("avatar_file_name", "logo.png");
    let resp = client
        .post(&avatar_url)
        .bearer_auth(&c.token)
        .header("X-4me-Account", "wdc")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let missing = format!("{}/app_offerings/nope/avatar", sb.rest_url());
    let form = reqwest::multipart::Form::new()
        .text("avatar_file_name", "a.png")
        .part("avatar", reqwest::multipart::Part::bytes(vec![1u8]));
    assert_eq!(
        client
            .post(&missing)
            .bearer_auth(&c.token)
            .header("X-4me-Account", "wdc")
            .multipart(form)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(sb.stats().rest_requests, 3);
    let record = sb.record(off["id"].as_str().unwrap()).unwrap();
    assert!(record["avatar"].as_str().unwrap().ends_with("logo.png"));
}

#[tokio::test]
async fn app_instances_filters_and_updates() {
    let sb = Sandbox::start().await.unwrap();
    let c = Client::new(&sb, "wdc").await;
    offering(&c, "lansweeper", json!({})).await;
    let mut cf = serde_json::Map::new();
    cf.insert("start".into(), json!("2026-01-01T00:00:00Z"));
    let a = sb
        .install_app(
            "lansweeper",
            "cust-a",
            InstallOptions {
                custom_fields: cf,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut cf = serde_json::Map::new();
    cf.insert("start".into(), json!("2027-01-01T00:00:00Z"));
    let b = sb
        .install_app(
            "lansweeper",
            "cust-b",
            InstallOptions {
                custom_fields: cf,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        a.deliveries.is_empty(),
        "no verified webhook, nothing delivered"
    );

    let q18 = "query($customerAccount: String!, $reference: String) { appInstances(first: 1, filter: {customerAccount: {values: [$customerAccount]}, appOfferingReference: {values: [$reference]}}) { nodes { id appOffering { id } suspended customFields { id value } } } }";
    let data = c
        .gql(
            q18,
            json!({"customerAccount": "cust-b", "reference": "lansweeper"}),
        )
        .await;
    assert_eq!(
        data["appInstances"]["nodes"][0]["id"],
        b.app_instance_id.as_str()
    );
    assert_eq!(
        data["appInstances"]["nodes"][0]["customFields"][0]["value"],
        "2027-01-01T00:00:00Z"
    );
    let data = c
        .gql(
            q18,
            json!({"customerAccount": "cust-b", "reference": "other"}),
        )
        .await;
    assert_eq!(data["appInstances"]["nodes"], json!([]));

    let q20 = "query($value: String!, $reference: String!) { appInstances(first: 100, filter: {customFilters: [{name: \"Start\", values: [$value]}], appOfferingReference: {values: [$reference]}, disabled: false, suspended: false, enabledByCustomer: true}) { nodes { id customerAccount { id } } } }";
    let data = c
        .gql(
            q20,
            json!({"value": "<2026-06-01T00:00:00Z", "reference": "lansweeper"}),
        )
        .await;
    let nodes = data["appInstances"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["customerAccount"]["id"], "cust-a");

    let update = "mutation($input: AppInstanceUpdateInput!) { appInstanceUpdate(input: $input) { errors { path message } appInstance { id } } }";
    let data = c.gql(update, json!({"input": {"id": a.app_instance_id, "suspended": true, "suspensionComment": "bad token"}})).await;
    assert_eq!(
        data["appInstanceUpdate"]["appInstance"]["id"],
        a.app_instance_id.as_str()
    );
    let data = c
        .gql(
            q20,
            json!({"value": "<2026-06-01T00:00:00Z", "reference": "lansweeper"}),
        )
        .await;
    assert_eq!(data["appInstances"]["nodes"], json!([]));
    c.gql(
        update,
        json!({"input": {"id": a.app_instance_id, "suspended": false,
        "customFields": [{"id": "callback_url", "value": "https://x"}]}}),
    )
    .await;
    let record = sb.record(&a.app_instance_id).unwrap();
    assert_eq!(record["suspended"], false);
    assert!(record.get("suspensionComment").is_none());
    assert_eq!(record["customFields"].as_array().unwrap().len(), 2);
    let data = c.gql(update, json!({"input": {"id": "unknown"}})).await;
    assert_eq!(
        data["appInstanceUpdate"]["errors"][0]["path"],
        json!(["id"])
    );

    // The customer credentials work for the customer account only.
    let cust = Client::with(&sb, "cust-a", &a.customer_credentials).await;
    let data = cust
        .gql(
            "{ configurationItems(first: 1) { nodes { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["configurationItems"]["nodes"], json!([]));
}

#[tokio::test]
async fn requests_notes_and_people() {
    let sb = Sandbox::start().await.unwrap();
    let c = Client::new(&sb, "cust").await;
    let req = sb.seed_request("cust", "Printer broken");
    let data = c.gql("query($requestId: String) { requests(first: 1, filter: {requestId: {values: [$requestId]}}) { nodes { id } } }",
        json!({"requestId": req.request_id})).await;
    assert_eq!(data["requests"]["nodes"][0]["id"], req.id.as_str());
    let update = "mutation($input: RequestUpdateInput!) { requestUpdate(input: $input) { errors { path message } request { id } } }";
    let data = c
        .gql(
            update,
            json!({"input": {"id": req.id, "note": "Typeform answer"}}),
        )
        .await;
    assert_eq!(data["requestUpdate"]["errors"], json!([]));
    assert_eq!(
        sb.request_notes(&req.id),
        vec!["Typeform answer".to_owned()]
    );
    let data = c
        .gql(update, json!({"input": {"id": req.id, "note": "  "}}))
        .await;
    assert_eq!(data["requestUpdate"]["errors"][0]["path"], json!(["note"]));

    sb.seed_person(
        "cust",
        json!({"name": "Ann", "primaryEmail": "Ann@Example.com", "employeeID": "e1"}),
    );
    sb.seed_person(
        "cust",
        json!({"name": "Bob", "primaryEmail": "bob@example.com", "disabled": true}),
    );
    let q = "query($names: [String!]!) { byEmail: people(first: 100, view: all, filter: {primaryEmail: {values: $names}, disabled: false}) { nodes { userName: primaryEmail id } } byEmployee: people(first: 100, view: all, filter: {employeeID: {values: $names}, disabled: false}) { nodes { userName: employeeID id } } }";
    let data = c
        .gql(
            q,
            json!({"names": ["ann@example.com", "bob@example.com", "e1"]}),
        )
        .await;
    assert_eq!(data["byEmail"]["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(data["byEmail"]["nodes"][0]["userName"], "Ann@Example.com");
    assert_eq!(data["byEmployee"]["nodes"][0]["userName"], "e1");
    let data = c.gql("query($previousEndCursor: String) { people(view: all, first: 100, after: $previousEndCursor) { pageInfo { hasNextPage endCursor } nodes { id authenticationID primaryEmail sourceID employeeID supportID } } }",
        json!({"previousEndCursor": null})).await;
    assert_eq!(data["people"]["nodes"].as_array().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Webhooks

#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<(String, Value)>>>,
    failures_left: Arc<Mutex<u32>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: axum::http::HeaderMap,
    body: axum::Json<Value>,
) -> axum::http::StatusCode {
    let delivery = headers
        .get("x-4me-delivery")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    {
        let mut left = r.failures_left.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    let claims = decode_claims(body["jwt"].as_str().unwrap_or_default());
    if claims["data"]["event"] == "webhook.verify" {
        let callback = claims["data"]["payload"]["callback"]
            .as_str()
            .unwrap()
            .to_owned();
        let status = reqwest::get(&callback).await.unwrap().status();
        assert_eq!(status, 200);
    }
    r.received.lock().unwrap().push((delivery, body.0));
    axum::http::StatusCode::OK
}

async fn start_receiver(failures: u32) -> (String, Receiver) {
    let receiver = Receiver::default();
    *receiver.failures_left.lock().unwrap() = failures;
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, receiver)
}

fn b64(part: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap()
}

fn decode_claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap_or_default();
    serde_json::from_slice(&b64(part)).unwrap_or(Value::Null)
}

/// Verifies a compact JWS with the SPKI PEM; returns (header, claims).
fn verify(jwt: &str, pem: &str) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&b64(parts[0])).unwrap();
    let der = pem::parse(pem).unwrap();
    assert_eq!(der.tag(), "PUBLIC KEY");
    let alg: &'static dyn signature::VerificationAlgorithm = match header["alg"].as_str().unwrap() {
        "ES512" => &signature::ECDSA_P521_SHA512_FIXED,
        "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
        other => panic!("unexpected alg {other}"),
    };
    let message = format!("{}.{}", parts[0], parts[1]);
    UnparsedPublicKey::new(alg, der.contents())
        .verify(message.as_bytes(), &b64(parts[2]))
        .expect("signature verifies");
    (header, serde_json::from_slice(&b64(parts[1])).unwrap())
}

#[tokio::test]
async fn webhook_policy_verify_and_secrets_update_deliveries() {
    let sb = Sandbox::start().await.unwrap();
    let c = Client::new(&sb, "wdc").await;
    let audience = "integrations provided by wdc@4me-sandbox.test";
    let create = "mutation($algorihtm: WebhookPolicyJwtAlg!, $audience: String) { webhookPolicyCreate(input: {jwtAlg: $algorihtm, jwtAudience: $audience}) { errors { path message } webhookPolicy { id name jwtAlg jwtAudience publicKeyPem } } }";
    let body = c
        .gql_raw(create, json!({"algorihtm": "ES512", "audience": audience}))
        .await;
    assert!(
        body["errors"].as_array().is_some_and(|e| !e.is_empty()),
        "upper-case enum rejected: {body}"
    );
    let data = c
        .gql(create, json!({"algorihtm": "es512", "audience": audience}))
        .await;
    let policy = data["webhookPolicyCreate"]["webhookPolicy"].clone();
    assert_eq!(policy["jwtAlg"], "es512");
    assert_eq!(policy["jwtAudience"], audience);
    let pem = policy["publicKeyPem"].as_str().unwrap().to_owned();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let data = c
        .gql(
            "query($id: ID!) { node(id: $id) { ... on WebhookPolicy { id name jwtAlg } } }",
            json!({"id": policy["id"]}),
        )
        .await;
    assert_eq!(data["node"]["jwtAlg"], "es512");
    assert_eq!(data["node"]["name"], policy["name"]);

    let (url, receiver) = start_receiver(1).await;
    let body = c.gql_raw("mutation { webhookCreate(input: {event: \"no.such-event\", uri: \"http://x\"}) { errors { path message } } }", json!({})).await;
    assert_eq!(
        body["data"]["webhookCreate"]["errors"][0]["path"],
        json!(["event"])
    );
    let data = c.gql("mutation($uri: String!, $policyId: String) { webhookCreate(input: {event: \"app_instance.secrets-update\", uri: $uri, webhookPolicyId: $policyId}) { errors { path message } webhook { id name uri } } }",
        json!({"uri": url, "policyId": policy["id"]})).await;
    let webhook = data["webhookCreate"]["webhook"].clone();
    assert_eq!(webhook["uri"], url.as_str());
    let data = c.gql("query($id: ID!) { node(id: $id) { ... on Webhook { id name uri webhookPolicy { id } } } }", json!({"id": webhook["id"]})).await;
    assert_eq!(data["node"]["webhookPolicy"]["id"], policy["id"]);

    // webhook.verify: first attempt gets 503, the retry succeeds and the receiver activates it.
    let deliveries = sb.wait_for_deliveries(1, Duration::from_secs(30)).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].event, "webhook.verify");
    assert_eq!(deliveries[0].status, Some(200));
    assert_eq!(deliveries[0].attempts, 2);
    assert_eq!(
        sb.record(webhook["id"].as_str().unwrap()).unwrap()["active"],
        true
    );
    let (header, claims) = verify(&deliveries[0].jwt, &pem);
    assert_eq!(header["alg"], "ES512");
    assert_eq!(claims["iss"], "https://wdc.4me-sandbox.test");
    assert_eq!(claims["aud"], audience);
    assert_eq!(claims["data"]["webhook_nodeID"], webhook["id"]);
    assert_eq!(claims["sub"], claims["data"]["webhook_id"].to_string());
    for key in ["jti", "nbf", "iat"] {
        assert!(claims.get(key).is_some(), "missing {key}");
    }

    // Install an app: two secrets-update deliveries (application, then policy + secrets).
    let off = offering(&c, "note-dispatcher", json!({})).await;
    let mut secrets = serde_json::Map::new();
    secrets.insert("typeform_token".into(), json!("tf-123"));
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
    assert!(
        installed
            .deliveries
            .iter()
            .all(|d| d.status == Some(200) && d.attempts == 1)
    );
    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(received.len(), 3);
    assert_eq!(received[1].0, installed.deliveries[0].id);
    let (_, first) = verify(received[1].1["jwt"].as_str().unwrap(), &pem);
    let data = &first["data"];
    assert_eq!(data["event"], "app_instance.secrets-update");
    assert_eq!(data["account_id"], "wdc");
    assert_eq!(data["account"], "https://wdc.4me-sandbox.test");
    assert_eq!(data["object_nodeID"], installed.app_instance_id.as_str());
    let payload = &data["payload"];
    assert_eq!(payload["app_offering"]["reference"], "note-dispatcher");
    assert_eq!(payload["app_offering"]["nodeID"], off["id"]);
    assert_eq!(payload["customer_account_id"], "cust");
    assert_eq!(
        payload["application"]["client_id"],
        installed.customer_credentials.client_id.as_str()
    );
    assert!(payload.get("policy").is_none());
    let (_, second) = verify(received[2].1["jwt"].as_str().unwrap(), &pem);
    let payload = &second["data"]["payload"];
    assert!(payload.get("application").is_none());
    assert_eq!(payload["policy"]["algorithm"], "RS512");
    assert_eq!(
        payload["policy"]["nodeID"],
        installed.customer_policy.id.as_str()
    );
    assert_eq!(payload["secrets"]["typeform_token"], "tf-123");
    let customer_pem = payload["policy"]["public_key"].as_str().unwrap().to_owned();

    // The app-offering webhook is signed with the customer policy.
    let (app_url, app_receiver) = start_receiver(0).await;
    let data = c.gql("mutation($input: AppOfferingUpdateInput!) { appOfferingUpdate(input: $input) { errors { path message } appOffering { id } } }",
        json!({"input": {"id": off["id"], "webhookUriTemplate": format!("{app_url}?account={{account}}")}})).await;
    assert_eq!(data["appOfferingUpdate"]["errors"], json!([]));
    let delivery = sb
        .trigger_app_webhook(&installed.app_instance_id, json!({"text": "hello"}))
        .await
        .unwrap();
    assert_eq!(delivery.status, Some(200));
    assert_eq!(delivery.uri, format!("{app_url}?account=cust"));
    let (header, claims) = verify(&delivery.jwt, &customer_pem);
    assert_eq!(header["alg"], "RS512");
    assert_eq!(claims["iss"], "https://cust.4me-sandbox.test");
    assert_eq!(claims["data"]["payload"]["text"], "hello");
    assert_eq!(app_receiver.received.lock().unwrap().len(), 1);
    assert_eq!(sb.deliveries().len(), 4);
}

#[tokio::test]
async fn failing_receivers_are_retried_three_times() {
    let sb = Sandbox::start().await.unwrap();
    let policy = sb.create_webhook_policy("wdc", "rs256", None).unwrap();
    assert_eq!(policy.jwt_alg, "rs256");
    let pem = policy.public_key_pem.clone().unwrap();
    let c = Client::new(&sb, "wdc").await;
    let (url, receiver) = start_receiver(10).await;
    c.gql("mutation($uri: String!, $policyId: String) { webhookCreate(input: {event: \"app_instance.secrets-update\", uri: $uri, webhookPolicyId: $policyId}) { errors { path message } webhook { id } } }",
        json!({"uri": url, "policyId": policy.id})).await;
    let deliveries = sb.wait_for_deliveries(1, Duration::from_secs(30)).await;
    assert_eq!(deliveries[0].attempts, 3);
    assert_eq!(deliveries[0].status, Some(503));
    assert!(receiver.received.lock().unwrap().is_empty());
    let (header, claims) = verify(&deliveries[0].jwt, &pem);
    assert_eq!(header["alg"], "RS256");
    // Without an audience the issuer is used as `aud`.
    assert_eq!(claims["aud"], "https://wdc.4me-sandbox.test");

    // An unverified webhook gets no secrets-update deliveries.
    offering(&c, "ref", json!({})).await;
    let installed = sb
        .install_app("ref", "cust", InstallOptions::default())
        .await
        .unwrap();
    assert!(installed.deliveries.is_empty());
    assert!(
        sb.install_app("missing", "cust", InstallOptions::default())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn rust_side_webhook_helpers() {
    let sb = Sandbox::start().await.unwrap();
    let policy = sb
        .create_webhook_policy("wdc", "es512", Some("aud-1"))
        .unwrap();
    let pem = policy.public_key_pem.clone().unwrap();
    let (url, receiver) = start_receiver(0).await;
    assert!(
        sb.create_webhook(
            "wdc",
            "app_instance.secrets-update",
            &url,
            Some("nope"),
            true
        )
        .is_err()
    );
    let webhook = sb
        .create_webhook(
            "wdc",
            "app_instance.secrets-update",
            &url,
            Some(&policy.id),
            true,
        )
        .unwrap();

    let (data, jwt) = sb
        .webhook_event(&webhook, "app_instance.secrets-update", json!({"x": 1}))
        .unwrap();
    let (_, claims) = verify(&jwt, &pem);
    assert_eq!(claims["data"], data);
    assert_eq!(claims["aud"], "aud-1");

    // Signed again as a redelivery: same policy, subject and data; a new jti.
    let again = sb.resign(&jwt).unwrap();
    let (_, resigned) = verify(&again, &pem);
    assert_eq!(resigned["data"], claims["data"]);
    assert_eq!(
        (&resigned["sub"], &resigned["iss"]),
        (&claims["sub"], &claims["iss"])
    );
    assert_ne!(resigned["jti"], claims["jti"]);
    // Only the sandbox's own tokens: a forged or garbled one is refused.
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"jti": "not-issued-here", "data": data}).to_string());
    let forged = format!("x.{payload}.y");
    assert!(sb.resign(&forged).is_err());
    assert!(sb.resign("not a token").is_err());

    let jwt = sb
        .sign_claims(
            &policy.id,
            &json!({"iss": "https://evil.example", "exp": 1}),
        )
        .unwrap();
    let (header, claims) = verify(&jwt, &pem);
    assert_eq!(header["alg"], "ES512");
    assert_eq!(claims["exp"], 1);
    assert!(sb.sign_claims("unknown", &json!({})).is_err());

    let delivery = sb
        .deliver_webhook_event(&webhook, "app_instance.update", json!({"y": 2}))
        .await
        .unwrap();
    assert_eq!(delivery.status, Some(200));
    assert_eq!(receiver.received.lock().unwrap().len(), 1);

    // A verified webhook receives the secrets-update deliveries of an installation.
    sb.seed_app_offering("wdc", "seeded", json!({"policyJwtAlg": "es256"}));
    let installed = sb
        .install_app("seeded", "cust", InstallOptions::default())
        .await
        .unwrap();
    assert_eq!(installed.deliveries.len(), 2);
    assert_eq!(installed.customer_policy.jwt_alg, "es256");
    assert_eq!(receiver.received.lock().unwrap().len(), 3);
    assert!(!format!("{installed:?}").contains(&installed.customer_credentials.client_secret));
}

#[tokio::test]
async fn webhook_update_reverifies_and_nodes_are_per_account() {
    let sb = Sandbox::start().await.unwrap();
    let c = Client::new(&sb, "wdc").await;
    let other = Client::new(&sb, "other").await;
    let (url1, _r1) = start_receiver(0).await;
    let (url2, r2) = start_receiver(0).await;
    let data = c.gql("mutation($uri: String!) { webhookCreate(input: {event: \"app_instance.secrets-update\", uri: $uri}) { errors { path message } webhook { id } } }",
        json!({"uri": url1})).await;
    let id = data["webhookCreate"]["webhook"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deliveries = sb.wait_for_deliveries(1, Duration::from_secs(30)).await;
    // Without a policy the envelope is posted as is.
    assert!(deliveries[0].jwt.is_empty());
    assert_eq!(deliveries[0].data["event"], "webhook.verify");
    assert_eq!(
        sb.record(&id).unwrap()["active"],
        false,
        "the receiver did not call back"
    );

    let update = "mutation($input: WebhookUpdateInput!) { webhookUpdate(input: $input) { errors { path message } webhook { id uri } } }";
    let data = c
        .gql(update, json!({"input": {"id": id, "uri": "not a uri"}}))
        .await;
    assert_eq!(data["webhookUpdate"]["errors"][0]["path"], json!(["uri"]));
    let data = c
        .gql(update, json!({"input": {"id": id, "uri": url2}}))
        .await;
    assert_eq!(data["webhookUpdate"]["webhook"]["uri"], url2.as_str());
    let deliveries = sb.wait_for_deliveries(2, Duration::from_secs(30)).await;
    assert_eq!(deliveries[1].uri, url2);
    assert_eq!(r2.received.lock().unwrap().len(), 1);

    let q = "query($id: ID!) { node(id: $id) { ... on Webhook { id uri } } }";
    assert_eq!(
        c.gql(q, json!({"id": id})).await["node"]["uri"],
        url2.as_str()
    );
    assert!(other.gql(q, json!({"id": id})).await["node"].is_null());

    // HMAC and unsigned policies have no public key.
    for alg in ["hs256", "none"] {
        let data = c.gql("mutation($alg: WebhookPolicyJwtAlg!) { webhookPolicyCreate(input: {jwtAlg: $alg}) { errors { path message } webhookPolicy { id jwtAlg publicKeyPem } } }",
            json!({"alg": alg})).await;
        let policy = &data["webhookPolicyCreate"]["webhookPolicy"];
        assert_eq!(policy["jwtAlg"], alg);
        assert!(policy["publicKeyPem"].is_null());
    }
}

// ---------------------------------------------------------------------------------------------
// Automation rules: evaluated when a note is added

/// The rules of `config_4me/<integration>`, as the deploy creates them.
fn repository_rules(integration: &str) -> Vec<Value> {
    let path = format!(
        "{}/../../config_4me/{integration}/app_offering_automation_rules_input.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn create_rules(c: &Client, offering_id: &Value, rules: Vec<Value>) {
    for mut rule in rules {
        rule["appOfferingId"] = offering_id.clone();
        let data = c.gql(RULE_CREATE, json!({"input": rule})).await;
        assert_eq!(
            data["appOfferingAutomationRuleCreate"]["errors"],
            json!([]),
            "{data}"
        );
    }
}

/// Texts of the `text` payloads the app receiver got, in arrival order.
fn received_texts(receiver: &Receiver) -> Vec<String> {
    receiver
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| {
            decode_claims(body["jwt"].as_str().unwrap())["data"]["payload"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

async fn wait_for_texts(receiver: &Receiver, count: usize) -> Vec<String> {
    for _ in 0..500 {
        if receiver.received.lock().unwrap().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    received_texts(receiver)
}

#[tokio::test]
async fn adding_a_note_runs_the_rules_of_the_installed_apps() {
    let sb = Sandbox::start().await.unwrap();
    let provider = Client::new(&sb, "wdc").await;
    let (app_url, app_receiver) = start_receiver(0).await;
    let note_offering = offering(
        &provider,
        "note-dispatcher",
        json!({"webhookUriTemplate": format!("{app_url}?account={{account}}")}),
    )
    .await;
    create_rules(
        &provider,
        &note_offering["id"],
        repository_rules("note-dispatcher"),
    )
    .await;
    let survey_offering = offering(&provider, "typeform", json!({})).await;
    create_rules(
        &provider,
        &survey_offering["id"],
        repository_rules("typeform"),
    )
    .await;

    let install = |account: &'static str, field: &'static str, value: &'static str| {
        let sb = sb.clone();
        async move {
            let mut custom_fields = serde_json::Map::new();
            custom_fields.insert(field.into(), json!(value));
            let offering = if field == "url" {
                "note-dispatcher"
            } else {
                "typeform"
            };
            sb.install_app(
                offering,
                account,
                InstallOptions {
                    custom_fields,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
        }
    };
    let notes_app = install("cust", "url", "https://cust.example/notes").await;
    install("cust", "form_url", "https://forms.example/cust").await;
    // Another customer's installation is not run for notes of `cust`.
    install("other", "url", "https://other.example/notes").await;
    let customer = Client::with(&sb, "cust", &notes_app.customer_credentials).await;
    let request = sb.seed_request("cust", "Printer broken");
    let update = "mutation($input: RequestUpdateInput!) { requestUpdate(input: $input) { errors { path message } request { id status } } }";

    // The note-dispatcher rule calls the offering's webhook for the customer, signed with the
    // customer's policy; the survey rule's condition (status became completed) does not hold.
    let data = customer
        .gql(
            update,
            json!({"input": {"id": request.id, "note": "hello"}}),
        )
        .await;
    assert_eq!(data["requestUpdate"]["errors"], json!([]));
    assert_eq!(data["requestUpdate"]["request"]["status"], "assigned");
    assert_eq!(wait_for_texts(&app_receiver, 1).await, ["hello"]);
    let delivery = sb
        .wait_for_delivery(Duration::from_secs(5), |d| d.event == "automation_rule")
        .await
        .unwrap();
    assert_eq!(delivery.uri, format!("{app_url}?account=cust"));
    assert_eq!(delivery.status, Some(200));
    let pem = notes_app.customer_policy.public_key_pem.clone().unwrap();
    let (header, claims) = verify(&delivery.jwt, &pem);
    assert_eq!(header["alg"], "RS512");
    assert_eq!(claims["iss"], "https://cust.4me-sandbox.test");
    let data = &claims["data"];
    assert_eq!(data["event"], "automation_rule");
    assert_eq!(data["account_id"], "cust");
    assert_eq!(data["object_nodeID"], request.id.as_str());
    assert_eq!(
        data["payload"],
        json!({"text": "hello", "url": "https://cust.example/notes"})
    );
    assert_eq!(sb.request_notes(&request.id), ["hello"]);

    // Completing the request with a note: the survey rule adds its note (which runs no rules),
    // the note-dispatcher rule sends the customer's note.
    let data = customer
        .gql(
            update,
            json!({"input": {"id": request.id, "note": "Fixed", "status": "completed"}}),
        )
        .await;
    assert_eq!(data["requestUpdate"]["request"]["status"], "completed");
    assert_eq!(
        sb.request_notes(&request.id),
        [
            "hello",
            "Fixed",
            "Please complete our [survey at: https://forms.example/cust](https://forms.example/cust)"
        ]
    );
    assert_eq!(wait_for_texts(&app_receiver, 2).await, ["hello", "Fixed"]);
    // Already completed: no second survey note.
    customer
        .gql(
            update,
            json!({"input": {"id": request.id, "note": "Thanks", "status": "completed"}}),
        )
        .await;
    assert_eq!(sb.request_notes(&request.id).len(), 4);
    assert_eq!(
        wait_for_texts(&app_receiver, 3).await,
        ["hello", "Fixed", "Thanks"]
    );

    // A suspended instance runs no rules.
    let suspend = "mutation($input: AppInstanceUpdateInput!) { appInstanceUpdate(input: $input) { errors { path message } } }";
    for suspended in [true, false] {
        provider
            .gql(
                suspend,
                json!({"input": {"id": notes_app.app_instance_id, "suspended": suspended}}),
            )
            .await;
        let note = if suspended { "unheard" } else { "heard" };
        customer
            .gql(update, json!({"input": {"id": request.id, "note": note}}))
            .await;
    }
    assert_eq!(
        wait_for_texts(&app_receiver, 4).await,
        ["hello", "Fixed", "Thanks", "heard"]
    );
    assert!(
        sb.deliveries()
            .iter()
            .all(|d| !d.uri.ends_with("account=other"))
    );
}

#[tokio::test]
async fn rules_the_sandbox_cannot_evaluate_are_refused() {
    let sb = Sandbox::start().await.unwrap();
    let c = Client::new(&sb, "wdc").await;
    let off = offering(&c, "note-dispatcher", json!({})).await;
    let valid = repository_rules("note-dispatcher").remove(0);
    let cases = [
        ("trigger", json!({"trigger": "on status changed"})),
        ("generic", json!({"generic": "problem"})),
        (
            "expressions",
            json!({"expressions": [{"name": "text", "value": "note.text"}]}),
        ),
        (
            "expressions",
            json!({"expressions": [{"name": "done", "value": "status = finished"}]}),
        ),
        ("condition", json!({"condition": "text"})),
        (
            "actions",
            json!({"actions": [{"name": "a1", "value": "call webhook 'https://example.com' with payload 'text url'"}]}),
        ),
        (
            "actions",
            json!({"actions": [{"name": "a1", "value": "call webhook '{app_offering_webhook}' with payload 'text subject'"}]}),
        ),
        (
            "actions",
            json!({"actions": [{"name": "a1", "value": "set impact to 'top'"}]}),
        ),
    ];
    for (attribute, change) in cases {
        let mut rule = valid.clone();
        for (key, value) in change.as_object().unwrap() {
            rule[key] = value.clone();
        }
        rule["appOfferingId"] = off["id"].clone();
        let data = c.gql(RULE_CREATE, json!({"input": rule})).await;
        let payload = &data["appOfferingAutomationRuleCreate"];
        assert_eq!(payload["errors"][0]["path"], json!([attribute]), "{change}");
        assert!(
            payload["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("not"),
            "{payload}"
        );
        assert_eq!(payload["appOfferingAutomationRule"], Value::Null);
    }
    // An update that would make a rule unsupported is refused and changes nothing.
    create_rules(&c, &off["id"], vec![valid]).await;
    let query = "query($id: ID!) { node(id: $id) { ... on AppOffering { automationRules(first: 100) { nodes { id trigger } } } } }";
    let rules =
        c.gql(query, json!({"id": off["id"]})).await["node"]["automationRules"]["nodes"].clone();
    assert_eq!(rules.as_array().unwrap().len(), 1);
    let data = c.gql("mutation($input: AppOfferingAutomationRuleUpdateInput!) { appOfferingAutomationRuleUpdate(input: $input) { errors { path message } appOfferingAutomationRule { id } } }",
        json!({"input": {"id": rules[0]["id"], "trigger": "on status changed"}})).await;
    assert_eq!(
        data["appOfferingAutomationRuleUpdate"]["errors"][0]["path"],
        json!(["trigger"])
    );
    let after =
        c.gql(query, json!({"id": off["id"]})).await["node"]["automationRules"]["nodes"].clone();
    assert_eq!(after, rules);
}
