//! Raw HTTP tests of the sandbox: OAuth, authentication, strictness, paging, faults, rate limit
//! and async results.
#![allow(clippy::unwrap_used)] // helpers of this test crate may unwrap

use std::time::Duration;

use app_builder_sandbox::{
    Fault, FaultTarget, OAuthCredentials, OperationAnswer, OperationFault, Sandbox,
};
use serde_json::{Value, json};

async fn token(sb: &Sandbox, creds: &OAuthCredentials) -> String {
    let resp = reqwest::Client::new()
        .post(sb.oauth_url())
        .json(&json!({
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "grant_type": "client_credentials"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn gql(
    sb: &Sandbox,
    token: &str,
    account: &str,
    query: &str,
    variables: Value,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(sb.graphql_url())
        .bearer_auth(token)
        .header("X-4me-Account", account)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
}

async fn gql_ok(sb: &Sandbox, token: &str, account: &str, query: &str, variables: Value) -> Value {
    let resp = gql(sb, token, account, query, variables).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn setup() -> (Sandbox, String) {
    let sb = Sandbox::start().await.unwrap();
    let creds = sb.add_oauth_application("wdc");
    let t = token(&sb, &creds).await;
    (sb, t)
}

#[tokio::test]
async fn urls_have_expected_shape() {
    let sb = Sandbox::start().await.unwrap();
    assert!(sb.url().starts_with("http://127.0.0.1:"));
    assert!(!sb.url().ends_with('/'));
    assert_eq!(sb.oauth_url(), format!("{}/oauth/token", sb.url()));
    assert_eq!(sb.graphql_url(), format!("{}/graphql", sb.url()));
    assert_eq!(sb.rest_url(), format!("{}/v1", sb.url()));
    assert_eq!(sb.domain(), "4me-sandbox.test");
}

#[tokio::test]
async fn oauth_accepts_json_and_form_and_rejects_bad_credentials() {
    let sb = Sandbox::start().await.unwrap();
    let creds = sb.add_oauth_application("wdc");
    let client = reqwest::Client::new();

    let resp = client
        .post(sb.oauth_url())
        .form(&[
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.as_str()),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-limit"], "3600");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["access_token"].as_str().unwrap().len() >= 32);

    let resp = client
        .post(sb.oauth_url())
        .json(
            &json!({"client_id": creds.client_id, "client_secret": "wrong",
                      "grant_type": "client_credentials"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let resp = client
        .post(sb.oauth_url())
        .json(
            &json!({"client_id": creds.client_id, "client_secret": creds.client_secret,
                      "grant_type": "password"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
    assert_eq!(sb.stats().token_requests, 3);
}

#[tokio::test]
async fn graphql_requires_valid_token_for_the_account() {
    let (sb, t) = setup().await;
    let q = "{ configurationItems(first: 1) { nodes { id } } }";
    let resp = reqwest::Client::new()
        .post(sb.graphql_url())
        .header("X-4me-Account", "wdc")
        .json(&json!({"query": q}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        gql(&sb, "not-a-token", "wdc", q, json!({})).await.status(),
        401
    );
    assert_eq!(gql(&sb, &t, "other", q, json!({})).await.status(), 401);
    assert_eq!(gql(&sb, &t, "wdc", q, json!({})).await.status(), 200);
    sb.expire_all_tokens();
    assert_eq!(gql(&sb, &t, "wdc", q, json!({})).await.status(), 401);

    sb.set_token_lifetime(Duration::from_secs(0));
    let creds = sb.add_oauth_application("wdc");
    let short = token(&sb, &creds).await;
    assert_eq!(gql(&sb, &short, "wdc", q, json!({})).await.status(), 401);
    assert_eq!(sb.stats().graphql_requests, 6);
}

#[tokio::test]
async fn unknown_fields_and_arguments_are_errors() {
    let (sb, t) = setup().await;
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        "{ configurationItems(first: 1) { nodes { id bogus } } }",
        json!({}),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("bogus"),
        "{body}"
    );
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        "{ configurationItems(first: 1, colour: 3) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{body}"
    );
    let body = gql_ok(&sb, &t, "wdc", "{ notAThing { id } }", json!({})).await;
    assert!(
        body["errors"].as_array().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    let body = gql_ok(
        &sb, &t, "wdc",
        "mutation($input: ConfigurationItemCreateInput!) { configurationItemCreate(input: $input) { errors { path message } configurationItem { id } } }",
        json!({"input": {"name": "x", "unknownAttribute": 1}}),
    ).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknownAttribute"),
        "{body}"
    );
}

const CI_CREATE: &str = "mutation($input: ConfigurationItemCreateInput!) { configurationItemCreate(input: $input) { errors { path message } configurationItem { id name sourceID status customFields { id value } } } }";
const CI_UPDATE: &str = "mutation($input: ConfigurationItemUpdateInput!) { configurationItemUpdate(input: $input) { errors { path message } configurationItem { id name status customFields { id value } } } }";

#[tokio::test]
async fn configuration_item_create_update_and_filter() {
    let (sb, t) = setup().await;
    // 4me requires a product and a status: a request without them is refused as a whole.
    let body = gql_ok(&sb, &t, "wdc", CI_CREATE, json!({"input": {"name": "x"}})).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ConfigurationItemCreateInput.productId"),
        "{body}"
    );
    assert!(body.get("data").is_none(), "{body}");
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        "mutation($input: ProductCreateInput!) { productCreate(input: $input) { product { id } } }",
        json!({"input": {"name": "AWS Lambda", "brand": "AWS", "category": "software"}}),
    )
    .await;
    let product = body["data"]["productCreate"]["product"]["id"].clone();
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        CI_CREATE,
        json!({"input": {"name": " ", "productId": product, "status": "in_production"}}),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    let payload = &body["data"]["configurationItemCreate"];
    assert_eq!(payload["errors"][0]["path"], json!(["name"]));
    assert!(payload["configurationItem"].is_null());

    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        CI_CREATE,
        json!({"input": {
        "name": "Lambda", "source": "4me-app-bootstrap", "sourceID": "secrets_lambda_ci",
        "systemID": "arn:aws:lambda:x", "status": "being_tested", "productId": product,
        "customFields": [{"id": "api_url", "value": "https://x"}]}}),
    )
    .await;
    let ci = &body["data"]["configurationItemCreate"]["configurationItem"];
    assert_eq!(body["data"]["configurationItemCreate"]["errors"], json!([]));
    assert_eq!(ci["status"], "being_tested");
    let id = ci["id"].as_str().unwrap().to_owned();

    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        CI_UPDATE,
        json!({"input": {"id": id, "status": "in_production",
        "customFields": [{"id": "cloudformation_stack", "value": "engine"}]}}),
    )
    .await;
    let ci = &body["data"]["configurationItemUpdate"]["configurationItem"];
    assert_eq!(ci["status"], "in_production");
    assert_eq!(ci["name"], "Lambda");
    assert_eq!(ci["customFields"].as_array().unwrap().len(), 2);

    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        CI_UPDATE,
        json!({"input": {"id": "nope", "name": "x"}}),
    )
    .await;
    assert_eq!(
        body["data"]["configurationItemUpdate"]["errors"][0]["path"],
        json!(["id"])
    );

    let q = "query($filter: ConfigurationItemFilter) { configurationItems(first: 1, filter: $filter) { nodes { id customFields { id value } } } }";
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        q,
        json!({"filter": {"systemID": {"values": ["arn:aws:lambda:x"]}}}),
    )
    .await;
    let nodes = body["data"]["configurationItems"]["nodes"]
        .as_array()
        .unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["id"], id.as_str());
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        q,
        json!({"filter": {"systemID": {"values": ["other"]}}}),
    )
    .await;
    assert_eq!(body["data"]["configurationItems"]["nodes"], json!([]));

    // Records are per account.
    let other = sb.add_oauth_application("other");
    let t2 = token(&sb, &other).await;
    let body = gql_ok(&sb, &t2, "other", q, json!({})).await;
    assert_eq!(body["data"]["configurationItems"]["nodes"], json!([]));
}

#[tokio::test]
async fn paging_walks_all_configuration_items() {
    let (sb, t) = setup().await;
    let names: Vec<String> = (0..230).map(|i| format!("ci-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ids = sb.seed_configuration_items("wdc", &refs);
    assert_eq!(ids.len(), 230);
    let q = "query($previousEndCursor: String, $statuses: [CiStatus!]!) { configurationItems(first: 100, after: $previousEndCursor, filter: {status: {values: $statuses}}) { pageInfo { hasNextPage endCursor } nodes { id name alternateNames } } }";
    let mut cursor = Value::Null;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let body = gql_ok(
            &sb,
            &t,
            "wdc",
            q,
            json!({"previousEndCursor": cursor, "statuses": ["in_production"]}),
        )
        .await;
        let conn = &body["data"]["configurationItems"];
        for n in conn["nodes"].as_array().unwrap() {
            seen.push(n["id"].as_str().unwrap().to_owned());
        }
        pages += 1;
        if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        cursor = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);

    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        "{ configurationItems(first: 101) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("first"),
        "{body}"
    );
}

#[tokio::test]
async fn faults_are_served_to_matching_requests_only() {
    let (sb, t) = setup().await;
    let q = "{ configurationItems(first: 1) { nodes { id } } }";
    sb.inject_fault(Fault::ServerError {
        target: FaultTarget::GraphQl,
        status: 503,
        times: 2,
    });
    sb.inject_fault(Fault::TooManyRequests {
        target: FaultTarget::Any,
        retry_after_secs: 7,
        times: 1,
    });
    assert_eq!(gql(&sb, &t, "wdc", q, json!({})).await.status(), 503);
    assert_eq!(gql(&sb, &t, "wdc", q, json!({})).await.status(), 503);
    let resp = gql(&sb, &t, "wdc", q, json!({})).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(gql(&sb, &t, "wdc", q, json!({})).await.status(), 200);

    sb.inject_fault(Fault::ServerError {
        target: FaultTarget::OAuth,
        status: 500,
        times: 1,
    });
    assert_eq!(gql(&sb, &t, "wdc", q, json!({})).await.status(), 200);
    let creds = sb.add_oauth_application("wdc");
    let resp = reqwest::Client::new().post(sb.oauth_url())
        .json(&json!({"client_id": creds.client_id, "client_secret": creds.client_secret, "grant_type": "client_credentials"}))
        .send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let stats = sb.stats();
    assert_eq!(stats.faults_served, 4);
    assert_eq!(stats.graphql_requests, 5);
    assert_eq!(stats.token_requests, 2);

    sb.inject_fault(Fault::Delay {
        target: FaultTarget::GraphQl,
        delay: Duration::from_millis(50),
        times: 1,
    });
    assert_eq!(gql(&sb, &t, "wdc", q, json!({})).await.status(), 200);
    assert_eq!(sb.stats().faults_served, 5);
}

#[tokio::test]
async fn operation_faults_hit_one_account_and_operation_only() {
    let (sb, wdc) = setup().await;
    let acme = token(&sb, &sb.add_oauth_application("acme")).await;
    let cis = "{ configurationItems(first: 1) { nodes { id } } }";
    let people = "query Named { people(first: 1) { nodes { id } } }";
    sb.inject_operation_fault(OperationFault {
        account: "acme".into(),
        operation: "configurationItems".into(),
        answer: OperationAnswer::GraphQlError {
            message: "boom".into(),
        },
        times: 1,
    });
    sb.inject_operation_fault(OperationFault {
        account: "acme".into(),
        operation: "Named".into(),
        answer: OperationAnswer::ServerError { status: 502 },
        times: 1,
    });
    // Another account's request of that operation is served normally.
    let body = gql_ok(&sb, &wdc, "wdc", cis, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let body = gql_ok(&sb, &acme, "acme", cis, json!({})).await;
    assert_eq!(body, json!({"data": null, "errors": [{"message": "boom"}]}));
    assert!(gql_ok(&sb, &acme, "acme", cis, json!({})).await["data"].is_object());
    // By operation name.
    assert_eq!(
        gql(&sb, &acme, "acme", people, json!({})).await.status(),
        502
    );
    assert!(gql_ok(&sb, &acme, "acme", people, json!({})).await["data"].is_object());
    assert_eq!(sb.stats().faults_served, 2);
}

#[tokio::test]
async fn rate_limit_allows_twenty_requests_per_window() {
    let (sb, t) = setup().await;
    // A long window makes the count independent of how fast this machine is.
    sb.set_rate_window(Duration::from_secs(600));
    let q = "{ configurationItems(first: 1) { nodes { id } } }";
    for i in 0..20u32 {
        let resp = gql(&sb, &t, "wdc", q, json!({})).await;
        assert_eq!(resp.status(), 200, "request {i}");
        // The headers report the hourly budget, as 4me's do.
        assert_eq!(resp.headers()["x-ratelimit-limit"], "3600");
        assert_eq!(
            resp.headers()["x-ratelimit-remaining"],
            (3599 - i).to_string().as_str()
        );
        assert!(resp.headers().contains_key("x-ratelimit-reset"));
    }
    let resp = gql(&sb, &t, "wdc", q, json!({})).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry));
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "3580");
    // REST shares the token's window.
    let url = format!("{}/app_offerings/x/avatar", sb.rest_url());
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&t)
        .header("X-4me-Account", "wdc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);

    // Another token has its own window.
    let creds = sb.add_oauth_application("wdc");
    let t2 = token(&sb, &creds).await;
    assert_eq!(gql(&sb, &t2, "wdc", q, json!({})).await.status(), 200);

    // Each token's use is reported: the 21st GraphQL and the REST request were refused.
    let mut usage = sb.token_usage();
    usage.sort_by_key(|u| u.requests);
    let summary: Vec<(&str, u64, u64, usize, usize)> = usage
        .iter()
        .map(|u| {
            let window = u.account_busiest_window;
            (
                u.account.as_str(),
                u.requests,
                u.refused,
                u.busiest_window,
                window,
            )
        })
        .collect();
    // Together the account's two tokens made 21 requests within the (long) window.
    assert_eq!(summary, [("wdc", 1, 0, 1, 21), ("wdc", 20, 2, 20, 21)]);
}

#[tokio::test]
async fn budget_headers_report_the_hourly_windows() {
    let (sb, t) = setup().await;
    let q = "{ configurationItems(first: 1) { nodes { id } } }";
    let resp = gql(&sb, &t, "wdc", q, json!({})).await;
    let header = |resp: &reqwest::Response, name: &str| -> u64 {
        resp.headers()[name].to_str().unwrap().parse().unwrap()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A window opens with the token's first request and lasts 60 minutes.
    let reset = header(&resp, "x-ratelimit-reset");
    assert!(
        reset > now + 3500 && reset <= now + 3600,
        "reset {reset}, now {now}"
    );
    assert_eq!(header(&resp, "x-costlimit-limit"), 5000);
    assert_eq!(header(&resp, "x-costlimit-cost"), 1);
    assert_eq!(header(&resp, "x-costlimit-remaining"), 4999);
    assert_eq!(header(&resp, "x-costlimit-reset"), reset);
}

#[tokio::test]
async fn a_spent_hourly_budget_is_refused_until_its_window_resets() {
    let (sb, t) = setup().await;
    sb.set_rate_window(Duration::ZERO);
    // 10 requests or 8 points an hour, 3 points a request: the third request would need 9.
    sb.set_hourly_limits(10, 8, 3);
    let q = "{ configurationItems(first: 1) { nodes { id } } }";
    for remaining in ["5", "2"] {
        let resp = gql(&sb, &t, "wdc", q, json!({})).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-costlimit-remaining"], remaining);
    }
    let resp = gql(&sb, &t, "wdc", q, json!({})).await;
    assert_eq!(resp.status(), 200, "2 points left still admit a request");
    assert_eq!(resp.headers()["x-costlimit-remaining"], "0");
    let resp = gql(&sb, &t, "wdc", q, json!({})).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&retry), "retry-after {retry}");
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "7");

    sb.set_hourly_limits(2, 100, 1);
    for status in [200, 200, 429] {
        assert_eq!(gql(&sb, &t, "wdc", q, json!({})).await.status(), status);
    }
}

