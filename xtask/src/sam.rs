//! The SAM CLI commands of bootstrap and deploy (docs/original.md#provisioning, with the parameter names the
//! templates declare — the original passed `OfferingReferenceParameter` to templates declaring
//! `offeringReferenceParameter`, docs/original.md#fixed-bugs item 11).
//!
//! Stack names, template paths and build directories live in `samconfig.toml`, one config
//! environment per stack; the commands here only select the environment and add what is known at
//! run time (profile, region, parameter overrides). Arguments are passed without a shell, so values
//! are never re-split.

use std::path::Path;

/// Application name of the provider secret (`<app>/<domain>/<account>`).
pub const SECRET_APPLICATION: &str = "4me-app-builder";

/// One deployable stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stack {
    /// `samconfig.toml` config environment.
    pub config_env: &'static str,
    /// Stack name (as in `samconfig.toml`).
    pub name: &'static str,
    /// Template, relative to the workspace root.
    pub template: &'static str,
}

/// The engine stack deployed by bootstrap (the secrets function).
pub const ENGINE: Stack = Stack {
    config_env: "default",
    name: "app-builder-engine",
    template: "template.yaml",
};

/// The stack of an integration, if the repository has one.
pub fn integration_stack(integration: &str) -> Option<Stack> {
    match integration {
        "note-dispatcher" => Some(Stack {
            config_env: "note-dispatcher",
            name: "app-builder-note-dispatcher",
            template: "crates/note-dispatcher/template.yaml",
        }),
        "typeform" => Some(Stack {
            config_env: "typeform",
            name: "app-builder-typeform",
            template: "crates/typeform/template.yaml",
        }),
        "lansweeper" => Some(Stack {
            config_env: "lansweeper",
            name: "app-builder-lansweeper",
            template: "crates/lansweeper/template.yaml",
        }),
        _ => None,
    }
}

/// Errors of the SAM command construction.
#[derive(Debug, thiserror::Error)]
pub enum SamError {
    /// The template could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The template.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// An override names a parameter the template does not declare.
    #[error("{template} declares no parameter `{name}` (declared: {declared})")]
    UnknownParameter {
        /// The template.
        template: String,
        /// The parameter.
        name: String,
        /// The declared parameters, comma separated.
        declared: String,
    },
}

/// The parameter names declared under `Parameters:` of a SAM template (block style YAML).
pub fn template_parameters(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_parameters = false;
    for line in template.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
            in_parameters = line.trim_end() == "Parameters:";
            continue;
        }
        if in_parameters
            && let Some(rest) = line.strip_prefix("  ")
            && !rest.starts_with([' ', '#'])
            && let Some((name, _)) = rest.split_once(':')
        {
            names.push(name.trim().to_owned());
        }
    }
    names
}

/// Overrides of the engine stack (bootstrap step 7).
pub fn engine_overrides(
    domain: &str,
    account: &str,
    enabled_offerings: &str,
) -> Vec<(String, String)> {
    vec![
        ("4MeDomainParameter".into(), domain.into()),
        (
            "BootstrapSecretApplicationParameter".into(),
            SECRET_APPLICATION.into(),
        ),
        ("BootstrapSecretAccountParameter".into(), account.into()),
        (
            "BootstrapSecretEnabledReferencesParameter".into(),
            enabled_offerings.into(),
        ),
    ]
}

/// Overrides of an integration stack (docs/original.md#provisioning `deployLambdaWithBootstrapSecrets`).
pub fn integration_overrides(
    domain: &str,
    account: &str,
    offering_reference: &str,
) -> Vec<(String, String)> {
    vec![
        ("4MeDomainParameter".into(), domain.into()),
        (
            "BootstrapSecretApplicationParameter".into(),
            SECRET_APPLICATION.into(),
        ),
        ("BootstrapSecretAccountParameter".into(), account.into()),
        (
            "OfferingReferenceParameter".into(),
            offering_reference.into(),
        ),
    ]
}

/// Checks that every override names a parameter of the stack's template under `root`.
pub fn check_overrides(
    root: &Path,
    stack: &Stack,
    overrides: &[(String, String)],
) -> Result<(), SamError> {
    let text =
        std::fs::read_to_string(root.join(stack.template)).map_err(|source| SamError::Read {
            path: stack.template.to_owned(),
            source,
        })?;
    let declared = template_parameters(&text);
    for (name, _) in overrides {
        if !declared.contains(name) {
            return Err(SamError::UnknownParameter {
                template: stack.template.to_owned(),
                name: name.clone(),
                declared: declared.join(", "),
            });
        }
    }
    Ok(())
}

/// Arguments of `sam build` for a stack.
pub fn build_args(stack: &Stack) -> Vec<String> {
    vec![
        "build".into(),
        "--config-env".into(),
        stack.config_env.into(),
    ]
}

