//! Installation and OAuth callback (docs/original.md#tests-of-the-original `secret_event_handler` and the authorize/callback
//! scenarios of `lansweeper_lambda_handler`) with the 4me sandbox, the Lansweeper fake and a
//! local secret store.
#![allow(clippy::unwrap_used)]

mod support;

use app_builder_core::secrets::{LocalSecretStore, SecretStore};
use app_builder_core::state::StateStore;
use serde_json::{Value, json};
use support::{API_URL, Env, PROVIDER};

async fn env() -> (Env<LocalSecretStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (
        Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await,
        dir,
    )
}

fn callback_secret(env: &Env<LocalSecretStore>, url: &Value, account: &str) -> String {
    let url = url.as_str().unwrap();
    let rest = url.strip_prefix(API_URL).unwrap();
    let (acct, secret) = rest.split_once('/').unwrap();
    assert_eq!(acct, account);
    let _ = env;
    secret.to_owned()
}

#[tokio::test]
async fn pending_callback_url_sets_the_callback_url_and_suspends_awaiting_authorization() {
    let (env, _dir) = env().await;
    let customer = env.install("wna-it").await;
    let (status, message) = env.installation("wna-it").await;
    assert_eq!((status, message.as_str()), (200, "OK"));

    let secret = env.secret("wna-it").await;
    let stored = secret.get_str("callback_secret").unwrap().to_owned();
    assert_eq!(stored.len(), 32);
    assert!(stored.chars().all(|c| c.is_ascii_hexdigit()));
    let instance = env.instance(&customer.instance_id);
    assert_eq!(instance["suspended"], true);
    assert_eq!(
        instance["suspensionComment"],
        "Awaiting authorization from Lansweeper"
    );
    let url = env.custom_field(&customer.instance_id, "callback_url");
    assert_eq!(callback_secret(&env, &url, "wna-it"), stored);
    assert_eq!(
        env.custom_field(&customer.instance_id, "connection_status"),
        "pending_authorization"
    );

    // The second invocation (triggered by the secret write) keeps the same callback secret.
    let (status, _) = env.installation("wna-it").await;
    assert_eq!(status, 200);
    assert_eq!(
        env.secret("wna-it").await.get_str("callback_secret"),
        Some(stored.as_str())
    );
    // No refresh token yet: nothing to validate at Lansweeper.
    assert_eq!(env.lansweeper.stats().token_requests, 0);
}

#[tokio::test]
async fn concurrent_installation_events_agree_on_one_callback_secret() {
    let (env, _dir) = env().await;
    let customer = env.install("wdc-c").await;
    let (a, b) = tokio::join!(env.installation("wdc-c"), env.installation("wdc-c"));
    assert_eq!((a.0, b.0), (200, 200));
    let stored = env
        .secret("wdc-c")
        .await
        .get_str("callback_secret")
        .unwrap()
        .to_owned();
    let url = env.custom_field(&customer.instance_id, "callback_url");
    assert_eq!(callback_secret(&env, &url, "wdc-c"), stored);
}

#[tokio::test]
async fn events_of_other_offerings_are_ignored() {
    let (env, _dir) = env().await;
    let event = support::installation_event(
        env.sandbox.domain(),
        "xurrent_apps_xds",
        "test-account",
        app_builder_core::bus::LifecycleStep::SecretsUpdated,
    );
    let (status, message) = env.installation_event(&event).await;
    assert_eq!(status, 200);
    assert_eq!(
        message,
        "Not an installation of lansweeper: xurrent_apps_xds"
    );
}

#[tokio::test]
async fn no_app_instance_answers_500_and_changes_nothing() {
    let (env, _dir) = env().await;
    // A customer secret without an installed instance.
    env.store
        .upsert(
            &env.secret_name("ghost"),
            support::doc(json!({"secrets": {"client_secret": "x"}})),
        )
        .await
        .unwrap();
    let (status, message) = env.installation("ghost").await;
    assert_eq!(
        (status, message.as_str()),
        (500, "Unable to update Lansweeper callback URL")
    );
}

