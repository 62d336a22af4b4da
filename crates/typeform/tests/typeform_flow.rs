//! The Typeform function end to end against the 4me sandbox, the Typeform fake and a local
//! (file) secret store: installation events (docs/original.md#tests-of-the-original `secret_event_handler.test.js`) and
//! Typeform deliveries over HTTP through a local API Gateway (`typeform_handler.test.js`).

#![allow(clippy::unwrap_used)] // fixture helpers unwrap on test-generated data

mod common;

use app_builder_core::bus::LifecycleStep;
use app_builder_core::secrets::{LocalSecretStore, SecretStore};
use app_builder_core::state::StateStore;
use common::{Env, FORM_ID, OFFERING};
use serde_json::{Value, json};

struct Fixture {
    env: Env<LocalSecretStore>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(LocalSecretStore::new(dir.path())).await;
    Fixture { env, _dir: dir }
}

const TOKEN: &str = "tfp_customer_token_1";

fn form_url(id: &str) -> String {
    format!("https://mysite.typeform.com/to/{id}")
}

/// A form response with an opinion scale and a long text answer.
fn simple_response() -> Value {
    json!({
        "form_id": FORM_ID,
        "token": "a3a12ec67a1365927098a606107fac15",
        "landed_at": "2021-03-31T12:41:20Z",
        "submitted_at": "2021-03-31T12:41:35Z",
        "definition": {
            "id": FORM_ID,
            "title": "Customer satisfaction",
            "fields": [
                {"id": "Kd2Tn8Ur1mL3", "title": "How satisfied are you?", "type": "opinion_scale", "ref": "satisfaction", "properties": {}},
                {"id": "Pq7Rs9Tu2vW4", "title": "What can we improve?", "type": "long_text", "ref": "improve", "properties": {}}
            ]
        },
        "answers": [
            {"type": "number", "number": 8, "field": {"id": "Kd2Tn8Ur1mL3", "type": "opinion_scale", "ref": "satisfaction"}},
            {"type": "text", "text": "Faster answers please", "field": {"id": "Pq7Rs9Tu2vW4", "type": "long_text", "ref": "improve"}}
        ]
    })
}

const SIMPLE_NOTE: &str = "Received answer for \"Customer satisfaction\":\n - \"How satisfied are you?\": 8\n - \"What can we improve?\": Faster answers please";

fn is_lower_hex_128(s: &str) -> bool {
    s.len() == 128 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

// ---------------------------------------------------------------------------------------------
// Installation (secret_event_handler.test.js)

#[tokio::test]
async fn handles_initial_secrets_no_typeform_secret_yet() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = env
        .install("test-account", Some(&form_url(FORM_ID)), Some(TOKEN))
        .await;
    env.typeform.add_form(FORM_ID, TOKEN);
    env.set_suspended(&customer.instance_id, true).await;

    let (status, message) = env.installation("test-account").await;
    assert_eq!((status, message.as_str()), (200, "OK"));

    let webhook = env
        .typeform
        .webhook(FORM_ID, &common::tag("test-account"))
        .unwrap();
    assert_eq!(webhook.url, format!("{}?account=test-account", env.api_url));
    assert!(webhook.enabled && webhook.verify_ssl);
    let secret = webhook.secret.clone().unwrap();
    assert!(
        is_lower_hex_128(&secret),
        "secret is 128 lowercase hex chars"
    );
    let stored = env.customer_secret("test-account").await;
    assert_eq!(stored.get_str("typeform_secret"), Some(secret.as_str()));
    // The customer's own keys survive the write.
    assert_eq!(
        stored.get("secrets"),
        Some(&json!({"typeform_token": TOKEN}))
    );
    assert!(stored.contains_key("application"));
    // The suspended instance was unsuspended.
    assert_eq!(
        env.instance(&customer.instance_id).await["suspended"],
        json!(false)
    );
}

