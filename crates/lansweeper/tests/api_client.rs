//! The Lansweeper API client against the sandbox's Lansweeper fake: OAuth code exchange, refresh
//! rotation, authorization errors, lazy cursor paging with filters as variables, 429/5xx/401
//! handling and request spacing.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use app_builder_core::config::{ConfigError, Settings};
use app_builder_sandbox::lansweeper::{
    LansweeperEndpoint, LansweeperFake, LansweeperFault, LansweeperFaultKind, SiteSpec,
};
use chrono::Utc;
use lansweeper::api::{
    ApiSettings, AssetQuery, ClientCredentials, LansweeperApi, LansweeperError, Session,
};
use secrecy::{ExposeSecret, SecretString};

fn settings(fake: &LansweeperFake) -> ApiSettings {
    ApiSettings {
        api_url: fake.api_url(),
        min_request_interval: Duration::ZERO,
        max_attempts: 3,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        default_retry_after: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(2),
        ..ApiSettings::default()
    }
}

fn credentials(fake: &LansweeperFake) -> ClientCredentials {
    let app = fake.add_client();
    ClientCredentials {
        client_id: app.client_id,
        client_secret: SecretString::from(app.client_secret),
    }
}

fn session(fake: &LansweeperFake, api: &LansweeperApi) -> Session {
    let creds = credentials(fake);
    let refresh = fake.issue_refresh_token(&creds.client_id);
    api.session(creds, SecretString::from(refresh))
}

fn query(site: &str) -> AssetQuery {
    AssetQuery {
        site_id: site.to_owned(),
        cut_off: Utc::now() - chrono::Duration::days(30),
        with_ip: None,
        installation_id: None,
        asset_types: None,
    }
}

#[tokio::test]
async fn exchanges_the_authorization_code_for_a_refresh_token() {
    let fake = LansweeperFake::start().await.unwrap();
    let api = LansweeperApi::new(settings(&fake)).unwrap();
    let creds = credentials(&fake);
    let redirect = "https://api.example.test/Prod/integration/wdc/s3cr3t";
    let code = fake.authorize(&creds.client_id, redirect);
    let refresh = api.exchange_code(&creds, &code, redirect).await.unwrap();
    assert!(fake.is_refresh_token_valid(refresh.expose_secret()));

    // A used code is an authorization failure, as is a wrong client secret.
    let err = api
        .exchange_code(&creds, &code, redirect)
        .await
        .unwrap_err();
    assert!(err.is_authorization(), "{err}");
    let wrong = ClientCredentials {
        client_secret: SecretString::from("nope".to_owned()),
        ..creds.clone()
    };
    let code = fake.authorize(&creds.client_id, redirect);
    assert!(
        api.exchange_code(&wrong, &code, redirect)
            .await
            .unwrap_err()
            .is_authorization()
    );
}

#[tokio::test]
async fn a_rotated_refresh_token_is_reported_once_and_replaces_the_old_one() {
    let fake = LansweeperFake::start().await.unwrap();
    fake.add_site(SiteSpec::new("HQ", 3));
    let api = LansweeperApi::new(settings(&fake)).unwrap();
    let creds = credentials(&fake);
    let old = fake.issue_refresh_token(&creds.client_id);
    let mut session = api.session(creds.clone(), SecretString::from(old.clone()));
    session.authenticate().await.unwrap();
    let new = session.take_rotated_refresh_token().unwrap();
    assert_ne!(new.expose_secret(), old);
    assert!(fake.is_refresh_token_valid(new.expose_secret()));
    assert!(!fake.is_refresh_token_valid(&old));
    assert!(session.take_rotated_refresh_token().is_none());

    // After an access-token expiry the session refreshes with the *new* refresh token.
    fake.expire_access_tokens();
    assert_eq!(session.sites().await.unwrap().len(), 1);
    assert!(session.take_rotated_refresh_token().is_some());

    // The old refresh token is now an authorization error.
    let mut stale = api.session(creds, SecretString::from(old));
    let err = stale.sites().await.unwrap_err();
    assert!(err.is_authorization() && !err.is_transient(), "{err}");
}

