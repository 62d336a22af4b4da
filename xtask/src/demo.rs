//! `cargo xtask demo` and `cargo xtask local`: the whole product on one machine, no cloud.
//!
//! Both start the 4me sandbox (seeded like `sandbox --seed`: provider account `wdc` with an
//! OAuth application and the service instance `Mainframe 1`), the Fun Translations and Typeform
//! fakes, a capture server standing in for the customer's note URL, and the local engine
//! ([`app_builder_local::LocalEngine`]) with its secrets in a temporary directory. They then run
//! the SAME [`Provisioner`] bootstrap and deploys as against AWS, with [`LocalDeployer`] in place
//! of SAM and the engine's store in place of Secrets Manager.
//!
//! `demo` then plays a customer: installs both apps, adds a note, submits a survey, printing each
//! step and everything the engine does, and exits 0 only when every expected effect is seen in
//! the sandbox, the fakes and the store. `local` keeps everything running for the developer's
//! own requests until Ctrl-C.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use app_builder_core::fourme::{ClientSettings, Credentials, Endpoints, FourMeClient};
use app_builder_core::secrets::{SecretDocument, SecretStore, customer_secret_name};
use app_builder_local::{Activity, EngineOptions, LocalEngine, Template};
use app_builder_sandbox::fakes::{CaptureServer, FunTranslations};
use app_builder_sandbox::lansweeper::{LansweeperFake, SiteSpec};
use app_builder_sandbox::typeform::TypeformFake;
use app_builder_sandbox::{OAuthCredentials, Sandbox};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::customer::{Customers, FORM_ID};
use crate::deployer::{DeployError, StackDeployer, StackOutputs};
use crate::input::{self, InputArgs, Sources, StdioPrompter};
use crate::provision::{BootstrapReport, DeployReport, ProvisionError, Provisioner};
use crate::sam::{self, Stack};

/// The provider account of the demo (as `sandbox --seed`).
const PROVIDER: &str = "wdc";
/// The service instance of the engine (as `sandbox --seed`).
const SERVICE_INSTANCE: &str = "Mainframe 1";
/// The customer who installs the apps.
const CUSTOMER: &str = "widget-data-center";
/// How long the demo waits for any one effect.
const WAIT: Duration = Duration::from_secs(20);

/// The customer's Lansweeper site and how many assets it has.
const LANSWEEPER_SITE: &str = "Widget HQ";
const LANSWEEPER_ASSETS: u64 = 300;
/// The longest the whole demo may take.
const DEMO_TIMEOUT: Duration = Duration::from_secs(180);

/// Arguments of `cargo xtask demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Breaks one thing on purpose to see the demo name the missing effect.
    #[arg(long, value_enum)]
    pub fault: Option<Fault>,
}

/// A fault the demo can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fault {
    /// The customer enters a Typeform token Typeform does not know: no webhook can be
    /// registered, so no survey response can arrive.
    WrongTypeformToken,
}

/// Arguments of `cargo xtask local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Address of the engine's HTTP server.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub engine_listen: std::net::SocketAddr,
    /// Address of the sandbox 4me.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sandbox_listen: std::net::SocketAddr,
    /// Seconds between scheduled events (0: no scheduler).
    #[arg(long, default_value_t = 300)]
    pub schedule_secs: u64,
    /// Writes every request and event the engine handles to FILE as it comes in (one JSON line
    /// each, readable by you only: 4me deliveries carry the customers' secrets), for
    /// `cargo xtask replay FILE`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
}

/// Errors that stop the demo before its checks.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A local server could not start.
    #[error("cannot start {what}: {source}")]
    Start {
        /// Which server.
        what: &'static str,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Bootstrap or deploy failed.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The sandbox refused a step.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// A secret could not be read back.
    #[error("secret store: {0}")]
    Store(#[from] app_builder_core::secrets::SecretStoreError),
    /// Output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// The demo ran out of time.
    #[error("the demo did not finish within {0:?}")]
    Timeout(Duration),
}

/// [`StackDeployer`] over the local engine: "deploys" a stack by building its functions from
/// the stack's SAM template into the running engine, and answers the template's Outputs with
/// local values (URLs of the engine, `arn:aws:lambda:local:...` ARNs the engine routes on).
#[derive(Debug, Clone)]
pub struct LocalDeployer<'a> {
    /// Workspace root (the templates' paths are relative to it).
    pub root: &'a Path,
    /// The running engine.
    pub engine: &'a LocalEngine,
}

impl LocalDeployer<'_> {
    /// The URL prefix of a stack: the engine stack at the root (`/secrets/`), an integration
    /// stack under its name (`/typeform/integration/`).
    pub fn prefix(stack: &Stack) -> &'static str {
        if stack.name == sam::ENGINE.name {
            ""
        } else {
            stack
                .name
                .strip_prefix("app-builder-")
                .unwrap_or(stack.name)
        }
    }
}

impl StackDeployer for LocalDeployer<'_> {
    fn describe(&self) -> &'static str {
        "local engine: its functions rebuilt from the SAM template"
    }

    fn plan(&self, stack: &Stack, _overrides: &[(String, String)]) -> Vec<String> {
        vec![format!(
            "deploy {} from {} into the local engine at {}/{}",
            stack.name,
            stack.template,
            self.engine.url(),
            Self::prefix(stack)
        )]
    }

    async fn deploy(
        &self,
        stack: &Stack,
        overrides: &[(String, String)],
    ) -> Result<StackOutputs, DeployError> {
        let path = self.root.join(stack.template);
        let text = std::fs::read_to_string(&path)
            .map_err(|err| DeployError::Local(format!("cannot read {}: {err}", path.display())))?;
        let template = Template::parse(&text)
            .map_err(|err| DeployError::Local(format!("{}: {err}", stack.template)))?;
        self.engine
            .deploy(stack.name, Self::prefix(stack), &template, overrides)
            .map_err(|err| DeployError::Local(format!("{}: {err}", stack.name)))
    }
}

/// Everything running locally, provisioned.
struct Stage {
    sandbox: Sandbox,
    translations: FunTranslations,
    typeform: TypeformFake,
    lansweeper: LansweeperFake,
    customer_url: CaptureServer,
    engine: LocalEngine,
    endpoints: Endpoints,
    customers: Customers,
    answers: input::Answers,
    /// Prints the engine's activity (when asked for at start).
    printer: Option<tokio::task::JoinHandle<()>>,
    bootstrap: BootstrapReport,
    note_dispatcher: DeployReport,
    typeform_deploy: DeployReport,
    lansweeper_deploy: DeployReport,
    _secrets_dir: tempfile::TempDir,
}

