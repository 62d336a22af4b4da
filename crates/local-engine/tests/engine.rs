//! The local engine end to end: the real functions deployed from the repository's SAM
//! templates into one local server, against the 4me sandbox and its fakes. The sandbox's
//! deliveries reach the secrets function over HTTP, its writes become installation events for
//! the Typeform function (which registers its webhook at the Typeform fake), signed survey
//! responses become notes, automation rules reach the note-dispatcher, and the scheduler and
//! the in-process queue drive the Lansweeper function.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use app_builder_core::secrets::{
    SecretDocument, SecretStore, customer_secret_name, provider_secret_name,
};
use app_builder_local::{Activity, EngineOptions, LocalEngine, StackOutputs, Template};
use app_builder_sandbox::fakes::{CaptureServer, FunTranslations};
use app_builder_sandbox::typeform::TypeformFake;
use app_builder_sandbox::{InstallOptions, Sandbox};
use serde_json::json;

const PROVIDER: &str = "wdc";
const APP: &str = "4me-app-builder";
const WAIT: Duration = Duration::from_secs(15);

fn template(path: &str) -> Template {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Template::parse(&std::fs::read_to_string(root.join(path)).unwrap()).unwrap()
}

struct World {
    sandbox: Sandbox,
    engine: LocalEngine,
    translations: FunTranslations,
    typeform: TypeformFake,
    target: CaptureServer,
    _dir: tempfile::TempDir,
}

