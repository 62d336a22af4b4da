//! `cargo xtask bootstrap` and `cargo xtask deploy <integration>` end to end: the real `xtask`
//! binary against the sandbox 4me (started here), Secrets Manager on moto (`AWS_ENDPOINT_URL`
//! must point at a moto server; these tests fail rather than skip without it) and a recording
//! `sam` stand-in first on PATH (`sam deploy` cannot target moto). `PROVISION_E2E_SHOW=1` prints
//! each command's output.
#![allow(clippy::unwrap_used)] // helpers of a test binary: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use app_builder_core::fourme::{ClientSettings, Credentials, Endpoints, FourMeClient};
use app_builder_core::secrets::{AwsSecretStore, SecretDocument, SecretName, SecretStore};
use app_builder_sandbox::fakes::CaptureServer;
use app_builder_sandbox::{OAuthCredentials, Sandbox};
use serde_json::{Value, json};

const APP: &str = "4me-app-builder";
const SERVICE_INSTANCE: &str = "Mainframe 1";

fn require_moto() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        !endpoint.is_empty(),
        "AWS_ENDPOINT_URL is not set: start moto (`moto_server -H 127.0.0.1 -p 5055`) and run with \
         AWS_ENDPOINT_URL=http://127.0.0.1:5055 AWS_ACCESS_KEY_ID=testing \
         AWS_SECRET_ACCESS_KEY=testing AWS_REGION=eu-west-1 (see the README)"
    );
}

/// The `sam` stand-in: appends its arguments as one JSON line to `sam.log` next to it and answers
/// `list stack-outputs --stack-name <s>` with `outputs.json[<s>]`.
const SAM: &str = r#"#!/usr/bin/env python3
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "sam.log"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
if sys.argv[1:3] == ["list", "stack-outputs"]:
    stack = sys.argv[sys.argv.index("--stack-name") + 1]
    with open(os.path.join(here, "outputs.json")) as f:
        outputs = json.load(f)
    if stack not in outputs:
        sys.stderr.write("Error: stack %s does not exist\n" % stack)
        sys.exit(1)
    print(json.dumps([{"OutputKey": k, "OutputValue": v} for k, v in outputs[stack].items()]))
"#;

/// One provider set-up: a sandbox account with an OAuth application and service instance, a
/// unique account name (secrets in the shared moto do not collide) and the `sam` stand-in.
struct World {
    sandbox: Sandbox,
    creds: OAuthCredentials,
    account: String,
    bin: tempfile::TempDir,
    webhook_receiver: CaptureServer,
}

impl World {
    async fn new() -> World {
        require_moto();
        let sandbox = Sandbox::start().await.unwrap();
        let account = format!("prov{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let creds = sandbox.add_oauth_application(&account);
        sandbox.seed_service_instance(&account, SERVICE_INSTANCE);
        let bin = tempfile::tempdir().unwrap();
        let sam = bin.path().join("sam");
        std::fs::write(&sam, SAM).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sam, std::fs::Permissions::from_mode(0o755)).unwrap();
        let webhook_receiver = CaptureServer::start().await.unwrap();
        let world = World {
            sandbox,
            creds,
            account,
            bin,
            webhook_receiver,
        };
        world.set_outputs(&world.outputs());
        world
    }

