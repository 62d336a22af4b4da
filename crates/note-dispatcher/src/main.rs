//! The note-dispatcher Lambda: reads its configuration once, wires AWS Secrets Manager and runs
//! the handler under `lambda_http`.

use std::sync::Arc;

use app_builder_core::config::Settings;
use app_builder_core::context::ContextLoader;
use app_builder_core::fourme::{ClientSettings, Endpoints};
use app_builder_core::secrets::AwsSecretStore;
use lambda_http::{Error, Request, service_fn};
use note_dispatcher::{DispatcherConfig, NoteDispatcher};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(true)
        .with_target(false)
        .without_time()
        .init();

    let dispatcher = match setup().await {
        Ok(dispatcher) => Arc::new(dispatcher),
        Err(message) => {
            tracing::error!(error = %message, "start-up failed");
            return Err(message.into());
        }
    };

    lambda_http::run(service_fn(move |req: Request| {
        let dispatcher = Arc::clone(&dispatcher);
        async move { Ok::<_, Error>(dispatcher.handle(req).await) }
    }))
    .await
}

/// Reads the configuration (errors name the setting) and builds the handler over AWS.
async fn setup() -> Result<NoteDispatcher<AwsSecretStore>, String> {
    let settings = Settings::from_env();
    let context = settings.context_config(true).map_err(|e| e.to_string())?;
    let endpoints = Endpoints::from_env(&context.domain).map_err(|e| e.to_string())?;
    let config = DispatcherConfig::from_settings(&settings).map_err(|e| e.to_string())?;
    let store = AwsSecretStore::from_env().await;
    let loader = ContextLoader::new(context, store, endpoints, ClientSettings::from_env())
        .map_err(|e| e.to_string())?;
    NoteDispatcher::new(loader, config).map_err(|e| e.to_string())
}