impl Stage {
    /// Starts the servers and runs bootstrap and the three deploys, printing their progress.
    async fn start(
        root: &Path,
        sandbox_listen: std::net::SocketAddr,
        engine_listen: std::net::SocketAddr,
        schedule: Option<Duration>,
        print_from_start: bool,
    ) -> Result<Stage, DemoError> {
        let start = |what| move |source| DemoError::Start { what, source };
        // The functions' log lines, kept per invocation for the console.
        app_builder_local::logs::init();
        let sandbox = Sandbox::start_on(sandbox_listen)
            .await
            .map_err(start("the sandbox 4me"))?;
        let credentials = sandbox.add_oauth_application(PROVIDER);
        sandbox.seed_service_instance(PROVIDER, SERVICE_INSTANCE);
        let translations = FunTranslations::start()
            .await
            .map_err(start("the Fun Translations fake"))?;
        let typeform = TypeformFake::start()
            .await
            .map_err(start("the Typeform fake"))?;
        let lansweeper = LansweeperFake::start()
            .await
            .map_err(start("the Lansweeper fake"))?;
        let customer_url = CaptureServer::start()
            .await
            .map_err(start("the customer's note URL"))?;
        let secrets_dir = tempfile::tempdir().map_err(start("the secrets directory"))?;
        let mut options = EngineOptions::new(secrets_dir.path())
            .with_env("FOURME_OAUTH_URL", sandbox.oauth_url())
            .with_env("FOURME_GRAPHQL_URL", sandbox.graphql_url())
            .with_env("FOURME_REST_URL", sandbox.rest_url())
            .with_env("FUNTRANSLATIONS_API_URL", translations.url())
            .with_env("TYPEFORM_API_URL", typeform.url())
            .with_env("LANSWEEPER_API_URL", lansweeper.api_url())
            .with_env("LANSWEEPER_APP_URL", lansweeper.app_url())
            // The customer's URL is on this machine.
            .with_env("NOTE_DISPATCHER_ALLOW_PRIVATE_URLS", "true")
            // The sandbox shows a new instance at once: no need for Lambda's 2 s retry wait.
            .with_env("INSTANCE_RETRY_TIMEOUT", "100");
        options.listen = engine_listen;
        options.schedule_interval = schedule;
        let engine = LocalEngine::start(options)
            .await
            .map_err(start("the local engine"))?;
        println!("Started (all on 127.0.0.1, nothing in the cloud):");
        println!(
            "  sandbox 4me        {}  (domain {})",
            sandbox.url(),
            sandbox.domain()
        );
        println!("  Fun Translations   {}", translations.url());
        println!("  Typeform API       {}", typeform.url());
        println!("  Lansweeper         {}", lansweeper.app_url());
        println!("  customer note URL  {}", customer_url.url());
        println!("  local engine       {}", engine.url());
        println!("  secrets            {}", secrets_dir.path().display());

        let printer = print_from_start.then(|| print_activity(&engine));
        let answers = answers(&sandbox, &credentials)?;
        let deployer = LocalDeployer {
            root,
            engine: &engine,
        };
        let endpoints = Endpoints::from_lookup(sandbox.domain(), |name| match name {
            "FOURME_OAUTH_URL" => Some(sandbox.oauth_url()),
            "FOURME_GRAPHQL_URL" => Some(sandbox.graphql_url()),
            "FOURME_REST_URL" => Some(sandbox.rest_url()),
            _ => None,
        })
        .map_err(|err| ProvisionError::Unexpected(err.to_string()))?;
        let mut stdout = std::io::stdout();
        let mut provisioner = Provisioner {
            root,
            answers: &answers,
            endpoints: endpoints.clone(),
            store: engine.store(),
            deployer: &deployer,
            dry_run: false,
            out: &mut stdout,
        };
        println!();
        println!("== cargo xtask bootstrap (SAM replaced by the local engine)");
        let bootstrap = provisioner.bootstrap().await?;
        println!();
        println!("== cargo xtask deploy note-dispatcher");
        let note_dispatcher = provisioner.deploy("note-dispatcher").await?;
        println!();
        println!("== cargo xtask deploy typeform");
        let typeform_deploy = provisioner.deploy("typeform").await?;
        println!();
        println!("== cargo xtask deploy lansweeper");
        let lansweeper_deploy = provisioner.deploy("lansweeper").await?;
        let customers = Customers::new(
            sandbox.clone(),
            typeform.clone(),
            lansweeper.clone(),
            format!("{}/notes", customer_url.url()),
            endpoints.clone(),
            CUSTOMER,
        );
        engine.set_console_actions(std::sync::Arc::new(customers.clone()));
        Ok(Stage {
            sandbox,
            translations,
            typeform,
            lansweeper,
            customer_url,
            engine,
            endpoints,
            customers,
            answers,
            printer,
            bootstrap,
            note_dispatcher,
            typeform_deploy,
            lansweeper_deploy,
            _secrets_dir: secrets_dir,
        })
    }

    /// Runs bootstrap and every deploy again (progress into `out`); returns whether anything
    /// was created, updated or deleted.
    async fn provision_again(
        &self,
        root: &Path,
        out: &mut dyn std::io::Write,
    ) -> Result<bool, DemoError> {
        let deployer = LocalDeployer {
            root,
            engine: &self.engine,
        };
        let mut provisioner = Provisioner {
            root,
            answers: &self.answers,
            endpoints: self.endpoints.clone(),
            store: self.engine.store(),
            deployer: &deployer,
            dry_run: false,
            out,
        };
        let mut changed = provisioner.bootstrap().await?.changed();
        for integration in crate::provision::INTEGRATIONS {
            changed |= provisioner.deploy(integration).await?.changed();
        }
        Ok(changed)
    }

    fn output<'a>(report: &'a StackOutputs, name: &str) -> &'a str {
        report.get(name).map_or("", String::as_str)
    }

    /// The customer secret of `account` for `offering`, if any (tests).
    #[cfg(test)]
    async fn customer_secret_of(&self, offering: &str, account: &str) -> Option<SecretDocument> {
        let name = customer_secret_name(
            sam::SECRET_APPLICATION,
            offering,
            self.sandbox.domain(),
            account,
        )
        .ok()?;
        self.engine.store().get(&name).await.ok().flatten()
    }

    async fn customer_secret(&self, offering: &str) -> Result<Option<SecretDocument>, DemoError> {
        let Ok(name) = customer_secret_name(
            sam::SECRET_APPLICATION,
            offering,
            self.sandbox.domain(),
            CUSTOMER,
        ) else {
            return Ok(None);
        };
        Ok(self.engine.store().get(&name).await?)
    }
}

/// The bootstrap answers a provider would give, all known: nothing is asked.
fn answers(
    sandbox: &Sandbox,
    credentials: &OAuthCredentials,
) -> Result<input::Answers, ProvisionError> {
    let args = InputArgs {
        domain: Some(sandbox.domain().to_owned()),
        account: Some(PROVIDER.to_owned()),
        service_instance: Some(SERVICE_INSTANCE.to_owned()),
        enabled_offerings: Some("*".to_owned()),
        client_id: Some(credentials.client_id.clone()),
        profile: Some("local".to_owned()),
        yes: true,
    };
    let mut sources = Sources::default();
    sources.env.insert(
        input::CLIENT_SECRET.env.to_owned(),
        credentials.client_secret.clone(),
    );
    Ok(input::gather(
        &input::BOOTSTRAP_QUESTIONS,
        &args,
        &sources,
        &mut StdioPrompter,
    )?)
}

