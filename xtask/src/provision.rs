//! `cargo xtask bootstrap` and `cargo xtask deploy <integration>` (docs/original.md#provisioning).
//!
//! [`Provisioner`] does the work against explicit 4me endpoints, a [`SecretStore`] and a
//! [`StackDeployer`]; the CLI functions wire AWS (Secrets Manager, SAM) after gathering the input
//! ([`crate::input`]); the local demo wires its own. Every record is found before it is written
//! ([`crate::records`]), so a second run reports everything unchanged and writes nothing.
//! `--dry-run` reads 4me and the secret store, prints the plan and writes nothing.

use std::path::Path;
use std::process::ExitCode;

use app_builder_core::fourme::instances::API_URL_FIELD;
use app_builder_core::fourme::{ClientSettings, Credentials, Endpoints, FourMeClient, FourMeError};
use app_builder_core::secrets::{
    AwsSecretStore, SecretDocument, SecretName, SecretStore, SecretStoreError, merge,
    provider_secret_name,
};
use clap::Args;
use serde_json::{Map, Value, json};

use crate::config4me;
use crate::deployer::{DeployError, SOURCE_BUCKET, SamDeployer, StackDeployer, StackOutputs};
use crate::input::{self, Answers, InputArgs, Question, StdioPrompter};
use crate::records::{self, CONFIGURATION_ITEM, PRODUCT, Records, UI_EXTENSION};
use crate::sam;
use crate::sync::{self, Action};

/// The integrations `cargo xtask deploy` knows.
pub const INTEGRATIONS: [&str; 3] = ["note-dispatcher", "typeform", "lansweeper"];

/// Arguments of `cargo xtask bootstrap`.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Input flags.
    #[command(flatten)]
    input: InputArgs,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// AWS region (default: the SDK's, e.g. AWS_REGION or the profile's).
    #[arg(long)]
    region: Option<String>,
}

/// Arguments of `cargo xtask deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The integration: note-dispatcher, typeform or lansweeper.
    integration: String,
    /// Input flags.
    #[command(flatten)]
    input: InputArgs,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// AWS region (default: the SDK's, e.g. AWS_REGION or the profile's).
    #[arg(long)]
    region: Option<String>,
}