#[tokio::test]
async fn the_registration_is_engine_state_and_the_customer_secret_holds_only_secrets() {
    let fx = fixture().await;
    let env = &fx.env;
    env.install("test-account", Some(&form_url(FORM_ID)), Some(TOKEN))
        .await;
    env.typeform.add_form(FORM_ID, TOKEN);
    // A registration and processed event ids an earlier version kept in the customer secret.
    env.store
        .upsert(
            &env.customer_secret_name("test-account"),
            common::doc(json!({
                "typeform_webhook": {"form_id": "OldForm", "url": "https://old.example/", "token_sha256": "00"},
                "typeform_events": ["E1"],
            })),
        )
        .await
        .unwrap();
    assert_eq!(env.installation("test-account").await.0, 200);
    let stored = env.customer_secret("test-account").await;
    let mut keys: Vec<&str> = stored.keys().collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["application", "policy", "secrets", "typeform_secret"]
    );
    let record = env
        .state
        .get(&format!("typeform/{OFFERING}/test-account/webhook"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.data["form_id"], FORM_ID);
    assert_eq!(
        record.data["url"],
        format!("{}?account=test-account", env.api_url)
    );
    assert_eq!(record.data["token_sha256"].as_str().unwrap().len(), 64);
    // The legacy registration was read: its form's webhook was deleted as the previous one.
    assert_eq!(env.typeform.delete_requests(), 1);

    // The same change delivered again (EventBridge at least once, or the publisher's retry
    // under a new event id) is handled once.
    let event = env.installation_event(LifecycleStep::SecretsUpdated, "test-account");
    let mut republished = event.clone();
    republished["id"] = json!("another-event-id");
    env.typeform.add_token("tfp_changed", TOKEN);
    env.typeform.revoke_token(TOKEN);
    env.store
        .upsert(
            &env.customer_secret_name("test-account"),
            common::doc(json!({"secrets": {"typeform_token": "tfp_changed"}})),
        )
        .await
        .unwrap();
    let first = env.invoke(event).await;
    assert_eq!(first, (200, "OK".to_owned()));
    let puts = env.typeform.put_requests();
    assert_eq!(env.invoke(republished).await, first);
    assert_eq!(env.typeform.put_requests(), puts, "not handled twice");
}

#[tokio::test]
async fn installations_of_two_accounts_on_one_form_keep_their_own_webhooks() {
    let fx = fixture().await;
    let env = &fx.env;
    installed(env, "account-a", FORM_ID, TOKEN).await;
    installed(env, "account-b", FORM_ID, TOKEN).await;
    for account in ["account-a", "account-b"] {
        let webhook = env
            .typeform
            .webhook(FORM_ID, &common::tag(account))
            .unwrap();
        assert_eq!(webhook.url, format!("{}?account={account}", env.api_url));
    }
    // One is disabled: its webhook goes, the other account's stays untouched.
    let disabled = env.installation_event(LifecycleStep::Disabled, "account-a");
    assert_eq!(env.invoke(disabled).await.0, 200);
    assert!(
        env.typeform
            .webhook(FORM_ID, &common::tag("account-a"))
            .is_none()
    );
    let other = env
        .typeform
        .webhook(FORM_ID, &common::tag("account-b"))
        .unwrap();
    assert_eq!(other.writes, 1);
}

#[tokio::test]
async fn an_uninstall_with_a_token_typeform_refuses_still_forgets_the_installation() {
    let fx = fixture().await;
    let env = &fx.env;
    installed(env, "test-account", FORM_ID, TOKEN).await;
    // The customer revoked the token at Typeform before uninstalling.
    env.typeform.revoke_token(TOKEN);
    let deleted = env.installation_event(LifecycleStep::Deleted, "test-account");
    assert_eq!(
        env.invoke(deleted).await,
        (200, typeform::WEBHOOK_REMOVED.to_owned())
    );
    assert_eq!(env.typeform.delete_requests(), 1, "the deletion was tried");
    // Nothing to retry: the installation is forgotten all the same.
    assert_eq!(
        env.store
            .get(&env.customer_secret_name("test-account"))
            .await
            .unwrap(),
        None
    );
    let record = format!("typeform/{OFFERING}/test-account/webhook");
    assert_eq!(env.state.get(&record).await.unwrap(), None);
}