#[tokio::test]
async fn no_authorized_site_and_revoked_tokens_are_authorization_errors() {
    let fake = LansweeperFake::start().await.unwrap();
    let api = LansweeperApi::new(settings(&fake)).unwrap();
    let mut s = session(&fake, &api);
    match s.sites().await.unwrap_err() {
        LansweeperError::Unauthorized(m) => assert_eq!(m, "Not authorized for any sites"),
        other => panic!("unexpected {other:?}"),
    }
    fake.add_site(SiteSpec::new("HQ", 3));
    fake.revoke_all_tokens();
    assert!(s.sites().await.unwrap_err().is_authorization());
}

#[tokio::test]
async fn pages_lazily_through_every_matching_asset_of_each_installation() {
    let fake = LansweeperFake::start().await.unwrap();
    let mut spec = SiteSpec::new("HQ", 1_050);
    spec.installations = vec!["A".into(), "B".into()];
    let site = fake.add_site(spec);
    let api = LansweeperApi::new(ApiSettings {
        page_size: 100,
        ..settings(&fake)
    })
    .unwrap();
    let mut s = session(&fake, &api);
    let sites = s.sites().await.unwrap();
    assert_eq!(
        (sites[0].id.as_str(), sites[0].name.as_str()),
        (site.as_str(), "HQ")
    );
    let installations = s.installations(&site).await.unwrap();
    assert_eq!(installations.len(), 2);

    let cut_off = fake.reference_time() - chrono::Duration::days(30);
    let mut seen = 0;
    for inst in &installations {
        let q = AssetQuery {
            installation_id: Some(inst.id.clone()),
            with_ip: Some(true),
            cut_off,
            ..query(&site)
        };
        let expected: Vec<String> = (0..1_050)
            .map(|i| fake.asset(&site, i).unwrap())
            .filter(|a| {
                let b = &a["assetBasicInfo"];
                a["installationId"] == inst.id.as_str()
                    && b.get("ipAddress").is_some()
                    && b["lastSeen"].as_str().is_none_or(|l| {
                        l > cut_off
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                            .as_str()
                    })
            })
            .map(|a| a["key"].as_str().unwrap().to_owned())
            .collect();
        let before = fake.stats().asset_pages;
        let mut pages = s.assets(q).unwrap();
        let first = pages.next_page().await.unwrap().unwrap();
        // Lazy: one page requested so far.
        assert_eq!(fake.stats().asset_pages, before + 1);
        assert_eq!(first.len(), 100);
        assert_eq!(pages.total(), Some(expected.len() as u64));
        let mut keys: Vec<String> = first.into_iter().map(|a| a.key.unwrap()).collect();
        while let Some(page) = pages.next_page().await.unwrap() {
            assert!(page.len() <= 100);
            keys.extend(page.into_iter().map(|a| a.key.unwrap()));
        }
        assert!(pages.next_page().await.unwrap().is_none());
        assert_eq!(keys, expected);
        seen += keys.len();
    }
    assert!(seen > 500 && seen < 1_050, "{seen}");
}