const DISCOVERED: &str = "mutation($input: DiscoveredConfigurationItemsInput!) { discoveredConfigurationItems(input: $input) { errors { path message } configurationItems { id sourceID } asyncQuery { id errorCount resultUrl resultCount } } }";

#[tokio::test]
async fn discovered_configuration_items_publish_async_results() {
    let (sb, t) = setup().await;
    sb.set_async_result_delay(2);
    let input = json!({
        "source": "Lansweeper-site",
        "alternativeSources": ["Lansweeper"],
        "referenceStrategies": {"ciUserIds": {"strategy": "APPEND"}},
        "physicalAssets": [{
            "meta": {"strategy": "CREATE"}, "reference": "windows", "name": "Windows",
            "products": [{
                "meta": {"strategy": "CREATE"}, "sourceID": "dell_xps_windows", "name": "Dell XPS Windows",
                "brand": "Dell", "model": "XPS",
                "configurationItems": [
                    {"sourceID": "a1", "name": "laptop-1", "status": "in_production", "ramAmount": 16},
                    {"sourceID": "a2", "name": ""}
                ]
            }]
        }]
    });
    let body = gql_ok(&sb, &t, "wdc", DISCOVERED, json!({"input": input})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let payload = &body["data"]["discoveredConfigurationItems"];
    assert!(payload["configurationItems"].is_null());
    let aq = &payload["asyncQuery"];
    assert_eq!(aq["errorCount"], 1);
    assert_eq!(aq["resultCount"], 1);
    let url = aq["resultUrl"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/async/", sb.url())) && url.ends_with(".json"));

    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 404);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 404);
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let result: Value = resp.json().await.unwrap();
    let data = &result["data"]["discoveredConfigurationItems"];
    assert_eq!(data["configurationItems"][0]["sourceID"], "a1");
    assert_eq!(data["errors"][0]["message"], "Name can't be blank");
    assert_eq!(sb.stats().async_result_requests, 3);

    // The CI exists and a second upload updates it instead of creating a duplicate.
    let body = gql_ok(&sb, &t, "wdc", DISCOVERED, json!({"input": input})).await;
    assert_eq!(
        body["data"]["discoveredConfigurationItems"]["asyncQuery"]["resultCount"],
        1
    );
    let q = "{ configurationItems(first: 100, filter: {sourceID: {values: [\"a1\"]}}) { nodes { id name } } }";
    let body = gql_ok(&sb, &t, "wdc", q, json!({})).await;
    assert_eq!(
        body["data"]["configurationItems"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let body = gql_ok(&sb, &t, "wdc", DISCOVERED, json!({"input": {"source": ""}})).await;
    assert_eq!(
        body["data"]["discoveredConfigurationItems"]["errors"][0]["path"],
        json!(["source"])
    );
}

#[tokio::test]
async fn discovered_configuration_items_upsert_by_source_id_within_and_across_uploads() {
    let (sb, t) = setup().await;
    let upload = |source: &str, cis: Value| {
        json!({"input": {
            "source": source,
            "alternativeSources": ["Lansweeper"],
            "physicalAssets": [{
                "reference": "windows", "name": "Windows",
                "products": [{"sourceID": "p1", "name": "Product 1", "brand": "B", "model": "M", "configurationItems": cis}]
            }]
        }})
    };
    // The same sourceID twice in one upload: created once, then updated.
    let cis = json!([{"sourceID": "d1", "name": "first"}, {"sourceID": "d1", "name": "second"}]);
    let body = gql_ok(&sb, &t, "wdc", DISCOVERED, upload("Lansweeper", cis)).await;
    assert_eq!(
        body["data"]["discoveredConfigurationItems"]["asyncQuery"]["resultCount"],
        2
    );
    // A later upload from another source finds it through `alternativeSources`.
    let cis = json!([{"sourceID": "d1", "name": "third"}, {"sourceID": "d2", "name": "new"}]);
    gql_ok(&sb, &t, "wdc", DISCOVERED, upload("Lansweeper-site", cis)).await;
    let q = "{ configurationItems(first: 100) { nodes { name sourceID } } }";
    let body = gql_ok(&sb, &t, "wdc", q, json!({})).await;
    let mut names: Vec<(String, String)> = body["data"]["configurationItems"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["sourceID"].as_str().unwrap().to_owned(),
                n["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("d1".to_owned(), "third".to_owned()),
            ("d2".to_owned(), "new".to_owned())
        ]
    );

    // A sourceID changed by `configurationItemUpdate` is where the next upload finds the CI.
    let q = "{ configurationItems(first: 100, filter: {sourceID: {values: [\"d2\"]}}) { nodes { id } } }";
    let body = gql_ok(&sb, &t, "wdc", q, json!({})).await;
    let d2 = body["data"]["configurationItems"]["nodes"][0]["id"].clone();
    let update = "mutation($input: ConfigurationItemUpdateInput!) { configurationItemUpdate(input: $input) { errors { message } } }";
    gql_ok(
        &sb,
        &t,
        "wdc",
        update,
        json!({"input": {"id": d2, "sourceID": "d3"}}),
    )
    .await;
    let cis = json!([{"sourceID": "d3", "name": "renamed"}, {"sourceID": "d2", "name": "again"}]);
    gql_ok(&sb, &t, "wdc", DISCOVERED, upload("Lansweeper-site", cis)).await;
    let q = "{ configurationItems(first: 100) { nodes { id name sourceID } } }";
    let body = gql_ok(&sb, &t, "wdc", q, json!({})).await;
    let nodes = body["data"]["configurationItems"]["nodes"]
        .as_array()
        .unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(
        nodes
            .iter()
            .any(|n| n["id"] == d2 && n["sourceID"] == "d3" && n["name"] == "renamed"),
        "{nodes:?}"
    );
}

#[tokio::test]
async fn server_stops_when_last_handle_drops() {
    let sb = Sandbox::start().await.unwrap();
    let clone = sb.clone();
    let url = sb.oauth_url();
    drop(sb);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    assert_eq!(
        client
            .post(&url)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    drop(clone);
    let mut stopped = false;
    for _ in 0..1000 {
        if client.post(&url).json(&json!({})).send().await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped);
}

#[test]
fn schema_uses_4me_names() {
    let sdl = app_builder_sandbox::schema_sdl();
    for needle in [
        "input AppOfferingCreateInput",
        "enum WebhookPolicyJwtAlg",
        "es512",
        "rs256",
        "configurationItems(",
        "discoveredConfigurationItems(input: DiscoveredConfigurationItemsInput!)",
        "sourceID: String",
        "interface Node",
    ] {
        assert!(sdl.contains(needle), "missing {needle}");
    }
    assert!(!sdl.contains("ES512"));
}

#[test]
fn handles_are_send_and_sync_and_debug_hides_secrets() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sandbox>();
    let creds = OAuthCredentials {
        client_id: "id".into(),
        client_secret: "very-secret".into(),
    };
    assert!(!format!("{creds:?}").contains("very-secret"));
    let mut secrets = serde_json::Map::new();
    secrets.insert("token".into(), json!("very-secret"));
    let options = app_builder_sandbox::InstallOptions {
        secrets,
        ..Default::default()
    };
    assert!(!format!("{options:?}").contains("very-secret"));
}

#[tokio::test]
async fn rest_and_async_faults_and_xurrent_header() {
    let (sb, t) = setup().await;
    let resp = reqwest::Client::new()
        .post(sb.graphql_url())
        .bearer_auth(&t)
        .header("X-Xurrent-Account", "wdc")
        .json(&json!({"query": "{ configurationItems(first: 1) { nodes { id } } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    sb.inject_fault(Fault::ServerError {
        target: FaultTarget::Rest,
        status: 502,
        times: 1,
    });
    sb.inject_fault(Fault::ServerError {
        target: FaultTarget::AsyncResult,
        status: 403,
        times: 1,
    });
    let client = reqwest::Client::new();
    let url = format!("{}/app_offerings/x/avatar", sb.rest_url());
    let resp = client
        .post(&url)
        .bearer_auth(&t)
        .header("X-4me-Account", "wdc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let resp = client
        .post(&url)
        .bearer_auth(&t)
        .header("X-4me-Account", "wdc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        DISCOVERED,
        json!({"input": {"source": "s", "physicalAssets": []}}),
    )
    .await;
    let url = body["data"]["discoveredConfigurationItems"]["asyncQuery"]["resultUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 403);
    let result: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        result["data"]["discoveredConfigurationItems"]["configurationItems"],
        json!([])
    );
    assert_eq!(
        client
            .get(format!("{}/async/unknown.json", sb.url()))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(sb.stats().faults_served, 2);
}

#[tokio::test]
async fn unknown_routes_are_404_with_rate_headers() {
    let sb = Sandbox::start().await.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/v2/whatever", sb.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-ratelimit-limit"], "3600");
}

/// What real 4me refuses at the schema level, the sandbox refuses: a GraphQL error without data,
/// naming the type and field.
#[tokio::test]
async fn requests_outside_the_4me_schema_are_refused_as_4me_refuses_them() {
    let (sb, t) = setup().await;
    let refused = |body: &Value, words: &[&str]| {
        assert!(body.get("data").is_none(), "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        for word in words {
            assert!(message.contains(word), "{word} not in {body}");
        }
    };
    // Policy names are 4me's: the create input has no `name`.
    let create = "mutation($input: WebhookPolicyCreateInput!) { webhookPolicyCreate(input: $input) { errors { path message } webhookPolicy { id publicKeyPem } } }";
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        create,
        json!({"input": {"name": "mine", "jwtAlg": "es512"}}),
    )
    .await;
    refused(&body, &["name", "WebhookPolicyCreateInput"]);
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        "mutation { webhookPolicyCreate(input: {name: \"mine\", jwtAlg: es512}) { webhookPolicy { id } } }",
        json!({}),
    )
    .await;
    refused(&body, &["name"]);
    // The public key is on the create response only, never on a WebhookPolicy.
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        create,
        json!({"input": {"jwtAlg": "es512"}}),
    )
    .await;
    let policy = &body["data"]["webhookPolicyCreate"]["webhookPolicy"];
    assert!(
        policy["publicKeyPem"]
            .as_str()
            .unwrap()
            .contains("PUBLIC KEY"),
        "{body}"
    );
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        "query($id: ID!) { node(id: $id) { ... on WebhookPolicy { id publicKeyPem } } }",
        json!({"id": policy["id"]}),
    )
    .await;
    refused(&body, &["WebhookPolicy", "publicKeyPem"]);
    // Enum values 4me does not have, and required input fields left out.
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        "query($s: [CiStatus!]) { configurationItems(first: 1, filter: {status: {values: $s}}) { nodes { id } } }",
        json!({"s": ["lent"]}),
    )
    .await;
    refused(&body, &["CiStatus"]);
    // A filter literal is a FilterValue to the schema, but 4me still knows its statuses.
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        "{ configurationItems(first: 1, filter: {status: {values: [lent]}}) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("'lent' is not a valid CiStatus"),
        "{body}"
    );
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        "{ configurationItems(first: 1, filter: {status: {values: [lent_out]}}) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        "mutation($input: WebhookCreateInput!) { webhookCreate(input: $input) { webhook { id } } }",
        json!({"input": {"event": "app_instance.secrets-update"}}),
    )
    .await;
    refused(&body, &["WebhookCreateInput.uri"]);
    // Valid for 4me but not implemented here: said so, never pretended.
    let body = gql_ok(&sb, &t, "wdc", "{ me { id } }", json!({})).await;
    refused(&body, &["Not emulated by the sandbox"]);
}