#[tokio::test]
async fn a_webhook_under_the_originals_shared_tag_moves_to_the_installations_own_tag() {
    let fx = fixture().await;
    let env = &fx.env;
    env.install("test-account", Some(&form_url(FORM_ID)), Some(TOKEN))
        .await;
    env.typeform.add_form(FORM_ID, TOKEN);
    // As the original (and earlier versions) left it: the webhook under `4me-webhook`, the
    // registration without a tag in the customer secret.
    let api = typeform::TypeformApi::new(env.typeform.url().parse().unwrap()).unwrap();
    let registration = typeform::api::WebhookRegistration {
        url: "https://old.example/integration?account=test-account",
        enabled: true,
        secret: "old-secret",
        verify_ssl: true,
    };
    api.put_webhook(
        TOKEN,
        FORM_ID,
        typeform::api::LEGACY_WEBHOOK_TAG,
        &registration,
    )
    .await
    .unwrap();
    env.store
        .upsert(
            &env.customer_secret_name("test-account"),
            common::doc(json!({
                "typeform_secret": "old-secret",
                "typeform_webhook": {"form_id": FORM_ID, "url": registration.url, "token_sha256": "00"},
            })),
        )
        .await
        .unwrap();
    assert_eq!(env.installation("test-account").await.0, 200);
    assert!(
        env.typeform
            .webhook(FORM_ID, typeform::api::LEGACY_WEBHOOK_TAG)
            .is_none()
    );
    assert!(
        env.typeform
            .webhook(FORM_ID, &common::tag("test-account"))
            .is_some()
    );
}

#[tokio::test]
async fn handles_event_when_typeform_secret_is_present() {
    let fx = fixture().await;
    let env = &fx.env;
    env.install("test-account", Some(&form_url(FORM_ID)), Some(TOKEN))
        .await;
    env.typeform.add_form(FORM_ID, TOKEN);
    assert_eq!(env.installation("test-account").await.0, 200);
    let secret = env.customer_secret("test-account").await;
    assert_eq!(env.typeform.put_requests(), 1);

    // Our own write of typeform_secret triggers PutSecretValue: nothing changes.
    let (status, message) = env.installation("test-account").await;
    assert_eq!((status, message.as_str()), (200, "OK"));
    assert_eq!(env.typeform.put_requests(), 1, "no second Typeform call");
    assert_eq!(
        env.customer_secret("test-account")
            .await
            .get_str("typeform_secret"),
        secret.get_str("typeform_secret")
    );
}

#[tokio::test]
async fn re_registers_when_the_typeform_token_changed() {
    let fx = fixture().await;
    let env = &fx.env;
    env.install("test-account", Some(&form_url(FORM_ID)), Some(TOKEN))
        .await;
    env.typeform.add_form(FORM_ID, TOKEN);
    assert_eq!(env.installation("test-account").await.0, 200);
    let first = env
        .typeform
        .webhook(FORM_ID, &common::tag("test-account"))
        .unwrap();

    // The customer rotates the token (a secrets-update delivery rewrites `secrets`).
    env.typeform.add_token("tfp_rotated", TOKEN);
    env.typeform.revoke_token(TOKEN);
    env.store
        .upsert(
            &env.customer_secret_name("test-account"),
            common::doc(json!({"secrets": {"typeform_token": "tfp_rotated"}})),
        )
        .await
        .unwrap();
    let (status, _) = env.installation("test-account").await;
    assert_eq!(status, 200);
    let second = env
        .typeform
        .webhook(FORM_ID, &common::tag("test-account"))
        .unwrap();
    assert_eq!(second.writes, 2, "registered again with the new token");
    assert_ne!(second.secret, first.secret);
    assert_eq!(
        env.customer_secret("test-account")
            .await
            .get_str("typeform_secret"),
        second.secret.as_deref()
    );
}

