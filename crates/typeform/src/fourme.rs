//! The 4me operations specific to the Typeform integration (docs/original.md#typeform): the app-instance custom
//! fields it reads and adding a note to a request (customer token). The function's API URL and
//! the app instance lookups are `app_builder_core::fourme::instances`.

use app_builder_core::fourme::instances::InstanceError;
use app_builder_core::fourme::{FourMeClient, FourMeError};
use serde::Deserialize;
use serde_json::{Value, json};

/// Custom field of the app instance holding the Typeform form URL.
pub const FORM_URL_FIELD: &str = "form_url";
/// Custom field of the app instance holding the 4me request id the notes go to.
pub const REQUEST_ID_FIELD: &str = "request_id";

/// Errors of the 4me lookups; messages are the original's where it had one.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// 4me failed.
    #[error(transparent)]
    FourMe(#[from] FourMeError),
    /// The function's configuration item or the customer's app instance could not be found.
    #[error(transparent)]
    Instance(#[from] InstanceError),
    /// No request with the configured request id.
    #[error("Request {0} not found")]
    RequestNotFound(String),
}

#[derive(Debug, Deserialize)]
struct Nodes<T> {
    nodes: Vec<T>,
}

const REQUEST_QUERY: &str = "query Request($requestId: String) { requests(first: 1, filter: {requestId: {values: [$requestId]}}) { nodes { id } } }";
const REQUEST_UPDATE: &str = "mutation AddNote($input: RequestUpdateInput!) { requestUpdate(input: $input) { errors { path message } request { id } } }";

/// Adds `note` to the request numbered `request_id` (customer client); returns the request's
/// node id.
pub async fn add_note(
    customer: &FourMeClient,
    request_id: &str,
    note: &str,
) -> Result<String, LookupError> {
    #[derive(Deserialize)]
    struct Node {
        id: String,
    }
    #[derive(Deserialize)]
    struct Data {
        requests: Nodes<Node>,
    }
    let data: Data = customer
        .query(REQUEST_QUERY, &json!({ "requestId": request_id }))
        .await?;
    let node = data
        .requests
        .nodes
        .into_iter()
        .next()
        .ok_or_else(|| LookupError::RequestNotFound(request_id.to_owned()))?;
    let input = json!({ "input": { "id": node.id, "note": note } });
    customer
        .mutation::<_, Value>(REQUEST_UPDATE, &input)
        .await?;
    Ok(node.id)
}
