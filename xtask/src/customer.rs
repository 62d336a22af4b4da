//! A customer of the provider in the local 4me: installs and uninstalls the apps with what each
//! app's form asks for, and works requests with its own API client. `cargo xtask demo` plays
//! these steps in order; the buttons of the local console (`cargo xtask local`) run them one
//! at a time ([`ConsoleActions`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use app_builder_core::fourme::{ClientSettings, Credentials, Endpoints, FourMeClient};
use app_builder_local::{ConsoleAction, ConsoleActions, ConsoleField};
use app_builder_sandbox::lansweeper::LansweeperFake;
use app_builder_sandbox::typeform::TypeformFake;
use app_builder_sandbox::{
    Delivery, InstallOptions, InstalledApp, OAuthCredentials, Sandbox, SeededRequest,
};
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use crate::demo::DemoError;

/// The Typeform form every customer's installation points at.
pub const FORM_ID: &str = "u6nXL7";

/// The offerings a customer can install, by reference.
pub const OFFERINGS: [&str; 3] = ["note-dispatcher", "typeform", "lansweeper"];

/// The customer's side of the local 4me and of the other services it uses.
#[derive(Clone)]
pub struct Customers {
    /// The local 4me.
    pub sandbox: Sandbox,
    /// The Typeform fake (the customer's forms).
    pub typeform: TypeformFake,
    /// The Lansweeper fake (the customer's Lansweeper application).
    pub lansweeper: LansweeperFake,
    /// Where the customer wants the translated notes (the note-dispatcher's `url` field).
    pub note_url: String,
    /// 4me's endpoints (for the customer's own API client).
    pub endpoints: Endpoints,
    /// The console's customer (the first account its forms propose).
    pub default_account: String,
    /// App instances installed here, by (offering, account).
    installed: Arc<Mutex<BTreeMap<(String, String), String>>>,
    /// The request each account works on (the console's notes go to it until it is completed).
    requests: Arc<Mutex<BTreeMap<String, SeededRequest>>>,
}

impl Customers {
    /// The customers of this local 4me and these fakes.
    pub fn new(
        sandbox: Sandbox,
        typeform: TypeformFake,
        lansweeper: LansweeperFake,
        note_url: String,
        endpoints: Endpoints,
        default_account: &str,
    ) -> Customers {
        Customers {
            sandbox,
            typeform,
            lansweeper,
            note_url,
            endpoints,
            default_account: default_account.to_owned(),
            installed: Arc::default(),
            requests: Arc::default(),
        }
    }

    /// `account` installs the Log Note Dispatcher app, sending its notes to [`Self::note_url`].
    pub async fn install_note_dispatcher(&self, account: &str) -> Result<InstalledApp, DemoError> {
        let mut custom_fields = Map::new();
        custom_fields.insert("url".into(), json!(self.note_url));
        self.install(
            "note-dispatcher",
            account,
            InstallOptions {
                custom_fields,
                ..InstallOptions::default()
            },
        )
        .await
    }

    /// `account` installs the Typeform app for form [`FORM_ID`] with Typeform token `token`,
    /// the answers going to a new request (returned).
    pub async fn install_typeform(
        &self,
        account: &str,
        token: &str,
    ) -> Result<(InstalledApp, SeededRequest), DemoError> {
        let request = self.sandbox.seed_request(account, "Survey results");
        let mut custom_fields = Map::new();
        custom_fields.insert(
            "form_url".into(),
            json!(format!("https://widget.typeform.com/to/{FORM_ID}")),
        );
        custom_fields.insert(
            "request_id".into(),
            request
                .request_id
                .parse::<u64>()
                .map_or_else(|_| json!(request.request_id), |id| json!(id)),
        );
        let mut secrets = Map::new();
        secrets.insert("typeform_token".into(), json!(token));
        let installed = self
            .install(
                "typeform",
                account,
                InstallOptions {
                    secrets,
                    custom_fields,
                    ..InstallOptions::default()
                },
            )
            .await?;
        Ok((installed, request))
    }