/// Errors of bootstrap and deploy.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Input gathering failed.
    #[error(transparent)]
    Input(#[from] input::InputError),
    /// The current directory is unknown.
    #[error("cannot determine the current directory: {0}")]
    CurrentDir(std::io::Error),
    /// `deploy` was given an unknown integration.
    #[error("unknown integration `{name}`; known: {known}")]
    UnknownIntegration {
        /// The name given.
        name: String,
        /// The known names, comma separated.
        known: String,
    },
    /// A `config_4me/` template is missing or invalid.
    #[error(transparent)]
    Config(#[from] config4me::ConfigError),
    /// A SAM command would be wrong.
    #[error(transparent)]
    Sam(#[from] sam::SamError),
    /// The integration has no SAM template yet.
    #[error("no SAM template for `{0}` yet")]
    NoStack(String),
    /// A 4me call failed.
    #[error("4me: {0}")]
    FourMe(#[from] FourMeError),
    /// A secret store call failed.
    #[error("secret store: {0}")]
    Store(#[from] SecretStoreError),
    /// The stack deploy failed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// 4me or a stack answered something bootstrap/deploy cannot use.
    #[error("{0}")]
    Unexpected(String),
    /// Something bootstrap or deploy needs is missing.
    #[error("missing {0}")]
    Missing(String),
    /// Writing progress failed.
    #[error("cannot write progress: {0}")]
    Output(#[from] std::io::Error),
}

/// One record or resource handled by bootstrap or deploy, and what was (or, in a dry run, would
/// be) done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The kind of record (`product`, `webhook`, `AWS stack`, ...).
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// What was done; in a dry run `Create` has no id and the others the existing record's id.
    pub action: Action,
    /// The id of the record created (a `Create` that happened).
    pub created: Option<String>,
}

/// What `bootstrap` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapReport {
    /// Every record and resource, in order.
    pub steps: Vec<Step>,
    /// The engine stack's outputs (empty in a dry run).
    pub outputs: crate::deployer::StackOutputs,
    /// The URL the `app_instance.secrets-update` webhook delivers to (`SecretsApi` output).
    pub secrets_url: Option<String>,
}

/// What `deploy <integration>` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployReport {
    /// Every record and resource, in order.
    pub steps: Vec<Step>,
    /// The integration stack's outputs (empty in a dry run).
    pub outputs: crate::deployer::StackOutputs,
    /// The app offering's reference.
    pub offering_reference: String,
    /// The app offering's node id (`None` in a dry run before it exists).
    pub offering_id: Option<String>,
    /// The app offering's page in the provider's 4me account.
    pub offering_url: String,
}

impl BootstrapReport {
    /// Whether anything was (or would be) created, updated or deleted.
    pub fn changed(&self) -> bool {
        changed(&self.steps)
    }
}

impl DeployReport {
    /// Whether anything was (or would be) created, updated or deleted.
    pub fn changed(&self) -> bool {
        changed(&self.steps)
    }
}

/// Whether a step other than a stack deploy (SAM decides those) is not `Unchanged`.
fn changed(steps: &[Step]) -> bool {
    steps
        .iter()
        .filter(|step| step.kind != STACK_KIND)
        .any(|step| !matches!(step.action, Action::Unchanged(_)))
}

/// Bootstrap and deploy against explicit 4me endpoints, secret store and stack deployer: the CLI
/// wires AWS ones, the local demo its own; nothing is read from the process environment here.
pub struct Provisioner<'a, S: SecretStore, D: StackDeployer> {
    /// Workspace root (`config_4me/`, templates).
    pub root: &'a Path,
    /// Gathered input (domain, account, service instance, client id and secret, ...).
    pub answers: &'a Answers,
    /// 4me endpoints (the sandbox's in tests and the demo).
    pub endpoints: Endpoints,
    /// Where the provider secret is kept.
    pub store: &'a S,
    /// Deploys the stacks.
    pub deployer: &'a D,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Progress lines (never secrets).
    pub out: &'a mut dyn std::io::Write,
}

impl<S: SecretStore, D: StackDeployer> Provisioner<'_, S, D> {
    /// `cargo xtask bootstrap` (docs/original.md#provisioning): provider secret, products and UI extensions,
    /// webhook policy, engine stack, configuration items, secrets webhook.
    pub async fn bootstrap(&mut self) -> Result<BootstrapReport, ProvisionError> {
        let config = config4me::load_bootstrap(self.root)?;
        let domain = self.answers.get(&input::DOMAIN).to_owned();
        let account = self.answers.get(&input::ACCOUNT).to_owned();
        let client_id = self.answers.get(&input::CLIENT_ID).to_owned();
        let client_secret = client_secret(self.answers)?.to_owned();
        let overrides = sam::engine_overrides(
            &domain,
            &account,
            self.answers.get(&input::ENABLED_OFFERINGS),
        );
        sam::check_overrides(self.root, &sam::ENGINE, &overrides)?;
        let mut report = BootstrapReport::default();

        // 1. The provider secret: written only when the credentials differ (no new version).
        let secret_name = provider_secret_name(sam::SECRET_APPLICATION, &domain, &account)
            .map_err(|err| ProvisionError::Unexpected(err.to_string()))?;
        let current = self.store.get(&secret_name).await?;
        let same = current.as_ref().is_some_and(|doc| {
            doc.get_str("clientID") == Some(client_id.as_str())
                && doc.get_str("token") == Some(client_secret.as_str())
        });
        let action = match (&current, same) {
            (None, _) => Action::Create,
            (Some(_), true) => Action::Unchanged(secret_name.to_string()),
            (Some(_), false) => Action::Update(secret_name.to_string()),
        };
        if !self.dry_run && !same {
            let mut update = SecretDocument::new();
            update.insert("clientID", client_id.clone());
            update.insert("token", client_secret.clone());
            self.store.upsert(&secret_name, update).await?;
        }
        let stored = current.unwrap_or_default();
        let mut records = self.records(&account, &client_id, &client_secret, &stored)?;
        self.step(
            &mut records,
            "provider secret",
            secret_name.as_str(),
            action,
            "",
        )?;

        // 2. 4me: service instance, products and their UI extensions.
        let si = records
            .service_instance(self.answers.get(&input::SERVICE_INSTANCE))
            .await?;
        let support_team = si.support_team_id.clone().ok_or_else(|| {
            ProvisionError::Unexpected(format!(
                "service instance `{}` has no support team: please configure one",
                self.answers.get(&input::SERVICE_INSTANCE)
            ))
        })?;
        let source = config4me::BOOTSTRAP_SOURCE;
        let team = obj([("supportTeamId", support_team.clone().into())]);
        let s3_product = self
            .sync(
                &mut records,
                &PRODUCT,
                source,
                &config.s3_product,
                team.clone(),
            )
            .await?;
        let lambda_ext = self
            .sync(
                &mut records,
                &UI_EXTENSION,
                source,
                &config.lambda_ui_extension,
                Map::new(),
            )
            .await?;
        let lambda_product = self
            .sync(
                &mut records,
                &PRODUCT,
                source,
                &config.lambda_product,
                obj([
                    ("uiExtensionId", lambda_ext.id.clone().into()),
                    ("supportTeamId", support_team.clone().into()),
                ]),
            )
            .await?;
        let sqs_ext = self
            .sync(
                &mut records,
                &UI_EXTENSION,
                source,
                &config.sqs_ui_extension,
                Map::new(),
            )
            .await?;
        self.sync(
            &mut records,
            &PRODUCT,
            source,
            &config.sqs_product,
            obj([
                ("uiExtensionId", sqs_ext.id.clone().into()),
                ("supportTeamId", support_team.into()),
            ]),
        )
        .await?;

        // 3. The webhook policy (before the stack: 4me verifies the webhook right away and the
        //    secrets function must then already find the policy in the provider secret).
        let policy = self
            .webhook_policy(
                &mut records,
                &config,
                &secret_name,
                &stored,
                &domain,
                &account,
            )
            .await?;

        // 4. The engine stack.
        let outputs = if self.dry_run {
            self.plan_stack(&mut records, &sam::ENGINE, &overrides)?;
            // Assume the outputs 4me has recorded (the secrets function's CI).
            let existing = records
                .find(
                    &CONFIGURATION_ITEM,
                    source,
                    &config.secrets_lambda_ci.source_id,
                )
                .await?;
            let mut outputs = recorded_outputs(existing.as_ref(), "SecretsFunction", "SecretsApi");
            let bucket = records
                .find(&CONFIGURATION_ITEM, source, &config.s3_ci.source_id)
                .await?
                .and_then(|ci| {
                    ci.get("systemID")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
            if let Some(bucket) = bucket {
                outputs.insert(SOURCE_BUCKET.to_owned(), bucket);
            }
            outputs
        } else {
            self.deploy_stack(&mut records, &sam::ENGINE, &overrides)
                .await?
        };
        let function_arn = output(&outputs, "SecretsFunction", self.dry_run)?;
        let secrets_url = output(&outputs, "SecretsApi", self.dry_run)?;

        // 5. Configuration items.
        let location = location(&function_arn);
        let mut s3_extras = obj([
            ("productId", s3_product.id.clone().into()),
            ("serviceId", si.service_id.clone().into()),
            ("location", location.clone().into()),
        ]);
        if let Some(bucket) = outputs.get(SOURCE_BUCKET) {
            s3_extras.insert("systemID".into(), bucket.clone().into());
        }
        self.sync(
            &mut records,
            &CONFIGURATION_ITEM,
            source,
            &config.s3_ci,
            s3_extras,
        )
        .await?;
        self.sync(
            &mut records,
            &CONFIGURATION_ITEM,
            source,
            &config.secrets_lambda_ci,
            function_ci_extras(
                &lambda_product.id,
                &si,
                &location,
                &function_arn,
                sam::ENGINE.name,
                &secrets_url,
            ),
        )
        .await?;

        // 6. The secrets webhook and the app-instance lifecycle webhooks at the deployed URL,
        //    signed with the policy; stale ones deleted, then a replaced policy.
        let target = WebhookTarget {
            secret_name: &secret_name,
            stored: &stored,
            policy: &policy.id,
            uri: &secrets_url,
        };
        for template in std::iter::once(&config.secrets_webhook).chain(&config.instance_webhooks) {
            self.provider_webhook(&mut records, template, &target)
                .await?;
        }
        if let Some(old) = &policy.stale {
            if !self.dry_run {
                records.delete("WebhookPolicy", old).await?;
            }
            self.step(
                &mut records,
                "webhook policy",
                "replaced policy",
                Action::Delete(old.clone()),
                "",
            )?;
        }

        self.save_fingerprints(&records, &secret_name).await?;
        report.secrets_url = (!secrets_url.is_empty()).then_some(secrets_url);
        report.outputs = outputs;
        report.steps = std::mem::take(&mut records.steps);
        writeln!(self.out, "{}", summary(&report.steps, self.dry_run))?;
        Ok(report)
    }

    /// `cargo xtask deploy <integration>` (docs/original.md#provisioning): the stack, then the
    /// function's CI, the UI extension, the app offering, its automation rules and avatar.
    pub async fn deploy(&mut self, integration: &str) -> Result<DeployReport, ProvisionError> {
        known_integration(integration)?;
        let config = config4me::load_integration(self.root, integration)?;
        let stack = sam::integration_stack(integration)
            .ok_or_else(|| ProvisionError::NoStack(integration.to_owned()))?;
        let domain = self.answers.get(&input::DOMAIN).to_owned();
        let account = self.answers.get(&input::ACCOUNT).to_owned();
        let reference = config
            .offering
            .input
            .get("reference")
            .and_then(Value::as_str)
            .unwrap_or(integration)
            .to_owned();
        let overrides = sam::integration_overrides(&domain, &account, &reference);
        sam::check_overrides(self.root, &stack, &overrides)?;
        let mut report = DeployReport {
            offering_reference: reference.clone(),
            ..DeployReport::default()
        };

        let secret_name = provider_secret_name(sam::SECRET_APPLICATION, &domain, &account)
            .map_err(|err| ProvisionError::Unexpected(err.to_string()))?;
        let stored = self.store.get(&secret_name).await?.ok_or_else(|| {
            ProvisionError::Missing(format!(
                "provider secret {secret_name}: run `cargo xtask bootstrap` first"
            ))
        })?;
        let (Some(client_id), Some(client_secret)) =
            (stored.get_str("clientID"), stored.get_str("token"))
        else {
            return Err(ProvisionError::Missing(format!(
                "clientID/token in provider secret {secret_name}: run `cargo xtask bootstrap` first"
            )));
        };
        let (client_id, client_secret) = (client_id.to_owned(), client_secret.to_owned());
        let mut records = self.records(&account, &client_id, &client_secret, &stored)?;
        let si = records
            .service_instance(self.answers.get(&input::SERVICE_INSTANCE))
            .await?;
        let lambda_product = records
            .find(&PRODUCT, config4me::BOOTSTRAP_SOURCE, "lambda_product")
            .await?
            .and_then(|record| records::id_of(&record))
            .ok_or_else(|| {
                ProvisionError::Missing(
                    "the AWS Lambda product: run `cargo xtask bootstrap` first".into(),
                )
            })?;

        let source = config.source.clone();
        let outputs = if self.dry_run {
            self.plan_stack(&mut records, &stack, &overrides)?;
            let existing = records
                .find(&CONFIGURATION_ITEM, &source, &config.lambda_ci.source_id)
                .await?;
            recorded_outputs(existing.as_ref(), "IntegrationFunction", "IntegrationApi")
        } else {
            self.deploy_stack(&mut records, &stack, &overrides).await?
        };
        let function_arn = output(&outputs, "IntegrationFunction", self.dry_run)?;
        let api_url = output(&outputs, "IntegrationApi", self.dry_run)?;
        let location = location(&function_arn);

        self.sync(
            &mut records,
            &CONFIGURATION_ITEM,
            &source,
            &config.lambda_ci,
            function_ci_extras(
                &lambda_product,
                &si,
                &location,
                &function_arn,
                stack.name,
                &api_url,
            ),
        )
        .await?;
        for ci in &config.other_cis {
            let (product_source_id, output_key) =
                other_ci_binding(&ci.source_id).ok_or_else(|| {
                    ProvisionError::Unexpected(format!(
                        "no stack output is known for configuration item {}",
                        ci.source_id
                    ))
                })?;
            let product = records
                .find(&PRODUCT, config4me::BOOTSTRAP_SOURCE, product_source_id)
                .await?
                .and_then(|record| records::id_of(&record))
                .ok_or_else(|| {
                    ProvisionError::Missing(format!(
                        "product {product_source_id}: run `cargo xtask bootstrap` first"
                    ))
                })?;
            let existing = records
                .find(&CONFIGURATION_ITEM, &source, &ci.source_id)
                .await?;
            let system_id = match outputs.get(output_key) {
                Some(value) => value.clone(),
                None => existing
                    .as_ref()
                    .and_then(|r| r.get("systemID"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            };
            let extras = obj([
                ("productId", product.into()),
                ("serviceId", si.service_id.clone().into()),
                ("location", location.clone().into()),
                ("systemID", system_id.into()),
                (
                    "customFields",
                    json!([{"id": "cloudformation_stack", "value": stack.name}]),
                ),
            ]);
            self.sync(&mut records, &CONFIGURATION_ITEM, &source, ci, extras)
                .await?;
        }

        // The UI extension first, so the offering links its active version in one go.
        let extension = self
            .sync(
                &mut records,
                &UI_EXTENSION,
                &source,
                &config.ui_extension,
                Map::new(),
            )
            .await?;
        let version_id = extension
            .record
            .get("activeVersion")
            .and_then(|v| v.get("id"))
            .and_then(Value::as_str)
            .unwrap_or(records::NEW_ID)
            .to_owned();
        let offering = self
            .offering(&mut records, &config, &si, &api_url, &version_id)
            .await?;
        self.automation_rules(&mut records, &config, &offering)
            .await?;
        self.avatar(&mut records, integration, &offering).await?;

        self.save_fingerprints(&records, &secret_name).await?;
        let offering_id = records::id_of(&offering).filter(|id| id != records::NEW_ID);
        report.offering_url = format!(
            "https://{account}.{domain}/app_offerings/{}",
            offering_id.as_deref().unwrap_or(records::NEW_ID)
        );
        report.offering_id = offering_id;
        report.outputs = outputs;
        report.steps = std::mem::take(&mut records.steps);
        writeln!(self.out, "{}", summary(&report.steps, self.dry_run))?;
        if !self.dry_run {
            writeln!(
                self.out,
                "Success. App offering is available at: {}",
                report.offering_url
            )?;
        }
        Ok(report)
    }

    /// The 4me operations of a run, with the fingerprints of the provider secret.
    fn records(
        &self,
        account: &str,
        client_id: &str,
        client_secret: &str,
        stored: &SecretDocument,
    ) -> Result<Records, ProvisionError> {
        let client = FourMeClient::new(
            self.endpoints.clone(),
            account,
            Credentials::new(client_id, client_secret),
            ClientSettings::default(),
        )?;
        let fingerprints = stored
            .get(records::FINGERPRINTS_KEY)
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Records {
            client,
            dry_run: self.dry_run,
            fingerprints,
            steps: Vec::new(),
        })
    }

    /// Records a step of the run and prints it.
    fn step(
        &mut self,
        records: &mut Records,
        kind: &'static str,
        name: &str,
        action: Action,
        id: &str,
    ) -> Result<(), ProvisionError> {
        let created =
            (action == Action::Create && !self.dry_run && !id.is_empty()).then(|| id.to_owned());
        let step = Step {
            kind,
            name: name.to_owned(),
            action,
            created,
        };
        let line = describe(&step, self.dry_run, self.deployer.describe());
        writeln!(self.out, "{line}")?;
        records.steps.push(step);
        Ok(())
    }

    /// [`Records::sync`] plus the step.
    async fn sync(
        &mut self,
        records: &mut Records,
        kind: &records::Kind,
        source: &str,
        template: &config4me::Template,
        extras: Map<String, Value>,
    ) -> Result<records::Synced, ProvisionError> {
        let synced = records.sync(kind, source, template, extras).await?;
        self.step(
            records,
            kind.label,
            template.name(),
            synced.action.clone(),
            &synced.id,
        )?;
        Ok(synced)
    }

    /// Prints what deploying the stack would run (the deployer's plan).
    fn plan_stack(
        &mut self,
        records: &mut Records,
        stack: &sam::Stack,
        overrides: &[(String, String)],
    ) -> Result<(), ProvisionError> {
        self.step(
            records,
            STACK_KIND,
            stack.name,
            Action::Update(stack.name.to_owned()),
            "",
        )?;
        for line in self.deployer.plan(stack, overrides) {
            writeln!(self.out, "    {line}")?;
        }
        Ok(())
    }

    /// Deploys a stack (SAM leaves an unchanged stack as it is).
    async fn deploy_stack(
        &mut self,
        records: &mut Records,
        stack: &sam::Stack,
        overrides: &[(String, String)],
    ) -> Result<StackOutputs, ProvisionError> {
        writeln!(self.out, "deploying AWS stack {} ...", stack.name)?;
        let outputs = self.deployer.deploy(stack, overrides).await?;
        self.step(
            records,
            STACK_KIND,
            stack.name,
            Action::Update(stack.name.to_owned()),
            "",
        )?;
        Ok(outputs)
    }

    /// The secrets-webhook policy, found again by the id kept in the provider secret (4me names
    /// policies itself, so a name never finds one). Kept while it has the template's algorithm
    /// and audience; a different token lifetime is updated in place. Otherwise a new policy is
    /// created (4me cannot change a policy's key) and its public key — shown by 4me only in the
    /// create response — stored; the replaced policy's key stays accepted for
    /// [`POLICY_GRACE_SECS`] so deliveries signed before the switch still verify.
    async fn webhook_policy(
        &mut self,
        records: &mut Records,
        config: &config4me::BootstrapConfig,
        secret_name: &SecretName,
        stored: &SecretDocument,
        domain: &str,
        account: &str,
    ) -> Result<Policy, ProvisionError> {
        const FIELDS: &str = "id jwtAlg jwtAudience jwtClaimExpiresIn";
        let name = POLICY_LABEL;
        let mut input = config.secrets_webhook_policy.input.clone();
        let alg = input
            .get("jwtAlg")
            .and_then(Value::as_str)
            .unwrap_or("es512")
            .to_owned();
        let audience = input
            .get("jwtAudience")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .replace("{account}", account)
            .replace("{domain}", domain);
        input.insert("jwtAlg".into(), alg.clone().into());
        input.insert("jwtAudience".into(), audience.clone().into());
        let expires_in = input.get("jwtClaimExpiresIn").cloned();
        let stored_policy = stored.get("policy").cloned();
        let stored_id = stored_policy
            .as_ref()
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let existing = match &stored_id {
            Some(id) => {
                records
                    .node(id, &format!("... on WebhookPolicy {{ {FIELDS} }}"))
                    .await?
            }
            None => None,
        };
        // The key is only known from the create response: a policy whose key is not stored
        // cannot be verified against and is replaced.
        let key_stored = stored_policy
            .as_ref()
            .and_then(|p| p.get("publicKeyPem"))
            .and_then(Value::as_str)
            .is_some_and(|pem| !pem.is_empty());
        if let Some(existing) = &existing
            && key_stored
            && existing.get("jwtAlg").and_then(Value::as_str) == Some(alg.as_str())
            && existing.get("jwtAudience").and_then(Value::as_str) == Some(audience.as_str())
        {
            let id = records::id_of(existing).unwrap_or_default();
            if existing.get("jwtClaimExpiresIn").cloned() == expires_in || expires_in.is_none() {
                self.step(
                    records,
                    "webhook policy",
                    name,
                    Action::Unchanged(id.clone()),
                    "",
                )?;
                return Ok(Policy { id, stale: None });
            }
            if !self.dry_run {
                let update = obj([("jwtClaimExpiresIn", expires_in.unwrap_or_default())]);
                let updated = records
                    .write(
                        "WebhookPolicy",
                        &Action::Update(id.clone()),
                        &update,
                        FIELDS,
                        &[],
                    )
                    .await?
                    .record
                    .unwrap_or_default();
                let mut policy = stored_policy
                    .and_then(|p| p.as_object().cloned())
                    .unwrap_or_default();
                policy.extend(updated);
                let mut update = SecretDocument::new();
                update.insert("policy", Value::Object(policy));
                self.store.upsert(secret_name, update).await?;
            }
            self.step(
                records,
                "webhook policy",
                name,
                Action::Update(id.clone()),
                "",
            )?;
            return Ok(Policy { id, stale: None });
        }
        let stale = existing.as_ref().and_then(records::id_of);
        if self.dry_run {
            self.step(records, "webhook policy", name, Action::Create, "")?;
            return Ok(Policy {
                id: records::NEW_ID.to_owned(),
                stale,
            });
        }
        let written = records
            .write(
                "WebhookPolicy",
                &Action::Create,
                &input,
                &format!("{FIELDS} publicKeyPem"),
                &[],
            )
            .await?;
        let (id, created) = (written.id, written.record.unwrap_or_default());
        let mut update = SecretDocument::new();
        update.insert("policy", Value::Object(created));
        if key_stored && let Some(Value::Object(mut previous)) = stored_policy {
            previous.insert(
                "acceptedUntil".into(),
                json!(unix_now().saturating_add(POLICY_GRACE_SECS)),
            );
            update.insert("previousPolicy", Value::Object(previous));
        }
        self.store.upsert(secret_name, update).await?;
        self.step(records, "webhook policy", name, Action::Create, &id)?;
        Ok(Policy { id, stale })
    }

    /// A provider-account webhook of `template` at the target's URI signed with its policy:
    /// updated in place when it exists (its id is kept in the provider secret), created
    /// otherwise; other webhooks of the same name and event (left behind by earlier runs) are
    /// deleted.
    async fn provider_webhook(
        &mut self,
        records: &mut Records,
        template: &config4me::Template,
        target: &WebhookTarget<'_>,
    ) -> Result<(), ProvisionError> {
        const FIELDS: &str = "id name event uri description disabled webhookPolicy { id }";
        let WebhookTarget {
            secret_name,
            stored,
            policy,
            uri,
        } = *target;
        // The secrets webhook keeps the key of earlier versions.
        let key = if template.source_id == "secrets_webhook" {
            "webhook"
        } else {
            template.source_id.as_str()
        };
        let name = template.name().to_owned();
        let mut input = template.input.clone();
        input.insert("uri".into(), uri.into());
        input.insert("webhookPolicyId".into(), policy.into());
        let stored_id = stored
            .get(key)
            .and_then(|w| w.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let existing = match &stored_id {
            Some(id) => {
                records
                    .node(id, &format!("... on Webhook {{ {FIELDS} }}"))
                    .await?
            }
            None => None,
        };
        let action = match &existing {
            None => Action::Create,
            Some(found) => {
                let mut found = found.clone();
                let policy_id = found
                    .get("webhookPolicy")
                    .and_then(|p| p.get("id"))
                    .cloned()
                    .unwrap_or(Value::Null);
                found.insert("webhookPolicyId".into(), policy_id);
                sync::record_action(Some(&found), &input)
            }
        };
        let id = records
            .write("Webhook", &action, &input, FIELDS, &[])
            .await?
            .id;
        self.step(records, "webhook", &name, action, &id)?;
        if !self.dry_run {
            let keep = json!({"id": id, "name": name, "uri": uri});
            self.store
                .update(secret_name, |current| {
                    let current = current.cloned().unwrap_or_default();
                    (current.get(key) != Some(&keep)).then(|| {
                        let mut update = SecretDocument::new();
                        update.insert(key, keep.clone());
                        merge(Some(current), &update)
                    })
                })
                .await?;
        }
        // Webhooks of earlier runs whose id was lost: same event and name, another id.
        let data: Value = records
            .client
            .query(
                "query Webhooks { webhooks(first: 100) { nodes { id name event } } }",
                &json!({}),
            )
            .await?;
        let event = input.get("event").cloned().unwrap_or(Value::Null);
        let stale: Vec<String> = data
            .pointer("/webhooks/nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|node| {
                node.get("event") == Some(&event)
                    && node.get("name").and_then(Value::as_str) == Some(name.as_str())
                    && node.get("id").and_then(Value::as_str) != Some(id.as_str())
            })
            .filter_map(|node| node.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        for stale_id in stale {
            if !self.dry_run {
                records.delete("Webhook", &stale_id).await?;
            }
            self.step(records, "webhook", &name, Action::Delete(stale_id), "")?;
        }
        Ok(())
    }

    /// The app offering (draft, found by reference) with its scopes matched by position.
    async fn offering(
        &mut self,
        records: &mut Records,
        config: &config4me::IntegrationConfig,
        si: &records::ServiceInstance,
        api_url: &str,
        version_id: &str,
    ) -> Result<Map<String, Value>, ProvisionError> {
        const FIELDS: &str = "id name reference description webhookUriTemplate \
            configurationUriTemplate policyJwtAlg pictureUri scopes { id actions } \
            uiExtensionVersion { id } automationRules(first: 100) { nodes { id name generic \
            trigger condition description expressions { name value } actions { name value } } }";
        let reference = config
            .offering
            .input
            .get("reference")
            .cloned()
            .unwrap_or(Value::Null);
        let data: Value = records
            .client
            .query(
                &format!("query Offering($reference: String!) {{ appOfferings(first: 1, filter: {{published: false, reference: {{values: [$reference]}}}}) {{ nodes {{ {FIELDS} }} }} }}"),
                &json!({"reference": reference}),
            )
            .await?;
        let existing = data
            .pointer("/appOfferings/nodes/0")
            .and_then(Value::as_object)
            .cloned();
        let mut input = config.offering.input.clone();
        input.insert("source".into(), config.source.clone().into());
        input.insert("sourceID".into(), config.offering.source_id.clone().into());
        input.insert("serviceInstanceId".into(), si.id.clone().into());
        input.insert("uiExtensionVersionId".into(), version_id.into());
        let (webhook_template, configuration_template) =
            offering_uris(&config.integration, api_url);
        if let Some(uri) = webhook_template {
            input.insert("webhookUriTemplate".into(), uri.into());
        }
        if let Some(uri) = configuration_template {
            input.insert("configurationUriTemplate".into(), uri.into());
        }
        let new_scopes = input
            .get("newScopes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let existing_scopes: Vec<Map<String, Value>> = existing
            .as_ref()
            .and_then(|o| o.get("scopes"))
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_object).cloned().collect())
            .unwrap_or_default();
        // Compare what can be read back: scope actions by position (as the `_scopes` marker,
        // true when they match), the linked version.
        let mut found = existing.clone().map(|mut offering| {
            let version = offering
                .get("uiExtensionVersion")
                .and_then(|v| v.get("id"))
                .cloned()
                .unwrap_or(Value::Null);
            offering.insert("uiExtensionVersionId".into(), version);
            offering
        });
        let scopes_same = existing_scopes.len() == new_scopes.len()
            && existing_scopes
                .iter()
                .zip(&new_scopes)
                .all(|(have, want)| have.get("actions") == want.get("actions"));
        if let Some(found) = &mut found {
            found.insert("_scopes".into(), scopes_same.into());
        }
        let mut compared = input.clone();
        compared.insert("_scopes".into(), true.into());
        let action = records.decide(found.as_ref(), &compared);
        let name = config.offering.name().to_owned();
        if let Action::Update(_) = &action {
            let ids: Vec<String> = existing_scopes.iter().filter_map(records::id_of).collect();
            let (scopes, to_delete) = sync::match_scopes(&ids, &new_scopes);
            input.insert("newScopes".into(), Value::Array(scopes));
            if !to_delete.is_empty() {
                input.insert("scopesToDelete".into(), json!(to_delete));
            }
        }
        let written = records
            .write("AppOffering", &action, &input, FIELDS, &[])
            .await?;
        let offering = match (written.record, &action) {
            (Some(offering), _) => offering,
            (None, Action::Create) => obj([("id", written.id.into())]),
            (None, _) => existing.unwrap_or_default(),
        };
        let id = records::id_of(&offering).unwrap_or_default();
        if !self.dry_run {
            records.remember(&id, &compared);
        }
        self.step(records, "app offering", &name, action, &id)?;
        Ok(offering)
    }

    /// The offering's automation rules, matched by name within their `generic` group.
    async fn automation_rules(
        &mut self,
        records: &mut Records,
        config: &config4me::IntegrationConfig,
        offering: &Map<String, Value>,
    ) -> Result<(), ProvisionError> {
        let offering_id = records::id_of(offering).unwrap_or_default();
        let existing: Vec<Map<String, Value>> = offering
            .get("automationRules")
            .and_then(|r| r.get("nodes"))
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_object).cloned().collect())
            .unwrap_or_default();
        for step in sync::plan_automation_rules(&existing, &config.automation_rules) {
            let id = match (&step.action, self.dry_run) {
                (Action::Delete(id), false) => {
                    records.delete("AppOfferingAutomationRule", id).await?;
                    String::new()
                }
                (action, _) => {
                    let mut input = step.input.clone().unwrap_or_default();
                    input.insert("appOfferingId".into(), offering_id.clone().into());
                    records
                        .write(
                            "AppOfferingAutomationRule",
                            action,
                            &input,
                            "id name",
                            &["appOfferingId"],
                        )
                        .await?
                        .id
                }
            };
            self.step(
                records,
                "automation rule",
                &step.name,
                step.action.clone(),
                &id,
            )?;
        }
        Ok(())
    }

    /// The offering's avatar (`config_4me/<integration>/avatar.*`), uploaded when its bytes
    /// differ from the last upload (fingerprint) or the offering has no picture.
    async fn avatar(
        &mut self,
        records: &mut Records,
        integration: &str,
        offering: &Map<String, Value>,
    ) -> Result<(), ProvisionError> {
        let dir = self.root.join(config4me::CONFIG_DIR).join(integration);
        let Some((file_name, bytes)) = ["svg", "png", "jpg", "jpeg", "gif"]
            .iter()
            .map(|ext| format!("avatar.{ext}"))
            .find_map(|name| std::fs::read(dir.join(&name)).ok().map(|b| (name, b)))
        else {
            return Ok(());
        };
        let id = records::id_of(offering).unwrap_or_default();
        let key = format!("avatar:{id}");
        let print = records::fingerprint(&Value::String(
            bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ));
        let has_picture = offering.get("pictureUri").is_some_and(|v| !v.is_null());
        let action = if id == records::NEW_ID || !has_picture {
            Action::Create
        } else if records.fingerprints.get(&key) == Some(&print) {
            Action::Unchanged(id.clone())
        } else {
            Action::Update(id.clone())
        };
        if !self.dry_run && !matches!(action, Action::Unchanged(_)) {
            records
                .client
                .upload_avatar("app_offerings", &id, &file_name, bytes)
                .await?;
            records.fingerprints.insert(key, print);
        }
        self.step(records, "avatar", &file_name, action, "")
    }

    /// Stores the fingerprints in the provider secret when they changed (no new version
    /// otherwise).
    async fn save_fingerprints(
        &mut self,
        records: &Records,
        secret_name: &SecretName,
    ) -> Result<(), ProvisionError> {
        if self.dry_run {
            return Ok(());
        }
        let prints: Map<String, Value> = records
            .fingerprints
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        self.store
            .update(secret_name, |current| {
                let current = current.cloned().unwrap_or_default();
                let mut merged = current
                    .get(records::FINGERPRINTS_KEY)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                merged.extend(prints.clone());
                (current.get(records::FINGERPRINTS_KEY) != Some(&Value::Object(merged.clone())))
                    .then(|| {
                        let mut update = SecretDocument::new();
                        update.insert(records::FINGERPRINTS_KEY, Value::Object(merged));
                        merge(Some(current), &update)
                    })
            })
            .await?;
        Ok(())
    }
}

/// Kind of the stack steps (not a 4me record: SAM decides what changes).
pub const STACK_KIND: &str = "AWS stack";

/// How bootstrap names the secrets-webhook policy in its progress lines (4me names it itself).
const POLICY_LABEL: &str = "secrets webhook policy";

/// How long the key of a replaced secrets-webhook policy stays accepted: a day covers 4me's
/// retries (up to 10, at growing intervals) of deliveries signed before the switch.
const POLICY_GRACE_SECS: u64 = 24 * 60 * 60;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where the provider's webhooks deliver, and what bootstrap remembers of them.
#[derive(Clone, Copy)]
struct WebhookTarget<'a> {
    secret_name: &'a SecretName,
    stored: &'a SecretDocument,
    policy: &'a str,
    uri: &'a str,
}