#[tokio::test]
async fn re_registers_when_the_form_url_changed_and_deletes_the_old_webhook() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = env
        .install("test-account", Some(&form_url(FORM_ID)), Some(TOKEN))
        .await;
    env.typeform.add_form(FORM_ID, TOKEN);
    env.typeform.add_form("NewForm9", TOKEN);
    assert_eq!(env.installation("test-account").await.0, 200);

    // 4me announces the changed custom field as an update of an active instance.
    env.set_form_url(&customer.instance_id, &form_url("NewForm9"))
        .await;
    let updated = env.installation_event(LifecycleStep::Updated, "test-account");
    assert_eq!(env.invoke(updated).await, (200, "OK".to_owned()));
    let webhook = env
        .typeform
        .webhook("NewForm9", &common::tag("test-account"))
        .unwrap();
    assert_eq!(
        env.customer_secret("test-account")
            .await
            .get_str("typeform_secret"),
        webhook.secret.as_deref()
    );
    // The old form's webhook is deleted: it would keep delivering responses of a form this
    // installation no longer uses.
    assert!(
        env.typeform
            .webhook(FORM_ID, &common::tag("test-account"))
            .is_none()
    );
    assert_eq!(env.typeform.delete_requests(), 1);
    assert_eq!(env.typeform.webhooks().len(), 1);

    // An update of a disabled instance registers nothing: it waits for the instance.
    env.sandbox
        .set_app_instance_enabled(&customer.instance_id, false)
        .await
        .unwrap();
    env.typeform.add_form("Form3", TOKEN);
    env.set_form_url(&customer.instance_id, &form_url("Form3"))
        .await;
    let puts = env.typeform.put_requests();
    let updated = env.installation_event(LifecycleStep::Updated, "test-account");
    assert_eq!(env.invoke(updated).await.0, 200);
    assert_eq!(env.typeform.put_requests(), puts);
    assert!(
        env.typeform
            .webhook("Form3", &common::tag("test-account"))
            .is_none()
    );
}

