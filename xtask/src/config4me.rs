//! Loader of the 4me record templates in `config_4me/` (see `config_4me/README.md`).
//!
//! Each template is a JSON object, found again in 4me by `source` + `sourceID` where the
//! `sourceID` is the file's base name. Loading checks that every file parses and has the fields
//! the bootstrap and the deploys need, so a broken template fails before anything is changed.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Directory of the templates, relative to the workspace root.
pub const CONFIG_DIR: &str = "config_4me";

/// `source` of the records created by bootstrap (the original's value).
pub const BOOTSTRAP_SOURCE: &str = "4me-app-bootstrap";

/// Longest `source` 4me accepts.
pub const SOURCE_MAX: usize = 30;

/// Longest `sourceID` 4me accepts.
pub const SOURCE_ID_MAX: usize = 128;

/// Errors of template loading.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A file is not valid JSON.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// A file has the wrong shape or misses a field.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// One record template: its `sourceID` and its input fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The file base name, used as `sourceID`.
    pub source_id: String,
    /// The record's input fields (without `source`/`sourceID`).
    pub input: Map<String, Value>,
}

impl Template {
    /// The `name` field (checked to be present by the loader).
    pub fn name(&self) -> &str {
        self.input
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Templates of `cargo xtask bootstrap` (`config_4me/bootstrap`). The webhook and its policy
/// are not found by source (4me has no such fields on them) but by the ids bootstrap stores in
/// the provider secret.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapConfig {
    /// Product of the S3 bucket.
    pub s3_product: Template,
    /// UI extension of the Lambda product (`html` included).
    pub lambda_ui_extension: Template,
    /// Product of the Lambda functions.
    pub lambda_product: Template,
    /// UI extension of the SQS product (`html` included).
    pub sqs_ui_extension: Template,
    /// Product of the SQS queues.
    pub sqs_product: Template,
    /// Configuration item of the deployment bucket.
    pub s3_ci: Template,
    /// Configuration item of the secrets function.
    pub secrets_lambda_ci: Template,
    /// The `app_instance.secrets-update` webhook.
    pub secrets_webhook: Template,
    /// The `app_instance.create`, `.update` and `.delete` webhooks (to the same function, with
    /// the same policy), in that order.
    pub instance_webhooks: Vec<Template>,
    /// The webhook policy (`jwtAudience` holds `{account}` and `{domain}` placeholders).
    pub secrets_webhook_policy: Template,
}

/// Templates of one integration (`config_4me/<integration>`).
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationConfig {
    /// The integration name (directory name).
    pub integration: String,
    /// The `source` of its records: `4me-integration-<name>` cut to [`SOURCE_MAX`] characters
    /// (the original's value, so records it created are found again).
    pub source: String,
    /// The app offering.
    pub offering: Template,
    /// The automation rules of the offering (matched by name).
    pub automation_rules: Vec<Map<String, Value>>,
    /// The UI extension of the offering (`html`, and `css`/`javascript` when present).
    pub ui_extension: Template,
    /// Configuration item of the integration's function.
    pub lambda_ci: Template,
    /// Other configuration items of the integration's stack (e.g. its queues): every other
    /// `<name>_*_ci.json`, by file name; their `systemID` comes from the stack outputs.
    pub other_cis: Vec<Template>,
}

/// The `source` of an integration's records.
pub fn integration_source(integration: &str) -> String {
    format!("4me-integration-{integration}")
        .chars()
        .take(SOURCE_MAX)
        .collect()
}

fn invalid(path: &Path, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json(path: &Path) -> Result<Value, ConfigError> {
    serde_json::from_str(&read_text(path)?).map_err(|source| ConfigError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks that `object` has a non-empty string for each of `fields`.
fn require_strings(
    path: &Path,
    object: &Map<String, Value>,
    fields: &[&str],
) -> Result<(), ConfigError> {
    for field in fields {
        match object.get(*field) {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            _ => return Err(invalid(path, format!("missing non-empty string `{field}`"))),
        }
    }
    Ok(())
}

/// Loads `<dir>/<source_id>.json` as an object with the `required` string fields.
fn load_template(dir: &Path, source_id: &str, required: &[&str]) -> Result<Template, ConfigError> {
    let path = dir.join(format!("{source_id}.json"));
    if source_id.len() > SOURCE_ID_MAX {
        return Err(invalid(
            &path,
            format!("sourceID longer than {SOURCE_ID_MAX}"),
        ));
    }
    let Value::Object(input) = read_json(&path)? else {
        return Err(invalid(&path, "not a JSON object"));
    };
    for reserved in ["source", "sourceID", "id"] {
        if input.contains_key(reserved) {
            return Err(invalid(&path, format!("`{reserved}` is set by the deploy")));
        }
    }
    require_strings(&path, &input, required)?;
    Ok(Template {
        source_id: source_id.to_owned(),
        input,
    })
}

/// Loads a UI extension: the JSON, its `.html` (required) and optional `.css` and `.js`.
fn load_ui_extension(dir: &Path, source_id: &str) -> Result<Template, ConfigError> {
    let mut template = load_template(dir, source_id, &["name", "title", "category"])?;
    let html_path = dir.join(format!("{source_id}.html"));
    let html = read_text(&html_path)?;
    if html.trim().is_empty() {
        return Err(invalid(&html_path, "empty HTML"));
    }
    template.input.insert("html".into(), html.into());
    for (extension, field) in [("css", "css"), ("js", "javascript")] {
        let path = dir.join(format!("{source_id}.{extension}"));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                template.input.insert(field.into(), text.into());
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ConfigError::Read { path, source }),
        }
    }
    Ok(template)
}

const PRODUCT_FIELDS: [&str; 4] = ["name", "brand", "model", "category"];
const CI_FIELDS: [&str; 3] = ["name", "label", "status"];

/// The app-instance lifecycle webhooks of the provider account: template and event.
pub const INSTANCE_WEBHOOKS: [(&str, &str); 3] = [
    ("instance_create_webhook", "app_instance.create"),
    ("instance_update_webhook", "app_instance.update"),
    ("instance_delete_webhook", "app_instance.delete"),
];

/// Loads `<root>/config_4me/bootstrap`.
pub fn load_bootstrap(root: &Path) -> Result<BootstrapConfig, ConfigError> {
    let dir = root.join(CONFIG_DIR).join("bootstrap");
    let config = BootstrapConfig {
        s3_product: load_template(&dir, "s3_product", &PRODUCT_FIELDS)?,
        lambda_ui_extension: load_ui_extension(&dir, "lambda_ui_extension")?,
        lambda_product: load_template(&dir, "lambda_product", &PRODUCT_FIELDS)?,
        sqs_ui_extension: load_ui_extension(&dir, "sqs_ui_extension")?,
        sqs_product: load_template(&dir, "sqs_product", &PRODUCT_FIELDS)?,
        s3_ci: load_template(&dir, "s3_ci", &CI_FIELDS)?,
        secrets_lambda_ci: load_template(&dir, "secrets_lambda_ci", &CI_FIELDS)?,
        secrets_webhook: load_template(&dir, "secrets_webhook", &["name", "event"])?,
        instance_webhooks: INSTANCE_WEBHOOKS
            .iter()
            .map(|(source_id, _)| load_template(&dir, source_id, &["name", "event"]))
            .collect::<Result<_, _>>()?,
        secrets_webhook_policy: load_template(
            &dir,
            "secrets_webhook_policy",
            &["jwtAlg", "jwtAudience"],
        )?,
    };
    let event = config
        .secrets_webhook
        .input
        .get("event")
        .and_then(Value::as_str);
    if event != Some("app_instance.secrets-update") {
        return Err(invalid(
            &dir.join("secrets_webhook.json"),
            "`event` must be app_instance.secrets-update",
        ));
    }
    for (template, (source_id, wanted)) in config.instance_webhooks.iter().zip(INSTANCE_WEBHOOKS) {
        if template.input.get("event").and_then(Value::as_str) != Some(wanted) {
            return Err(invalid(
                &dir.join(format!("{source_id}.json")),
                format!("`event` must be {wanted}"),
            ));
        }
    }
    Ok(config)
}

/// Checks the automation rules file: an array of objects with unique names.
fn check_rules(path: &Path, value: Value) -> Result<Vec<Map<String, Value>>, ConfigError> {
    let Value::Array(items) = value else {
        return Err(invalid(path, "not a JSON array"));
    };
    let mut rules = Vec::new();
    for item in items {
        let Value::Object(rule) = item else {
            return Err(invalid(path, "a rule is not a JSON object"));
        };
        require_strings(path, &rule, &["name", "trigger", "condition", "generic"])?;
        if rule
            .get("actions")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            return Err(invalid(path, "a rule has no `actions`"));
        }
        if rules
            .iter()
            .any(|other: &Map<String, Value>| other.get("name") == rule.get("name"))
        {
            return Err(invalid(
                path,
                "rule names must be unique (rules are matched by name)",
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// Loads `<root>/config_4me/<integration>`.
pub fn load_integration(root: &Path, integration: &str) -> Result<IntegrationConfig, ConfigError> {
    let dir = root.join(CONFIG_DIR).join(integration);
    let offering = load_template(
        &dir,
        "app_offering_input",
        &["name", "reference", "description"],
    )?;
    if offering.input.get("reference").and_then(Value::as_str) != Some(integration) {
        return Err(invalid(
            &dir.join("app_offering_input.json"),
            format!("`reference` must be `{integration}`"),
        ));
    }
    let rules_path = dir.join("app_offering_automation_rules_input.json");
    let automation_rules = match std::fs::metadata(&rules_path) {
        Ok(_) => check_rules(&rules_path, read_json(&rules_path)?)?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: rules_path,
                source,
            });
        }
    };
    let ui_extension = load_ui_extension(&dir, "ui_extension_input")?;
    let prefix = integration.replace('-', "_");
    let lambda_ci_id = format!("{prefix}_lambda_ci");
    let lambda_ci = load_template(&dir, &lambda_ci_id, &CI_FIELDS)?;
    let mut other_ids = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|source| ConfigError::Read {
        path: dir.clone(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read {
            path: dir.clone(),
            source,
        })?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) = file_name.strip_suffix(".json")
            && id.starts_with(&format!("{prefix}_"))
            && id.ends_with("_ci")
            && id != lambda_ci_id
        {
            other_ids.push(id.to_owned());
        }
    }
    other_ids.sort();
    let other_cis = other_ids
        .iter()
        .map(|id| load_template(&dir, id, &CI_FIELDS))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IntegrationConfig {
        integration: integration.to_owned(),
        source: integration_source(integration),
        offering,
        automation_rules,
        ui_extension,
        lambda_ci,
        other_cis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    #[test]
    fn every_json_file_of_config_4me_parses() {
        let mut count = 0;
        let mut dirs = vec![repo_root().join(CONFIG_DIR)];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "json") {
                    read_json(&path).unwrap();
                    count += 1;
                }
            }
        }
        assert!(count >= 22, "only {count} JSON files");
    }

