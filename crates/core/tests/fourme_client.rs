//! The 4me client against the 4me sandbox (a real HTTP server on 127.0.0.1).
// Test helpers outside #[test] functions unwrap too (allowed in tests).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use app_builder_core::fourme::{
    AsyncQuery, ClientSettings, Credentials, Endpoints, FourMeClient, FourMeError,
};
use app_builder_sandbox::{Fault, FaultTarget, Sandbox};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

const ACCOUNT: &str = "wdc";

const CI_IDS: &str = "{ configurationItems(first: 1) { nodes { id } } }";

const CI_PAGES: &str = "query($first: Int, $previousEndCursor: String) {
  configurationItems(first: $first, after: $previousEndCursor) {
    pageInfo { hasNextPage endCursor }
    nodes { id name }
  }
}";

const CI_CREATE: &str = "mutation($input: ConfigurationItemCreateInput!) {
  configurationItemCreate(input: $input) {
    errors { path message }
    configurationItem { id name }
  }
}";

const DISCOVERED: &str = "mutation($input: DiscoveredConfigurationItemsInput!) {
  discoveredConfigurationItems(input: $input) {
    errors { path message }
    configurationItems { id sourceID }
    asyncQuery { id errorCount resultUrl resultCount }
  }
}";

#[derive(Debug, Deserialize)]
struct Node {
    id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CiPayload {
    configuration_item: Option<Node>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiscoveredPayload {
    async_query: Option<AsyncQuery>,
}

/// Short backoffs so that retry tests run quickly (no timing is asserted).
fn fast_settings() -> ClientSettings {
    ClientSettings {
        timeout: Duration::from_secs(10),
        async_poll_interval: Duration::from_millis(20),
        async_timeout: Duration::from_secs(10),
        max_attempts: 4,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(2),
        ..ClientSettings::default()
    }
}

use app_builder_test_support::sandbox_endpoints as endpoints;

async fn start() -> Sandbox {
    let sandbox = Sandbox::start().await.unwrap();
    sandbox.add_account(ACCOUNT);
    sandbox
}

fn client_for(sandbox: &Sandbox, account: &str, settings: ClientSettings) -> FourMeClient {
    let app = sandbox.add_oauth_application(ACCOUNT);
    FourMeClient::new(
        endpoints(sandbox),
        account,
        Credentials::new(app.client_id, app.client_secret),
        settings,
    )
    .unwrap()
}

async fn setup(settings: ClientSettings) -> (Sandbox, FourMeClient) {
    let sandbox = start().await;
    let client = client_for(&sandbox, ACCOUNT, settings);
    (sandbox, client)
}

#[tokio::test]
async fn one_token_for_many_sequential_calls() {
    let (sandbox, client) = setup(fast_settings()).await;
    for _ in 0..5 {
        let _: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    }
    let stats = sandbox.stats();
    assert_eq!(stats.token_requests, 1);
    assert_eq!(stats.graphql_requests, 5);
}

#[tokio::test]
async fn one_token_for_many_concurrent_calls() {
    let (sandbox, client) = setup(fast_settings()).await;
    let calls = (0..5).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.query::<_, Value>(CI_IDS, &json!({})).await })
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap().unwrap();
    }
    assert_eq!(sandbox.stats().token_requests, 1);
    assert_eq!(sandbox.stats().graphql_requests, 5);
}

#[tokio::test]
async fn expired_token_is_refreshed_once_on_401() {
    let (sandbox, client) = setup(fast_settings()).await;
    let _: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    sandbox.expire_all_tokens();
    let data: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    assert!(data["configurationItems"]["nodes"].is_array());
    assert_eq!(sandbox.stats().token_requests, 2);
}

#[tokio::test]
async fn wrong_account_header_ends_in_unauthorized_after_one_refresh() {
    let sandbox = start().await;
    sandbox.add_account("other");
    // Credentials of `wdc`, but requests claim to be for `other`: the sandbox answers 401.
    let client = client_for(&sandbox, "other", fast_settings());
    let err = client
        .query::<_, Value>(CI_IDS, &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FourMeError::Unauthorized { ref operation } if operation == "configurationItems"),
        "{err:?}"
    );
    assert_eq!(sandbox.stats().token_requests, 2);
}