async fn set_token(env: &Env<LocalSecretStore>, account: &str, token: &str) {
    env.store
        .upsert(
            &env.customer_secret_name(account),
            common::doc(json!({"secrets": {"typeform_token": token}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn recovers_when_the_customer_fixes_a_bad_token() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = env
        .install("test-account", Some(&form_url(FORM_ID)), Some("tfp_typo"))
        .await;
    env.typeform.add_form(FORM_ID, TOKEN);
    assert_eq!(env.installation("test-account").await.0, 400);
    assert_eq!(
        env.instance(&customer.instance_id).await["suspended"],
        json!(true)
    );

    set_token(env, "test-account", TOKEN).await;
    let (status, message) = env.installation("test-account").await;
    assert_eq!((status, message.as_str()), (200, "OK"));
    assert!(
        env.typeform
            .webhook(FORM_ID, &common::tag("test-account"))
            .is_some()
    );
    assert_eq!(
        env.instance(&customer.instance_id).await["suspended"],
        json!(false)
    );
}

#[tokio::test]
async fn renews_a_matching_registration_only_after_its_own_suspension() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = installed(env, "test-account", FORM_ID, TOKEN).await;

    // A bad token suspends the instance; going back to the registered token renews and lifts it.
    set_token(env, "test-account", "tfp_typo").await;
    assert_eq!(env.installation("test-account").await.0, 400);
    assert_eq!(
        env.instance(&customer.instance_id).await["suspended"],
        json!(true)
    );
    set_token(env, "test-account", TOKEN).await;
    assert_eq!(env.installation("test-account").await.0, 200);
    assert_eq!(
        env.typeform
            .webhook(FORM_ID, &common::tag("test-account"))
            .unwrap()
            .writes,
        2
    );
    assert_eq!(
        env.instance(&customer.instance_id).await["suspended"],
        json!(false)
    );

    // A suspension by the provider for its own reasons is left alone.
    env.set_suspended(&customer.instance_id, true).await;
    let puts = env.typeform.put_requests();
    assert_eq!(
        env.installation("test-account").await,
        (200, "OK".to_owned())
    );
    assert_eq!(env.typeform.put_requests(), puts);
    let instance = env.instance(&customer.instance_id).await;
    assert_eq!(instance["suspended"], json!(true));
    assert_eq!(instance["suspensionComment"], json!("manual"));
}

#[tokio::test]
async fn does_not_continue_if_no_app_instance_is_found() {
    let fx = fixture().await;
    let env = &fx.env;
    // A customer secret without an app instance in 4me.
    env.store
        .upsert(
            &env.customer_secret_name("ghost"),
            common::doc(
                json!({"application": {"client_id": "x", "client_secret": "y"},
                               "secrets": {"typeform_token": TOKEN}}),
            ),
        )
        .await
        .unwrap();
    let (status, message) = env.installation("ghost").await;
    assert_eq!(
        (status, message.as_str()),
        (500, "Unable to create Typeform webhook")
    );
    assert_eq!(env.typeform.put_requests(), 0, "no Typeform call");
}

#[tokio::test]
async fn does_not_store_secrets_if_typeform_call_fails() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = env
        .install(
            "test-account",
            Some(&form_url(FORM_ID)),
            Some("tfp_wrong_token"),
        )
        .await;
    env.typeform.add_form(FORM_ID, TOKEN);

    // Only the customer can fix the token: acknowledged (400), not retried.
    let (status, message) = env.installation("test-account").await;
    assert_eq!(
        (status, message.as_str()),
        (400, "Unable to create Typeform webhook")
    );
    assert_eq!(env.typeform.put_requests(), 1);
    assert!(
        env.typeform
            .webhook(FORM_ID, &common::tag("test-account"))
            .is_none()
    );
    assert!(
        !env.customer_secret("test-account")
            .await
            .contains_key("typeform_secret")
    );
    let instance = env.instance(&customer.instance_id).await;
    assert_eq!(instance["suspended"], json!(true));
    assert_eq!(
        instance["suspensionComment"],
        json!("Error creating Typeform webhook. Please check the Typeform token and Form ID.")
    );
}

#[tokio::test]
async fn suspends_when_form_id_or_token_is_missing() {
    let fx = fixture().await;
    let env = &fx.env;
    let no_form = env.install("no-form", None, Some(TOKEN)).await;
    let no_token = env
        .install("no-token", Some(&form_url(FORM_ID)), None)
        .await;

    for (account, instance, comment) in [
        ("no-form", &no_form.instance_id, "Please fill Form ID."),
        (
            "no-token",
            &no_token.instance_id,
            "Please fill Typeform token.",
        ),
    ] {
        let (status, message) = env.installation(account).await;
        assert_eq!(
            (status, message.as_str()),
            (400, "Unable to create Typeform webhook")
        );
        let record = env.instance(instance).await;
        assert_eq!(record["suspended"], json!(true), "{account}");
        assert_eq!(record["suspensionComment"], json!(comment), "{account}");
    }
    assert_eq!(env.typeform.put_requests(), 0);
}

#[tokio::test]
async fn ignores_secrets_of_other_accounts_and_offerings() {
    let fx = fixture().await;
    let env = &fx.env;
    let domain = env.sandbox.domain().to_owned();
    for (event_domain, offering) in [(domain.as_str(), "typeform2"), ("4me.com", OFFERING)] {
        let event = common::installation_event(
            event_domain,
            offering,
            "acme",
            LifecycleStep::SecretsUpdated,
        );
        let (status, message) = env.invoke(event).await;
        assert_eq!(status, 200);
        assert_eq!(
            message,
            format!("Not an installation of {OFFERING}: {offering}")
        );
    }
    let mut malformed = env.installation_event(LifecycleStep::SecretsUpdated, "acme");
    malformed["detail"] = json!({"account": "acme"});
    let (status, message) = env.invoke(malformed).await;
    assert_eq!(status, 400);
    assert!(
        message.starts_with("malformed installation event"),
        "{message}"
    );
    let (status, message) = env.installation("nobody").await;
    assert_eq!(
        (status, message.as_str()),
        (500, "Unable to gather customer context")
    );
}

// ---------------------------------------------------------------------------------------------
// Webhook (typeform_handler.test.js) — deliveries over HTTP from the Typeform fake

async fn installed(
    env: &Env<LocalSecretStore>,
    account: &str,
    form_id: &str,
    token: &str,
) -> common::Customer {
    let customer = env
        .install(account, Some(&form_url(form_id)), Some(token))
        .await;
    env.typeform.add_form(form_id, token);
    assert_eq!(env.installation(account).await.0, 200);
    customer
}

#[tokio::test]
async fn handles_receiving_form_filled_event() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = installed(env, "test-account", FORM_ID, TOKEN).await;

    let delivery = env
        .typeform
        .send_response(FORM_ID, simple_response())
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&delivery.response).unwrap();
    assert_eq!(delivery.status, 200, "{body}");
    assert_eq!(
        body["message"],
        json!(format!("Thanks for {}", delivery.event_id))
    );
    assert_eq!(
        env.sandbox.request_notes(&customer.request.id),
        vec![SIMPLE_NOTE.to_owned()]
    );
}