/// Installs, runs the installation handler and returns (customer, callback secret).
async fn installed_awaiting(
    env: &Env<LocalSecretStore>,
    account: &str,
) -> (support::Customer, String) {
    let customer = env.install(account).await;
    assert_eq!(env.installation(account).await.0, 200);
    let secret = env
        .secret(account)
        .await
        .get_str("callback_secret")
        .unwrap()
        .to_owned();
    (customer, secret)
}

#[tokio::test]
async fn handles_authorize_event_and_retrieves_lansweeper_refresh_token() {
    let (env, _dir) = env().await;
    let (customer, secret) = installed_awaiting(&env, "test-account").await;
    let callback = format!("{API_URL}test-account/{secret}");
    let code = env
        .lansweeper
        .authorize(&customer.lansweeper_app.client_id, &callback);

    let resp = env
        .get(&format!("test-account/{secret}"), &[("code", &code)])
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        format!(
            "https://test-account.4me-sandbox.test/app_instances/{}",
            customer.instance_id
        )
        .as_str()
    );
    let refresh = env
        .secret("test-account")
        .await
        .get_str("refresh_token")
        .unwrap()
        .to_owned();
    assert!(env.lansweeper.is_refresh_token_valid(&refresh));
    let instance = env.instance(&customer.instance_id);
    assert_eq!(instance["suspended"], false);
    assert_eq!(
        env.custom_field(&customer.instance_id, "connection_status"),
        "success"
    );
    assert_eq!(
        env.custom_field(&customer.instance_id, "callback_url"),
        Value::Null
    );
    assert_eq!(env.queue.messages(), ["test-account"]);

    // The customer secret holds secrets only; the validated-credentials fingerprint is a
    // record of the state table.
    let stored = env.secret("test-account").await;
    let mut keys: Vec<&str> = stored.keys().collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "application",
            "callback_secret",
            "policy",
            "refresh_token",
            "secrets"
        ]
    );
    let validated_key = "lansweeper/lansweeper/test-account/validated-credentials";
    assert!(env.state.get(validated_key).await.unwrap().is_some());

    // An installation event that changes nothing of the credentials (another secret stored)
    // validates nothing.
    env.lansweeper
        .add_site(app_builder_sandbox::lansweeper::SiteSpec::new("HQ", 5));
    let requests = env.lansweeper.stats().token_requests;
    assert_eq!(env.installation("test-account").await, (200, "OK".into()));
    assert_eq!(env.lansweeper.stats().token_requests, requests);
    assert_eq!(env.instance(&customer.instance_id)["suspended"], false);
    assert_eq!(
        env.secret("test-account").await.get_str("refresh_token"),
        Some(refresh.as_str())
    );

    // Without the fingerprint the credentials are validated once, the rotated token and the
    // fingerprint stored; the next event validates nothing.
    let record = env.state.get(validated_key).await.unwrap().unwrap();
    assert!(
        env.state
            .delete(validated_key, record.version)
            .await
            .unwrap()
    );
    assert_eq!(env.installation("test-account").await.0, 200);
    let stored = env.secret("test-account").await;
    let rotated = stored.get_str("refresh_token").unwrap().to_owned();
    assert_ne!(rotated, refresh);
    assert!(env.lansweeper.is_refresh_token_valid(&rotated));
    assert_eq!(
        env.state.get(validated_key).await.unwrap().unwrap().data,
        record.data
    );
    assert!(stored.get_str("validated_credentials").is_none());
    let requests = env.lansweeper.stats().token_requests;
    assert_eq!(env.installation("test-account").await.0, 200);
    assert_eq!(env.lansweeper.stats().token_requests, requests);
    assert_eq!(env.instance(&customer.instance_id)["suspended"], false);
}

#[tokio::test]
async fn handles_validates_the_callback_secret() {
    let (env, _dir) = env().await;
    let (customer, secret) = installed_awaiting(&env, "test-account").await;
    let code = env
        .lansweeper
        .authorize(&customer.lansweeper_app.client_id, "x");
    let mut wrong = secret.clone();
    wrong.replace_range(0..1, if secret.starts_with('0') { "1" } else { "0" });
    for proxy in [
        format!("test-account/{wrong}"),
        "test-account".into(),
        format!("other/{secret}"),
    ] {
        let (status, message) = support::response_parts(env.get(&proxy, &[("code", &code)]).await);
        assert_eq!((status, message.as_str()), (400, "Unauthorized"), "{proxy}");
    }
    // Nothing changed.
    assert!(
        env.secret("test-account")
            .await
            .get_str("refresh_token")
            .is_none()
    );
    assert_eq!(env.instance(&customer.instance_id)["suspended"], true);
    assert!(env.queue.messages().is_empty());
    assert_eq!(env.lansweeper.stats().code_grants, 0);
}