#[tokio::test]
async fn bad_credentials_are_an_authorization_error() {
    let sandbox = start().await;
    let app = sandbox.add_oauth_application(ACCOUNT);
    let client = FourMeClient::new(
        endpoints(&sandbox),
        ACCOUNT,
        Credentials::new(app.client_id, "not-the-secret"),
        fast_settings(),
    )
    .unwrap();
    let err = client
        .query::<_, Value>(CI_IDS, &json!({}))
        .await
        .unwrap_err();
    match err {
        FourMeError::Authorization(message) => {
            assert_eq!(message, "Access token request rejected");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(sandbox.stats().graphql_requests, 0);
}

#[tokio::test]
async fn paging_streams_all_nodes_over_three_pages() {
    let (sandbox, client) = setup(fast_settings()).await;
    let names = ["ci-1", "ci-2", "ci-3", "ci-4", "ci-5"];
    let ids = sandbox.seed_configuration_items(ACCOUNT, &names);
    let nodes: Vec<Node> = client
        .paged(CI_PAGES, &json!({"first": 2}))
        .try_collect()
        .await
        .unwrap();
    let mut got: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    got.sort_unstable();
    assert_eq!(got, names);
    let mut got_ids: Vec<String> = nodes.into_iter().map(|n| n.id).collect();
    let mut want_ids = ids;
    got_ids.sort();
    want_ids.sort();
    assert_eq!(got_ids, want_ids);
    assert_eq!(sandbox.stats().graphql_requests, 3);
}

#[tokio::test]
async fn paging_is_lazy() {
    let (sandbox, client) = setup(fast_settings()).await;
    sandbox.seed_configuration_items(ACCOUNT, &["a", "b", "c", "d", "e"]);
    let mut stream = Box::pin(client.paged::<_, Node>(CI_PAGES, &json!({"first": 2})));
    assert_eq!(sandbox.stats().graphql_requests, 0);
    stream.try_next().await.unwrap().unwrap();
    stream.try_next().await.unwrap().unwrap();
    assert_eq!(sandbox.stats().graphql_requests, 1);
    stream.try_next().await.unwrap().unwrap();
    assert_eq!(sandbox.stats().graphql_requests, 2);
}

#[tokio::test]
async fn mutation_returns_payload_and_surfaces_payload_errors() {
    let (_sandbox, client) = setup(fast_settings()).await;
    let product: Value = client
        .mutation(
            "mutation($input: ProductCreateInput!) { productCreate(input: $input) { errors { path message } product { id } } }",
            &json!({"input": {"name": "Web server", "brand": "Acme", "category": "server"}}),
        )
        .await
        .unwrap();
    let product = &product["product"]["id"];
    let created: CiPayload = client
        .mutation(
            CI_CREATE,
            &json!({"input": {"name": "web-01", "productId": product, "status": "in_production"}}),
        )
        .await
        .unwrap();
    let ci = created.configuration_item.unwrap();
    assert_eq!(ci.name, "web-01");
    assert!(!ci.id.is_empty());

    let err = client
        .mutation::<_, CiPayload>(
            CI_CREATE,
            &json!({"input": {"name": "", "productId": product, "status": "in_production"}}),
        )
        .await
        .unwrap_err();
    match &err {
        FourMeError::Mutation { operation, errors } => {
            assert_eq!(operation, "configurationItemCreate");
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].message, "Name can't be blank");
            assert_eq!(errors[0].path, Some(json!(["name"])));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("Name can't be blank"));
}

#[tokio::test]
async fn graphql_errors_are_surfaced_with_messages() {
    let (_sandbox, client) = setup(fast_settings()).await;
    let err = client
        .query::<_, Value>(
            "{ configurationItems(first: 1) { nodes { id noSuchField } } }",
            &json!({}),
        )
        .await
        .unwrap_err();
    match &err {
        FourMeError::GraphQl {
            operation,
            messages,
        } => {
            assert_eq!(operation, "configurationItems");
            assert!(
                messages.iter().any(|m| m.contains("noSuchField")),
                "{messages:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_transient());
}

fn discovery_input() -> Value {
    json!({
        "input": {
            "source": "Lansweeper-test",
            "physicalAssets": [{
                "meta": {"strategy": "CREATE"},
                "reference": "server",
                "name": "Server",
                "products": [{
                    "meta": {"strategy": "CREATE"},
                    "sourceID": "dell_x",
                    "name": "Dell X Server",
                    "brand": "Dell",
                    "model": "X",
                    "configurationItems": [
                        {"sourceID": "asset-1", "name": "srv-1", "status": "in_production"}
                    ]
                }]
            }]
        }
    })
}

async fn discovery_result_url(client: &FourMeClient) -> String {
    let payload: DiscoveredPayload = client
        .mutation(DISCOVERED, &discovery_input())
        .await
        .unwrap();
    payload.async_query.unwrap().result_url
}

#[tokio::test]
async fn async_result_is_polled_until_ready() {
    let (sandbox, client) = setup(fast_settings()).await;
    sandbox.set_async_result_delay(2);
    let url = discovery_result_url(&client).await;
    let result: Value = client.async_result(&url).await.unwrap();
    assert!(result.get("configurationItems").is_some(), "{result}");
    assert_eq!(sandbox.stats().async_result_requests, 3);
}

#[tokio::test]
async fn async_result_deadline_is_a_clear_error() {
    let settings = ClientSettings {
        async_timeout: Duration::from_millis(200),
        ..fast_settings()
    };
    let (sandbox, client) = setup(settings).await;
    sandbox.set_async_result_delay(1_000_000);
    let url = discovery_result_url(&client).await;
    let err = client.async_result::<Value>(&url).await.unwrap_err();
    assert!(matches!(err, FourMeError::AsyncTimeout { .. }), "{err:?}");
    assert!(err.to_string().starts_with("No result available after "));
    assert!(err.is_transient());
    assert!(sandbox.stats().async_result_requests >= 1);
}

#[tokio::test]
async fn too_many_requests_is_retried_after_retry_after() {
    let (sandbox, client) = setup(fast_settings()).await;
    sandbox.inject_fault(Fault::TooManyRequests {
        target: FaultTarget::GraphQl,
        retry_after_secs: 1,
        times: 1,
    });
    let data: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    assert!(data["configurationItems"]["nodes"].is_array());
    assert_eq!(sandbox.stats().faults_served, 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let (sandbox, client) = setup(fast_settings()).await;
    sandbox.inject_fault(Fault::ServerError {
        target: FaultTarget::GraphQl,
        status: 503,
        times: 2,
    });
    let data: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    assert!(data["configurationItems"]["nodes"].is_array());
    assert_eq!(sandbox.stats().faults_served, 2);
}

#[tokio::test]
async fn token_endpoint_server_errors_are_retried() {
    let (sandbox, client) = setup(fast_settings()).await;
    sandbox.inject_fault(Fault::ServerError {
        target: FaultTarget::OAuth,
        status: 502,
        times: 1,
    });
    let _: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    assert_eq!(sandbox.stats().faults_served, 1);
}

#[tokio::test]
async fn persistent_server_errors_give_up_after_bounded_attempts() {
    let settings = ClientSettings {
        max_attempts: 3,
        ..fast_settings()
    };
    let (sandbox, client) = setup(settings).await;
    // Get the token first so that only GraphQL requests meet the fault.
    let _: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    sandbox.inject_fault(Fault::ServerError {
        target: FaultTarget::GraphQl,
        status: 500,
        times: 100,
    });
    let err = client
        .query::<_, Value>(CI_IDS, &json!({}))
        .await
        .unwrap_err();
    match &err {
        FourMeError::Unavailable {
            operation,
            attempts,
            last,
        } => {
            assert_eq!(operation, "configurationItems");
            assert_eq!(*attempts, 3);
            assert_eq!(last, "HTTP 500");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_transient());
    assert_eq!(sandbox.stats().faults_served, 3);
}

#[tokio::test]
async fn slow_responses_time_out_and_are_retried() {
    let settings = ClientSettings {
        timeout: Duration::from_millis(300),
        ..fast_settings()
    };
    let (sandbox, client) = setup(settings).await;
    let _: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    sandbox.inject_fault(Fault::Delay {
        target: FaultTarget::GraphQl,
        delay: Duration::from_secs(5),
        times: 1,
    });
    let data: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    assert!(data["configurationItems"]["nodes"].is_array());
}

#[tokio::test]
async fn rate_limit_headers_are_recorded() {
    let (_sandbox, client) = setup(fast_settings()).await;
    assert_eq!(client.last_rate_limit(), None);
    let _: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    let rl = client.last_rate_limit().unwrap();
    // 4me's hourly budgets: 3,600 requests and 5,000 cost points per token.
    assert_eq!(rl.limit, Some(3600));
    assert!(rl.remaining.is_some_and(|r| r < 3600));
    assert!(rl.reset.is_some());
    assert_eq!(rl.cost_limit, Some(5000));
    assert!(rl.cost_remaining.is_some_and(|r| r < 5000));
    assert!(rl.cost_reset.is_some());
}

#[tokio::test]
async fn thirty_requests_stay_within_the_rate_limit_by_spacing() {
    // A single attempt: any 429 from the sandbox's 20-per-2-s window would fail a call.
    let settings = ClientSettings {
        max_attempts: 1,
        ..fast_settings()
    };
    let (sandbox, client) = setup(settings).await;
    let calls = (0..30).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.query::<_, Value>(CI_IDS, &json!({})).await })
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap().unwrap();
    }
    assert_eq!(sandbox.stats().token_requests, 1);
}

#[tokio::test]
async fn avatar_upload() {
    let (sandbox, client) = setup(fast_settings()).await;
    let ids = sandbox.seed_configuration_items(ACCOUNT, &["with-avatar"]);
    client
        .upload_avatar(
            "configuration_items",
            &ids[0],
            "logo.png",
            vec![0x89, b'P', b'N', b'G'],
        )
        .await
        .unwrap();
    let err = client
        .upload_avatar("configuration_items", "no-such-record", "logo.png", vec![1])
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), Some(404), "{err:?}");
    assert_eq!(sandbox.stats().rest_requests, 2);
}

#[tokio::test]
async fn token_is_renewed_before_it_expires() {
    let (sandbox, client) = setup(fast_settings()).await;
    // A 2 s token is refreshed once half its lifetime has passed (margin = min(60 s, lifetime/2)).
    sandbox.set_token_lifetime(Duration::from_secs(2));
    let _: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    let _: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    assert_eq!(sandbox.stats().token_requests, 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let _: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    assert_eq!(sandbox.stats().token_requests, 2);
}

#[tokio::test]
async fn clients_can_share_one_http_pool() {
    let sandbox = start().await;
    sandbox.add_account("other");
    let http = reqwest::Client::new();
    let wdc = sandbox.add_oauth_application(ACCOUNT);
    let other = sandbox.add_oauth_application("other");
    let a = FourMeClient::with_http_client(
        http.clone(),
        endpoints(&sandbox),
        ACCOUNT,
        Credentials::new(wdc.client_id, wdc.client_secret),
        fast_settings(),
    );
    let b = FourMeClient::with_http_client(
        http,
        endpoints(&sandbox),
        "other",
        Credentials::new(other.client_id, other.client_secret),
        fast_settings(),
    );
    sandbox.seed_configuration_items("other", &["only-in-other"]);
    let in_a: Vec<Node> = a.paged_all(CI_PAGES, &json!({"first": 10})).await.unwrap();
    let in_b: Vec<Node> = b.paged_all(CI_PAGES, &json!({"first": 10})).await.unwrap();
    assert!(in_a.is_empty());
    assert_eq!(in_b.len(), 1);
    assert_eq!(in_b[0].name, "only-in-other");
    assert_eq!(b.account(), "other");
    assert_eq!(sandbox.stats().token_requests, 2);
}

#[tokio::test]
async fn server_side_rate_limit_429s_are_honoured() {
    // Without client-side spacing the sandbox's 20-per-2-s window answers 429 with Retry-After;
    // every call still succeeds.
    let settings = ClientSettings {
        min_request_spacing: Duration::ZERO,
        rate_limit_requests: 0,
        max_attempts: 5,
        max_retry_after: Duration::from_secs(3),
        ..fast_settings()
    };
    let (sandbox, client) = setup(settings).await;
    let calls = (0..30).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.query::<_, Value>(CI_IDS, &json!({})).await })
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap().unwrap();
    }
    assert_eq!(sandbox.stats().token_requests, 1);
}