#[tokio::test]
async fn handles_a_base64_encoded_api_gateway_body() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = installed(env, "test-account", FORM_ID, TOKEN).await;
    let secret = env
        .typeform
        .webhook(FORM_ID, &common::tag("test-account"))
        .unwrap()
        .secret
        .unwrap();
    let body = serde_json::to_vec(&json!({
        "event_id": "01F0KGZX8T5N8THAFESVJRHBH2",
        "event_type": "form_response",
        "form_response": simple_response(),
    }))
    .unwrap();
    let signature = typeform::signature::sign(&secret, &body);
    let response = reqwest::Client::new()
        .post(&env.api_url)
        .query(&[("account", "test-account")])
        .header("Typeform-Signature", signature)
        .header("x-test-base64", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["message"],
        json!("Thanks for 01F0KGZX8T5N8THAFESVJRHBH2")
    );
    assert_eq!(env.sandbox.request_notes(&customer.request.id).len(), 1);
}

#[tokio::test]
async fn rejects_message_with_incorrect_hash() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = installed(env, "test-account", FORM_ID, TOKEN).await;
    let delivery = env
        .typeform
        .send_response(FORM_ID, simple_response())
        .await
        .unwrap();
    assert_eq!(delivery.status, 200);

    // Tampered body with the original signature.
    let mut tampered: Value = serde_json::from_slice(&delivery.body).unwrap();
    tampered["event_id"] = json!("forged-1");
    let tampered = serde_json::to_vec(&tampered).unwrap();
    assert_eq!(
        env.post_webhook("test-account", &tampered, delivery.signature.as_deref())
            .await,
        (400, "Bad signature".to_owned())
    );
    // Signed with another secret.
    let forged = typeform::signature::sign("not-the-secret", &tampered);
    assert_eq!(
        env.post_webhook("test-account", &tampered, Some(&forged))
            .await,
        (400, "Bad signature".to_owned())
    );
    // No signature at all, or no body.
    assert_eq!(
        env.post_webhook("test-account", &tampered, None).await,
        (400, "Bad signature".to_owned())
    );
    assert_eq!(
        env.post_webhook("test-account", b"", delivery.signature.as_deref())
            .await,
        (400, "Bad signature".to_owned())
    );
    // Only the genuine delivery produced a note, remembered in the state store (the customer
    // secret holds secrets only).
    assert_eq!(env.sandbox.request_notes(&customer.request.id).len(), 1);
    let key = format!(
        "typeform/{OFFERING}/test-account/events/{}",
        delivery.event_id
    );
    let record = env.state.get(&key).await.unwrap().unwrap();
    assert_eq!(record.data["status"], "completed");
    assert!(
        env.customer_secret("test-account")
            .await
            .get("typeform_events")
            .is_none()
    );
}

#[tokio::test]
async fn replayed_event_id_adds_one_note() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = installed(env, "test-account", FORM_ID, TOKEN).await;
    let first = env
        .typeform
        .send_response(FORM_ID, simple_response())
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    let retry = env.typeform.redeliver(&first).await.unwrap();
    assert_eq!(retry.status, 200, "a retry is acknowledged");
    assert_eq!(
        serde_json::from_str::<Value>(&retry.response).unwrap()["message"],
        json!(format!("Thanks for {}", first.event_id))
    );
    assert_eq!(
        env.sandbox.request_notes(&customer.request.id),
        vec![SIMPLE_NOTE.to_owned()],
        "one note only"
    );
    // A different submission is a new note.
    let second = env
        .typeform
        .send_response(FORM_ID, simple_response())
        .await
        .unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(env.sandbox.request_notes(&customer.request.id).len(), 2);
}

#[tokio::test]
async fn rejects_cross_customer_delivery() {
    let fx = fixture().await;
    let env = &fx.env;
    let acme = installed(env, "acme", FORM_ID, TOKEN).await;
    let globex = installed(env, "globex", "GlobexForm1", "tfp_globex").await;
    let delivery = env
        .typeform
        .send_response(FORM_ID, simple_response())
        .await
        .unwrap();
    assert_eq!(delivery.status, 200);

    // acme's genuine delivery replayed against globex's account.
    let mut replay = json!(serde_json::from_slice::<Value>(&delivery.body).unwrap());
    replay["event_id"] = json!("cross-1");
    let body = serde_json::to_vec(&replay).unwrap();
    let acme_secret = env
        .customer_secret("acme")
        .await
        .get_str("typeform_secret")
        .unwrap()
        .to_owned();
    let acme_signature = typeform::signature::sign(&acme_secret, &body);
    assert_eq!(
        env.post_webhook("globex", &body, Some(&acme_signature))
            .await,
        (400, "Bad signature".to_owned())
    );
    assert_eq!(env.sandbox.request_notes(&acme.request.id).len(), 1);
    assert!(env.sandbox.request_notes(&globex.request.id).is_empty());
}