/// Prints everything the engine does as it happens.
fn print_activity(engine: &LocalEngine) -> tokio::task::JoinHandle<()> {
    let mut activity = engine.subscribe();
    tokio::spawn(async move {
        loop {
            match activity.recv().await {
                Ok(entry) => println!("    engine | {entry}"),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    println!("    engine | ({n} more)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// One expected effect and whether it was observed.
struct Check {
    effect: String,
    observed: bool,
}

/// Runs `cargo xtask demo`.
pub async fn demo(root: &Path, args: &DemoArgs) -> Result<ExitCode, DemoError> {
    match tokio::time::timeout(DEMO_TIMEOUT, run_demo(root, args)).await {
        Ok(result) => result,
        Err(_) => Err(DemoError::Timeout(DEMO_TIMEOUT)),
    }
}

async fn run_demo(root: &Path, args: &DemoArgs) -> Result<ExitCode, DemoError> {
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut stage = Stage::start(root, any, any, None, true).await?;
    let printer = stage.printer.take();
    let mut checks = Vec::new();
    let mut check = |effect: String, observed: bool| {
        println!("  {} {effect}", if observed { "[ok]" } else { "[MISSING]" });
        checks.push(Check { effect, observed });
    };

    println!();
    println!("== The provider's engine is live");
    let secrets_url = stage.bootstrap.secrets_url.clone().unwrap_or_default();
    let verified = stage
        .sandbox
        .deliveries()
        .iter()
        .any(|d| d.event == "webhook.verify" && d.uri == secrets_url && d.status == Some(200));
    check(
        format!("4me verified the secrets webhook at {secrets_url} (webhook.verify answered 200)"),
        verified,
    );
    for report in [
        &stage.note_dispatcher,
        &stage.typeform_deploy,
        &stage.lansweeper_deploy,
    ] {
        println!(
            "  app offering {}: {}",
            report.offering_reference, report.offering_url
        );
    }

    println!();
    println!("== bootstrap and the deploys once more: nothing may change");
    let mut again = Vec::new();
    let changed = stage.provision_again(root, &mut again).await?;
    for line in String::from_utf8_lossy(&again)
        .lines()
        .filter(|line| line.contains(" created, "))
    {
        println!("  {line}");
    }
    check(
        "running bootstrap and deploy again changed nothing (every record found unchanged)".into(),
        !changed,
    );

    println!();
    println!("== Customer {CUSTOMER} installs the Log Note Dispatcher app");
    // The customer's settings in the app's form: where the translated notes go.
    let note_url = stage.customers.note_url.clone();
    let note_app = stage.customers.install_note_dispatcher(CUSTOMER).await?;
    print_deliveries(&note_app.deliveries);
    let stored = stage.customer_secret("note-dispatcher").await?;
    check(
        "the secrets function stored the customer's application and webhook policy".into(),
        stored
            .as_ref()
            .is_some_and(|doc| doc.get("application").is_some() && doc.get("policy").is_some()),
    );

    println!();
    println!(
        "== Customer {CUSTOMER} installs the Typeform app (form {FORM_ID}, a request for the answers)"
    );
    let token = match args.fault {
        Some(Fault::WrongTypeformToken) => "tfp_not_known_to_typeform",
        None => "tfp_widget_data_center",
    };
    stage.typeform.add_form(FORM_ID, "tfp_widget_data_center");
    let (typeform_app, request) = stage.customers.install_typeform(CUSTOMER, token).await?;
    print_deliveries(&typeform_app.deliveries);
    let api_url = Stage::output(&stage.typeform_deploy.outputs, "IntegrationApi");
    let expected_url = format!("{api_url}?account={CUSTOMER}");
    let typeform_stack = sam::integration_stack("typeform").map_or("", |stack| stack.name);
    let settled = stage.engine.settle(WAIT).await
        && stage.engine.activity().iter().any(|activity| {
            matches!(activity, Activity::InstallationEvent { function, account, status: 200, message, .. }
                if function.starts_with(typeform_stack) && account == CUSTOMER && message == "OK")
        });
    // Real 4me delivers the application and the customer's secrets separately (docs/original.md#provider-webhook), so
    // the first installation event cannot register anything yet: expected, not a failure.
    let first_without_token = typeform_app
        .deliveries
        .first()
        .is_some_and(|d| d.data["payload"].get("secrets").is_none());
    let answered_missing_token = stage.engine.activity().iter().any(|activity| {
        matches!(activity, Activity::InstallationEvent { function, account, status, .. }
            if function.starts_with(typeform_stack) && account == CUSTOMER && *status == 400)
    });
    if first_without_token && answered_missing_token {
        println!(
            "  waiting for the token: the first event had only the application, so the Typeform function answered 400 (nothing to retry) and suspended the instance until the token arrived"
        );
    }
    let tag = typeform::api::webhook_tag(PROVIDER, "typeform", CUSTOMER);
    let webhook = stage.typeform.webhook(FORM_ID, &tag);
    check(
        format!(
            "the installation event made the Typeform function register webhook `{tag}` at Typeform for {expected_url}"
        ),
        settled
            && webhook
                .as_ref()
                .is_some_and(|w| w.url == expected_url && w.enabled),
    );
    let stored = stage.customer_secret("typeform").await?;
    check(
        "the Typeform webhook's signing secret is kept in the customer secret (typeform_secret)"
            .into(),
        stored.as_ref().is_some_and(|doc| {
            doc.get_str("typeform_secret").is_some()
                && doc.get_str("typeform_secret")
                    == webhook.as_ref().and_then(|w| w.secret.as_deref())
        }),
    );
    let instance = stage.sandbox.record(&typeform_app.app_instance_id);
    check(
        "the Typeform app instance is active (not suspended)".into(),
        instance
            .as_ref()
            .is_some_and(|record| record["suspended"] != json!(true)),
    );

    println!();
    println!(
        "== {CUSTOMER} completes a request with a note: 4me runs the automation rules of both apps"
    );
    let text = "The printer on floor 3 is working again.";
    let incident = stage.sandbox.seed_request(CUSTOMER, "Printer on floor 3");
    stage
        .customers
        .update_request(CUSTOMER, &incident, text, true)
        .await?;
    println!(
        "  {CUSTOMER} -> requestUpdate on request #{}: note {text:?}, status completed",
        incident.request_id
    );
    let rule_call = stage
        .sandbox
        .wait_for_delivery(WAIT, |d| {
            d.event == "automation_rule" && d.data["payload"]["text"] == text
        })
        .await;
    match &rule_call {
        Some(delivery) => print_rule_call(delivery, "note dispatched"),
        None => println!("  4me did not call the note-dispatcher's webhook"),
    }
    let survey_link =
        format!("Please complete our [survey at: https://widget.typeform.com/to/{FORM_ID}]");
    let incident_notes = stage.sandbox.request_notes(&incident.id);
    if let Some(note) = incident_notes.iter().find(|n| n.starts_with(&survey_link)) {
        println!(
            "  4me ran the Typeform app's rule (status became completed): added note {note:?}"
        );
    }
    check(
        format!(
            "the Typeform app's automation rule asked for the survey on the completed request #{}",
            incident.request_id
        ),
        incident_notes.iter().any(|n| n.starts_with(&survey_link)),
    );
    let posted = stage.customer_url.wait_for(1, WAIT).await;
    let dispatched = posted.first().and_then(|request| request.json().ok());
    if let Some(body) = &dispatched {
        println!(
            "  customer's URL received: {}",
            body["translationResponse"]["translated"]
                .as_str()
                .unwrap_or("(no translation)")
        );
    }
    let translated = stage
        .translations
        .calls()
        .iter()
        .any(|call| call.text.as_deref() == Some(text));
    check(
        "4me's rule called the note-dispatcher, which verified the customer's signature and had Fun Translations translate the note".into(),
        rule_call.as_ref().is_some_and(|d| d.status == Some(200)) && translated,
    );
    check(
        format!("the translated note was posted to the customer's URL {note_url}"),
        dispatched.as_ref().is_some_and(|body| {
            body["input"]["payload"]["text"] == text
                && body["translationResponse"]["translated"].is_string()
        }),
    );

    println!();
    println!("== The requester submits the Typeform survey");
    let response = survey_response();
    match stage.typeform.send_response(FORM_ID, response).await {
        Ok(delivery) => println!(
            "  Typeform -> {} (Typeform-Signature: HMAC-SHA256 with the registered secret) answered {}",
            delivery.url,
            answered(Some(delivery.status), "signature verified, note added")
        ),
        Err(err) => println!("  Typeform could not deliver: {err}"),
    }
    let notes = stage.sandbox.request_notes(&request.id);
    for note in &notes {
        println!("  note on request #{}: {note:?}", request.request_id);
    }
    let survey_note = notes
        .iter()
        .find(|note| note.contains("Customer survey"))
        .cloned();
    check(
        format!(
            "the survey response was added as a note on request #{}",
            request.request_id
        ),
        survey_note.is_some(),
    );
    // A note like any other: the note-dispatcher's rule runs for it too.
    let survey_dispatched = match &survey_note {
        Some(note) => {
            let call = stage
                .sandbox
                .wait_for_delivery(WAIT, |d| {
                    d.event == "automation_rule" && d.data["payload"]["text"] == note.as_str()
                })
                .await;
            if let Some(delivery) = &call {
                print_rule_call(delivery, "note dispatched");
            }
            let posted = stage.customer_url.wait_for(2, WAIT).await;
            call.is_some_and(|d| d.status == Some(200))
                && posted.iter().any(|request| {
                    request
                        .json()
                        .is_ok_and(|body| body["input"]["payload"]["text"] == note.as_str())
                })
        }
        None => false,
    };
    check(
        "the survey note, like every note, was dispatched to the customer's URL too".into(),
        survey_dispatched,
    );

    println!();
    println!("== Customer {CUSTOMER} uninstalls the Typeform app");
    // Another integration's webhook on the same form: the uninstall must leave it alone.
    let other = typeform::api::WebhookRegistration {
        url: "https://hooks.example.com/another-app",
        enabled: true,
        secret: "another-app-secret",
        verify_ssl: true,
    };
    let other_registered = match stage.typeform.url().parse() {
        Ok(url) => match typeform::TypeformApi::new(url) {
            Ok(api) => api
                .put_webhook("tfp_widget_data_center", FORM_ID, "another-app", &other)
                .await
                .is_ok(),
            Err(_) => false,
        },
        Err(_) => false,
    };
    let uninstall = stage.customers.uninstall("typeform", CUSTOMER).await?;
    for delivery in &uninstall {
        println!(
            "  4me -> provider webhook: {} ({})",
            delivery.event,
            answered(delivery.status, "announced on the engine's bus")
        );
    }
    let removed = stage.engine.settle(WAIT).await
        && stage.engine.activity().iter().any(|activity| {
            matches!(activity, Activity::InstallationEvent { function, step, status: 200, .. }
                if function.starts_with(typeform_stack) && step == "deleted")
        });
    let tag = typeform::api::webhook_tag(PROVIDER, "typeform", CUSTOMER);
    check(
        format!(
            "the uninstall reached the Typeform function, which deleted its webhook `{tag}` on form {FORM_ID} and nothing else"
        ),
        removed
            && other_registered
            && stage.typeform.webhook(FORM_ID, &tag).is_none()
            && stage.typeform.webhook(FORM_ID, "another-app").is_some(),
    );
    check(
        "the uninstalled customer's Typeform secret is scheduled for deletion".into(),
        stage.customer_secret("typeform").await?.is_none(),
    );

    connect_lansweeper(&stage, &mut check).await?;

    // Secret writes of the last steps may still be announcing installation events; stopping
    // the sandbox under their handlers would make them fail for no reason of their own.
    if !stage.engine.settle(WAIT).await {
        println!("    engine | (installation events still running after {WAIT:?})");
    }
    let handled = stage
        .engine
        .activity()
        .iter()
        .filter(|a| !matches!(a, Activity::SecretWritten { .. }))
        .count();
    // Stopping everything closes the engine's activity channel: the printer prints what is
    // left and ends, so the summary comes last.
    drop(stage);
    if let Some(printer) = printer
        && tokio::time::timeout(Duration::from_secs(5), printer)
            .await
            .is_err()
    {
        println!("    engine | (stopped printing)");
    }
    println!();
    println!("== Summary");
    let missing: Vec<&Check> = checks.iter().filter(|c| !c.observed).collect();
    for c in &checks {
        println!(
            "  {} {}",
            if c.observed { "[ok]" } else { "[MISSING]" },
            c.effect
        );
    }
    println!("  the local engine handled {handled} requests and events");
    if missing.is_empty() {
        println!(
            "demo passed: all {} expected effects observed",
            checks.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for c in &missing {
            eprintln!("demo failed: missing effect: {}", c.effect);
        }
        Ok(ExitCode::FAILURE)
    }
}

/// The customer installs the Lansweeper app through its configuration page, as a browser would
/// (following its links, no JavaScript), and the first sync brings the site's assets into 4me.
async fn connect_lansweeper(
    stage: &Stage,
    check: &mut impl FnMut(String, bool),
) -> Result<(), DemoError> {
    let fail =
        |what: &str, err: &dyn std::fmt::Display| DemoError::Sandbox(format!("{what}: {err}"));
    println!();
    println!(
        "== Customer {CUSTOMER} installs the Lansweeper app and connects it on its configuration page"
    );
    let mut site = SiteSpec::new(LANSWEEPER_SITE, LANSWEEPER_ASSETS);
    site.installations = vec!["Main".into()];
    stage.lansweeper.add_site(site);
    let (installed, app) = stage.customers.install_lansweeper(CUSTOMER).await?;
    print_deliveries(&installed.deliveries);
    let api_url = Stage::output(&stage.lansweeper_deploy.outputs, "IntegrationApi");
    let link = installed.configuration_url.clone().unwrap_or_default();
    check(
        format!(
            "4me created the instance disabled and sent the user to the configuration URI {api_url}configure with a signed link"
        ),
        link.starts_with(&format!("{api_url}configure?"))
            && stage
                .sandbox
                .record(&installed.app_instance_id)
                .is_some_and(|i| i["disabled"] == true),
    );
    stage.engine.settle(WAIT).await;

    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|err| fail("HTTP client", &err))?;
    let get = |url: String| {
        let browser = browser.clone();
        async move {
            let response = browser
                .get(&url)
                .send()
                .await
                .map_err(|err| fail(&url, &err))?;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = response.text().await.unwrap_or_default();
            Ok::<_, DemoError>((status, location, text))
        }
    };
    let (status, _, page) = get(link.clone()).await?;
    let callback = element_text(&page, "callback-url").unwrap_or_default();
    let connect = href(&page, "connect").unwrap_or_default();
    println!("  browser  GET configuration page: {status}, callback URL {callback}");
    check(
        "the configuration page checked 4me's signature, the instance, its account and creation time, and showed Connect Lansweeper".into(),
        status == 200 && !callback.is_empty() && !connect.is_empty(),
    );
    // The customer registers the callback URL with the application in Lansweeper, then
    // follows Connect Lansweeper and authorizes.
    stage
        .lansweeper
        .register_redirect_uri(&app.client_id, &callback);
    let (status, back, _) = get(connect).await?;
    println!("  browser  Lansweeper authorization: {status} back to the callback");
    let (status, _, page) = get(back.unwrap_or_default()).await?;
    let confirmation = href(&page, "return").unwrap_or_default();
    let stored = stage
        .customer_secret("lansweeper")
        .await?
        .is_some_and(|doc| doc.get_str("refresh_token").is_some());
    check(
        format!(
            "the callback stored Lansweeper's refresh token in the customer secret and showed the authorized site `{LANSWEEPER_SITE}` and Return to 4me"
        ),
        status == 200 && stored && page.contains(LANSWEEPER_SITE) && !confirmation.is_empty(),
    );
    let (status, _, _) = get(confirmation).await?;
    stage.engine.settle(WAIT).await;
    let enabled = stage
        .sandbox
        .record(&installed.app_instance_id)
        .is_some_and(|i| i["disabled"] == false);
    println!("  browser  4me confirmation page: {status}");
    check(
        "the customer confirmed in 4me: the instance is enabled".into(),
        enabled,
    );

    // The enabled change queued the first sync; its summary lands in the instance.
    let mut summary = Value::Null;
    for _ in 0..100 {
        stage.engine.settle(WAIT).await;
        let instance = stage.sandbox.record(&installed.app_instance_id);
        summary = instance
            .as_ref()
            .and_then(|i| i["customFields"].as_array().cloned())
            .into_iter()
            .flatten()
            .find(|f| f["id"] == "sync_summary")
            .map(|f| f["value"].clone())
            .unwrap_or(Value::Null);
        if summary.is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let uploaded = summary
        .as_str()
        .and_then(|text| {
            text.strip_prefix(
                "```
",
            )
        })
        .and_then(|text| {
            text.strip_suffix(
                "
```
",
            )
        })
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|v| v["uploadCounts"][LANSWEEPER_SITE]["Main"].as_u64())
        .unwrap_or(0);
    let customer = FourMeClient::new(
        stage.endpoints.clone(),
        CUSTOMER,
        Credentials::new(
            installed.customer_credentials.client_id.clone(),
            installed.customer_credentials.client_secret.clone(),
        ),
        ClientSettings::default(),
    )
    .map_err(|err| fail("customer client", &err))?;
    let counted: Value = customer
        .query(
            "{ configurationItems(first: 1, filter: {ruleSet: {values: [physical_asset]}}) { totalCount } }",
            &json!({}),
        )
        .await
        .map_err(|err| fail("configurationItems", &err))?;
    let in_4me = counted["configurationItems"]["totalCount"]
        .as_u64()
        .unwrap_or(0);
    println!(
        "  sync     {uploaded} of the site's {LANSWEEPER_ASSETS} assets uploaded (the others are filtered as the original filters them); {in_4me} discovered CIs in {CUSTOMER}"
    );
    check(
        format!(
            "the first sync brought the site's assets into 4me as discovered CIs ({uploaded} uploaded, {in_4me} in the customer's account) and wrote its summary"
        ),
        uploaded > 0 && uploaded == in_4me,
    );
    Ok(())
}

/// The `href` of the element with id `id` in a page (entities of the engine's pages undone).
fn href(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let start = html[at..].find("href=\"")? + at + 6;
    let end = html[start..].find('"')? + start;
    Some(unescape(&html[start..end]))
}

/// The text of the element with id `id` in a page.
fn element_text(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let start = html[at..].find('>')? + at + 1;
    let end = html[start..].find('<')? + start;
    Some(unescape(&html[start..end]))
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The deliveries of an installation: what they carried and how they were signed; a 200 means
/// the secrets function verified the signature with the provider's policy before storing.
fn print_deliveries(deliveries: &[app_builder_sandbox::Delivery]) {
    for delivery in deliveries {
        let parts: Vec<&str> = ["application", "policy", "secrets"]
            .into_iter()
            .filter(|key| delivery.data["payload"].get(*key).is_some())
            .collect();
        println!(
            "  4me -> {} {} carrying {} (JWT signed {} with the provider's webhook policy) answered {}",
            delivery.uri,
            delivery.event,
            parts.join(" + "),
            jwt_alg(&delivery.jwt),
            answered(delivery.status, "signature verified, stored")
        );
    }
}

/// A webhook call of an automation rule: where it went, what it carried, how it was signed.
fn print_rule_call(delivery: &app_builder_sandbox::Delivery, meaning: &str) {
    let names: Vec<&str> = delivery.data["payload"]
        .as_object()
        .map(|payload| payload.keys().map(String::as_str).collect())
        .unwrap_or_default();
    println!(
        "  4me ran the rule of {:?}: -> {} {} with payload {{{}}} (JWT signed {} with the customer's webhook policy) answered {}",
        delivery.data["name"].as_str().unwrap_or_default(),
        delivery.uri,
        delivery.event,
        names.join(", "),
        jwt_alg(&delivery.jwt),
        answered(
            delivery.status,
            &format!("signature verified with the policy stored at installation, {meaning}")
        )
    );
}

/// `200 (<meaning>)`, or the status (or transport failure) otherwise.
fn answered(status: Option<u16>, meaning: &str) -> String {
    match status {
        Some(200) => format!("200 ({meaning})"),
        Some(status) => status.to_string(),
        None => "nothing (no connection)".to_owned(),
    }
}

/// The `alg` of a JWS header (`?` when unreadable).
fn jwt_alg(jwt: &str) -> String {
    use base64::Engine as _;
    jwt.split('.')
        .next()
        .and_then(|header| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .ok()
        })
        .and_then(|header| serde_json::from_slice::<Value>(&header).ok())
        .and_then(|header| header["alg"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn survey_response() -> Value {
    json!({
        "form_id": FORM_ID,
        "token": uuid::Uuid::new_v4().simple().to_string(),
        "submitted_at": "2026-11-23T10:00:00Z",
        "definition": {"id": FORM_ID, "title": "Customer survey", "fields": [
            {"id": "f1", "title": "Were you helped well?", "type": "yes_no", "ref": "happy"}
        ]},
        "answers": [{"type": "boolean", "boolean": true,
                     "field": {"id": "f1", "type": "yes_no", "ref": "happy"}}]
    })
}

/// The local 4me, fakes and engine, provisioned, for `cargo xtask replay`.
pub struct Running(Stage);

impl Running {
    /// The engine's URL.
    pub fn url(&self) -> &str {
        self.0.engine.url()
    }

    /// Waits until the events on the engine's bus are handled.
    pub async fn settle(&self) -> bool {
        self.0.engine.settle(WAIT).await
    }
}

/// Starts and provisions what `cargo xtask local` runs, printing its progress.
pub async fn start_local(root: &Path, args: &LocalArgs) -> Result<Running, DemoError> {
    let schedule = (args.schedule_secs > 0).then(|| Duration::from_secs(args.schedule_secs));
    let stage = Stage::start(
        root,
        args.sandbox_listen,
        args.engine_listen,
        schedule,
        false,
    )
    .await?;
    if let Some(path) = &args.record {
        stage.engine.record_to(path)?;
    }
    Ok(Running(stage))
}

/// Runs `cargo xtask local`: provisions like the demo, prints the URLs and waits for Ctrl-C.
pub async fn local(root: &Path, args: &LocalArgs) -> Result<ExitCode, DemoError> {
    // Listen for Ctrl-C from the start: one pressed during set-up stops cleanly too.
    let stop = tokio::spawn(tokio::signal::ctrl_c());
    let Running(stage) = start_local(root, args).await?;
    // Subscribed before anything is printed that invites requests, so that the first one is
    // printed too (a broadcast has no history for late subscribers).
    let printer = print_activity(&stage.engine);
    println!();
    println!("== Running. Function URLs of the local engine:");
    for (function, route) in stage.engine.routes() {
        println!("  {route:<70} {function}");
    }
    println!();
    println!(
        "Provider account `{PROVIDER}` in the sandbox 4me at {}",
        stage.sandbox.url()
    );
    for report in [
        &stage.note_dispatcher,
        &stage.typeform_deploy,
        &stage.lansweeper_deploy,
    ] {
        println!(
            "  app offering {:<16} {}",
            report.offering_reference, report.offering_url
        );
    }
    let secrets_url = stage.bootstrap.secrets_url.clone().unwrap_or_default();
    let note_api = Stage::output(&stage.note_dispatcher.outputs, "IntegrationApi");
    println!();
    println!("Try (every request and event is printed below as the engine handles it):");
    println!(
        "  curl -i -X POST '{secrets_url}' -H 'content-type: application/json' -d '{{\"jwt\": \"not-a-token\"}}'"
    );
    println!(
        "  curl -i -X POST '{note_api}?account=someone' -H 'content-type: application/json' -d '{{\"jwt\": \"x\"}}'"
    );
    println!();
    println!(
        "Console (every invocation, its log lines and a replay button; install apps, add notes, fire the schedule): {}/_console",
        stage.engine.url()
    );
    println!(
        "App Store (each offering's card and installation form, as the customer sees them; Save installs): {}/app_store",
        stage.sandbox.url()
    );
    if let Some(path) = &args.record {
        println!(
            "Recording to {} (replay with: cargo xtask replay {} --engine {})",
            path.display(),
            path.display(),
            stage.engine.url()
        );
    }
    println!("Stop with Ctrl-C.");
    match stop.await {
        Ok(result) => result?,
        Err(join) => return Err(DemoError::Output(std::io::Error::other(join))),
    }
    println!("stopping");
    drop(stage);
    // The printer ends once the engine is gone and what it reported is printed.
    let _ = tokio::time::timeout(Duration::from_secs(5), printer).await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Lansweeper app connected through its configuration page in headless Chromium
    /// (JavaScript off), against the provisioned local engine, the sandbox and the Lansweeper
    /// fake: a doctored link's error page, the page, a refusal by Lansweeper and trying again,
    /// the connected page with the site, back to 4me, enabled and synced.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lansweeper_configuration_flow_in_a_real_browser() {
        use crate::browser::session::Browser;
        let root = crate::test::workspace_root();
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let stage = Stage::start(&root, any, any, None, false).await.unwrap();
        let mut site = SiteSpec::new(LANSWEEPER_SITE, 20);
        site.installations = vec!["Main".into()];
        stage.lansweeper.add_site(site);
        let (installed, app) = stage.customers.install_lansweeper(CUSTOMER).await.unwrap();
        assert!(stage.engine.settle(WAIT).await);
        let link = installed.configuration_url.clone().unwrap();
        let browser = Browser::start().await;

        // A doctored link: the page says what is wrong, and nothing happens.
        let forged = link.replace("account_id=widget-data-center", "account_id=someone-else");
        browser.client.goto(&forged).await.unwrap();
        assert_eq!(browser.heading().await, "Lansweeper could not be connected");
        let body = browser.body().await;
        assert!(body.contains("its account does not match"), "{body}");
        assert!(body.contains("Nothing was changed."), "{body}");

        // 4me's link: the page, the callback URL to register, Connect Lansweeper.
        browser.client.goto(&link).await.unwrap();
        assert_eq!(browser.heading().await, "Connect Lansweeper");
        let callback = browser.text("callback-url").await;
        assert!(callback.contains("/lansweeper/integration/widget-data-center/"));
        stage
            .lansweeper
            .register_redirect_uri(&app.client_id, &callback);

        // The user declines in Lansweeper, tries again and grants.
        stage.lansweeper.set_declining(true);
        browser.click("connect").await;
        assert_eq!(browser.heading().await, "Lansweeper could not be connected");
        assert!(browser.body().await.contains("access_denied"));
        stage.lansweeper.set_declining(false);
        browser.click("again").await;
        assert_eq!(browser.heading().await, "Connect Lansweeper");
        browser.click("connect").await;
        assert_eq!(browser.heading().await, "Lansweeper is connected");
        assert_eq!(browser.text("sites").await, LANSWEEPER_SITE);

        // Back to 4me, which enables the instance; its first sync follows.
        browser.click("return").await;
        assert_eq!(browser.heading().await, "Installation confirmed");
        browser.close().await;
        let field = |id: &str| {
            stage
                .sandbox
                .record(&installed.app_instance_id)
                .and_then(|i| i["customFields"].as_array().cloned())
                .into_iter()
                .flatten()
                .find(|f| f["id"] == id)
                .map(|f| f["value"].clone())
                .unwrap_or(Value::Null)
        };
        for _ in 0..200 {
            if field("sync_summary").is_string() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let instance = stage.sandbox.record(&installed.app_instance_id).unwrap();
        assert_eq!(instance["disabled"], false);
        assert_eq!(field("connection_status"), json!("success"));
        assert!(field("sync_summary").is_string(), "{instance}");
    }

    /// The local console in headless Chromium (JavaScript on): the page loads; its Install
    /// button installs the Typeform app in the local 4me, and the installation events follow;
    /// a delivery made meanwhile is listed with its verdict and log lines; its replay (signed
    /// again by the local 4me) appears as a duplicate; an invocation made outside the page
    /// appears without a reload; the outcome filter keeps the duplicates; no secret is on the
    /// page. The screenshot goes to `target/screenshots/console.png`, or with
    /// `UPDATE_SCREENSHOTS=1` to `docs/console.png` (the README's).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_console_in_a_real_browser() {
        use crate::browser::session::Browser;
        let root = crate::test::workspace_root();
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let stage = Stage::start(&root, any, any, None, false).await.unwrap();
        let console = format!("{}/_console", stage.engine.url());
        let browser = Browser::with_javascript().await;
        browser.client.goto(&console).await.unwrap();
        assert_eq!(browser.heading().await, "Local engine console");
        // Bootstrap's webhook.verify reached the secrets function already.
        browser.wait_for_text("POST /secrets/").await;

        // Install the Typeform app with the console's button.
        browser
            .client
            .find(fantoccini::Locator::Css(
                "#action-install select[name=offering]",
            ))
            .await
            .unwrap()
            .select_by_value("typeform")
            .await
            .unwrap();
        browser.click("run-install").await;
        let notice = browser.text("notice").await;
        assert!(notice.contains("installed typeform"), "{notice}");
        assert!(stage.engine.settle(WAIT).await);
        let entries = stage.engine.entries_after(0);
        let typeform = "app-builder-typeform-IntegrationFunction";
        assert!(
            entries
                .iter()
                .any(|e| e.function == typeform && e.source == "Installation changed (installed)"),
            "{entries:?}"
        );
        browser.client.goto(&console).await.unwrap();
        let page = browser
            .wait_for_text("Installation changed (secrets-updated)")
            .await;
        assert!(page.contains("Installation changed (installed)"), "{page}");

        // A delivery of the install: listed with its delivery id, verdict and log lines.
        let delivery = entries
            .iter()
            .find(|e| e.source == "POST /secrets/" && e.account.as_deref() == Some(CUSTOMER))
            .cloned()
            .unwrap();
        let row = browser.text(&format!("entry-{}", delivery.id)).await;
        assert!(row.contains(delivery.delivery.as_deref().unwrap()), "{row}");
        assert!(row.contains("accepted"), "{row}");
        assert!(row.contains("log lines"), "{row}");
        assert!(
            delivery
                .logs
                .last()
                .unwrap()
                .contains("\"CloudWatchMetrics\"")
        );

        // Its replay: signed again by the local 4me, the same delivery, a duplicate.
        browser.click(&format!("replay-{}", delivery.id)).await;
        let notice = browser.text("notice").await;
        assert!(
            notice.contains("signed again by the local 4me and sent, answered 200"),
            "{notice}"
        );
        // Found by what it replays: an invocation of an earlier step (a bus event) may end
        // after it and be listed above it.
        let replay = stage
            .engine
            .entries_after(0)
            .into_iter()
            .find(|e| e.replay_of == Some(delivery.id))
            .expect("the replay is in the journal");
        let row = browser.text(&format!("entry-{}", replay.id)).await;
        assert!(
            row.contains(&format!("(replay of #{})", delivery.id)),
            "{row}"
        );
        assert!(row.contains("duplicate"), "{row}");
        let duplicates = browser
            .text_of(
                "#counters tr[data-function=app-builder-engine-SecretsFunction] td[data-metric=Duplicates]",
            )
            .await;
        assert_eq!(duplicates, "1");
        assert_eq!(
            stage.engine.metrics()["app-builder-engine-SecretsFunction"]
                .get(app_builder_core::metrics::DELIVERIES_DUPLICATE),
            1.0
        );

        // Live: an invocation made outside the page appears without a reload.
        let before = browser.client.current_url().await.unwrap();
        stage.engine.run_schedule_once().await;
        let newest = stage.engine.entries_after(0).last().unwrap().clone();
        assert_eq!(newest.source, "schedule");
        let row = browser
            .wait_for_element(&format!("entry-{}", newest.id))
            .await;
        assert!(row.contains("schedule"), "{row}");
        assert_eq!(
            browser.client.current_url().await.unwrap(),
            before,
            "no reload"
        );

        // The outcome filter keeps the duplicates only.
        browser
            .client
            .find(fantoccini::Locator::Css("#filters select[name=outcome]"))
            .await
            .unwrap()
            .select_by_value("duplicate")
            .await
            .unwrap();
        browser.click("filter").await;
        let rows = browser
            .client
            .find_all(fantoccini::Locator::Css("tbody.entry"))
            .await
            .unwrap();
        assert!(!rows.is_empty());
        for row in rows {
            assert_eq!(
                row.attr("data-outcome").await.unwrap().as_deref(),
                Some("duplicate")
            );
        }

        // Never a secret: not the customer's Typeform token, not the webhook's signing secret.
        browser.client.goto(&console).await.unwrap();
        // The newest entry's log lines, opened (for the screenshot).
        browser
            .client
            .find(fantoccini::Locator::Css("tbody.entry summary"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let source = browser.client.source().await.unwrap();
        let secret = stage.customer_secret("typeform").await.unwrap().unwrap();
        for value in [
            "tfp_widget_data_center",
            secret.get_str("typeform_secret").unwrap(),
        ] {
            assert!(!source.contains(value), "the console shows a secret");
        }
        browser.screenshot("console").await;
        browser.close().await;
    }

    /// Each offering in the sandbox's App Store, in headless Chromium (JavaScript on), as the
    /// customer sees it: the card; the UI extension's form, whose Save with the required fields
    /// empty names each of them and installs nothing; filled in, Save installs the app: the
    /// plain fields are the instance's custom fields, the secret field reaches the customer
    /// secret through the secrets webhook and is in neither the custom fields nor a log line.
    /// Screenshots of each form (`app_store_<offering>.png`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_app_store_preview_in_a_real_browser() {
        use crate::browser::session::Browser;
        let root = crate::test::workspace_root();
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let stage = Stage::start(&root, any, any, None, false).await.unwrap();
        let browser = Browser::with_javascript().await;
        let lansweeper_app = stage.lansweeper.add_client();
        let request = stage
            .sandbox
            .seed_request("acme-typeform", "Survey results");
        stage.typeform.add_form(FORM_ID, "tfp_acme_token");
        let form_url = format!("https://widget.typeform.com/to/{FORM_ID}");
        let note_url = stage.customers.note_url.clone();
        let offerings = [
            (
                "note-dispatcher",
                vec!["Target URL"],
                vec![("#url", "url", note_url.as_str())],
                None,
            ),
            (
                "typeform",
                vec!["Form URL", "Personal access token", "Request ID"],
                vec![
                    ("#form_url", "form_url", form_url.as_str()),
                    ("#request_id", "request_id", request.request_id.as_str()),
                ],
                Some(("#typeform_token", "typeform_token", "tfp_acme_token")),
            ),
            (
                "lansweeper",
                vec!["Client ID", "Client secret", "Installation names"],
                vec![
                    ("#client_id", "client_id", lansweeper_app.client_id.as_str()),
                    // The list editor keeps the names as a bulleted list.
                    (
                        "#installations_editor input.list-value",
                        "installations",
                        "Main",
                    ),
                ],
                Some((
                    "#client_secret",
                    "client_secret",
                    lansweeper_app.client_secret.as_str(),
                )),
            ),
        ];
        for (reference, required, plain, secret) in offerings {
            let account = format!("acme-{reference}");
            let config = crate::config4me::load_integration(&root, reference).unwrap();
            browser
                .client
                .goto(&format!(
                    "{}/app_store/{reference}?account={account}",
                    stage.sandbox.url()
                ))
                .await
                .unwrap();
            assert_eq!(
                browser.heading().await,
                config.offering.input["name"].as_str().unwrap()
            );
            let card = browser.text("card").await;
            assert!(
                card.contains(config.offering.input["description"].as_str().unwrap()),
                "{card}"
            );
            let avatar = browser
                .client
                .find(fantoccini::Locator::Css("#card img.avatar"))
                .await
                .unwrap()
                .attr("src")
                .await
                .unwrap()
                .unwrap();
            let fetched = reqwest::get(format!("{}{avatar}", stage.sandbox.url()))
                .await
                .unwrap();
            assert_eq!(fetched.status(), 200, "{reference}: avatar {avatar}");
            browser.screenshot(&format!("app_store_{reference}")).await;

            // Save with the required fields empty: each is named, nothing is installed.
            let sent = stage.sandbox.deliveries().len();
            browser.press("#save").await;
            let errors = browser.wait_for_element("errors").await;
            for label in &required {
                assert!(
                    errors.contains(&format!("{label} is required.")),
                    "{reference}: {errors}"
                );
            }
            assert_eq!(stage.sandbox.deliveries().len(), sent, "{reference}");

            for (css, _, value) in &plain {
                browser.fill(css, value).await;
            }
            if let Some((css, _, value)) = secret {
                browser.fill(css, value).await;
            }
            browser.press("#save").await;
            let installed = browser.wait_for_element("installed").await;
            let instance = installed
                .strip_prefix("Installed: app instance ")
                .unwrap()
                .to_owned();
            assert!(stage.engine.settle(WAIT).await);
            let record = stage.sandbox.record(&instance).unwrap();
            let fields = record["customFields"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let value_of = |id: &str| {
                fields
                    .iter()
                    .find(|f| f["id"] == id)
                    .map(|f| f["value"].clone())
                    .unwrap_or(Value::Null)
            };
            for (_, id, value) in &plain {
                let stored = value_of(id);
                let expected = if *id == "installations" {
                    json!(format!("* {value}"))
                } else {
                    json!(value)
                };
                assert!(
                    // A number field (the request id) is saved as a number.
                    stored == expected
                        || Some(stored.clone()) == value.parse::<u64>().ok().map(|n| json!(n)),
                    "{reference}: {id} = {stored}"
                );
            }
            if let Some((_, key, value)) = secret {
                assert_eq!(
                    value_of(key),
                    Value::Null,
                    "{reference}: a secret as a custom field"
                );
                assert!(!record.to_string().contains(value), "{reference}");
                let stored = stage.customer_secret_of(reference, &account).await;
                let kept = stored
                    .as_ref()
                    .and_then(|doc| doc.get("secrets"))
                    .and_then(|secrets| secrets.get(key))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                assert_eq!(
                    kept.as_deref(),
                    Some(value),
                    "{reference}: the secret reaches the customer secret"
                );
                for entry in stage.engine.entries_after(0) {
                    for line in &entry.logs {
                        assert!(!line.contains(value), "{reference}: a secret in a log line");
                    }
                }
            }
        }
        browser.close().await;
    }

    /// Every stack of the repository deploys into the engine and answers every Output its
    /// template declares, with local values the engine serves.
    #[tokio::test]
    async fn local_deployer_answers_every_template_output() {
        let root = crate::test::workspace_root();
        let dir = tempfile::tempdir().unwrap();
        let engine = LocalEngine::start(EngineOptions::new(dir.path()))
            .await
            .unwrap();
        let deployer = LocalDeployer {
            root: &root,
            engine: &engine,
        };
        let mut stacks = vec![sam::ENGINE];
        stacks.extend(
            ["note-dispatcher", "typeform", "lansweeper"]
                .map(|i| sam::integration_stack(i).unwrap()),
        );
        for stack in stacks {
            let overrides = if stack == sam::ENGINE {
                sam::engine_overrides("4me-demo.com", "wdc", "*")
            } else {
                sam::integration_overrides("4me-demo.com", "wdc", stack.config_env)
            };
            let outputs = deployer.deploy(&stack, &overrides).await.unwrap();
            let template =
                Template::parse(&std::fs::read_to_string(root.join(stack.template)).unwrap())
                    .unwrap();
            let declared: Vec<&str> = template.outputs.iter().map(|o| o.name.as_str()).collect();
            assert_eq!(
                outputs.keys().map(String::as_str).collect::<Vec<_>>(),
                {
                    let mut sorted = declared.clone();
                    sorted.sort_unstable();
                    sorted
                },
                "{}",
                stack.name
            );
            for (name, value) in &outputs {
                if name.ends_with("Api") {
                    assert!(value.starts_with(engine.url()), "{name} = {value}");
                } else if template.functions.iter().any(|f| &f.logical_id == name) {
                    assert_eq!(
                        value,
                        &format!(
                            "arn:aws:lambda:local:000000000000:function:{}-{name}",
                            stack.name
                        )
                    );
                }
            }
            // The same deploy again: the same outputs.
            assert_eq!(deployer.deploy(&stack, &overrides).await.unwrap(), outputs);
        }
        let wrong = deployer
            .deploy(
                &sam::ENGINE,
                &[("OfferingReferenceParameter".into(), "x".into())],
            )
            .await
            .unwrap_err();
        assert!(
            wrong.to_string().contains("OfferingReferenceParameter"),
            "{wrong}"
        );
    }
}