#[tokio::test]
async fn async_result_server_errors_mean_not_yet() {
    let (sandbox, client) = setup(fast_settings()).await;
    let url = discovery_result_url(&client).await;
    sandbox.inject_fault(Fault::ServerError {
        target: FaultTarget::AsyncResult,
        status: 503,
        times: 2,
    });
    let result: Value = client.async_result(&url).await.unwrap();
    assert!(result.get("configurationItems").is_some(), "{result}");
    assert_eq!(sandbox.stats().faults_served, 2);
}

#[tokio::test]
async fn endpoints_from_environment_overrides_reach_the_sandbox() {
    let sandbox = start().await;
    let env = [
        ("FOURME_OAUTH_URL", sandbox.oauth_url()),
        ("FOURME_GRAPHQL_URL", sandbox.graphql_url()),
        ("FOURME_REST_URL", sandbox.rest_url()),
    ];
    let endpoints = Endpoints::from_lookup(sandbox.domain(), |name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    assert_eq!(endpoints.graphql.as_str(), sandbox.graphql_url());
    let app = sandbox.add_oauth_application(ACCOUNT);
    let client = FourMeClient::new(
        endpoints,
        ACCOUNT,
        Credentials::new(app.client_id, app.client_secret),
        fast_settings(),
    )
    .unwrap();
    let _: Value = client.query(CI_IDS, &json!({})).await.unwrap();
    assert_eq!(sandbox.stats().graphql_requests, 1);
}

#[tokio::test]
async fn paging_rejects_non_object_variables_without_a_request() {
    let (sandbox, client) = setup(fast_settings()).await;
    let err = client
        .paged_all::<_, Node>(CI_PAGES, &json!([1, 2]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FourMeError::Request { ref message, .. } if message.contains("object")),
        "{err:?}"
    );
    assert_eq!(sandbox.stats().graphql_requests, 0);
    assert_eq!(sandbox.stats().token_requests, 0);
}
