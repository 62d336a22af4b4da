//! The engine's functions, built from their environment exactly as each `main.rs` builds them
//! (`Settings::from_lookup` over the variables the template gives the function), and invoked
//! with raw Lambda payloads as the Lambda runtime invokes them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use app_builder_core::config::{ConfigError, Settings};
use app_builder_core::context::{ContextError, ContextLoader};
use app_builder_core::events::{Invocation, InvocationFailed, PayloadFunction};
use app_builder_core::fourme::{ClientSettings, EndpointError, Endpoints};
use app_builder_core::state::LocalStateStore;
use futures::future::BoxFuture;
use lansweeper::queue::SyncMessage;
use lansweeper::{QueueError, RefreshQueue};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::bus::LocalBus;
use crate::store::EventingStore;

/// Why a function could not be built (its cold start would fail the same way in Lambda).
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// No handler is known for the template's `Binary`.
    #[error(
        "no local handler for binary `{0}` (known: secrets, note-dispatcher, typeform, lansweeper)"
    )]
    UnknownBinary(String),
    /// A setting is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An endpoint override is malformed.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The context loader could not be built.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// Anything else the handler's constructor reported.
    #[error("{0}")]
    Setup(String),
}

/// A deployed function: takes a Lambda payload, answers a Lambda result.
pub trait LocalFunction: Send + Sync {
    /// Invokes the function with `payload` as `function_arn`.
    fn invoke<'a>(&'a self, payload: Value, function_arn: &'a str) -> BoxFuture<'a, Value>;
}

/// The in-process stand-in for the function's SQS queue: `enqueue` sends the message body to the
/// engine's consumer of that queue.
#[derive(Debug, Clone)]
pub struct LocalQueue {
    sender: mpsc::UnboundedSender<String>,
}

impl LocalQueue {
    /// A queue and the receiving end its consumer reads.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Self { sender }, receiver)
    }
}

impl RefreshQueue for LocalQueue {
    async fn send(&self, message: &SyncMessage, delay: Duration) -> Result<(), QueueError> {
        let body = message.body();
        if delay.is_zero() {
            return self.sender.send(body).map_err(|_| QueueError {
                account: message.account.clone(),
                message: "the local queue's consumer has stopped".into(),
            });
        }
        // As SQS's `DelaySeconds`: the message becomes visible to the consumer after `delay`.
        let sender = self.sender.clone();
        let delay = delay.min(lansweeper::queue::MAX_DELAY);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = sender.send(body);
        });
        Ok(())
    }
}

/// A built function and, when it sends to a queue, the receiving end of that queue.
pub struct Built {
    /// The function.
    pub function: Arc<dyn LocalFunction>,
    /// The messages the function queues (consumed by the engine).
    pub queue: Option<mpsc::UnboundedReceiver<String>>,
}

/// The binaries the engine has handlers for.
pub const KNOWN_BINARIES: [&str; 4] = ["secrets", "note-dispatcher", "typeform", "lansweeper"];

/// Builds the handler of `binary` from `environment` over `store`, `state` (the local stand-in
/// of the engine's state table) and `bus` (of the engine's event bus).
pub fn build(
    binary: &str,
    environment: &BTreeMap<String, String>,
    store: EventingStore,
    state: LocalStateStore,
    bus: LocalBus,
) -> Result<Built, FunctionError> {
    let lookup = |name: &str| environment.get(name).cloned();
    let settings = Settings::from_lookup(lookup);
    let client_settings = ClientSettings::from_lookup(lookup);
    match binary {
        "secrets" => {
            let config = secrets::FunctionConfig::from_settings(&settings)?;
            let endpoints = Endpoints::from_lookup(&config.context.domain, lookup)?;
            let loader = ContextLoader::new(config.context, store, endpoints, client_settings)?;
            let handler = secrets::SecretsHandler::new(
                loader,
                state,
                bus,
                config.enabled,
                config.verify_timeout,
            )
            .map_err(|e| FunctionError::Setup(e.to_string()))?;
            Ok(only(Arc::new(Payload(handler))))
        }
        "note-dispatcher" => {
            let context = settings.context_config(true)?;
            let endpoints = Endpoints::from_lookup(&context.domain, lookup)?;
            let config = note_dispatcher::DispatcherConfig::from_settings(&settings)?;
            let loader = ContextLoader::new(context, store, endpoints, client_settings)?;
            let dispatcher = note_dispatcher::NoteDispatcher::new(loader, state, config)
                .map_err(|e| FunctionError::Setup(e.to_string()))?;
            Ok(only(Arc::new(Payload(dispatcher))))
        }
        "typeform" => {
            let context = settings.context_config(true)?;
            let endpoints = Endpoints::from_lookup(&context.domain, lookup)?;
            let api = typeform::typeform_api_from_settings(&settings)?;
            let function_settings = typeform::FunctionSettings::from_settings(&settings);
            let loader = ContextLoader::new(context, store, endpoints, client_settings)?;
            let function = typeform::TypeformFunction::new(loader, api, state, function_settings);
            Ok(only(Arc::new(Payload(function))))
        }
        "lansweeper" => {
            let config = lansweeper::FunctionConfig::from_settings(&settings)?;
            let endpoints = Endpoints::from_lookup(&config.context.domain, lookup)?;
            let (queue, receiver) = LocalQueue::new();
            let loader = ContextLoader::new(config.context, store, endpoints, client_settings)?;
            let api = lansweeper::LansweeperApi::new(config.api)
                .map_err(|e| FunctionError::Setup(e.to_string()))?;
            let function =
                lansweeper::LansweeperFunction::new(loader, api, queue, state, config.function);
            Ok(Built {
                function: Arc::new(Payload(function)),
                queue: Some(receiver),
            })
        }
        other => Err(FunctionError::UnknownBinary(other.to_owned())),
    }
}

fn only(function: Arc<dyn LocalFunction>) -> Built {
    Built {
        function,
        queue: None,
    }
}

/// A function served with raw payloads, as [`app_builder_core::events::run_payload_function`]
/// serves it in Lambda.
struct Payload<F>(F);

impl<F: PayloadFunction> LocalFunction for Payload<F> {
    fn invoke<'a>(&'a self, payload: Value, function_arn: &'a str) -> BoxFuture<'a, Value> {
        let invocation = Invocation::new(function_arn, F::ATTEMPT_TIME);
        Box::pin(async move { lambda_result(self.0.handle_payload(payload, invocation).await) })
    }
}

/// A handler's result as the Lambda runtime reports it: the payload, or for a function error
/// the runtime API's error document (`errorType`, `errorMessage`).
fn lambda_result(result: Result<Value, InvocationFailed>) -> Value {
    result.unwrap_or_else(|failed| {
        json!({
            "errorType": "InvocationFailed",
            "errorMessage": failed.to_string(),
        })
    })
}

/// Whether an invocation's result is a function error (Lambda retries an asynchronous one).
pub fn is_function_error(result: &Value) -> bool {
    result.get("errorType").is_some()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every function a repository template declares can run in the local engine.
    #[test]
    fn every_template_binary_has_a_local_handler() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut templates = vec![root.join("template.yaml")];
        for entry in std::fs::read_dir(root.join("crates")).unwrap() {
            let path = entry.unwrap().path().join("template.yaml");
            if path.exists() {
                templates.push(path);
            }
        }
        assert!(templates.len() >= 3, "{templates:?}");
        for path in templates {
            let template =
                crate::Template::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for function in template.functions {
                assert!(
                    KNOWN_BINARIES.contains(&function.binary.as_str()),
                    "{}: no local handler for {}",
                    path.display(),
                    function.binary
                );
            }
        }
    }
}