    /// `account` installs the Lansweeper app, with its own application in Lansweeper entered in
    /// the app's form in 4me (client id a field, client secret a secret field).
    pub async fn install_lansweeper(
        &self,
        account: &str,
    ) -> Result<(InstalledApp, OAuthCredentials), DemoError> {
        let app = self.lansweeper.add_client();
        let mut custom_fields = Map::new();
        custom_fields.insert("client_id".into(), json!(app.client_id));
        custom_fields.insert("import_type".into(), json!("all"));
        let mut secrets = Map::new();
        secrets.insert("client_secret".into(), json!(app.client_secret));
        let installed = self
            .install(
                "lansweeper",
                account,
                InstallOptions {
                    custom_fields,
                    secrets,
                    ..InstallOptions::default()
                },
            )
            .await?;
        Ok((installed, app))
    }

    async fn install(
        &self,
        offering: &str,
        account: &str,
        options: InstallOptions,
    ) -> Result<InstalledApp, DemoError> {
        let installed = self
            .sandbox
            .install_app(offering, account, options)
            .await
            .map_err(|err| DemoError::Sandbox(format!("install {offering}: {err}")))?;
        lock(&self.installed).insert(
            (offering.to_owned(), account.to_owned()),
            installed.app_instance_id.clone(),
        );
        Ok(installed)
    }

    /// `account` uninstalls `offering` (installed here): 4me deletes the instance and sends
    /// `app_instance.delete` (returned).
    pub async fn uninstall(
        &self,
        offering: &str,
        account: &str,
    ) -> Result<Vec<Delivery>, DemoError> {
        let key = (offering.to_owned(), account.to_owned());
        let instance = lock(&self.installed)
            .get(&key)
            .cloned()
            .ok_or_else(|| DemoError::Sandbox(format!("{account} has not installed {offering}")))?;
        let deliveries = self
            .sandbox
            .uninstall_app(&instance)
            .await
            .map_err(|err| DemoError::Sandbox(format!("uninstall {offering}: {err}")))?;
        lock(&self.installed).remove(&key);
        Ok(deliveries)
    }

    /// A person of `account` adds `note` to `request` with the account's own API client (not
    /// one of the apps'), and completes it when `complete`: 4me runs the automation rules of
    /// the installed apps.
    pub async fn update_request(
        &self,
        account: &str,
        request: &SeededRequest,
        note: &str,
        complete: bool,
    ) -> Result<(), DemoError> {
        let own = self.sandbox.add_oauth_application(account);
        let client = FourMeClient::new(
            self.endpoints.clone(),
            account,
            Credentials::new(own.client_id.clone(), own.client_secret.clone()),
            ClientSettings::default(),
        )
        .map_err(|err| DemoError::Sandbox(err.to_string()))?;
        let mut input = json!({"id": request.id, "note": note});
        if complete {
            input["status"] = json!("completed");
        }
        let updated: Value = client
            .mutation(
                "mutation($input: RequestUpdateInput!) { requestUpdate(input: $input) { errors { path message } request { id status } } }",
                &json!({ "input": input }),
            )
            .await
            .map_err(|err| DemoError::Sandbox(err.to_string()))?;
        match updated["errors"].as_array() {
            Some(errors) if !errors.is_empty() => Err(DemoError::Sandbox(format!(
                "requestUpdate: {}",
                updated["errors"]
            ))),
            _ => Ok(()),
        }
    }

    /// The request the console works on for `account` (a new one after the last was completed).
    fn current_request(&self, account: &str) -> SeededRequest {
        lock(&self.requests)
            .entry(account.to_owned())
            .or_insert_with(|| self.sandbox.seed_request(account, "Printer on floor 3"))
            .clone()
    }