/// Arguments of `sam deploy` for a stack (non-interactive).
pub fn deploy_args(
    stack: &Stack,
    profile: &str,
    region: Option<&str>,
    overrides: &[(String, String)],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "deploy".into(),
        "--config-env".into(),
        stack.config_env.into(),
        "--no-confirm-changeset".into(),
        "--profile".into(),
        profile.into(),
    ];
    if let Some(region) = region {
        args.extend(["--region".into(), region.into()]);
    }
    if !overrides.is_empty() {
        args.push("--parameter-overrides".into());
        args.extend(overrides.iter().map(|(k, v)| format!("{k}={v}")));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    #[test]
    fn reads_declared_parameters_only() {
        let template = "Transform: x\nParameters:\n  # comment\n  DomainParameter:\n    Type: String\n    \
                        Default: a\n  OtherParameter:\n    Type: String\nResources:\n  Fn:\n    Type: y\n";
        assert_eq!(
            template_parameters(template),
            vec!["DomainParameter".to_owned(), "OtherParameter".to_owned()]
        );
    }

    #[test]
    fn overrides_match_the_repository_templates() {
        let root = repo_root();
        check_overrides(&root, &ENGINE, &engine_overrides("d", "a", "*")).unwrap();
        for integration in ["note-dispatcher", "typeform", "lansweeper"] {
            let stack = integration_stack(integration).unwrap();
            check_overrides(&root, &stack, &integration_overrides("d", "a", integration)).unwrap();
        }
        assert!(integration_stack("slack").is_none());
    }

    #[test]
    fn the_original_lower_case_parameter_is_rejected() {
        let stack = integration_stack("typeform").unwrap();
        let overrides = vec![(
            "offeringReferenceParameter".to_owned(),
            "typeform".to_owned(),
        )];
        let err = check_overrides(&repo_root(), &stack, &overrides)
            .unwrap_err()
            .to_string();
        assert!(err.contains("offeringReferenceParameter"), "{err}");
        assert!(err.contains("OfferingReferenceParameter"), "{err}");
    }

    #[test]
    fn samconfig_has_the_config_environments_and_stack_names() {
        let samconfig = std::fs::read_to_string(repo_root().join("samconfig.toml")).unwrap();
        let stacks = [
            ENGINE,
            integration_stack("note-dispatcher").unwrap(),
            integration_stack("typeform").unwrap(),
            integration_stack("lansweeper").unwrap(),
        ];
        for stack in stacks {
            let section = format!("[{}.deploy.parameters]", stack.config_env);
            let start = samconfig.find(&section).unwrap();
            let rest = &samconfig[start + section.len()..];
            let body = &rest[..rest.find("\n[").unwrap_or(rest.len())];
            assert!(
                body.contains(&format!("stack_name = \"{}\"", stack.name)),
                "{section}: {body}"
            );
        }
    }

    #[test]
    fn deploy_arguments_are_exact() {
        let stack = integration_stack("note-dispatcher").unwrap();
        let args = deploy_args(
            &stack,
            "staging",
            Some("eu-west-1"),
            &integration_overrides("4me-demo.com", "wdc", "note-dispatcher"),
        );
        assert_eq!(
            args,
            [
                "deploy",
                "--config-env",
                "note-dispatcher",
                "--no-confirm-changeset",
                "--profile",
                "staging",
                "--region",
                "eu-west-1",
                "--parameter-overrides",
                "4MeDomainParameter=4me-demo.com",
                "BootstrapSecretApplicationParameter=4me-app-builder",
                "BootstrapSecretAccountParameter=wdc",
                "OfferingReferenceParameter=note-dispatcher",
            ]
        );
        assert_eq!(build_args(&ENGINE), ["build", "--config-env", "default"]);
        let no_region = deploy_args(&ENGINE, "p", None, &[]);
        assert!(
            !no_region
                .iter()
                .any(|a| a == "--region" || a == "--parameter-overrides")
        );
    }

    /// The engine's dashboard is valid JSON once CloudFormation substitutes it, and graphs
    /// every metric the functions write; every integration alarms on its dead-letter queues.
    #[test]
    fn the_dashboard_shows_every_metric_and_each_dead_letter_queue_alarms() {
        let root = repo_root();
        let template = std::fs::read_to_string(root.join("template.yaml")).unwrap();
        let (_, after) = template.split_once("DashboardBody: !Sub |\n").unwrap();
        let body: String = after
            .lines()
            .take_while(|line| line.starts_with("        ") || line.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
            .replace("${BootstrapSecretApplicationParameter}", "4me-app-builder")
            .replace("${4MeDomainParameter}", "4me.com")
            .replace("${AWS::Region}", "eu-west-1");
        assert!(
            !body.contains("${"),
            "unresolved substitution in the dashboard"
        );
        let dashboard: serde_json::Value = serde_json::from_str(&body).unwrap();
        let expressions: Vec<String> = dashboard["widgets"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|w| {
                w["properties"]["metrics"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|m| m[0]["expression"].as_str().map(str::to_owned))
            .collect();
        let namespace = "{\"4me-app-builder/4me.com\",function,offering}";
        for name in app_builder_core::metrics::ALL {
            assert!(
                expressions.iter().any(|e| e.contains(namespace)
                    && e.contains(&format!("MetricName=\"{name}\""))),
                "{name} is not on the dashboard"
            );
        }
        let prefix = app_builder_core::metrics::REJECTED_PREFIX.trim_end_matches('.');
        assert!(
            expressions
                .iter()
                .any(|e| e.contains(&format!("MetricName={prefix}")))
        );
        for (integration, queues) in [
            ("note-dispatcher", vec!["FailedEventsQueue"]),
            ("typeform", vec!["FailedEventsQueue"]),
            (
                "lansweeper",
                vec!["FailedEventsQueue", "DeadLetterSqsQueue"],
            ),
        ] {
            let path = root.join(format!("crates/{integration}/template.yaml"));
            let text = std::fs::read_to_string(path).unwrap();
            for queue in queues {
                assert!(
                    text.contains(&format!("Value: !GetAtt {queue}.QueueName"))
                        && text.contains("MetricName: ApproximateNumberOfMessagesVisible"),
                    "{integration}: no alarm on {queue}"
                );
            }
        }
    }
}
