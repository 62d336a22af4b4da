//! The offering's configuration URI end to end over HTTP: 4me's signed link → "Connect
//! Lansweeper" page → Lansweeper's authorization → the callback → the authorized sites and the
//! way back to 4me's confirmation URL → enabled → first sync; and every refusal page (forged or
//! expired signature, account or created_at mismatch, foreign confirmation URL, Lansweeper
//! declining or refusing the code), none of which stores anything.
#![allow(clippy::unwrap_used)]

mod support;

use app_builder_core::bus::LifecycleStep;
use app_builder_core::secrets::LocalSecretStore;
use app_builder_sandbox::lansweeper::SiteSpec;
use lambda_http::Body;
use serde_json::json;
use support::{API_URL, Customer, Env, PROVIDER, installation_event};

type TestEnv = Env<LocalSecretStore>;

async fn env() -> (TestEnv, app_builder_sandbox::PolicyInfo, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path().join("secrets")), PROVIDER).await;
    let policy = env.use_configuration_page().await;
    (env, policy, dir)
}

/// The query parameters of a URL.
fn params(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Opens the configuration page with `params` (as 4me's redirect does): (status, headers, HTML).
async fn open(env: &TestEnv, params: &[(String, String)]) -> (u16, http::HeaderMap, String) {
    let query: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    page(env.get("configure", &query).await)
}

fn page(resp: lambda_http::Response<Body>) -> (u16, http::HeaderMap, String) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let Body::Text(text) = resp.into_body() else {
        panic!("not an HTML page")
    };
    (status, headers, text)
}

/// The `href` of the element with id `id`, unescaped.
fn href(html: &str, id: &str) -> String {
    let at = html.find(&format!("id=\"{id}\"")).unwrap();
    let start = html[at..].find("href=\"").unwrap() + at + 6;
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].replace("&amp;", "&")
}

