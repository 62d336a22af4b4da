//! Lambda entry point of the secrets-webhook function: reads the configuration once (a missing
//! or malformed setting fails start-up naming it), wires the AWS Secrets Manager store and runs
//! the handler under `lambda_http`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use app_builder_core::config::{ConfigError, Settings};
use app_builder_core::context::ContextLoader;
use app_builder_core::fourme::{ClientSettings, Endpoints};
use app_builder_core::secrets::AwsSecretStore;
use lambda_http::{Request, service_fn};
use secrets::{DEFAULT_VERIFY_TIMEOUT, ENV_VERIFY_TIMEOUT_MS, SecretsHandler};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .init();

    let settings = Settings::from_env();
    let config = settings.context_config(false)?;
    let enabled = settings.enabled_offerings();
    let verify_timeout = match settings.parsed::<u64>(ENV_VERIFY_TIMEOUT_MS)? {
        None => DEFAULT_VERIFY_TIMEOUT,
        Some(0) => {
            return Err(ConfigError::Invalid {
                name: ENV_VERIFY_TIMEOUT_MS,
                reason: "the timeout must be at least 1 ms".into(),
            }
            .into());
        }
        Some(ms) => Duration::from_millis(ms),
    };
    let endpoints = Endpoints::from_env(&config.domain)?;
    let store = AwsSecretStore::from_env().await;
    let loader = ContextLoader::new(config, store, endpoints, ClientSettings::from_env())?;
    let handler = Arc::new(SecretsHandler::new(loader, enabled, verify_timeout)?);

    lambda_http::run(service_fn(move |req: Request| {
        let handler = Arc::clone(&handler);
        async move { Ok::<_, Infallible>(handler.handle(req).await) }
    }))
    .await
}