#[tokio::test]
async fn rejects_malformed_requests() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = installed(env, "test-account", FORM_ID, TOKEN).await;
    let secret = env
        .customer_secret("test-account")
        .await
        .get_str("typeform_secret")
        .unwrap()
        .to_owned();

    let response = reqwest::Client::new()
        .get(&env.api_url)
        .query(&[("account", "test-account")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let response = reqwest::Client::new()
        .post(&env.api_url)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["message"],
        json!("Missing account parameter")
    );
    assert_eq!(
        env.post_webhook("unknown-account", b"{}", Some("sha256=AAAA"))
            .await,
        (410, "Unable to gather customer context".to_owned())
    );
    let partial =
        serde_json::to_vec(&json!({"event_id": "p1", "event_type": "form_response_partial"}))
            .unwrap();
    assert_eq!(
        env.post_webhook(
            "test-account",
            &partial,
            Some(&typeform::signature::sign(&secret, &partial))
        )
        .await,
        (
            400,
            "Unsupported event_type: form_response_partial".to_owned()
        )
    );
    let not_json = b"not json";
    assert_eq!(
        env.post_webhook(
            "test-account",
            not_json,
            Some(&typeform::signature::sign(&secret, not_json))
        )
        .await,
        (400, "Invalid JSON body".to_owned())
    );
    assert!(env.sandbox.request_notes(&customer.request.id).is_empty());
}

#[tokio::test]
async fn answers_503_when_no_webhook_secret_is_stored() {
    let fx = fixture().await;
    let env = &fx.env;
    env.install("test-account", Some(&form_url(FORM_ID)), Some(TOKEN))
        .await;
    let body = b"{\"event_id\":\"x\",\"event_type\":\"form_response\"}";
    assert_eq!(
        env.post_webhook(
            "test-account",
            body,
            Some(&typeform::signature::sign("guess", body))
        )
        .await,
        (503, "Unable to verify message".to_owned())
    );
}

/// POSTs `body` with `signature` to the function's API URL as Typeform does: again a little
/// later after a 503 (a copy of an event that is being processed) → the final status.
async fn post(api_url: String, account: &'static str, body: Vec<u8>, signature: String) -> u16 {
    for _ in 0..100 {
        let status = reqwest::Client::new()
            .post(&api_url)
            .query(&[("account", account)])
            .header("Typeform-Signature", &signature)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status != 503 {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("still 503 after 100 attempts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_duplicate_deliveries_add_one_note() {
    let fx = fixture().await;
    let env = &fx.env;
    let customer = installed(env, "test-account", FORM_ID, TOKEN).await;
    let secret = env
        .customer_secret("test-account")
        .await
        .get_str("typeform_secret")
        .unwrap()
        .to_owned();
    let event = |id: &str| {
        serde_json::to_vec(&json!({
            "event_id": id,
            "event_type": "form_response",
            "form_response": simple_response(),
        }))
        .unwrap()
    };

    // Five copies of one event at once, plus five different events at once.
    let mut tasks = tokio::task::JoinSet::new();
    let duplicate = event("DUP");
    for _ in 0..5 {
        let signature = typeform::signature::sign(&secret, &duplicate);
        tasks.spawn(post(
            env.api_url.clone(),
            "test-account",
            duplicate.clone(),
            signature,
        ));
    }
    for n in 0..5 {
        let body = event(&format!("E{n}"));
        let signature = typeform::signature::sign(&secret, &body);
        tasks.spawn(post(env.api_url.clone(), "test-account", body, signature));
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(
        env.sandbox.request_notes(&customer.request.id).len(),
        6,
        "one note for the duplicated event, one per distinct event"
    );
    for id in ["DUP", "E0", "E1", "E2", "E3", "E4"] {
        let key = format!("typeform/{OFFERING}/test-account/events/{id}");
        let record = env.state.get(&key).await.unwrap().unwrap();
        assert_eq!(record.data["status"], "completed", "{id}");
    }
}
