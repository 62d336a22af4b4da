//! Raw HTTP tests of the Lansweeper fake: OAuth grants with rotation, strict GraphQL, cursor
//! paging with filters over generated assets, faults and counters.
#![allow(clippy::unwrap_used)] // helpers of this test crate may unwrap

use app_builder_sandbox::OAuthCredentials;
use app_builder_sandbox::lansweeper::{
    LansweeperEndpoint, LansweeperFake, LansweeperFault, LansweeperFaultKind, LansweeperScope,
    SiteSpec,
};
use serde_json::{Value, json};

const ASSETS_QUERY: &str = "query getAssetResources($siteId: ID!, $pagination: AssetsPaginationInputValidated, $fields: [String!]!, $filters: AssetsFilterGroupedInput) { site(id: $siteId) { assetResources(assetPagination: $pagination, fields: $fields, filters: $filters) { total pagination { next } items } } }";
/// The query of the following pages: Lansweeper refuses `total` with `page: NEXT`.
const NEXT_ASSETS_QUERY: &str = "query getAssetResources($siteId: ID!, $pagination: AssetsPaginationInputValidated, $fields: [String!]!, $filters: AssetsFilterGroupedInput) { site(id: $siteId) { assetResources(assetPagination: $pagination, fields: $fields, filters: $filters) { pagination { next } items } } }";

