//! Deploying one stack: [`StackDeployer`] is the port bootstrap and deploy use; [`SamDeployer`]
//! runs the SAM CLI against AWS (the local engine of `cargo xtask demo` provides another).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use crate::sam::{self, Stack};

/// Outputs of a deployed stack, by the template's Output names (e.g. "SecretsApi",
/// "SecretsFunction").
pub type StackOutputs = BTreeMap<String, String>;

/// Builds and deploys one stack; SAM against AWS, or the local engine.
pub trait StackDeployer {
    /// Builds and deploys `stack` with `overrides` (template parameter name → value, exactly
    /// the names the template declares); returns the stack's Outputs by name. Must be
    /// idempotent: deploying the same thing twice changes nothing the second time.
    fn deploy(
        &self,
        stack: &Stack,
        overrides: &[(String, String)],
    ) -> impl Future<Output = Result<StackOutputs, DeployError>> + Send;

    /// How progress lines describe a deploy by this deployer: where the stack goes and what
    /// changes.
    fn describe(&self) -> &'static str {
        "SAM applies only what changed"
    }

    /// What [`StackDeployer::deploy`] would run, one line each, for `--dry-run` (e.g. the exact
    /// `sam` commands). Nothing by default.
    fn plan(&self, stack: &Stack, overrides: &[(String, String)]) -> Vec<String> {
        let _ = (stack, overrides);
        Vec::new()
    }
}

/// Errors of a [`StackDeployer`].
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The deploy command could not be started (e.g. `sam` is not installed).
    #[error("cannot run `{program}`: {source} (is the AWS SAM CLI installed and on PATH?)")]
    Spawn {
        /// The program.
        program: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The deploy command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line (no secrets are ever part of it).
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its standard error (or where to find it).
        stderr: String,
    },
    /// The stack outputs could not be read.
    #[error("cannot read the outputs of stack {stack}: {message}")]
    Outputs {
        /// The stack name.
        stack: String,
        /// What is wrong.
        message: String,
    },
    /// A failure of the local engine's deployer.
    #[allow(
        dead_code,
        reason = "for the local engine's deployer of `cargo xtask demo`"
    )]
    #[error("local deploy failed: {0}")]
    Local(String),
}

/// The stack SAM creates for `resolve_s3` (its `SourceBucket` output is the package bucket).
pub const SAM_MANAGED_STACK: &str = "aws-sam-cli-managed-default";

/// Output [`SamDeployer`] adds to a stack's outputs: the bucket SAM uploads packages to.
pub const SOURCE_BUCKET: &str = "SourceBucket";

/// Deploys with the AWS SAM CLI: `sam build`, `sam deploy` (the arguments of [`crate::sam`]),
/// then `sam list stack-outputs` for the stack's outputs and for [`SAM_MANAGED_STACK`]'s
/// [`SOURCE_BUCKET`]. Runs without a shell in `root`.
#[derive(Debug, Clone)]
pub struct SamDeployer {
    /// Workspace root (where `samconfig.toml` is).
    pub root: PathBuf,
    /// AWS profile.
    pub profile: String,
    /// AWS region, when not the profile's.
    pub region: Option<String>,
    /// The SAM executable (`sam`, found on PATH).
    pub program: String,
}

impl SamDeployer {
    /// A deployer running `sam` from PATH in `root`.
    pub fn new(
        root: impl Into<PathBuf>,
        profile: impl Into<String>,
        region: Option<String>,
    ) -> Self {
        Self {
            root: root.into(),
            profile: profile.into(),
            region,
            program: "sam".to_owned(),
        }
    }