#[tokio::test]
async fn a_refused_code_or_missing_code_is_unauthorized_and_other_methods_are_405() {
    let (env, _dir) = env().await;
    let (customer, secret) = installed_awaiting(&env, "test-account").await;
    let proxy = format!("test-account/{secret}");
    let (status, _) = support::response_parts(env.get(&proxy, &[("code", "forged")]).await);
    assert_eq!(status, 400);
    let (status, _) = support::response_parts(env.get(&proxy, &[]).await);
    assert_eq!(status, 400);
    let (status, _) = support::response_parts(env.request("POST", &proxy, &[("code", "x")]).await);
    assert_eq!(status, 405);
    assert_eq!(env.instance(&customer.instance_id)["suspended"], true);
}

#[tokio::test]
async fn a_failing_queue_answers_connection_error() {
    let (env, _dir) = env().await;
    let (customer, secret) = installed_awaiting(&env, "test-account").await;
    let code = env.lansweeper.authorize(
        &customer.lansweeper_app.client_id,
        &format!("{API_URL}test-account/{secret}"),
    );
    env.queue.set_failing(true);
    let (status, message) = support::response_parts(
        env.get(&format!("test-account/{secret}"), &[("code", &code)])
            .await,
    );
    assert_eq!(
        (status, message.as_str()),
        (500, "Connection error, please try again later.")
    );
}

/// Deliberate deviation: `?refresh=1` queues the sync (the original ran it inside API Gateway's
/// 29 s); the sync itself is covered by the `sync` tests.
#[tokio::test]
async fn handles_refresh_get_call() {
    let (env, _dir) = env().await;
    let (_customer, secret) = installed_awaiting(&env, "test-account").await;
    let (status, message) = support::response_parts(
        env.get(&format!("test-account/{secret}"), &[("refresh", "1")])
            .await,
    );
    assert_eq!(
        (status, message.as_str()),
        (200, "Triggered refresh of test-account")
    );
    assert_eq!(env.queue.messages(), ["test-account"]);
}

#[tokio::test]
async fn success_and_lansweeper_authorization_error_moves_back_to_pending_authorization() {
    let (env, _dir) = env().await;
    let (customer, secret) = installed_awaiting(&env, "test-account").await;
    let code = env.lansweeper.authorize(
        &customer.lansweeper_app.client_id,
        &format!("{API_URL}test-account/{secret}"),
    );
    assert_eq!(
        env.get(&format!("test-account/{secret}"), &[("code", &code)])
            .await
            .status(),
        302
    );
    env.lansweeper
        .add_site(app_builder_sandbox::lansweeper::SiteSpec::new("HQ", 5));
    // The customer enters another client secret in 4me (stored by the secrets function).
    env.store
        .update(&env.secret_name("test-account"), |current| {
            let mut next = current.cloned()?;
            next.insert("secrets", json!({"client_secret": "a-new-secret"}));
            Some(next)
        })
        .await
        .unwrap();
    assert_eq!(env.installation("test-account").await.0, 200);
    let instance = env.instance(&customer.instance_id);
    assert_eq!(instance["suspended"], true);
    assert_eq!(
        instance["suspensionComment"],
        "Awaiting authorization from Lansweeper"
    );
    assert_eq!(
        env.custom_field(&customer.instance_id, "connection_status"),
        "pending_authorization"
    );
}

