//! Lambda entry point of the secrets-webhook function: reads the configuration once (a missing
//! or malformed setting fails start-up naming it), wires the AWS Secrets Manager store and runs
//! the handler under `lambda_http`.

use std::convert::Infallible;
use std::sync::Arc;

use app_builder_core::config::Settings;
use app_builder_core::context::ContextLoader;
use app_builder_core::fourme::{ClientSettings, Endpoints};
use app_builder_core::secrets::AwsSecretStore;
use lambda_http::{Request, service_fn};
use secrets::{FunctionConfig, SecretsHandler};
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
    let result = run().await;
    if let Err(error) = &result {
        tracing::error!(error = %error, "secrets function failed");
    }
    result
}

async fn run() -> Result<(), lambda_http::Error> {
    let config = FunctionConfig::from_settings(&Settings::from_env())?;
    let endpoints = Endpoints::from_env(&config.context.domain)?;
    let store = AwsSecretStore::from_env().await;
    let loader = ContextLoader::new(config.context, store, endpoints, ClientSettings::from_env())?;
    let handler = Arc::new(SecretsHandler::new(
        loader,
        config.enabled,
        config.verify_timeout,
    )?);

    lambda_http::run(service_fn(move |req: Request| {
        let handler = Arc::clone(&handler);
        async move { Ok::<_, Infallible>(handler.handle(req).await) }
    }))
    .await
}