    /// Arguments of `sam list stack-outputs` for the stack named `stack`.
    pub fn outputs_args(&self, stack: &str) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "list".into(),
            "stack-outputs".into(),
            "--stack-name".into(),
            stack.into(),
            "--output".into(),
            "json".into(),
            "--profile".into(),
            self.profile.clone(),
        ];
        if let Some(region) = &self.region {
            args.extend(["--region".into(), region.clone()]);
        }
        args
    }

    /// Runs `sam <args>` with its output on the terminal (the build and deploy progress).
    async fn run_shown(&self, args: &[String]) -> Result<(), DeployError> {
        let status = self
            .command(args)
            .status()
            .await
            .map_err(|source| self.spawn_error(source))?;
        if status.success() {
            Ok(())
        } else {
            Err(DeployError::Failed {
                command: format!("{} {}", self.program, args.join(" ")),
                status,
                stderr: "see its output above".to_owned(),
            })
        }
    }

    /// Runs `sam <args>` and returns its standard output.
    async fn run_captured(&self, args: &[String]) -> Result<String, DeployError> {
        let output = self
            .command(args)
            .output()
            .await
            .map_err(|source| self.spawn_error(source))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let start = stderr.len().saturating_sub(2000);
            let start = (start..stderr.len())
                .find(|i| stderr.is_char_boundary(*i))
                .unwrap_or(stderr.len());
            return Err(DeployError::Failed {
                command: format!("{} {}", self.program, args.join(" ")),
                status: output.status,
                stderr: stderr[start..].to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn command(&self, args: &[String]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(args)
            .current_dir(&self.root)
            .stdin(std::process::Stdio::null());
        command
    }

    fn spawn_error(&self, source: std::io::Error) -> DeployError {
        DeployError::Spawn {
            program: self.program.clone(),
            source,
        }
    }
}

/// Parses the JSON of `sam list stack-outputs --output json`.
pub fn parse_outputs(stack: &str, json: &str) -> Result<StackOutputs, DeployError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        output_key: String,
        output_value: String,
    }
    let outputs: Vec<Output> = serde_json::from_str(json).map_err(|err| DeployError::Outputs {
        stack: stack.to_owned(),
        message: err.to_string(),
    })?;
    Ok(outputs
        .into_iter()
        .map(|o| (o.output_key, o.output_value))
        .collect())
}

impl StackDeployer for SamDeployer {
    fn plan(&self, stack: &Stack, overrides: &[(String, String)]) -> Vec<String> {
        let deploy = sam::deploy_args(stack, &self.profile, self.region.as_deref(), overrides);
        [
            sam::build_args(stack),
            deploy,
            self.outputs_args(stack.name),
        ]
        .into_iter()
        .map(|args| format!("{} {}", self.program, args.join(" ")))
        .collect()
    }

    async fn deploy(
        &self,
        stack: &Stack,
        overrides: &[(String, String)],
    ) -> Result<StackOutputs, DeployError> {
        self.run_shown(&sam::build_args(stack)).await?;
        self.run_shown(&sam::deploy_args(
            stack,
            &self.profile,
            self.region.as_deref(),
            overrides,
        ))
        .await?;
        let json = self.run_captured(&self.outputs_args(stack.name)).await?;
        let mut outputs = parse_outputs(stack.name, &json)?;
        // The bucket `resolve_s3` uploads to: the systemID of bootstrap's S3 configuration item.
        let json = self
            .run_captured(&self.outputs_args(SAM_MANAGED_STACK))
            .await?;
        if let Some(bucket) = parse_outputs(SAM_MANAGED_STACK, &json)?.remove(SOURCE_BUCKET) {
            outputs.insert(SOURCE_BUCKET.to_owned(), bucket);
        }
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_sam_is_a_clear_error() {
        let mut deployer = SamDeployer::new(".", "p", None);
        deployer.program = "/nonexistent/sam".to_owned();
        let err = deployer.deploy(&sam::ENGINE, &[]).await.unwrap_err();
        assert!(matches!(err, DeployError::Spawn { .. }), "{err:?}");
        assert!(err.to_string().contains("AWS SAM CLI"), "{err}");
    }

    #[test]
    fn plans_the_exact_commands() {
        let deployer = SamDeployer::new(".", "prod", Some("eu-west-1".into()));
        let plan = deployer.plan(
            &sam::ENGINE,
            &[("4MeDomainParameter".into(), "4me.com".into())],
        );
        assert_eq!(
            plan,
            [
                "sam build --config-env default",
                "sam deploy --config-env default --no-confirm-changeset --profile prod --region \
                 eu-west-1 --parameter-overrides 4MeDomainParameter=4me.com",
                "sam list stack-outputs --stack-name app-builder-engine --output json --profile \
                 prod --region eu-west-1",
            ]
        );
    }

    #[test]
    fn parses_sam_outputs() {
        let json = r#"[{"OutputKey":"SecretsApi","OutputValue":"https://x/Prod/secrets/","Description":"d"},
                       {"OutputKey":"SecretsFunction","OutputValue":"arn:aws:lambda:eu-west-1:1:function:f"}]"#;
        let outputs = parse_outputs("s", json).unwrap();
        assert_eq!(outputs["SecretsApi"], "https://x/Prod/secrets/");
        assert_eq!(outputs.len(), 2);
        assert!(parse_outputs("s", "{}").is_err());
    }
}