    /// The stack outputs the stand-in answers (as CloudFormation would after a deploy).
    fn outputs(&self) -> Value {
        let url = self.webhook_receiver.url();
        let arn = |f: &str| format!("arn:aws:lambda:eu-west-1:123456789012:function:{f}");
        json!({
            "app-builder-engine": {
                "SecretsApi": format!("{url}/Prod/secrets/"),
                "SecretsFunction": arn("app-builder-engine-SecretsFunction-1"),
                "SecretsFunctionIamRole": "arn:aws:iam::123456789012:role/secrets",
            },
            "app-builder-note-dispatcher": {
                "IntegrationApi": format!("{url}/Prod/integration/"),
                "IntegrationFunction": arn("app-builder-note-dispatcher-IntegrationFunction-1"),
                "IntegrationFunctionIamRole": "arn:aws:iam::123456789012:role/nd",
            },
            "app-builder-typeform": {
                "IntegrationApi": format!("{url}/Prod/typeform/"),
                "IntegrationFunction": arn("app-builder-typeform-IntegrationFunction-1"),
                "IntegrationFunctionIamRole": "arn:aws:iam::123456789012:role/tf",
            },
            "app-builder-lansweeper": {
                "IntegrationApi": format!("{url}/Prod/integration/"),
                "IntegrationFunction": arn("app-builder-lansweeper-IntegrationFunction-1"),
                "IntegrationFunctionIamRole": "arn:aws:iam::123456789012:role/ls",
                "RefreshQueueArn": "arn:aws:sqs:eu-west-1:123456789012:app-builder-lansweeper-refresh",
                "RefreshQueueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/app-builder-lansweeper-refresh",
                "DeadLetterQueueArn": "arn:aws:sqs:eu-west-1:123456789012:app-builder-lansweeper-dlq",
                "DeadLetterQueueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/app-builder-lansweeper-dlq",
            },
            "aws-sam-cli-managed-default": {
                "SourceBucket": "aws-sam-cli-managed-default-samclisourcebucket-1",
            },
        })
    }

    fn set_outputs(&self, outputs: &Value) {
        std::fs::write(self.bin.path().join("outputs.json"), outputs.to_string()).unwrap();
    }

    /// The `sam` calls so far, one argument list each.
    fn sam_calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.bin.path().join("sam.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Runs `xtask <args> --yes ...` and returns (success, stdout, stderr).
    async fn xtask(&self, args: &[&str]) -> (bool, String, String) {
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_xtask"));
        command
            .args(args)
            .args([
                "--yes",
                "--domain",
                self.sandbox.domain(),
                "--account",
                &self.account,
                "--service-instance",
                SERVICE_INSTANCE,
                "--profile",
                "e2e",
                "--region",
                "eu-west-1",
            ])
            .current_dir(self.bin.path())
            .env("PATH", path)
            .env("FOURME_OAUTH_URL", self.sandbox.oauth_url())
            .env("FOURME_GRAPHQL_URL", self.sandbox.graphql_url())
            .env("FOURME_REST_URL", self.sandbox.rest_url())
            .env("FOURME_CLIENT_SECRET", &self.creds.client_secret)
            .env_remove("ENV_4ME")
            .env_remove("AWS_PROFILE")
            .stdin(std::process::Stdio::null());
        if args[0] == "bootstrap" {
            command.args(["--client-id", &self.creds.client_id]);
        }
        let output = command.output().await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stdout, stderr)
    }

