//! Lambda entry point of the secrets-webhook function: reads the configuration once (a missing
//! or malformed setting fails start-up naming it), wires the AWS Secrets Manager store and the
//! DynamoDB state store and the EventBridge bus, and serves raw payloads through
//! [`SecretsHandler::handle_payload`] (a body that is not what it claims is refused there, before
//! a request is built).

use app_builder_core::bus::EventBridgePublisher;
use app_builder_core::config::Settings;
use app_builder_core::context::ContextLoader;
use app_builder_core::events;
use app_builder_core::fourme::{ClientSettings, Endpoints};
use app_builder_core::secrets::AwsSecretStore;
use app_builder_core::state::DynamoStateStore;
use app_builder_core::telemetry;
use lambda_http::Error;
use secrets::{FunctionConfig, SecretsHandler};

// One thread: a Lambda function handles one invocation at a time, and below 1,769 MB it has
// less than one vCPU; worker threads would only add their stacks and allocator arenas.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let handler = setup().await.map_err(telemetry::start_up_failed)?;
    events::run_payload_function(handler).await
}

/// Reads the configuration and builds the handler over AWS.
async fn setup()
-> Result<SecretsHandler<AwsSecretStore, DynamoStateStore, EventBridgePublisher>, Error> {
    let config = FunctionConfig::from_settings(&Settings::from_env())?;
    let endpoints = Endpoints::from_env(&config.context.domain)?;
    let store = AwsSecretStore::from_env().await;
    let state = DynamoStateStore::from_env(config.state_table).await;
    let bus = EventBridgePublisher::from_env(config.event_bus).await;
    let loader = ContextLoader::new(config.context, store, endpoints, ClientSettings::from_env())?;
    Ok(SecretsHandler::new(
        loader,
        state,
        bus,
        config.enabled,
        config.verify_timeout,
    )?)
}