/// The limits 4me documents beside its schema: 100 records a page, 100 CIs an upload.
#[tokio::test]
async fn documented_limits_are_enforced() {
    let (sb, t) = setup().await;
    let body = gql_ok(
        &sb,
        &t,
        "wdc",
        "{ configurationItems(first: 101) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("first"),
        "{body}"
    );
    let cis: Vec<Value> = (0..101)
        .map(|i| json!({"sourceID": format!("a{i}"), "name": format!("asset {i}")}))
        .collect();
    let upload = |cis: &[Value]| {
        json!({"input": {"source": "Lansweeper", "physicalAssets": [{
            "reference": "computer", "name": "Computer",
            "products": [{"sourceID": "p", "name": "P", "brand": "B", "model": "M", "configurationItems": cis}]
        }]}})
    };
    let body = gql_ok(&sb, &t, "wdc", DISCOVERED, upload(&cis)).await;
    let payload = &body["data"]["discoveredConfigurationItems"];
    assert_eq!(
        payload["errors"][0]["path"],
        json!(["physicalAssets"]),
        "{body}"
    );
    assert!(payload["asyncQuery"].is_null());
    let body = gql_ok(&sb, &t, "wdc", DISCOVERED, upload(&cis[..100])).await;
    assert_eq!(
        body["data"]["discoveredConfigurationItems"]["asyncQuery"]["resultCount"], 100,
        "{body}"
    );
}