async fn post_token(fake: &LansweeperFake, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(fake.token_url())
        .header("x-ls-integration-id", "test")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn access_token(fake: &LansweeperFake, creds: &OAuthCredentials) -> String {
    let refresh = fake.issue_refresh_token(&creds.client_id);
    let (status, body) = post_token(
        fake,
        json!({"client_id": creds.client_id, "client_secret": creds.client_secret,
               "grant_type": "refresh_token", "refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn gql(fake: &LansweeperFake, token: &str, query: &str, variables: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(fake.graphql_url())
        .header("x-ls-integration-id", "test")
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn fields() -> Value {
    json!([
        "_id",
        "key",
        "assetBasicInfo.type",
        "assetBasicInfo.lastSeen",
        "assetCustom.model",
        "softwares.name",
        "users.name"
    ])
}

/// Pages through every asset matching `filters`; returns (total of the first page, keys).
async fn all_keys(
    fake: &LansweeperFake,
    token: &str,
    site: &str,
    filters: Value,
    limit: u32,
) -> (u64, Vec<String>) {
    let mut keys = Vec::new();
    let mut pagination = json!({"limit": limit, "page": "FIRST"});
    let mut total = None;
    loop {
        let query = if total.is_none() {
            ASSETS_QUERY
        } else {
            NEXT_ASSETS_QUERY
        };
        let (status, body) = gql(
            fake,
            token,
            query,
            json!({"siteId": site, "pagination": pagination, "fields": fields(), "filters": filters}),
        )
        .await;
        assert_eq!(status, 200);
        assert!(body.get("errors").is_none(), "{body}");
        let page = &body["data"]["site"]["assetResources"];
        if total.is_none() {
            total = Some(page["total"].as_u64().unwrap());
        }
        for item in page["items"].as_array().unwrap() {
            keys.push(item["key"].as_str().unwrap().to_owned());
        }
        match page["pagination"]["next"].as_str() {
            Some(next) => pagination = json!({"limit": limit, "page": "NEXT", "cursor": next}),
            None => break,
        }
    }
    (total.unwrap(), keys)
}

#[tokio::test]
async fn authorization_code_grant_then_rotating_refresh_tokens() {
    let fake = LansweeperFake::start().await.unwrap();
    let creds = fake.add_client();
    let redirect = "https://example.test/Prod/integration/wdc/secret";
    let code = fake.authorize(&creds.client_id, redirect);

    // Wrong redirect URI: invalid grant, and the code is not consumed.
    let (status, body) = post_token(
        &fake,
        json!({"client_id": creds.client_id, "client_secret": creds.client_secret,
               "grant_type": "authorization_code", "code": code, "redirect_uri": "https://other"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let exchange = json!({"client_id": creds.client_id, "client_secret": creds.client_secret,
                          "grant_type": "authorization_code", "code": code, "redirect_uri": redirect});
    let (status, body) = post_token(&fake, exchange.clone()).await;
    assert_eq!(status, 200, "{body}");
    let first = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(fake.is_refresh_token_valid(&first));

    // Codes are single use.
    let (status, _) = post_token(&fake, exchange).await;
    assert_eq!(status, 400);

    // Refresh rotates: the new token works, the old one is revoked (401).
    let refresh = |token: &str| {
        json!({"client_id": creds.client_id, "client_secret": creds.client_secret,
               "grant_type": "refresh_token", "refresh_token": token})
    };
    let (status, body) = post_token(&fake, refresh(&first)).await;
    assert_eq!(status, 200);
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert!(body["access_token"].as_str().is_some());
    let (status, body) = post_token(&fake, refresh(&first)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_grant"))
    );

    // Without rotation no refresh token is returned and the old one stays valid.
    fake.set_rotate_refresh_tokens(false);
    let (status, body) = post_token(&fake, refresh(&second)).await;
    assert_eq!(status, 200);
    assert!(body.get("refresh_token").is_none());
    assert!(fake.is_refresh_token_valid(&second));

    // Wrong client secret: 401 invalid_client.
    let (status, body) = post_token(
        &fake,
        json!({"client_id": creds.client_id, "client_secret": "nope",
               "grant_type": "refresh_token", "refresh_token": second}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    fake.revoke_all_tokens();
    let (status, _) = post_token(&fake, refresh(&second)).await;
    assert_eq!(status, 401);
    let stats = fake.stats();
    assert_eq!((stats.code_grants, stats.refresh_grants), (1, 2));
    assert_eq!(stats.token_requests, 8);
}

#[tokio::test]
async fn graphql_requires_a_valid_token_and_the_integration_header() {
    let fake = LansweeperFake::start().await.unwrap();
    let creds = fake.add_client();
    let (status, _) = gql(
        &fake,
        "bogus",
        "{ authorizedSites { sites { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 401);
    let token = access_token(&fake, &creds).await;
    fake.expire_access_tokens();
    let (status, _) = gql(
        &fake,
        &token,
        "{ authorizedSites { sites { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 401);

    let token = access_token(&fake, &creds).await;
    let resp = reqwest::Client::new()
        .post(fake.graphql_url())
        .bearer_auth(&token)
        .json(&json!({"query": "{ authorizedSites { sites { id } } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn sites_installations_and_asset_types_are_served_strictly() {
    let fake = LansweeperFake::start().await.unwrap();
    let creds = fake.add_client();
    let token = access_token(&fake, &creds).await;
    let (_, body) = gql(
        &fake,
        &token,
        "{ authorizedSites { sites { id name } } }",
        json!({}),
    )
    .await;
    assert_eq!(body["data"]["authorizedSites"]["sites"], json!([]));

    let mut spec = SiteSpec::new("Main office", 10);
    spec.installations = vec!["HQ".into(), "Branch".into(), "Cloud".into()];
    let site = fake.add_site(spec);
    let (_, body) = gql(
        &fake,
        &token,
        "{ authorizedSites { sites { id name } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["authorizedSites"]["sites"],
        json!([{"id": site, "name": "Main office"}])
    );

    let query = "query($siteId: ID!) { site(id: $siteId) { id assetTypes allInstallations { id siteId name fqdn description unlinkedOn unlinkedBy linkStatus installationDate type totalAssets syncServerStatus lastAvailable version syncServer } } }";
    let (_, body) = gql(&fake, &token, query, json!({"siteId": site})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let installations = body["data"]["site"]["allInstallations"].as_array().unwrap();
    let names: Vec<&str> = installations
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["HQ", "Branch", "Cloud"]);
    let totals: Vec<u64> = installations
        .iter()
        .map(|i| i["totalAssets"].as_u64().unwrap())
        .collect();
    assert_eq!(totals, [4, 3, 3]);
    assert!(fake.has_installation(&site, installations[1]["id"].as_str().unwrap()));
    let types = body["data"]["site"]["assetTypes"].as_array().unwrap();
    assert!(types.contains(&json!("Windows")) && types.contains(&json!("VMware Guest")));

    // Unknown fields and enum values are validation errors.
    let (_, body) = gql(
        &fake,
        &token,
        "{ authorizedSites { sites { id colour } } }",
        json!({}),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    let (_, body) = gql(
        &fake,
        &token,
        ASSETS_QUERY,
        json!({"siteId": site, "pagination": {"limit": 5, "page": "SECOND"}, "fields": fields()}),
    )
    .await;
    assert!(body["errors"].is_array(), "{body}");
    // Unknown site.
    let (_, body) = gql(&fake, &token, "{ site(id: \"nope\") { id } }", json!({})).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
}

#[tokio::test]
async fn cursor_paging_visits_every_asset_once_and_installation_filters_partition_the_site() {
    let fake = LansweeperFake::start().await.unwrap();
    let creds = fake.add_client();
    let token = access_token(&fake, &creds).await;
    let mut spec = SiteSpec::new("Paged", 1_050);
    spec.installations = vec!["A".into(), "B".into()];
    let site = fake.add_site(spec);

    let (total, keys) = all_keys(&fake, &token, &site, Value::Null, 100).await;
    assert_eq!(total, 1_050);
    assert_eq!(keys.len(), 1_050);
    let unique: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), 1_050);
    assert_eq!(fake.stats().asset_pages, 11);

    let mut per_installation = 0;
    for inst in fake.installations(&site) {
        let filter = json!({"conjunction": "AND", "groups": [
            {"conjunction": "AND", "conditions": [{"operator": "EQUAL", "path": "installationId", "value": inst.id}]}
        ]});
        let (total, keys) = all_keys(&fake, &token, &site, filter, 100).await;
        assert_eq!(total as usize, keys.len());
        per_installation += keys.len();
    }
    assert_eq!(per_installation, 1_050);

    // Items carry only the requested paths (arrays projected element-wise).
    let (_, body) = gql(
        &fake,
        &token,
        ASSETS_QUERY,
        json!({"siteId": site, "pagination": {"limit": 20, "page": "FIRST"}, "fields": fields()}),
    )
    .await;
    for item in body["data"]["site"]["assetResources"]["items"]
        .as_array()
        .unwrap()
    {
        let basic = item["assetBasicInfo"].as_object().unwrap();
        assert!(
            basic.keys().all(|k| k == "type" || k == "lastSeen"),
            "{item}"
        );
        assert!(item.get("url").is_none());
        if let Some(users) = item.get("users") {
            assert!(
                users
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|u| u.as_object().unwrap().len() == 1)
            );
        }
    }
    // The same seed generates the same assets.
    assert_eq!(fake.asset(&site, 7), fake.asset(&site, 7));
    assert!(fake.asset(&site, 1_050).is_none());
}

#[tokio::test]
async fn type_ip_and_last_seen_filters_select_the_matching_generated_assets() {
    let fake = LansweeperFake::start().await.unwrap();
    let creds = fake.add_client();
    let token = access_token(&fake, &creds).await;
    let site = fake.add_site(SiteSpec::new("Filtered", 600));
    let cut_off = (fake.reference_time() - chrono::Duration::days(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let filter = json!({"conjunction": "AND", "groups": [
        {"conjunction": "OR", "conditions": [
            {"operator": "REGEXP", "path": "assetBasicInfo.type", "value": "windows|VMware Guest|Wind\\.ows"}]},
        {"conjunction": "OR", "conditions": [
            {"operator": "GREATER_THAN", "path": "assetBasicInfo.lastSeen", "value": cut_off},
            {"operator": "EXISTS", "path": "assetBasicInfo.lastSeen", "value": "false"}]}
    ]});
    let (total, keys) = all_keys(&fake, &token, &site, filter, 50).await;
    let expected: Vec<String> = (0..600)
        .map(|i| fake.asset(&site, i).unwrap())
        .filter(|a| {
            let b = &a["assetBasicInfo"];
            let t = b["type"].as_str().unwrap();
            (t == "Windows" || t == "VMware Guest")
                && b["lastSeen"].as_str().is_none_or(|s| s > cut_off.as_str())
        })
        .map(|a| a["key"].as_str().unwrap().to_owned())
        .collect();
    assert!(!expected.is_empty() && expected.len() < 600);
    assert_eq!(keys, expected);
    assert_eq!(total as usize, expected.len());

    let with_ip = json!({"conjunction": "AND", "groups": [
        {"conjunction": "AND", "conditions": [{"operator": "EXISTS", "path": "assetBasicInfo.ipAddress", "value": "true"}]}]});
    let (_, keys) = all_keys(&fake, &token, &site, with_ip, 100).await;
    let expected = (0..600)
        .filter(|i| {
            fake.asset(&site, *i).unwrap()["assetBasicInfo"]
                .get("ipAddress")
                .is_some()
        })
        .count();
    assert_eq!(keys.len(), expected);

    // A REGEXP matches anywhere in the value, as Lansweeper's does: an unanchored `server`
    // selects the Webserver assets, an anchored `^server$` none.
    let by_type = |regex: &str| {
        json!({"conjunction": "AND", "conditions": [
            {"operator": "REGEXP", "path": "assetBasicInfo.type", "value": regex}]})
    };
    let webservers = (0..600)
        .filter(|i| fake.asset(&site, *i).unwrap()["assetBasicInfo"]["type"] == "Webserver")
        .count();
    assert!(webservers > 0);
    let (_, keys) = all_keys(&fake, &token, &site, by_type("server"), 100).await;
    assert_eq!(keys.len(), webservers);
    let (_, keys) = all_keys(&fake, &token, &site, by_type("^server$"), 100).await;
    assert!(keys.is_empty());
    let (_, keys) = all_keys(&fake, &token, &site, by_type("^webserver$|^wifi$"), 100).await;
    assert!(keys.len() > webservers);

    // NOT_EQUAL and LESS_THAN, the other documented operators.
    let condition = |operator: &str, path: &str, value: &str| {
        json!({"conjunction": "AND", "conditions": [
            {"operator": operator, "path": path, "value": value}]})
    };
    let windows = (0..600)
        .filter(|i| fake.asset(&site, *i).unwrap()["assetBasicInfo"]["type"] == "Windows")
        .count();
    let (_, keys) = all_keys(
        &fake,
        &token,
        &site,
        condition("NOT_EQUAL", "assetBasicInfo.type", "Windows"),
        100,
    )
    .await;
    assert_eq!(keys.len(), 600 - windows);
    let seen_before = (0..600)
        .filter(|i| {
            fake.asset(&site, *i).unwrap()["assetBasicInfo"]["lastSeen"]
                .as_str()
                .is_some_and(|s| s < cut_off.as_str())
        })
        .count();
    let (_, keys) = all_keys(
        &fake,
        &token,
        &site,
        condition("LESS_THAN", "assetBasicInfo.lastSeen", &cut_off),
        100,
    )
    .await;
    assert_eq!(keys.len(), seen_before);
    assert!(seen_before > 0);

    // An invalid expression is an error, not a silent mismatch.
    let bad = json!({"conjunction": "AND", "conditions": [
        {"operator": "REGEXP", "path": "assetBasicInfo.type", "value": "Win("}]});
    let (_, body) = gql(
        &fake,
        &token,
        ASSETS_QUERY,
        json!({"siteId": site, "pagination": {"limit": 5, "page": "FIRST"}, "fields": fields(), "filters": bad}),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid regular expression")
    );
}

#[tokio::test]
async fn a_hundred_thousand_asset_site_is_generated_per_page() {
    let fake = LansweeperFake::start().await.unwrap();
    let creds = fake.add_client();
    let token = access_token(&fake, &creds).await;
    let site = fake.add_site(SiteSpec::new("Huge", 100_000));
    let (_, body) = gql(
        &fake,
        &token,
        ASSETS_QUERY,
        json!({"siteId": site, "pagination": {"limit": 500, "page": "FIRST"}, "fields": fields()}),
    )
    .await;
    let page = &body["data"]["site"]["assetResources"];
    assert_eq!(page["total"], 100_000);
    assert_eq!(page["items"].as_array().unwrap().len(), 500);
    let next = page["pagination"]["next"].as_str().unwrap();
    // Lansweeper's restriction: no `total` with page NEXT, PREV or LAST.
    let (_, body) = gql(
        &fake,
        &token,
        ASSETS_QUERY,
        json!({"siteId": site, "pagination": {"limit": 500, "page": "NEXT", "cursor": next}, "fields": fields()}),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("total cannot be requested"),
        "{body}"
    );
    let (_, body) = gql(
        &fake,
        &token,
        NEXT_ASSETS_QUERY,
        json!({"siteId": site, "pagination": {"limit": 500, "page": "NEXT", "cursor": next}, "fields": fields()}),
    )
    .await;
    let items = body["data"]["site"]["assetResources"]["items"]
        .as_array()
        .unwrap();
    assert_eq!(items[0]["key"], fake.asset(&site, 500).unwrap()["key"]);
    assert_eq!(fake.stats().assets_served, 1_000);
}

#[tokio::test]
async fn injected_faults_and_rate_limit_answer_before_authentication_and_are_counted() {
    let fake = LansweeperFake::start().await.unwrap();
    let creds = fake.add_client();
    let token = access_token(&fake, &creds).await;
    let q = "{ authorizedSites { sites { id } } }";
    fake.inject_fault(LansweeperFault {
        target: LansweeperEndpoint::GraphQl,
        kind: LansweeperFaultKind::TooManyRequests {
            retry_after_secs: 7,
        },
        times: 1,
    });
    fake.inject_fault(LansweeperFault {
        target: LansweeperEndpoint::Any,
        kind: LansweeperFaultKind::ServerError { status: 503 },
        times: 1,
    });
    fake.inject_fault(LansweeperFault {
        target: LansweeperEndpoint::Token,
        kind: LansweeperFaultKind::Unauthorized,
        times: 1,
    });
    let resp = reqwest::Client::new()
        .post(fake.graphql_url())
        .header("x-ls-integration-id", "t")
        .bearer_auth(&token)
        .json(&json!({"query": q}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(gql(&fake, &token, q, json!({})).await.0, 503);
    assert_eq!(gql(&fake, &token, q, json!({})).await.0, 200);
    let (status, _) = post_token(&fake, json!({"grant_type": "refresh_token"})).await;
    assert_eq!(status, 401);
    assert_eq!(fake.stats().faults_served, 3);

    fake.set_rate_limit(Some((2, std::time::Duration::from_secs(3600))));
    assert_eq!(gql(&fake, &token, q, json!({})).await.0, 200);
    assert_eq!(gql(&fake, &token, q, json!({})).await.0, 200);
    assert_eq!(gql(&fake, &token, q, json!({})).await.0, 429);
    assert_eq!(fake.stats().rate_limited, 1);
}

#[tokio::test]
async fn scoped_faults_hit_one_site_and_operation_only() {
    let fake = LansweeperFake::start().await.unwrap();
    let creds = fake.add_client();
    let token = access_token(&fake, &creds).await;
    let a = fake.add_site(SiteSpec::new("A", 5));
    let b = fake.add_site(SiteSpec::new("B", 5));
    let installations = "query allInstallations($siteId: ID!) { site(id: $siteId) { allInstallations { id name } } }";
    let types = "query assetTypes($siteId: ID!) { site(id: $siteId) { assetTypes } }";
    fake.inject_scoped_fault(
        LansweeperScope {
            operation: Some("allInstallations".into()),
            site_id: Some(b.clone()),
        },
        LansweeperFault {
            target: LansweeperEndpoint::Any,
            kind: LansweeperFaultKind::GraphQlError,
            times: 1,
        },
    );
    // Another site, another operation: served normally.
    let (status, body) = gql(&fake, &token, installations, json!({"siteId": a})).await;
    assert_eq!((status, body.get("errors")), (200, None), "{body}");
    let (status, body) = gql(&fake, &token, types, json!({"siteId": b})).await;
    assert_eq!((status, body.get("errors")), (200, None), "{body}");
    // The scoped request: 200 with errors and no data, once.
    let (status, body) = gql(&fake, &token, installations, json!({"siteId": b})).await;
    assert_eq!(status, 200);
    assert!(
        body["data"].is_null() && body["errors"][0]["message"].is_string(),
        "{body}"
    );
    let (status, body) = gql(&fake, &token, installations, json!({"siteId": b})).await;
    assert_eq!((status, body.get("errors")), (200, None), "{body}");
    assert_eq!(fake.stats().faults_served, 1);
}