#[tokio::test]
async fn selected_asset_types_travel_as_variables_and_match_case_insensitively() {
    let fake = LansweeperFake::start().await.unwrap();
    let site = fake.add_site(SiteSpec::new("HQ", 400));
    let api = LansweeperApi::new(ApiSettings {
        max_filter_field_length: 16,
        ..settings(&fake)
    })
    .unwrap();
    let mut s = session(&fake, &api);
    let types = vec![
        "ipad".to_owned(),
        "vmware guest".to_owned(),
        "Bad\"} ]} type".to_owned(),
    ];
    let q = AssetQuery {
        asset_types: Some(types),
        cut_off: fake.reference_time() - chrono::Duration::days(10_000),
        with_ip: Some(true),
        ..query(&site)
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut pages = s.assets(q).unwrap();
    while let Some(page) = pages.next_page().await.unwrap() {
        for a in page {
            let t = a.asset_basic_info.unwrap().asset_type.unwrap();
            *counts.entry(t).or_default() += 1;
        }
    }
    let expected = (0..400)
        .filter(|i| {
            let t = fake.asset(&site, *i).unwrap()["assetBasicInfo"]["type"].clone();
            t == "iPad" || t == "VMware Guest"
        })
        .count();
    assert!(expected > 0);
    assert_eq!(counts.values().sum::<usize>(), expected);
    assert!(
        counts.keys().all(|t| t == "iPad" || t == "VMware Guest"),
        "{counts:?}"
    );
}

#[tokio::test]
async fn honours_retry_after_on_429_and_gives_up_beyond_the_allowed_wait() {
    let fake = LansweeperFake::start().await.unwrap();
    fake.add_site(SiteSpec::new("HQ", 3));
    let api = LansweeperApi::new(settings(&fake)).unwrap();
    let mut s = session(&fake, &api);
    s.authenticate().await.unwrap();
    fake.inject_fault(LansweeperFault {
        target: LansweeperEndpoint::GraphQl,
        kind: LansweeperFaultKind::TooManyRequests {
            retry_after_secs: 1,
        },
        times: 1,
    });
    let start = std::time::Instant::now();
    assert_eq!(s.sites().await.unwrap().len(), 1);
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(api.counts().rate_limited, 1);

    fake.inject_fault(LansweeperFault {
        target: LansweeperEndpoint::GraphQl,
        kind: LansweeperFaultKind::TooManyRequests {
            retry_after_secs: 60,
        },
        times: 1,
    });
    let err = s.sites().await.unwrap_err();
    assert!(
        matches!(err, LansweeperError::RateLimited { retry_after } if retry_after == Duration::from_secs(60))
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn retries_5xx_with_backoff_then_fails_transiently() {
    let fake = LansweeperFake::start().await.unwrap();
    fake.add_site(SiteSpec::new("HQ", 3));
    let api = LansweeperApi::new(settings(&fake)).unwrap();
    let mut s = session(&fake, &api);
    fake.inject_fault(LansweeperFault {
        target: LansweeperEndpoint::Any,
        kind: LansweeperFaultKind::ServerError { status: 502 },
        times: 2,
    });
    assert_eq!(s.sites().await.unwrap().len(), 1);
    assert_eq!(api.counts().retried, 2);

    fake.inject_fault(LansweeperFault {
        target: LansweeperEndpoint::GraphQl,
        kind: LansweeperFaultKind::ServerError { status: 503 },
        times: 3,
    });
    let err = s.sites().await.unwrap_err();
    assert!(
        matches!(err, LansweeperError::Status { status: 503 }),
        "{err}"
    );
    assert!(err.is_transient() && !err.is_authorization());
}

#[tokio::test]
async fn a_graphql_401_gets_one_new_access_token_and_a_second_401_is_an_authorization_error() {
    let fake = LansweeperFake::start().await.unwrap();
    fake.add_site(SiteSpec::new("HQ", 3));
    let api = LansweeperApi::new(settings(&fake)).unwrap();
    let mut s = session(&fake, &api);
    s.authenticate().await.unwrap();
    fake.inject_fault(LansweeperFault {
        target: LansweeperEndpoint::GraphQl,
        kind: LansweeperFaultKind::Unauthorized,
        times: 1,
    });
    assert_eq!(s.sites().await.unwrap().len(), 1);
    assert_eq!(fake.stats().refresh_grants, 2);

    fake.inject_fault(LansweeperFault {
        target: LansweeperEndpoint::GraphQl,
        kind: LansweeperFaultKind::Unauthorized,
        times: 2,
    });
    assert!(s.sites().await.unwrap_err().is_authorization());
}

#[tokio::test]
async fn graphql_errors_name_the_operation() {
    let fake = LansweeperFake::start().await.unwrap();
    let api = LansweeperApi::new(settings(&fake)).unwrap();
    let mut s = session(&fake, &api);
    let err = s.installations("no-such-site").await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Unable to query all installations: "),
        "{err}"
    );
    assert!(!err.is_transient() && !err.is_authorization());
}

#[tokio::test]
async fn requests_are_spaced_by_the_configured_rate() {
    let fake = LansweeperFake::start().await.unwrap();
    fake.add_site(SiteSpec::new("HQ", 3));
    let api = LansweeperApi::new(ApiSettings {
        min_request_interval: Duration::from_millis(100),
        ..settings(&fake)
    })
    .unwrap();
    let mut s = session(&fake, &api);
    let start = std::time::Instant::now();
    for _ in 0..3 {
        s.sites().await.unwrap();
    }
    // 1 token + 3 GraphQL requests: at least three intervals between them.
    assert_eq!(api.counts().token + api.counts().graphql, 4);
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn the_hourly_budget_of_an_application_refuses_a_request_it_cannot_wait_for() {
    let fake = LansweeperFake::start().await.unwrap();
    fake.add_site(SiteSpec::new("HQ", 3));
    let api = LansweeperApi::new(ApiSettings {
        requests_per_hour: 3,
        ..settings(&fake)
    })
    .unwrap();
    let mut s = session(&fake, &api);
    // 1 token + 2 GraphQL requests use the hour's budget; the next one would wait an hour.
    s.sites().await.unwrap();
    s.sites().await.unwrap();
    let served = fake.stats();
    match s.sites().await {
        Err(LansweeperError::RateLimited { retry_after }) => {
            assert!(retry_after > Duration::from_secs(3500), "{retry_after:?}");
        }
        other => panic!("expected the hourly budget to refuse, got {other:?}"),
    }
    assert!(s.sites().await.unwrap_err().is_transient());
    assert_eq!(fake.stats(), served, "nothing was sent over the budget");
    // The budget is the application's: another customer's application, served by the same
    // client (a warm Lambda environment), still has its own.
    let mut other = session(&fake, &api);
    other.sites().await.unwrap();
    assert_eq!(fake.stats().graphql_requests, served.graphql_requests + 1);
}

#[test]
fn settings_come_from_the_original_env_names_and_bad_values_are_named() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        Settings::from_lookup(move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    };
    let s = ApiSettings::from_settings(&env(&[])).unwrap();
    assert_eq!(s, ApiSettings::default());
    assert_eq!(s.min_request_interval, Duration::from_millis(400));
    let s = ApiSettings::from_settings(&env(&[
        ("LANSWEEPER_API_URL", "http://127.0.0.1:9/api/"),
        ("LANSWEEPER_PAGE_SIZE", "250"),
        ("LANSWEEPER_MAX_FILTER_FIELD_LENGTH", "50"),
        ("LANSWEEPER_REQUESTS_PER_MINUTE", "60"),
        ("LANSWEEPER_REQUESTS_PER_HOUR", "1000"),
    ]))
    .unwrap();
    assert_eq!(
        (
            s.api_url.as_str(),
            s.page_size,
            s.max_filter_field_length,
            s.min_request_interval
        ),
        ("http://127.0.0.1:9/api", 250, 50, Duration::from_secs(1))
    );
    assert_eq!(s.requests_per_hour, 1000);
    for (name, value) in [
        ("LANSWEEPER_API_URL", "ftp://x"),
        ("LANSWEEPER_PAGE_SIZE", "0"),
        ("LANSWEEPER_PAGE_SIZE", "many"),
        ("LANSWEEPER_MAX_FILTER_FIELD_LENGTH", "0"),
        ("LANSWEEPER_REQUESTS_PER_MINUTE", "0"),
    ] {
        let pairs: &'static [(&'static str, &'static str)] =
            Box::leak(vec![(name, value)].into_boxed_slice());
        match ApiSettings::from_settings(&env(pairs)) {
            Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}={value}: {other:?}"),
        }
    }
}
