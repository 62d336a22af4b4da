//! Lambda entry point of the Typeform function: reads the configuration once, builds the AWS
//! adapters and serves the engine bus's installation events and API Gateway events.

use app_builder_core::config::Settings;
use app_builder_core::context::ContextLoader;
use app_builder_core::events;
use app_builder_core::fourme::{ClientSettings, Endpoints};
use app_builder_core::secrets::AwsSecretStore;
use app_builder_core::state::{DynamoStateStore, ENV_STATE_TABLE};
use app_builder_core::telemetry;
use lambda_runtime::Error;
use typeform::{FunctionSettings, TypeformFunction, typeform_api_from_settings};

// One thread: a Lambda function handles one invocation at a time, and below 1,769 MB it has
// less than one vCPU; worker threads would only add their stacks and allocator arenas.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let function = setup().await.map_err(telemetry::start_up_failed)?;
    events::run_payload_function(function).await
}

/// Reads the configuration (errors name the setting) and builds the function over AWS.
async fn setup() -> Result<TypeformFunction<AwsSecretStore, DynamoStateStore>, Error> {
    let settings = Settings::from_env();
    let config = settings.context_config(true)?;
    let endpoints = Endpoints::from_env(&config.domain)?;
    let typeform = typeform_api_from_settings(&settings)?;
    let function_settings = FunctionSettings::from_settings(&settings);
    let store = AwsSecretStore::from_env().await;
    let state = DynamoStateStore::from_env(settings.required(ENV_STATE_TABLE)?).await;
    let loader = ContextLoader::new(config, store, endpoints, ClientSettings::from_env())?;
    Ok(TypeformFunction::new(
        loader,
        typeform,
        state,
        function_settings,
    ))
}