    async fn run_action(
        &self,
        name: &str,
        fields: &BTreeMap<String, String>,
    ) -> Result<String, DemoError> {
        let field = |key: &str| {
            fields
                .get(key)
                .map(|value| value.trim())
                .unwrap_or_default()
        };
        let account = field("account");
        if account.is_empty() {
            return Err(DemoError::Sandbox("an account is needed".into()));
        }
        match name {
            "install" => match field("offering") {
                "note-dispatcher" => {
                    let installed = self.install_note_dispatcher(account).await?;
                    Ok(format!(
                        "{account} installed note-dispatcher ({})",
                        deliveries(&installed.deliveries)
                    ))
                }
                "typeform" => {
                    let token = format!("tfp_{}", account.replace('-', "_"));
                    self.typeform.add_form(FORM_ID, &token);
                    let (installed, request) = self.install_typeform(account, &token).await?;
                    Ok(format!(
                        "{account} installed typeform for form {FORM_ID}, answers to request #{} ({})",
                        request.request_id,
                        deliveries(&installed.deliveries)
                    ))
                }
                "lansweeper" => {
                    let (installed, _) = self.install_lansweeper(account).await?;
                    Ok(format!(
                        "{account} installed lansweeper ({}); connect it at {}",
                        deliveries(&installed.deliveries),
                        installed.configuration_url.unwrap_or_default()
                    ))
                }
                other => Err(DemoError::Sandbox(format!("no offering `{other}`"))),
            },
            "uninstall" => {
                let offering = field("offering");
                let sent = self.uninstall(offering, account).await?;
                Ok(format!(
                    "{account} uninstalled {offering} ({})",
                    deliveries(&sent)
                ))
            }
            "note" | "complete" => {
                let text = field("text");
                if text.is_empty() {
                    return Err(DemoError::Sandbox("a note text is needed".into()));
                }
                let request = self.current_request(account);
                let complete = name == "complete";
                self.update_request(account, &request, text, complete)
                    .await?;
                if complete {
                    lock(&self.requests).remove(account);
                    Ok(format!(
                        "{account} completed request #{} with a note",
                        request.request_id
                    ))
                } else {
                    Ok(format!(
                        "{account} added a note to request #{}",
                        request.request_id
                    ))
                }
            }
            other => Err(DemoError::Sandbox(format!("no action `{other}`"))),
        }
    }
}

fn deliveries(sent: &[Delivery]) -> String {
    let events: Vec<String> = sent
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d.event,
                d.status.map_or("-".into(), |s| s.to_string())
            )
        })
        .collect();
    format!(
        "4me sent {}",
        if events.is_empty() {
            "nothing".into()
        } else {
            events.join(", ")
        }
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConsoleActions for Customers {
    fn actions(&self) -> Vec<ConsoleAction> {
        let offering = ConsoleField {
            name: "offering".into(),
            label: "App".into(),
            choices: OFFERINGS.iter().map(|o| (*o).to_owned()).collect(),
            value: String::new(),
        };
        let account = ConsoleField {
            name: "account".into(),
            label: "Customer".into(),
            choices: Vec::new(),
            value: self.default_account.clone(),
        };
        let text = ConsoleField {
            name: "text".into(),
            label: "Note".into(),
            choices: Vec::new(),
            value: "The printer works again.".into(),
        };
        let action = |name: &str, label: &str, fields: Vec<ConsoleField>| ConsoleAction {
            name: name.into(),
            label: label.into(),
            fields,
        };
        vec![
            action(
                "install",
                "Install",
                vec![offering.clone(), account.clone()],
            ),
            action("uninstall", "Uninstall", vec![offering, account.clone()]),
            action("note", "Add a note", vec![account.clone(), text.clone()]),
            action("complete", "Complete the request", vec![account, text]),
        ]
    }

    fn run<'a>(
        &'a self,
        name: &'a str,
        fields: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            self.run_action(name, fields)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn resign(&self, token: &str) -> Option<String> {
        self.sandbox.resign(token).ok()
    }
}