    /// Runs the command and fails the test with its output when it fails.
    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.xtask(args).await;
        if std::env::var_os("PROVISION_E2E_SHOW").is_some() {
            eprintln!("--- xtask {args:?}\n{stdout}{stderr}");
        }
        assert!(
            ok,
            "xtask {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            !stdout.contains(&self.creds.client_secret)
                && !stderr.contains(&self.creds.client_secret),
            "the client secret was printed"
        );
        stdout
    }

    fn client(&self) -> FourMeClient {
        FourMeClient::new(
            Endpoints::from_lookup(self.sandbox.domain(), |name| match name {
                "FOURME_OAUTH_URL" => Some(self.sandbox.oauth_url()),
                "FOURME_GRAPHQL_URL" => Some(self.sandbox.graphql_url()),
                "FOURME_REST_URL" => Some(self.sandbox.rest_url()),
                _ => None,
            })
            .unwrap(),
            &self.account,
            Credentials::new(&self.creds.client_id, &self.creds.client_secret),
            ClientSettings::default(),
        )
        .unwrap()
    }

    async fn query(&self, query: &str) -> Value {
        self.client().query(query, &json!({})).await.unwrap()
    }

    /// Every record bootstrap and deploy write, by kind (ids, in creation order).
    async fn counts(&self) -> Value {
        self.query(
            "query All { products { nodes { id } } uiExtensions { nodes { id } } \
                 configurationItems { nodes { id } } webhooks { nodes { id } } \
                 appOfferings(filter: {published: false}) { nodes { id scopes { id } \
                 automationRules { nodes { id } } } } }",
        )
        .await
    }

    fn secret_name(&self) -> String {
        format!("{APP}/{}/{}", self.sandbox.domain(), self.account)
    }

    async fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        aws_sdk_secretsmanager::Client::new(&config)
    }

    /// The provider secret and its number of versions (`None` when it does not exist).
    async fn provider_secret(&self) -> Option<(Value, usize)> {
        let client = self.secrets().await;
        let value = client
            .get_secret_value()
            .secret_id(self.secret_name())
            .version_stage("AWSCURRENT")
            .send()
            .await
            .ok()?;
        let versions = client
            .list_secret_version_ids()
            .secret_id(self.secret_name())
            .include_deprecated(true)
            .send()
            .await
            .unwrap();
        Some((
            serde_json::from_str(value.secret_string().unwrap()).unwrap(),
            versions.versions().len(),
        ))
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The exact `sam` calls of one deploy of `stack` (config env `env`).
fn sam_deploy_calls(env: &str, stack: &str, overrides: &[String]) -> Vec<Vec<String>> {
    let mut deploy = strings(&[
        "deploy",
        "--config-env",
        env,
        "--no-confirm-changeset",
        "--profile",
        "e2e",
        "--region",
        "eu-west-1",
        "--parameter-overrides",
    ]);
    deploy.extend(overrides.iter().cloned());
    let list = |name: &str| {
        strings(&[
            "list",
            "stack-outputs",
            "--stack-name",
            name,
            "--output",
            "json",
            "--profile",
            "e2e",
            "--region",
            "eu-west-1",
        ])
    };
    vec![
        strings(&["build", "--config-env", env]),
        deploy,
        list(stack),
        list("aws-sam-cli-managed-default"),
    ]
}

fn nodes(data: &Value, field: &str) -> Vec<Value> {
    data[field]["nodes"].as_array().cloned().unwrap_or_default()
}

/// The summary line of a real run.
fn summary(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|line| line.contains(" created, "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_then_deploys_twice_change_nothing_the_second_time() {
    let world = World::new().await;
    let domain = world.sandbox.domain().to_owned();
    let account = world.account.clone();
    let receiver = world.webhook_receiver.url();

    // --- bootstrap, first run -----------------------------------------------------------------
    let stdout = world.ok(&["bootstrap"]).await;
    assert!(
        summary(&stdout).starts_with("13 created, 0 updated, 0 deleted, 0 unchanged"),
        "{stdout}"
    );
    let overrides = [
        format!("4MeDomainParameter={domain}"),
        format!("BootstrapSecretApplicationParameter={APP}"),
        format!("BootstrapSecretAccountParameter={account}"),
        "BootstrapSecretEnabledReferencesParameter=*".to_owned(),
    ];
    assert_eq!(
        world.sam_calls(),
        sam_deploy_calls("default", "app-builder-engine", &overrides)
    );

    let data = world
        .query(
            "query B { products(filter: {source: {values: [\"4me-app-bootstrap\"]}}) { nodes { id name sourceID } } \
             uiExtensions(filter: {source: {values: [\"4me-app-bootstrap\"]}}) { nodes { id name activeVersion { html } } } \
             configurationItems(filter: {source: {values: [\"4me-app-bootstrap\"]}}) { nodes { id sourceID systemID customFields { id value } } } \
             webhooks { nodes { id event uri webhookPolicy { id jwtAlg jwtAudience } } } }",
        )
        .await;
    let products: Vec<Value> = nodes(&data, "products");
    let product_ids: Vec<&str> = products
        .iter()
        .map(|p| p["sourceID"].as_str().unwrap())
        .collect();
    assert_eq!(product_ids, ["s3_product", "lambda_product", "sqs_product"]);
    assert_eq!(nodes(&data, "uiExtensions").len(), 2);
    let cis = nodes(&data, "configurationItems");
    assert_eq!(cis.len(), 2);
    assert_eq!(cis[0]["sourceID"], "s3_ci");
    assert_eq!(
        cis[0]["systemID"],
        "aws-sam-cli-managed-default-samclisourcebucket-1"
    );
    assert_eq!(cis[1]["sourceID"], "secrets_lambda_ci");
    assert_eq!(
        cis[1]["systemID"],
        "arn:aws:lambda:eu-west-1:123456789012:function:app-builder-engine-SecretsFunction-1"
    );
    assert!(
        cis[1]["customFields"]
            .as_array()
            .unwrap()
            .contains(&json!({"id": "api_url", "value": format!("{receiver}/Prod/secrets/")}))
    );
    // The secrets webhook and the app-instance lifecycle webhooks: one function, one policy.
    let webhooks = nodes(&data, "webhooks");
    let events: Vec<&str> = webhooks
        .iter()
        .map(|w| w["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "app_instance.secrets-update",
            "app_instance.create",
            "app_instance.update",
            "app_instance.delete"
        ]
    );
    for webhook in &webhooks {
        assert_eq!(webhook["uri"], format!("{receiver}/Prod/secrets/"));
        assert_eq!(webhook["webhookPolicy"], webhooks[0]["webhookPolicy"]);
    }
    assert_eq!(webhooks[0]["webhookPolicy"]["jwtAlg"], "es512");
    assert_eq!(
        webhooks[0]["webhookPolicy"]["jwtAudience"],
        format!("integrations provided by {account}@{domain}")
    );

    let (secret, versions) = world.provider_secret().await.unwrap();
    assert_eq!(secret["clientID"], world.creds.client_id.as_str());
    assert_eq!(secret["token"], world.creds.client_secret.as_str());
    assert_eq!(
        secret["policy"]["id"], webhooks[0]["webhookPolicy"]["id"],
        "{secret:#}"
    );
    assert!(
        secret["policy"]["publicKeyPem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    assert_eq!(secret["webhook"]["id"], webhooks[0]["id"]);
    assert_eq!(secret["webhook"]["uri"], webhooks[0]["uri"]);
    assert_eq!(secret["instance_delete_webhook"]["id"], webhooks[3]["id"]);

    // --- bootstrap, second run: nothing changes ---------------------------------------------
    let before = world.counts().await;
    let stdout = world.ok(&["bootstrap"]).await;
    assert!(
        summary(&stdout).starts_with("0 created, 0 updated, 0 deleted, 13 unchanged"),
        "{stdout}"
    );
    assert_eq!(world.counts().await, before);
    assert_eq!(world.provider_secret().await.unwrap().1, versions);
    assert_eq!(
        world.sam_calls().len(),
        8,
        "the stack is deployed again (SAM decides)"
    );

    // --- a moved API: the webhook is updated in place, not recreated --------------------------
    let mut outputs = world.outputs();
    outputs["app-builder-engine"]["SecretsApi"] = json!(format!("{receiver}/v2/secrets/"));
    world.set_outputs(&outputs);
    let stdout = world.ok(&["bootstrap"]).await;
    assert!(
        summary(&stdout).starts_with("0 created, 5 updated, 0 deleted, 8 unchanged"),
        "the secrets CI and the four webhooks: {stdout}"
    );
    let data = world
        .query("query W { webhooks { nodes { id uri } } }")
        .await;
    let webhooks = nodes(&data, "webhooks");
    assert_eq!(webhooks.len(), 4);
    for webhook in &webhooks {
        assert_eq!(webhook["uri"], format!("{receiver}/v2/secrets/"));
    }
    world.set_outputs(&world.outputs());
    world.ok(&["bootstrap"]).await;

    // --- a dry run after bootstrap plans nothing ----------------------------------------------
    let calls = world.sam_calls().len();
    let stdout = world.ok(&["bootstrap", "--dry-run"]).await;
    assert!(
        stdout
            .contains("plan, nothing changed: 0 to create, 0 to update, 0 to delete, 13 unchanged"),
        "{stdout}"
    );
    assert_eq!(
        world.sam_calls().len(),
        calls,
        "a dry run runs no sam command"
    );

    // --- an edit made in 4me is undone --------------------------------------------------------
    let product_id = products[1]["id"].as_str().unwrap().to_owned();
    let payload: Value = world
        .client()
        .mutation(
            "mutation P($input: ProductUpdateInput!) { productUpdate(input: $input) { errors { message } product { id } } }",
            &json!({"input": {"id": product_id, "name": "Renamed by hand"}}),
        )
        .await
        .unwrap();
    assert_eq!(payload["product"]["id"], product_id.as_str());
    let stdout = world.ok(&["bootstrap"]).await;
    assert!(
        stdout.contains(&format!("  product AWS Lambda: updated ({product_id})")),
        "{stdout}"
    );
    assert!(
        summary(&stdout).starts_with("0 created, 1 updated, 0 deleted, 12 unchanged"),
        "{stdout}"
    );
    let data = world
        .query(&format!(
            "query N {{ node(id: \"{product_id}\") {{ ... on Product {{ name }} }} }}"
        ))
        .await;
    assert_eq!(data["node"]["name"], "AWS Lambda");

    // --- a stored policy with another algorithm is replaced, the old one deleted ------------
    let old = world
        .sandbox
        .create_webhook_policy(&account, "rs256", Some("old audience"))
        .unwrap();
    let store = AwsSecretStore::new(world.secrets().await);
    let name = SecretName::new(world.secret_name()).unwrap();
    let mut update = SecretDocument::new();
    update.insert("policy", json!({"id": old.id, "jwtAlg": "rs256"}));
    store.upsert(&name, update).await.unwrap();
    let stdout = world.ok(&["bootstrap"]).await;
    assert!(
        stdout.contains("  webhook policy secrets webhook policy: created ("),
        "{stdout}"
    );
    assert!(
        stdout.contains("  webhook 4me app builder secrets: updated ("),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(": deleted ({})", old.id)),
        "{stdout}"
    );
    assert!(
        summary(&stdout).starts_with("1 created, 4 updated, 1 deleted, 8 unchanged"),
        "{stdout}"
    );
    let data = world
        .query(&format!(
            "query P {{ node(id: \"{}\") {{ id }} webhooks {{ nodes {{ id webhookPolicy {{ id jwtAlg }} }} }} }}",
            old.id
        ))
        .await;
    assert_eq!(data["node"], Value::Null, "the replaced policy is deleted");
    let webhooks = nodes(&data, "webhooks");
    assert_eq!(webhooks.len(), 4);
    for webhook in &webhooks {
        assert_eq!(webhook["webhookPolicy"], webhooks[0]["webhookPolicy"]);
    }
    assert_eq!(webhooks[0]["webhookPolicy"]["jwtAlg"], "es512");
    let (secret, _) = world.provider_secret().await.unwrap();
    assert_eq!(secret["policy"]["id"], webhooks[0]["webhookPolicy"]["id"]);
    assert!(
        secret["policy"]["publicKeyPem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"),
        "the key of the create response is kept"
    );
    assert_eq!(secret["policy"]["jwtClaimExpiresIn"], 1440);
    assert!(
        secret.get("previousPolicy").is_none(),
        "a policy whose key was never stored has nothing to keep accepting"
    );
    let stdout = world.ok(&["bootstrap"]).await;
    assert!(
        summary(&stdout).starts_with("0 created, 0 updated, 0 deleted, 13 unchanged"),
        "{stdout}"
    );

    // --- a policy whose audience changed is replaced; its key stays accepted a while --------
    let current = secret["policy"].clone();
    world
        .client()
        .mutation::<_, Value>(
            "mutation U($input: WebhookPolicyUpdateInput!) { webhookPolicyUpdate(input: $input) { errors { message } webhookPolicy { id } } }",
            &json!({"input": {"id": current["id"], "jwtAudience": "an audience of an earlier template"}}),
        )
        .await
        .unwrap();
    let stdout = world.ok(&["bootstrap"]).await;
    assert!(
        summary(&stdout).starts_with("1 created, 4 updated, 1 deleted, 8 unchanged"),
        "{stdout}"
    );
    let (secret, _) = world.provider_secret().await.unwrap();
    assert_ne!(secret["policy"]["id"], current["id"]);
    assert_eq!(secret["previousPolicy"]["id"], current["id"]);
    assert_eq!(
        secret["previousPolicy"]["publicKeyPem"],
        current["publicKeyPem"]
    );
    let until = secret["previousPolicy"]["acceptedUntil"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 23 * 3600..=now + 24 * 3600).contains(&until),
        "{until}"
    );

    // --- a new token lifetime is applied to the policy in place -----------------------------
    world
        .client()
        .mutation::<_, Value>(
            "mutation U($input: WebhookPolicyUpdateInput!) { webhookPolicyUpdate(input: $input) { errors { message } webhookPolicy { id } } }",
            &json!({"input": {"id": secret["policy"]["id"], "jwtClaimExpiresIn": 5}}),
        )
        .await
        .unwrap();
    let stdout = world.ok(&["bootstrap"]).await;
    assert!(
        stdout.contains("  webhook policy secrets webhook policy: updated ("),
        "{stdout}"
    );
    assert!(
        summary(&stdout).starts_with("0 created, 1 updated, 0 deleted, 12 unchanged"),
        "{stdout}"
    );
    let (after, _) = world.provider_secret().await.unwrap();
    assert_eq!(after["policy"]["id"], secret["policy"]["id"]);
    assert_eq!(after["policy"]["jwtClaimExpiresIn"], 1440);
    assert_eq!(
        after["policy"]["publicKeyPem"],
        secret["policy"]["publicKeyPem"]
    );

    // --- deploy note-dispatcher and typeform, twice each ------------------------------------
    // note-dispatcher and typeform: CI, UI extension, offering, automation rule, avatar.
    for (integration, stack, reference, records) in [
        (
            "note-dispatcher",
            "app-builder-note-dispatcher",
            "note-dispatcher",
            5,
        ),
        ("typeform", "app-builder-typeform", "typeform", 5),
    ] {
        let calls = world.sam_calls().len();
        let stdout = world.ok(&["deploy", integration]).await;
        assert_eq!(
            summary(&stdout),
            format!("{records} created, 0 updated, 0 deleted, 0 unchanged"),
            "{stdout}"
        );
        let overrides = [
            format!("4MeDomainParameter={domain}"),
            format!("BootstrapSecretApplicationParameter={APP}"),
            format!("BootstrapSecretAccountParameter={account}"),
            format!("OfferingReferenceParameter={reference}"),
        ];
        assert_eq!(
            world.sam_calls()[calls..],
            sam_deploy_calls(integration, stack, &overrides)
        );
        let offering_line = stdout
            .lines()
            .find(|l| l.starts_with("Success. App offering is available at: "))
            .unwrap_or_else(|| panic!("{stdout}"));
        let before = world.counts().await;
        let secret_versions = world.provider_secret().await.unwrap().1;
        let stdout = world.ok(&["deploy", integration]).await;
        assert_eq!(
            summary(&stdout),
            format!("0 created, 0 updated, 0 deleted, {records} unchanged"),
            "{stdout}"
        );
        assert!(stdout.contains(offering_line), "{stdout}");
        assert_eq!(world.counts().await, before, "{integration}");
        assert_eq!(world.provider_secret().await.unwrap().1, secret_versions);
        assert!(
            stdout.contains("  avatar avatar.svg: unchanged"),
            "{stdout}"
        );

        let stdout = world.ok(&["deploy", integration, "--dry-run"]).await;
        assert!(
            stdout.contains(&format!(
                "plan, nothing changed: 0 to create, 0 to update, 0 to delete, {records} unchanged"
            )),
            "{stdout}"
        );
        assert_eq!(
            world.sam_calls().len(),
            calls + 8,
            "a dry run runs no sam command"
        );
    }

    let data = world
        .query(
            "query O { appOfferings(filter: {published: false}) { nodes { id reference \
             webhookUriTemplate policyJwtAlg pictureUri scopes { actions } uiExtensionVersion { id html \
             uiExtension { sourceID activeVersion { id } } } automationRules { nodes { name trigger } } } } \
             configurationItems(filter: {sourceID: {values: [\"note_dispatcher_lambda_ci\", \"typeform_lambda_ci\"]}}) { nodes { sourceID systemID customFields { id value } } } }",
        )
        .await;
    let offerings = nodes(&data, "appOfferings");
    assert_eq!(offerings.len(), 2);
    let nd = &offerings[0];
    assert_eq!(nd["reference"], "note-dispatcher");
    assert_eq!(
        nd["webhookUriTemplate"],
        format!("{receiver}/Prod/integration/?account={{account}}")
    );
    assert_eq!(nd["policyJwtAlg"], "rs512");
    assert!(
        nd["pictureUri"]
            .as_str()
            .is_some_and(|uri| uri.contains("avatar.svg")),
        "{nd}"
    );
    assert_eq!(nd["automationRules"]["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(
        nd["uiExtensionVersion"]["id"],
        nd["uiExtensionVersion"]["uiExtension"]["activeVersion"]["id"]
    );
    assert_eq!(
        nd["uiExtensionVersion"]["uiExtension"]["sourceID"],
        "ui_extension_input"
    );
    let tf = &offerings[1];
    assert_eq!(tf["reference"], "typeform");
    assert_eq!(tf["webhookUriTemplate"], Value::Null);
    assert_eq!(
        tf["scopes"],
        json!([{"actions": ["request:Read", "request:Update"]}])
    );
    assert_eq!(
        tf["automationRules"]["nodes"][0]["name"],
        "Ask customer to complete survey"
    );
    let cis = nodes(&data, "configurationItems");
    assert_eq!(cis.len(), 2);
    assert_eq!(
        cis[1]["systemID"],
        "arn:aws:lambda:eu-west-1:123456789012:function:app-builder-typeform-IntegrationFunction-1"
    );
    assert!(
        cis[1]["customFields"]
            .as_array()
            .unwrap()
            .contains(&json!({"id": "cloudformation_stack", "value": "app-builder-typeform"}))
    );
}

/// `deploy lansweeper` once the repository has its stack: the function CI, both queue CIs (SQS
/// product, queue ARNs), UI extension and offering; twice, the second run changing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lansweeper_deploys_twice_when_its_stack_exists() {
    let world = World::new().await;
    if !repo_root().join("crates/lansweeper/template.yaml").exists() {
        let (ok, _, stderr) = world.xtask(&["deploy", "lansweeper"]).await;
        assert!(!ok);
        assert!(
            stderr.contains("no SAM template for `lansweeper` yet"),
            "{stderr}"
        );
        return;
    }
    world.ok(&["bootstrap"]).await;
    let stdout = world.ok(&["deploy", "lansweeper"]).await;
    assert_eq!(
        summary(&stdout),
        "6 created, 0 updated, 0 deleted, 0 unchanged",
        "{stdout}"
    );
    let before = world.counts().await;
    let stdout = world.ok(&["deploy", "lansweeper"]).await;
    assert_eq!(
        summary(&stdout),
        "0 created, 0 updated, 0 deleted, 6 unchanged",
        "{stdout}"
    );
    assert_eq!(world.counts().await, before);
    let data = world
        .query(
            "query L { configurationItems(filter: {source: {values: [\"4me-integration-lansweeper\"]}}) \
             { nodes { sourceID systemID product { sourceID } } } \
             appOfferings(filter: {published: false}) { nodes { reference scopes { actions } } } }",
        )
        .await;
    let cis: Vec<(String, String, String)> = nodes(&data, "configurationItems")
        .iter()
        .map(|ci| {
            (
                ci["sourceID"].as_str().unwrap().to_owned(),
                ci["systemID"].as_str().unwrap().to_owned(),
                ci["product"]["sourceID"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let arn =
        |name: &str| format!("arn:aws:sqs:eu-west-1:123456789012:app-builder-lansweeper-{name}");
    assert_eq!(
        cis,
        [
            (
                "lansweeper_lambda_ci".to_owned(),
                "arn:aws:lambda:eu-west-1:123456789012:function:app-builder-lansweeper-IntegrationFunction-1".to_owned(),
                "lambda_product".to_owned(),
            ),
            ("lansweeper_dead_letter_sqs_ci".to_owned(), arn("dlq"), "sqs_product".to_owned()),
            ("lansweeper_sqs_ci".to_owned(), arn("refresh"), "sqs_product".to_owned()),
        ]
    );
    let offering = &nodes(&data, "appOfferings")[0];
    assert_eq!(offering["reference"], "lansweeper");
    assert!(
        offering["scopes"][0]["actions"]
            .as_array()
            .unwrap()
            .contains(&json!("ci:Create"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_change_nothing() {
    let world = World::new().await;
    let before = world.counts().await;
    let stdout = world.ok(&["bootstrap", "--dry-run"]).await;
    assert!(
        stdout.contains("  product AWS Lambda: would create"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  AWS stack app-builder-engine: would deploy"),
        "{stdout}"
    );
    let account = &world.account;
    let domain = world.sandbox.domain();
    let planned = [
        "    sam build --config-env default".to_owned(),
        format!(
            "    sam deploy --config-env default --no-confirm-changeset --profile e2e --region \
             eu-west-1 --parameter-overrides 4MeDomainParameter={domain} \
             BootstrapSecretApplicationParameter={APP} BootstrapSecretAccountParameter={account} \
             BootstrapSecretEnabledReferencesParameter=*"
        ),
        "    sam list stack-outputs --stack-name app-builder-engine --output json --profile e2e \
         --region eu-west-1"
            .to_owned(),
    ];
    for line in planned {
        assert!(stdout.lines().any(|l| l == line), "{line}\n{stdout}");
    }
    assert!(
        stdout
            .contains("plan, nothing changed: 13 to create, 0 to update, 0 to delete, 0 unchanged"),
        "{stdout}"
    );
    assert_eq!(world.counts().await, before);
    assert!(world.provider_secret().await.is_none(), "no secret written");
    assert!(world.sam_calls().is_empty(), "no sam command run");

    // Deploy needs bootstrap's provider secret, and says so.
    let (ok, stdout, stderr) = world.xtask(&["deploy", "typeform", "--dry-run"]).await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("run `cargo xtask bootstrap` first"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sam_command_fails_the_deploy_with_its_message() {
    let world = World::new().await;
    let mut outputs = world.outputs();
    outputs
        .as_object_mut()
        .unwrap()
        .remove("app-builder-engine");
    world.set_outputs(&outputs);
    let (ok, stdout, stderr) = world.xtask(&["bootstrap"]).await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("sam list stack-outputs --stack-name app-builder-engine")
            && stderr.contains("Error: stack app-builder-engine does not exist"),
        "{stderr}"
    );
    // Nothing after the stack was written: no configuration items, no webhook.
    let data = world
        .query("query C { configurationItems { nodes { id } } webhooks { nodes { id } } }")
        .await;
    assert!(nodes(&data, "configurationItems").is_empty(), "{data}");
    assert!(nodes(&data, "webhooks").is_empty(), "{data}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_integrations_are_listed() {
    let world = World::new().await;
    let (ok, _, stderr) = world.xtask(&["deploy", "slack"]).await;
    assert!(!ok);
    assert!(
        stderr
            .contains("unknown integration `slack`; known: note-dispatcher, typeform, lansweeper"),
        "{stderr}"
    );
    assert!(world.sam_calls().is_empty());
    assert!(repo_root().join("config_4me").is_dir());
}