/// A connected customer (authorized, `success`) whose next secret write is validated again (its
/// validated-credentials fingerprint is gone, as after a change of the Lansweeper credentials),
/// after `change` was applied to the customer secret. Returns the customer and the instance
/// record before the installation event.
async fn revalidating(
    env: &Env<LocalSecretStore>,
    account: &str,
    change: impl Fn(&mut app_builder_core::secrets::SecretDocument) + Send + Sync,
) -> (support::Customer, Value) {
    env.lansweeper
        .add_site(app_builder_sandbox::lansweeper::SiteSpec::new("HQ", 5));
    let customer = env.authorized(account).await;
    // Forget the last validation, so the next event validates.
    let key = format!("lansweeper/lansweeper/{account}/validated-credentials");
    let record = env.state.get(&key).await.unwrap().unwrap();
    env.state.delete(&key, record.version).await.unwrap();
    env.store
        .update(&env.secret_name(account), |current| {
            let mut next = current.cloned()?;
            change(&mut next);
            Some(next)
        })
        .await
        .unwrap();
    let before = env.instance(&customer.instance_id);
    assert_eq!(before["suspended"], false);
    (customer, before)
}

#[tokio::test]
async fn success_and_valid_credentials_changes_nothing() {
    let (env, _dir) = env().await;
    let (customer, before) = revalidating(&env, "test-account", |_| {}).await;
    assert_eq!(
        env.installation("test-account").await,
        (200, "OK".to_owned())
    );
    assert_eq!(env.instance(&customer.instance_id), before);
}

#[tokio::test]
async fn success_and_validation_throws_generic_error_changes_nothing() {
    let (env, _dir) = env().await;
    let (customer, before) = revalidating(&env, "test-account", |_| {}).await;
    // Lansweeper's API keeps failing: validation cannot tell, so the credentials are assumed OK.
    env.lansweeper
        .inject_fault(app_builder_sandbox::lansweeper::LansweeperFault {
            target: app_builder_sandbox::lansweeper::LansweeperEndpoint::GraphQl,
            kind: app_builder_sandbox::lansweeper::LansweeperFaultKind::ServerError { status: 500 },
            times: 10,
        });
    assert_eq!(
        env.installation("test-account").await,
        (200, "OK".to_owned())
    );
    assert_eq!(env.instance(&customer.instance_id), before);
}

#[tokio::test]
async fn success_and_js4me_authorization_error_suspends_with_rotate_token_comment() {
    let (env, _dir) = env().await;
    let (customer, _) = revalidating(&env, "test-account", |doc| {
        let mut app = doc.get("application").cloned().unwrap();
        app["client_secret"] = json!("revoked");
        doc.insert("application", app);
    })
    .await;
    assert_eq!(env.installation("test-account").await.0, 200);
    let instance = env.instance(&customer.instance_id);
    assert_eq!(instance["suspended"], true);
    assert_eq!(
        instance["suspensionComment"],
        "Unable to connect to customer account. Please rotate the token and unsuspend."
    );
    // No custom field changes: the callback URL stays cleared, the status `success`.
    assert_eq!(
        env.custom_field(&customer.instance_id, "connection_status"),
        "success"
    );
    assert_eq!(
        env.custom_field(&customer.instance_id, "callback_url"),
        Value::Null
    );
}

#[tokio::test]
async fn a_fingerprint_kept_in_the_customer_secret_by_an_earlier_version_is_honoured_then_dropped()
{
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path()), PROVIDER).await;
    env.authorized("legacy").await;
    // As an earlier version left it: the fingerprint in the secret, no state record.
    let key = "lansweeper/lansweeper/legacy/validated-credentials";
    let record = env.state.get(key).await.unwrap().unwrap();
    env.state.delete(key, record.version).await.unwrap();
    let fingerprint = record.data["sha256"].as_str().unwrap().to_owned();
    env.store
        .upsert(
            &env.secret_name("legacy"),
            support::doc(json!({ "validated_credentials": fingerprint })),
        )
        .await
        .unwrap();
    let requests = env.lansweeper.stats().token_requests;
    assert_eq!(env.installation("legacy").await, (200, "OK".into()));
    assert_eq!(
        env.lansweeper.stats().token_requests,
        requests,
        "the legacy fingerprint counts: nothing validated again"
    );
    // The next refresh-token write drops it.
    env.lansweeper.expire_access_tokens();
    env.lansweeper
        .add_site(app_builder_sandbox::lansweeper::SiteSpec::new("HQ", 2));
    let response = env
        .function
        .handle_sqs(&support::sqs_event("legacy"), support::deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    let stored = env.secret("legacy").await;
    assert!(
        stored.get_str("validated_credentials").is_none(),
        "{stored:?}"
    );
}