    #[test]
    fn bootstrap_templates_have_what_bootstrap_needs() {
        let config = load_bootstrap(&repo_root()).unwrap();
        assert_eq!(config.lambda_product.input["model"], "Lambda");
        assert_eq!(config.sqs_product.input["model"], "SQS");
        assert_eq!(config.s3_product.input["model"], "S3");
        for ext in [&config.lambda_ui_extension, &config.sqs_ui_extension] {
            assert_eq!(ext.input["category"], "product");
            let html = ext.input["html"].as_str().unwrap();
            assert!(html.contains("id=\"cloudformation_stack\""), "{html}");
        }
        let lambda_html = config.lambda_ui_extension.input["html"].as_str().unwrap();
        assert!(lambda_html.contains("id=\"api_url\""));
        assert_eq!(config.secrets_webhook_policy.input["jwtAlg"], "es512");
        let audience = config.secrets_webhook_policy.input["jwtAudience"]
            .as_str()
            .unwrap();
        assert!(audience.contains("{account}") && audience.contains("{domain}"));
        assert_eq!(config.lambda_product.name(), "AWS Lambda");
    }

    #[test]
    fn note_dispatcher_templates() {
        let config = load_integration(&repo_root(), "note-dispatcher").unwrap();
        assert_eq!(config.source, "4me-integration-note-dispatche");
        assert_eq!(config.offering.input["policyJwtAlg"], "rs512");
        assert_eq!(config.lambda_ci.source_id, "note_dispatcher_lambda_ci");
        assert_eq!(config.automation_rules.len(), 1);
        let action = config.automation_rules[0]["actions"][0]["value"]
            .as_str()
            .unwrap();
        assert!(action.contains("{app_offering_webhook}"));
        let html = config.ui_extension.input["html"].as_str().unwrap();
        assert!(html.contains("id=\"url\""));
        assert!(config.ui_extension.input.get("css").is_none());
    }