impl World {
    /// The sandbox with the provider's OAuth application and policy, the fakes, the engine with
    /// the engine stack deployed, the provider secret stored and the secrets webhook verified.
    async fn start() -> World {
        let sandbox = Sandbox::start().await.unwrap();
        let translations = FunTranslations::start().await.unwrap();
        let typeform = TypeformFake::start().await.unwrap();
        let target = CaptureServer::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let options = EngineOptions::new(dir.path())
            .with_env("FOURME_OAUTH_URL", sandbox.oauth_url())
            .with_env("FOURME_GRAPHQL_URL", sandbox.graphql_url())
            .with_env("FOURME_REST_URL", sandbox.rest_url())
            .with_env("FUNTRANSLATIONS_API_URL", translations.url())
            .with_env("TYPEFORM_API_URL", typeform.url())
            .with_env("NOTE_DISPATCHER_ALLOW_PRIVATE_URLS", "true")
            .with_env("INSTANCE_RETRY_TIMEOUT", "50");
        let engine = LocalEngine::start(options).await.unwrap();

        let credentials = sandbox.add_oauth_application(PROVIDER);
        let audience = format!("integrations provided by {PROVIDER}@{}", sandbox.domain());
        let policy = sandbox
            .create_webhook_policy(PROVIDER, "es512", Some(&audience))
            .unwrap();
        engine
            .store()
            .upsert(
                &provider_secret_name(APP, sandbox.domain(), PROVIDER).unwrap(),
                SecretDocument::try_from(json!({
                    "clientID": credentials.client_id,
                    "token": credentials.client_secret,
                    "policy": {"jwtAlg": policy.jwt_alg, "jwtAudience": audience,
                               "publicKeyPem": policy.public_key_pem},
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let engine_outputs = engine
            .deploy(
                "app-builder-engine",
                "",
                &template("template.yaml"),
                &overrides(&sandbox, &[]),
            )
            .unwrap();
        let secrets_api = &engine_outputs["SecretsApi"];
        assert_eq!(secrets_api, &format!("{}/secrets/", engine.url()));
        let webhook = sandbox
            .create_webhook(
                PROVIDER,
                "app_instance.secrets-update",
                secrets_api,
                Some(&policy.id),
                false,
            )
            .unwrap();
        let verify = sandbox.wait_for_deliveries(1, WAIT).await;
        assert_eq!(verify[0].status, Some(200), "webhook.verify answered");
        assert_eq!(sandbox.record(&webhook).unwrap()["active"], true);

        World {
            sandbox,
            engine,
            translations,
            typeform,
            target,
            _dir: dir,
        }
    }

    fn deploy(&self, stack: &str, prefix: &str, path: &str, offering: &str) -> StackOutputs {
        self.engine
            .deploy(
                stack,
                prefix,
                &template(path),
                &overrides(
                    &self.sandbox,
                    &[("OfferingReferenceParameter", offering.to_owned())],
                ),
            )
            .unwrap()
    }

    /// The function's configuration item as `deploy` creates it (`systemID`, `api_url`).
    fn function_ci(&self, outputs: &StackOutputs) {
        self.sandbox.seed_configuration_item(
            PROVIDER,
            json!({
                "name": "integration function",
                "label": "lambda-local",
                "systemID": outputs["IntegrationFunction"],
                "customFields": [{"id": "api_url", "value": outputs["IntegrationApi"]}],
            }),
        );
    }

    async fn secret(&self, offering: &str, customer: &str) -> Option<SecretDocument> {
        let name = customer_secret_name(APP, offering, self.sandbox.domain(), customer).unwrap();
        self.engine.store().get(&name).await.unwrap()
    }
}

fn overrides(sandbox: &Sandbox, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut all = vec![
        ("4MeDomainParameter".to_owned(), sandbox.domain().to_owned()),
        (
            "BootstrapSecretApplicationParameter".to_owned(),
            APP.to_owned(),
        ),
        (
            "BootstrapSecretAccountParameter".to_owned(),
            PROVIDER.to_owned(),
        ),
    ];
    all.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typeform_installation_event_registers_webhook_and_survey_becomes_note() {
    let world = World::start().await;
    let outputs = world.deploy(
        "app-builder-typeform",
        "typeform",
        "crates/typeform/template.yaml",
        "typeform",
    );
    assert_eq!(
        outputs["IntegrationApi"],
        format!("{}/typeform/integration/", world.engine.url())
    );
    world.function_ci(&outputs);
    world.sandbox.seed_app_offering(
        PROVIDER,
        "typeform",
        json!({"name": "Typeform", "policyJwtAlg": "es256"}),
    );
    world.typeform.add_form("u6nXL7", "tfp_acme");
    // Typeform is down for the first registration attempt: the function fails the event and
    // the engine delivers it again, as Lambda retries an asynchronous invocation.
    world.typeform.fail_next_requests(1);
    let request = world.sandbox.seed_request("acme", "Survey results");
    let mut custom_fields = serde_json::Map::new();
    custom_fields.insert(
        "form_url".into(),
        json!("https://acme.typeform.com/to/u6nXL7"),
    );
    custom_fields.insert(
        "request_id".into(),
        json!(request.request_id.parse::<u64>().unwrap()),
    );
    let mut secrets = serde_json::Map::new();
    secrets.insert("typeform_token".into(), json!("tfp_acme"));
    let installed = world
        .sandbox
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
        assert_eq!(
            delivery.status,
            Some(200),
            "the local secrets function stored it"
        );
    }

    // The stored secrets reach the Typeform function as events of the engine's bus,
    // asynchronously.
    let registered = world
        .engine
        .wait_for(WAIT, |a| {
            matches!(a, Activity::InstallationEvent { function, status: 200, message, .. }
                if function.ends_with("IntegrationFunction") && message == "OK")
        })
        .await;
    assert!(registered.is_some(), "{:#?}", world.engine.activity());
    let attempts: Vec<u16> = world
        .engine
        .activity()
        .iter()
        .filter_map(|a| match a {
            Activity::InstallationEvent { step, status, .. } if step == "secrets-updated" => {
                Some(*status)
            }
            _ => None,
        })
        .collect();
    // (The first event, with the application only, waits for the token: 400, not retried.)
    assert_eq!(attempts, [400, 502, 200]);
    assert_eq!(world.typeform.put_requests(), 2);
    let webhook = world
        .typeform
        .webhook(
            "u6nXL7",
            &typeform::api::webhook_tag(PROVIDER, "typeform", "acme"),
        )
        .unwrap();
    assert_eq!(
        webhook.url,
        format!("{}/typeform/integration/?account=acme", world.engine.url())
    );
    let stored = world.secret("typeform", "acme").await.unwrap();
    assert_eq!(stored.get_str("typeform_secret"), webhook.secret.as_deref());
    assert!(world.engine.activity().iter().any(|a| matches!(a,
        Activity::SecretWritten { event_name, .. } if event_name == "CreateSecret")));

    let delivery = world
        .typeform
        .send_response(
            "u6nXL7",
            json!({"form_id": "u6nXL7", "token": "r1", "submitted_at": "2026-11-23T10:00:00Z",
                   "definition": {"id": "u6nXL7", "title": "Customer survey", "fields": [
                       {"id": "f1", "title": "Happy?", "type": "yes_no", "ref": "happy"}]},
                   "answers": [{"type": "boolean", "boolean": true,
                                "field": {"id": "f1", "type": "yes_no", "ref": "happy"}}]}),
        )
        .await
        .unwrap();
    assert_eq!(delivery.status, 200, "{}", delivery.response);
    assert_eq!(
        world.sandbox.request_notes(&request.id),
        ["Received answer for \"Customer survey\":\n - \"Happy?\": Yes"]
    );

    // Signed with another secret: 400, no note.
    let response = reqwest::Client::new()
        .post(&webhook.url)
        .header(
            "Typeform-Signature",
            app_builder_sandbox::typeform::sign("wrong", b"{}"),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(world.sandbox.request_notes(&request.id).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automation_rule_reaches_note_dispatcher_which_translates_and_posts() {
    // The functions' log lines, kept per invocation.
    app_builder_local::logs::init();
    let world = World::start().await;
    let outputs = world.deploy(
        "app-builder-note-dispatcher",
        "note-dispatcher",
        "crates/note-dispatcher/template.yaml",
        "note-dispatcher",
    );
    world.sandbox.seed_app_offering(
        PROVIDER,
        "note-dispatcher",
        json!({"name": "Note dispatcher", "policyJwtAlg": "rs512",
               "webhookUriTemplate": format!("{}?account={{account}}", outputs["IntegrationApi"])}),
    );
    let installed = world
        .sandbox
        .install_app("note-dispatcher", "acme", InstallOptions::default())
        .await
        .unwrap();
    assert!(
        world
            .secret("note-dispatcher", "acme")
            .await
            .unwrap()
            .get("policy")
            .is_some()
    );
    let _ = installed.deliveries;

    let delivery = world
        .sandbox
        .trigger_app_webhook(
            &installed.app_instance_id,
            json!({"text": "Hello there", "url": format!("{}/notes", world.target.url())}),
        )
        .await
        .unwrap();
    assert_eq!(delivery.status, Some(200));
    let posted = world.target.wait_for(1, WAIT).await;
    let body = posted[0].json().unwrap();
    assert_eq!(body["input"]["payload"]["text"], "Hello there");
    assert_eq!(world.translations.calls().len(), 1);
    assert!(world.engine.activity().iter().any(|a| matches!(a,
        Activity::Http { function, status: 200, .. } if function == "app-builder-note-dispatcher-IntegrationFunction")));

    // Not signed by the customer's policy: rejected, nothing more posted.
    let response = reqwest::Client::new()
        .post(format!("{}?account=acme", outputs["IntegrationApi"]))
        .json(&json!({"jwt": "e30.e30.e30"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(world.target.requests().len(), 1);

    // Each invocation's output ends in its metrics, one CloudWatch EMF document.
    let function = "app-builder-note-dispatcher-IntegrationFunction";
    let emf = |entry: &app_builder_local::Entry| -> serde_json::Value {
        serde_json::from_str(entry.logs.last().unwrap()).unwrap()
    };
    let entries: Vec<_> = world
        .engine
        .entries_after(0)
        .into_iter()
        .filter(|e| e.function == function)
        .collect();
    let [accepted, rejected] = entries.as_slice() else {
        panic!("{entries:?}")
    };
    let document = emf(accepted);
    let directive = &document["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(
        directive["Namespace"],
        format!("{APP}/{}", world.sandbox.domain())
    );
    assert_eq!(directive["Dimensions"], json!([["function", "offering"]]));
    assert_eq!(
        (&document["function"], &document["offering"]),
        (&json!("note-dispatcher"), &json!("note-dispatcher"))
    );
    assert_eq!(document["DeliveriesAccepted"], 1.0);
    assert_eq!(document["Invocations"], 1.0);
    assert!(document["Duration"].as_f64().unwrap() > 0.0);
    assert_eq!(
        accepted.account.as_deref(),
        Some("acme"),
        "from the log lines"
    );
    assert!(
        accepted.logs.len() > 1,
        "the function's own lines come first"
    );
    let document = emf(rejected);
    assert_eq!(document["DeliveriesRejected"], 1.0);
    let app_builder_local::Verdict::Rejected { checks } = &rejected.verdict else {
        panic!("{:?}", rejected.verdict)
    };
    assert_eq!(checks.len(), 1);
    assert_eq!(document[format!("Rejection.{}", checks[0])], 1.0);

    // The accepted delivery sent again (as received: no local 4me signs it again here): one
    // effect, a duplicate.
    let replayed = world.engine.replay(accepted.id).await.unwrap();
    assert_eq!(replayed, "sent again as received, answered 200");
    let again = world.engine.entries_after(rejected.id);
    let again = again.iter().find(|e| e.function == function).unwrap();
    assert_eq!(again.replay_of, Some(accepted.id));
    assert_eq!(again.verdict, app_builder_local::Verdict::Duplicate);
    assert_eq!(emf(again)["DeliveriesDuplicate"], 1.0);
    assert_eq!(world.target.requests().len(), 1, "dispatched once");
    let totals = &world.engine.metrics()[function];
    assert_eq!(totals.get("Invocations"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_queues_due_accounts_and_the_queue_feeds_the_sync_handler() {
    let world = World::start().await;
    let outputs = world
        .engine
        .deploy(
            "app-builder-lansweeper",
            "lansweeper",
            &template("crates/lansweeper/template.yaml"),
            &overrides(&world.sandbox, &[]),
        )
        .unwrap();
    world
        .sandbox
        .seed_app_offering(PROVIDER, "lansweeper", json!({"name": "Lansweeper"}));
    world
        .sandbox
        .install_app("lansweeper", "acme", InstallOptions::default())
        .await
        .unwrap();
    // The installation event reached the function (which cannot authorize without Lansweeper
    // credentials, whatever it answers).
    let installation = world
        .engine
        .wait_for(WAIT, |a| {
            matches!(a, Activity::InstallationEvent { function, .. } if function == "app-builder-lansweeper-IntegrationFunction")
        })
        .await;
    assert!(installation.is_some(), "{:#?}", world.engine.activity());

    world.engine.run_schedule_once().await;
    let scheduled = world
        .engine
        .wait_for(WAIT, |a| matches!(a, Activity::Schedule { .. }))
        .await
        .unwrap();
    assert!(
        matches!(&scheduled, Activity::Schedule { status: 200, .. }),
        "{scheduled}"
    );
    let synced = world
        .engine
        .wait_for(
            WAIT,
            |a| matches!(a, Activity::Queue { body, attempt: 1, .. } if body == "acme"),
        )
        .await;
    assert!(synced.is_some(), "{:#?}", world.engine.activity());

    // The OAuth callback route with a wrong secret: the handler answers, nothing is stored.
    let response = reqwest::get(format!(
        "{}acme/not-the-secret?code=x",
        outputs["IntegrationApi"]
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused_and_bad_deploys_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LocalEngine::start(EngineOptions::new(dir.path()))
        .await
        .unwrap();
    let first = engine
        .deploy("app-builder-engine", "", &template("template.yaml"), &[])
        .unwrap();
    // Deploying the same again changes nothing visible: same outputs, one set of routes.
    let second = engine
        .deploy("app-builder-engine", "", &template("template.yaml"), &[])
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(engine.routes().len(), 1, "{:?}", engine.routes());
    let client = reqwest::Client::new();
    let missing = client
        .post(format!("{}/nothing", engine.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let method = client
        .get(format!("{}/secrets", engine.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(method.status(), 405);
    // The secrets function itself: no jwt → 400, nothing stored.
    let bad = client
        .post(format!("{}/secrets/", engine.url()))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        std::fs::read_dir(dir.path())
            .map(Iterator::count)
            .unwrap_or(0),
        0
    );

    let unknown = engine.deploy(
        "app-builder-engine",
        "",
        &template("template.yaml"),
        &[("NoSuchParameter".into(), "x".into())],
    );
    assert!(unknown.unwrap_err().to_string().contains("NoSuchParameter"));
    let bad_setting = engine.deploy(
        "app-builder-engine",
        "",
        &template("template.yaml"),
        &[("4MeDomainParameter".into(), "not a/domain".into())],
    );
    assert!(
        bad_setting
            .unwrap_err()
            .to_string()
            .contains("PARAM_4ME_DOMAIN"),
        "a cold-start failure names the setting"
    );
}

/// The console answers its own pages' forms and refuses another site's page posting to it (a
/// browser names such a request `Sec-Fetch-Site: cross-site`): nothing is run or replayed.
#[tokio::test]
async fn the_console_refuses_requests_from_other_sites() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LocalEngine::start(EngineOptions::new(dir.path()))
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let console = format!("{}/_console", engine.url());
    for (path, cross) in [("actions/schedule", true), ("replay/1", true)] {
        let mut request = http.post(format!("{console}/{path}")).form(&[("x", "y")]);
        if cross {
            request = request.header("sec-fetch-site", "cross-site");
        }
        assert_eq!(request.send().await.unwrap().status(), 403, "{path}");
    }
    let injected = http
        .post(format!("{console}/inject"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"kind": "schedule", "function": "f"}))
        .send()
        .await
        .unwrap();
    assert_eq!(injected.status(), 403);

    // From the console itself: run, and sent back to the page with what happened.
    let fired = http
        .post(format!("{console}/actions/schedule"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(fired.status(), 303);
    assert_eq!(
        fired.headers()["location"],
        "/_console?notice=The+schedule+fired"
    );
    let unknown = http
        .post(format!("{console}/replay/99"))
        .send()
        .await
        .unwrap();
    let location = unknown.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("Could+not+replay+%2399"), "{location}");
    let injected = http
        .post(format!("{console}/inject"))
        .json(&json!({"kind": "schedule", "function": "none-deployed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(injected.status(), 400);
    let page = http
        .get(&console)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h1>Local engine console</h1>"));
    assert!(engine.entries_after(0).is_empty(), "nothing ran");
}