/// The policy bootstrap keeps, and the one it replaced (deleted after the webhook moved).
struct Policy {
    id: String,
    stale: Option<String>,
}

/// One progress line.
fn describe(step: &Step, dry_run: bool, deployer: &str) -> String {
    let verb_id = match (&step.action, dry_run) {
        (Action::Create, false) => match &step.created {
            Some(id) => format!("created ({id})"),
            None => "created".to_owned(),
        },
        (Action::Create, true) => "would create".to_owned(),
        (Action::Update(_), true) if step.kind == STACK_KIND => {
            format!("would deploy ({deployer})")
        }
        (Action::Update(_), false) if step.kind == STACK_KIND => format!("deployed ({deployer})"),
        (Action::Update(id), true) => format!("would update ({id})"),
        (Action::Update(id), false) if *id == step.name => "updated".to_owned(),
        (Action::Update(id), false) => format!("updated ({id})"),
        (Action::Unchanged(id), _) if *id == step.name => "unchanged".to_owned(),
        (Action::Unchanged(id), _) => format!("unchanged ({id})"),
        (Action::Delete(id), true) => format!("would delete ({id})"),
        (Action::Delete(id), false) => format!("deleted ({id})"),
    };
    format!("  {} {}: {verb_id}", step.kind, step.name)
}