/// The App Store preview: the list of offerings, an offering's page with its form, and the
/// install it sends: plain fields as the instance's custom fields, secrets only in the
/// secrets-update delivery.
#[tokio::test]
async fn the_app_store_lists_offerings_and_installs_from_the_form() {
    let sb = Sandbox::start().await.unwrap();
    sb.seed_app_offering(
        "wdc",
        "demo",
        json!({"name": "Demo <App>", "description": "Does demo things"}),
    );
    let http = reqwest::Client::new();
    let store = http
        .get(format!("{}/app_store", sb.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(store.contains("Demo &lt;App&gt;"), "{store}");
    let page = http
        .get(format!("{}/app_store/demo?account=acme", sb.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("id=\"record_form\""));
    assert!(page.contains("value=\"acme\""));
    for asset in ["jquery.js", "itrp.js", "4me.css"] {
        let answer = http
            .get(format!("{}/app_store/assets/{asset}", sb.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{asset}");
    }
    let missing = http
        .get(format!("{}/app_store/none", sb.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let install = |body: Value| {
        http.post(format!("{}/app_store/demo/install", sb.url()))
            .json(&body)
            .send()
    };
    let refused = install(json!({"account": " "})).await.unwrap();
    assert_eq!(refused.status(), 422);
    let installed: Value = install(json!({
        "account": "acme",
        "custom_fields": {"url": "https://example.com/notes"},
        "secrets": {"token": "s3cr3t"},
    }))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let instance = sb
        .record(installed["app_instance_id"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        instance["customFields"],
        json!([{"id": "url", "value": "https://example.com/notes"}])
    );
    assert!(!instance.to_string().contains("s3cr3t"));
}
