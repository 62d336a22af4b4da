//! Lambda entry point of the Lansweeper function: reads the configuration once (a missing or
//! malformed setting fails start-up naming it), builds the AWS adapters (Secrets Manager, SQS,
//! DynamoDB) and routes every payload through [`LansweeperFunction::handle_payload`], writing
//! each invocation's metrics as one EMF line.

use app_builder_core::config::Settings;
use app_builder_core::context::ContextLoader;
use app_builder_core::events;
use app_builder_core::fourme::{ClientSettings, Endpoints};
use app_builder_core::secrets::AwsSecretStore;
use app_builder_core::state::DynamoStateStore;
use app_builder_core::telemetry;
use lambda_runtime::Error;
use lansweeper::{FunctionConfig, LansweeperApi, LansweeperFunction, SqsRefreshQueue};

// One thread: a Lambda function handles one invocation at a time, and below 1,769 MB it has
// less than one vCPU; worker threads would only add their stacks and allocator arenas.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let function = setup().await.map_err(telemetry::start_up_failed)?;
    events::run_payload_function(function).await
}

/// Reads the configuration (errors name the setting) and builds the function over AWS.
async fn setup()
-> Result<LansweeperFunction<AwsSecretStore, SqsRefreshQueue, DynamoStateStore>, Error> {
    let config = FunctionConfig::from_settings(&Settings::from_env())?;
    let endpoints = Endpoints::from_env(&config.context.domain)?;
    let store = AwsSecretStore::from_env().await;
    let queue = SqsRefreshQueue::from_env(config.refresh_queue_url.clone()).await;
    let state = DynamoStateStore::from_env(config.state_table.clone()).await;
    let loader = ContextLoader::new(config.context, store, endpoints, ClientSettings::from_env())?;
    let api = LansweeperApi::new(config.api)?;
    Ok(LansweeperFunction::new(
        loader,
        api,
        queue,
        state,
        config.function,
    ))
}