fn with(params: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| {
            let v = if k == name { value } else { v.as_str() };
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// Files of the engine's state store (configuration sessions are records there).
fn state_records(env: &TestEnv) -> usize {
    walk(env.state.dir())
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

async fn installed(env: &TestEnv, account: &str) -> (Customer, Vec<(String, String)>) {
    let customer = env.install(account).await;
    let link = customer.configuration_url.clone().unwrap();
    assert!(link.starts_with(&format!("{API_URL}configure?")), "{link}");
    let params = params(&link);
    (customer, params)
}

#[tokio::test]
async fn the_configuration_page_connects_lansweeper_and_leads_back_to_4me() {
    let (env, _policy, _dir) = env().await;
    env.lansweeper.add_site(SiteSpec::new("Headquarters", 10));
    let (customer, params) = installed(&env, "wdc-config").await;
    let instance = env.instance(&customer.instance_id);
    assert_eq!(instance["disabled"], true, "disabled until confirmed");

    // The installation's secrets have not been handled yet: the page reloads itself.
    let (status, headers, html) = open(&env, &params).await;
    assert_eq!(status, 200);
    assert_eq!(headers["refresh"], "3");
    assert!(html.contains("being prepared"), "{html}");

    assert_eq!(env.installation("wdc-config").await.0, 200);
    let (status, headers, html) = open(&env, &params).await;
    assert_eq!(status, 200, "{html}");
    assert!(headers.get("refresh").is_none());
    assert_eq!(headers["x-frame-options"], "DENY");
    let callback = env.custom_field(&customer.instance_id, "callback_url");
    let callback = callback.as_str().unwrap();
    assert!(html.contains(callback), "the page shows the callback URL");
    let connect = href(&html, "connect");
    let client_id = &customer.lansweeper_app.client_id;
    assert!(
        connect.starts_with(&format!(
            "{}/authorize-app/{client_id}?state=",
            env.lansweeper.app_url()
        )),
        "{connect}"
    );

    // The customer registers the callback URL in Lansweeper and authorizes.
    env.lansweeper.register_redirect_uri(client_id, callback);
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = no_redirect.get(&connect).send().await.unwrap();
    assert_eq!(answer.status(), 302);
    let back = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.starts_with(callback), "{back}");
    let proxy = back.strip_prefix(API_URL).unwrap();
    let proxy = proxy.split('?').next().unwrap();
    let query = self::params(&back);
    let query: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, _, html) = page(env.get(proxy, &query).await);
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Lansweeper is connected"));
    assert!(html.contains("<li>Headquarters</li>"), "{html}");
    let confirmation = params
        .iter()
        .find(|(k, _)| k == "confirmation_url")
        .unwrap()
        .1
        .clone();
    assert_eq!(href(&html, "return"), confirmation);
    assert!(
        env.secret("wdc-config")
            .await
            .get("refresh_token")
            .is_some()
    );
    assert_eq!(
        env.custom_field(&customer.instance_id, "connection_status"),
        "success"
    );
    assert!(
        env.queue.messages().is_empty(),
        "no sync before the customer confirms"
    );

    // Back in 4me the customer confirms: the instance is enabled, and its `enabled` change
    // queues the first sync.
    let confirmed = reqwest::get(&confirmation).await.unwrap();
    assert_eq!(confirmed.status(), 200);
    assert_eq!(env.instance(&customer.instance_id)["disabled"], false);
    let (status, message) = env
        .installation_event(&installation_event(
            env.sandbox.domain(),
            "lansweeper",
            "wdc-config",
            LifecycleStep::Enabled,
        ))
        .await;
    assert_eq!((status, message.as_str()), (200, "Sync queued"));
    assert_eq!(env.queue.messages(), ["wdc-config"]);

    // The link was used: opened again, the page says so and leads back to 4me.
    let (status, _, html) = open(&env, &params).await;
    assert_eq!(status, 200);
    assert_eq!(href(&html, "return"), confirmation);
}

#[tokio::test]
async fn links_that_fail_a_check_are_refused_with_a_clear_page_and_nothing_stored() {
    let (env, policy, _dir) = env().await;
    let (customer, params) = installed(&env, "wdc-refused").await;
    assert_eq!(env.installation("wdc-refused").await.0, 200);
    let before = state_records(&env);
    let domain = env.sandbox.domain().to_owned();
    let now = chrono::Utc::now().timestamp();
    let audience = format!("integrations provided by {PROVIDER}@{domain}");
    let claims = |data: &str, iat: i64| {
        json!({"data": data, "iss": format!("https://{PROVIDER}.{domain}"), "aud": audience,
               "iat": iat, "nbf": iat, "jti": "x", "sub": "1"})
    };
    let other = env
        .sandbox
        .create_webhook_policy(PROVIDER, "es512", Some(&audience))
        .unwrap();
    let forged = env
        .sandbox
        .sign_claims(&other.id, &claims(&customer.instance_id, now))
        .unwrap();
    let expired = env
        .sandbox
        .sign_claims(&policy.id, &claims(&customer.instance_id, now - 7200))
        .unwrap();
    let other_node = env
        .sandbox
        .sign_claims(&policy.id, &claims("NG-other", now))
        .unwrap();
    let cases = [
        (
            with(&params, "X-4me-Signature", &forged),
            403,
            "not signed by 4me",
        ),
        (
            with(&params, "X-4me-Signature", &expired),
            403,
            "has expired",
        ),
        (
            with(&params, "X-4me-Signature", &other_node),
            403,
            "not signed by 4me",
        ),
        (
            with(&params, "account_id", "wdc-other"),
            403,
            "account does not match",
        ),
        (
            with(&params, "created_at", "2020-01-01T00:00:00Z"),
            403,
            "creation time does not match",
        ),
        (
            with(&params, "confirmation_url", "https://evil.example/confirm"),
            400,
            "not a 4me address",
        ),
        (with(&params, "nodeID", ""), 400, "it has no nodeID"),
    ];
    for (params, status, message) in cases {
        let (got, _, html) = open(&env, &params).await;
        assert_eq!(got, status, "{message}: {html}");
        assert!(html.contains(message), "{message}: {html}");
        assert!(html.contains("Nothing was changed."));
        assert!(!html.contains("id=\"connect\""));
    }
    assert_eq!(state_records(&env), before, "nothing stored");
    assert!(env.queue.messages().is_empty());
}

#[tokio::test]
async fn a_refusal_by_lansweeper_shows_what_happened_and_the_way_to_try_again() {
    let (env, _policy, _dir) = env().await;
    let (customer, params) = installed(&env, "wdc-declined").await;
    assert_eq!(env.installation("wdc-declined").await.0, 200);
    let (_, _, html) = open(&env, &params).await;
    let connect = href(&html, "connect");
    let callback = env.custom_field(&customer.instance_id, "callback_url");
    let callback = callback.as_str().unwrap();
    env.lansweeper
        .register_redirect_uri(&customer.lansweeper_app.client_id, callback);
    let proxy = callback.strip_prefix(API_URL).unwrap();
    let state = self::params(&connect)
        .into_iter()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1;

    // The user declines in Lansweeper.
    env.lansweeper.set_declining(true);
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = no_redirect.get(&connect).send().await.unwrap();
    let back = back.headers()["location"].to_str().unwrap().to_owned();
    let query = self::params(&back);
    assert!(query.contains(&("error".into(), "access_denied".into())));
    let query: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, _, html) = page(env.get(proxy, &query).await);
    assert_eq!(status, 400);
    assert!(
        html.contains("did not authorize the application (access_denied)"),
        "{html}"
    );
    assert!(html.contains("Nothing was changed."));
    assert!(href(&html, "again").starts_with("../configure?nodeID="));

    // A code Lansweeper refuses.
    let (status, _, html) = page(
        env.get(proxy, &[("code", "forged"), ("state", &state)])
            .await,
    );
    assert_eq!(status, 400);
    assert!(
        html.contains("Lansweeper refused the authorization"),
        "{html}"
    );

    assert!(
        env.secret("wdc-declined")
            .await
            .get("refresh_token")
            .is_none()
    );
    assert_eq!(
        env.custom_field(&customer.instance_id, "connection_status"),
        "pending_authorization"
    );
    assert!(env.queue.messages().is_empty());
}