/// The closing line: how many records were created, updated, deleted, left unchanged.
fn summary(steps: &[Step], dry_run: bool) -> String {
    let mut counts = [0usize; 4];
    for step in steps.iter().filter(|s| s.kind != STACK_KIND) {
        let index = match &step.action {
            Action::Create => 0,
            Action::Update(_) => 1,
            Action::Delete(_) => 2,
            Action::Unchanged(_) => 3,
        };
        counts[index] += 1;
    }
    if dry_run {
        format!(
            "plan, nothing changed: {} to create, {} to update, {} to delete, {} unchanged",
            counts[0], counts[1], counts[2], counts[3]
        )
    } else {
        format!(
            "{} created, {} updated, {} deleted, {} unchanged",
            counts[0], counts[1], counts[2], counts[3]
        )
    }
}

fn obj<const N: usize>(entries: [(&str, Value); N]) -> Map<String, Value> {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// A stack output; a missing one is an error, except in a dry run (empty).
fn output(outputs: &StackOutputs, key: &str, dry_run: bool) -> Result<String, ProvisionError> {
    match outputs.get(key) {
        Some(value) => Ok(value.clone()),
        None if dry_run => Ok(String::new()),
        None => Err(ProvisionError::Unexpected(format!(
            "the stack has no output `{key}`"
        ))),
    }
}

/// In a dry run: the outputs as the function's configuration item recorded them.
fn recorded_outputs(
    ci: Option<&Map<String, Value>>,
    function_key: &str,
    api_key: &str,
) -> StackOutputs {
    let mut outputs = StackOutputs::new();
    let Some(ci) = ci else { return outputs };
    if let Some(arn) = ci.get("systemID").and_then(Value::as_str) {
        outputs.insert(function_key.to_owned(), arn.to_owned());
    }
    let api = ci
        .get("customFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|field| field.get("id").and_then(Value::as_str) == Some(API_URL_FIELD))
        .and_then(|field| field.get("value"))
        .and_then(Value::as_str);
    if let Some(api) = api {
        outputs.insert(api_key.to_owned(), api.to_owned());
    }
    outputs
}

/// `Amazon <region>` from a function ARN (`arn:aws:lambda:<region>:...`).
fn location(function_arn: &str) -> String {
    let region = function_arn.split(':').nth(3).unwrap_or_default();
    if region.is_empty() {
        "Amazon".to_owned()
    } else {
        format!("Amazon {region}")
    }
}

/// The extras of a function's configuration item (docs/original.md#provisioning step 8, docs/original.md#provisioning step 6).
fn function_ci_extras(
    product_id: &str,
    si: &records::ServiceInstance,
    location: &str,
    function_arn: &str,
    stack: &str,
    api_url: &str,
) -> Map<String, Value> {
    obj([
        ("productId", product_id.into()),
        ("serviceId", si.service_id.clone().into()),
        ("serviceInstanceIds", json!([si.id])),
        ("location", location.into()),
        ("systemID", function_arn.into()),
        (
            "customFields",
            json!([
                {"id": "cloudformation_stack", "value": stack},
                {"id": API_URL_FIELD, "value": api_url},
            ]),
        ),
    ])
}

/// The product (bootstrap `sourceID`) and stack output of an integration's other CIs.
fn other_ci_binding(source_id: &str) -> Option<(&'static str, &'static str)> {
    match source_id {
        "lansweeper_sqs_ci" => Some(("sqs_product", "RefreshQueueArn")),
        "lansweeper_dead_letter_sqs_ci" => Some(("sqs_product", "DeadLetterQueueArn")),
        _ => None,
    }
}

/// The offering's webhook URI template (4me calls it for the customer's automation rules, the
/// function finds the customer by `account`) and configuration URI template (where 4me sends
/// the installing user with a signed link: Lansweeper's "Connect Lansweeper" page), per
/// integration.
fn offering_uris(integration: &str, api_url: &str) -> (Option<String>, Option<String>) {
    match integration {
        "note-dispatcher" => (Some(format!("{api_url}?account={{account}}")), None),
        "lansweeper" => (None, Some(format!("{api_url}configure"))),
        _ => (None, None),
    }
}

/// Checks that `name` is a known integration, else the error listing the known ones.
pub fn known_integration(name: &str) -> Result<(), ProvisionError> {
    if INTEGRATIONS.contains(&name) {
        Ok(())
    } else {
        Err(ProvisionError::UnknownIntegration {
            name: name.to_owned(),
            known: INTEGRATIONS.join(", "),
        })
    }
}

/// The OAuth client secret among the answers; missing or empty is an error saying where it comes
/// from.
pub(crate) fn client_secret(answers: &Answers) -> Result<&str, ProvisionError> {
    answers
        .secret(&input::CLIENT_SECRET)
        .map(input::SecretValue::expose)
        .filter(|secret| !secret.is_empty())
        .ok_or_else(|| {
            ProvisionError::Missing(format!(
                "the client secret ({} or standard input)",
                input::CLIENT_SECRET.env
            ))
        })
}

/// Gathers the answers of `questions` from the process (current dir, environment, terminal).
pub(crate) fn gather(questions: &[Question], args: &InputArgs) -> Result<Answers, ProvisionError> {
    let cwd = std::env::current_dir().map_err(ProvisionError::CurrentDir)?;
    let sources = input::Sources::from_process(&cwd, questions)?;
    Ok(input::gather(
        questions,
        args,
        &sources,
        &mut StdioPrompter,
    )?)
}

/// Writes the plain answers (secrets are never part of them).
fn print_answers(out: &mut dyn std::io::Write, answers: &Answers) -> std::io::Result<()> {
    writeln!(out, "input:")?;
    for (key, value) in answers.plain() {
        writeln!(out, "  {key} = {value}")?;
    }
    Ok(())
}

/// The AWS SDK configuration of `profile` and `region` (the SDK's own environment handling:
/// credentials, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...).
pub(crate) async fn aws_config(profile: &str, region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).profile_name(profile);
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    loader.load().await
}

/// The AWS store and SAM deployer of the CLI, and the 4me endpoints of `domain`
/// (`FOURME_*_URL` override them, e.g. for the sandbox).
async fn aws_wiring(
    root: &Path,
    answers: &Answers,
    region: Option<&str>,
) -> Result<(AwsSecretStore, SamDeployer, Endpoints), ProvisionError> {
    let profile = answers.get(&input::PROFILE);
    let config = aws_config(profile, region).await;
    let store = AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&config));
    let region = region
        .map(str::to_owned)
        .or_else(|| config.region().map(ToString::to_string));
    let deployer = SamDeployer::new(root, profile, region);
    let endpoints = Endpoints::from_env(answers.get(&input::DOMAIN))
        .map_err(|err| ProvisionError::Unexpected(err.to_string()))?;
    Ok((store, deployer, endpoints))
}

