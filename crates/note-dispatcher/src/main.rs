//! The note-dispatcher Lambda: reads its configuration once, wires AWS Secrets Manager and the
//! engine's DynamoDB state table, and routes every payload (API Gateway requests, the engine
//! bus's installation events) through [`NoteDispatcher::handle_payload`].

use app_builder_core::config::Settings;
use app_builder_core::context::ContextLoader;
use app_builder_core::events;
use app_builder_core::fourme::{ClientSettings, Endpoints};
use app_builder_core::secrets::AwsSecretStore;
use app_builder_core::state::{DynamoStateStore, ENV_STATE_TABLE};
use app_builder_core::telemetry;
use lambda_http::Error;
use note_dispatcher::{DispatcherConfig, NoteDispatcher};

// One thread: a Lambda function handles one invocation at a time, and below 1,769 MB it has
// less than one vCPU; worker threads would only add their stacks and allocator arenas.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let dispatcher = setup().await.map_err(telemetry::start_up_failed)?;
    events::run_payload_function(dispatcher).await
}

async fn setup() -> Result<NoteDispatcher<AwsSecretStore, DynamoStateStore>, Error> {
    let settings = Settings::from_env();
    let context = settings.context_config(true)?;
    let endpoints = Endpoints::from_env(&context.domain)?;
    let config = DispatcherConfig::from_settings(&settings)?;
    let store = AwsSecretStore::from_env().await;
    let state = DynamoStateStore::from_env(settings.required(ENV_STATE_TABLE)?).await;
    let loader = ContextLoader::new(context, store, endpoints, ClientSettings::from_env())?;
    Ok(NoteDispatcher::new(loader, state, config)?)
}