    #[test]
    fn typeform_templates() {
        let config = load_integration(&repo_root(), "typeform").unwrap();
        assert_eq!(config.source, "4me-integration-typeform");
        let actions = &config.offering.input["newScopes"][0]["actions"];
        assert_eq!(
            actions,
            &serde_json::json!(["request:Read", "request:Update"])
        );
        let html = config.ui_extension.input["html"].as_str().unwrap();
        for field in ["form_url", "typeform_token", "request_id"] {
            assert!(html.contains(&format!("id=\"{field}\"")), "{field}");
        }
        assert!(html.contains("data-secret"));
        assert!(config.ui_extension.input["css"].as_str().is_some());
        assert_eq!(config.lambda_ci.input["label"], "lambda-typeform-1");
    }

    fn integration_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(CONFIG_DIR).join("demo");
        fs::create_dir_all(&dir).unwrap();
        let defaults = [
            (
                "app_offering_input.json",
                r#"{"name":"Demo","reference":"demo","description":"d"}"#,
            ),
            (
                "ui_extension_input.json",
                r#"{"name":"n","title":"t","category":"app_offering"}"#,
            ),
            ("ui_extension_input.html", "<form></form>"),
            (
                "demo_lambda_ci.json",
                r#"{"name":"n","label":"l","status":"being_tested"}"#,
            ),
        ];
        for (name, text) in defaults.iter().chain(files) {
            fs::write(dir.join(name), text).unwrap();
        }
        root
    }

    #[test]
    fn lansweeper_templates() {
        let config = load_integration(&repo_root(), "lansweeper").unwrap();
        assert_eq!(config.source, "4me-integration-lansweeper");
        assert!(config.automation_rules.is_empty());
        let ids: Vec<&str> = config
            .other_cis
            .iter()
            .map(|ci| ci.source_id.as_str())
            .collect();
        assert_eq!(ids, ["lansweeper_dead_letter_sqs_ci", "lansweeper_sqs_ci"]);
        let scopes = config.offering.input["newScopes"][0]["actions"]
            .as_array()
            .unwrap();
        assert_eq!(scopes.len(), 8);
        let html = config.ui_extension.input["html"].as_str().unwrap();
        for field in [
            "connection_status",
            "client_id",
            "client_secret",
            "callback_url",
            "label_generator",
            "installation_handling",
            "installations",
            "import_type",
            "asset_types",
            "sync_start_at",
            "sync_end_at",
            "sync_duration_text",
            "sync_duration",
            "sync_summary",
        ] {
            assert!(html.contains(&format!("id=\"{field}\"")), "{field}");
        }
    }

    #[test]
    fn minimal_integration_loads_without_rules() {
        let root = integration_dir(&[]);
        let config = load_integration(root.path(), "demo").unwrap();
        assert!(config.automation_rules.is_empty());
        assert_eq!(config.offering.source_id, "app_offering_input");
    }

    #[test]
    fn broken_templates_are_rejected_with_the_file_named() {
        let cases: [(&str, &str, &str); 5] = [
            (
                "app_offering_input.json",
                r#"{"name":"Demo","reference":"other","description":"d"}"#,
                "reference",
            ),
            (
                "app_offering_input.json",
                r#"{"name":"Demo","reference":"demo"}"#,
                "description",
            ),
            (
                "demo_lambda_ci.json",
                r#"{"name":"n","label":"l","status":"x","sourceID":"s"}"#,
                "sourceID",
            ),
            (
                "app_offering_automation_rules_input.json",
                r#"[{"name":"a","trigger":"t","condition":"c","generic":"request","actions":[{}]},{"name":"a","trigger":"t","condition":"c","generic":"request","actions":[{}]}]"#,
                "unique",
            ),
            ("ui_extension_input.html", "  ", "empty HTML"),
        ];
        for (file, text, expected) in cases {
            let root = integration_dir(&[(file, text)]);
            let err = load_integration(root.path(), "demo")
                .unwrap_err()
                .to_string();
            assert!(err.contains(file), "{file}: {err}");
            assert!(err.contains(expected), "{file}: {err}");
        }
        let root = integration_dir(&[("app_offering_input.json", "{")]);
        assert!(matches!(
            load_integration(root.path(), "demo"),
            Err(ConfigError::Json { .. })
        ));
    }

    #[test]
    fn source_is_cut_to_thirty_characters() {
        assert_eq!(
            integration_source("lansweeper"),
            "4me-integration-lansweeper"
        );
        assert_eq!(integration_source("note-dispatcher").len(), SOURCE_MAX);
    }

    /// The field names of `input <name> { ... }` in an SDL document.
    fn assert_fields_in(template: &Map<String, Value>, input_type: &str, what: &str) {
        if let Err(e) = app_builder_schema::snapshot().check_partial_input(input_type, template) {
            panic!("{what}: {e}");
        }
    }

    #[test]
    fn every_template_is_a_valid_part_of_its_4me_input_type() {
        let product = "ProductCreateInput";
        let ci = "ConfigurationItemCreateInput";
        let ui = "UiExtensionCreateInput";
        let offering = "AppOfferingCreateInput";
        let rule = "AppOfferingAutomationRuleCreateInput";
        let webhook = "WebhookCreateInput";
        let policy = "WebhookPolicyCreateInput";

        let boot = load_bootstrap(&repo_root()).unwrap();
        for t in [&boot.s3_product, &boot.lambda_product, &boot.sqs_product] {
            assert_fields_in(&t.input, product, &t.source_id);
        }
        for t in [&boot.lambda_ui_extension, &boot.sqs_ui_extension] {
            assert_fields_in(&t.input, ui, &t.source_id);
        }
        for t in [&boot.s3_ci, &boot.secrets_lambda_ci] {
            assert_fields_in(&t.input, ci, &t.source_id);
        }
        assert_fields_in(&boot.secrets_webhook.input, webhook, "secrets_webhook");
        assert_fields_in(
            &boot.secrets_webhook_policy.input,
            policy,
            "secrets_webhook_policy",
        );
        for integration in ["note-dispatcher", "typeform", "lansweeper"] {
            let config = load_integration(&repo_root(), integration).unwrap();
            assert_fields_in(&config.offering.input, offering, integration);
            assert_fields_in(&config.ui_extension.input, ui, integration);
            for t in std::iter::once(&config.lambda_ci).chain(&config.other_cis) {
                assert_fields_in(&t.input, ci, &t.source_id);
            }
            for r in &config.automation_rules {
                assert_fields_in(r, rule, integration);
            }
        }
    }

    /// A field of a UI extension as 4me reads it: marked required with the `required` class,
    /// secret with `data-secret`.
    #[derive(Debug)]
    struct Field {
        required: bool,
        secret: bool,
    }

    /// The fields of an extension (inputs, selects, text areas and rich-text divs with an id),
    /// after checking the markup is what 4me expects: well-formed HTML5 (no parse error), no
    /// `<form>` (4me renders the extension inside its own form), 4me's `row vertical` rows,
    /// requiredness as the `required` class (not HTML5's attribute, which 4me does not use).
    fn extension_fields(integration: &str, html: &str) -> BTreeMap<String, Field> {
        let document = scraper::Html::parse_fragment(html);
        assert!(
            document.errors.is_empty(),
            "{integration}: not well-formed HTML: {:?}",
            document.errors
        );
        let select = |css: &str| scraper::Selector::parse(css).unwrap();
        assert_eq!(
            document.select(&select("form")).count(),
            0,
            "{integration}: a <form> inside 4me's record form"
        );
        assert_eq!(
            document.select(&select("[required]")).count(),
            0,
            "{integration}: the HTML5 `required` attribute; 4me's is the `required` class"
        );
        for row in document.select(&select(".row")) {
            assert!(
                row.value()
                    .has_class("vertical", scraper::CaseSensitivity::CaseSensitive),
                "{integration}: a row that is not `row vertical`: {}",
                row.html()
            );
        }
        for section in document.select(&select(".section")) {
            assert_eq!(
                section.select(&select(":scope > .section-header")).count(),
                1,
                "{integration}: a section without its section-header"
            );
        }
        let mut fields = BTreeMap::new();
        for element in document.select(&select(
            "input[id], select[id], textarea[id], div.rich-text[id]",
        )) {
            let value = element.value();
            let id = value.id().unwrap().to_owned();
            let field = Field {
                required: value.has_class("required", scraper::CaseSensitivity::CaseSensitive),
                secret: value.attr("data-secret").is_some(),
            };
            assert!(
                fields.insert(id.clone(), field).is_none(),
                "{integration}: two #{id}"
            );
        }
        fields
    }

    /// Every extension is well-formed 4me markup; every custom field the integration's code
    /// reads or writes is in it (and no secret); every secret the code expects is a secret
    /// field, required; no other field is secret.
    #[test]
    fn every_ui_extension_has_the_fields_the_code_uses() {
        let root = repo_root();
        let note = load_integration(&root, "note-dispatcher").unwrap();
        // The note-dispatcher reads its fields in its automation rule.
        let from_rules: Vec<String> = note
            .automation_rules
            .iter()
            .flat_map(|rule| rule["expressions"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| {
                e["value"]
                    .as_str()?
                    .strip_prefix("rule_app_instance.custom_fields.")
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(from_rules, ["url"]);
        let expected: [(&str, Vec<&str>, Vec<&str>); 3] = [
            (
                "note-dispatcher",
                from_rules.iter().map(String::as_str).collect(),
                vec![],
            ),
            (
                "typeform",
                vec![
                    typeform::fourme::FORM_URL_FIELD,
                    typeform::fourme::REQUEST_ID_FIELD,
                ],
                vec![typeform::TYPEFORM_TOKEN_KEY],
            ),
            (
                "lansweeper",
                lansweeper::instance::ALL_FIELDS.to_vec(),
                vec![lansweeper::CLIENT_SECRET_KEY],
            ),
        ];
        for (integration, plain, secrets) in expected {
            let config = load_integration(&root, integration).unwrap();
            let html = config.ui_extension.input["html"].as_str().unwrap();
            let fields = extension_fields(integration, html);
            for id in &plain {
                let field = fields.get(*id).unwrap_or_else(|| {
                    panic!("{integration}: the code uses custom field {id}, the extension has none")
                });
                assert!(
                    !field.secret,
                    "{integration}: {id} is a custom field, not a secret"
                );
            }
            for id in &secrets {
                let field = fields
                    .get(*id)
                    .unwrap_or_else(|| panic!("{integration}: the code expects secret {id}, the extension has no such field"));
                assert!(
                    field.secret && field.required,
                    "{integration}: {id} must be a required secret field"
                );
            }
            for (id, field) in &fields {
                assert!(
                    !field.secret || secrets.contains(&id.as_str()),
                    "{integration}: {id} is secret but the code expects no such secret"
                );
            }
        }
        // The products' extensions of bootstrap: the fields provisioning fills in.
        let boot = load_bootstrap(&root).unwrap();
        for (name, extension, ids) in [
            (
                "lambda_ui_extension",
                &boot.lambda_ui_extension,
                vec!["cloudformation_stack", "api_url"],
            ),
            (
                "sqs_ui_extension",
                &boot.sqs_ui_extension,
                vec!["cloudformation_stack"],
            ),
        ] {
            let fields = extension_fields(name, extension.input["html"].as_str().unwrap());
            assert_eq!(
                fields.keys().map(String::as_str).collect::<Vec<_>>().len(),
                ids.len()
            );
            for id in ids {
                assert!(fields.contains_key(id), "{name}: no {id}");
            }
        }
    }

    /// The checks above refuse what 4me does not accept.
    #[test]
    fn the_extension_checks_refuse_forms_html5_requiredness_and_broken_markup() {
        let refused =
            |html: &'static str| std::panic::catch_unwind(|| extension_fields("x", html)).is_err();
        assert!(refused(
            r#"<form><div class="row vertical"><input id="a"></div></form>"#
        ));
        assert!(refused(
            r#"<div class="row vertical"><input id="a" required></div>"#
        ));
        assert!(refused(r#"<div class="row"><input id="a"></div>"#));
        assert!(refused(
            r#"<div class="row vertical"><input id="a"></span></div>"#
        ));
        assert!(refused(
            r#"<div class="section"><div class="row vertical"><input id="a"></div></div>"#
        ));
        let fields = extension_fields(
            "x",
            r#"<div class="row vertical"><input id="a" class="required" data-secret></div><div id="b" class="rich-text"></div>"#,
        );
        assert!(fields["a"].required && fields["a"].secret);
        assert!(!fields["b"].required && !fields["b"].secret);
    }
}