/// Runs `cargo xtask bootstrap`.
pub async fn bootstrap(root: &Path, args: &BootstrapArgs) -> Result<ExitCode, ProvisionError> {
    let answers = gather(&input::BOOTSTRAP_QUESTIONS, &args.input)?;
    let mut stdout = std::io::stdout();
    print_answers(&mut stdout, &answers)?;
    let (store, deployer, endpoints) = aws_wiring(root, &answers, args.region.as_deref()).await?;
    let mut provisioner = Provisioner {
        root,
        answers: &answers,
        endpoints,
        store: &store,
        deployer: &deployer,
        dry_run: args.dry_run,
        out: &mut stdout,
    };
    let report = provisioner.bootstrap().await?;
    if args.dry_run && report.changed() {
        println!("run again without --dry-run to apply the plan");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `cargo xtask deploy <integration>`.
pub async fn deploy(root: &Path, args: &DeployArgs) -> Result<ExitCode, ProvisionError> {
    known_integration(&args.integration)?;
    let answers = gather(&input::DEPLOY_QUESTIONS, &args.input)?;
    let mut stdout = std::io::stdout();
    print_answers(&mut stdout, &answers)?;
    let (store, deployer, endpoints) = aws_wiring(root, &answers, args.region.as_deref()).await?;
    let mut provisioner = Provisioner {
        root,
        answers: &answers,
        endpoints,
        store: &store,
        deployer: &deployer,
        dry_run: args.dry_run,
        out: &mut stdout,
    };
    let report = provisioner.deploy(&args.integration).await?;
    if args.dry_run && report.changed() {
        println!("run again without --dry-run to apply the plan");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_integrations_list_the_known_ones() {
        known_integration("typeform").unwrap();
        let err = known_integration("slack").unwrap_err().to_string();
        assert!(
            err.contains("note-dispatcher, typeform, lansweeper"),
            "{err}"
        );
        assert!(err.contains("slack"), "{err}");
    }
}
