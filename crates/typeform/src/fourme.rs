//! The 4me operations of the Typeform integration (spec §4.8, §5.2.1, §5.2.3): the function's own
//! API URL from its configuration item, the app instance of a customer (provider token),
//! suspension, and adding a note to a request (customer token).

use std::time::Duration;

use app_builder_core::fourme::{FourMeClient, FourMeError};
use serde::Deserialize;
use serde_json::{Value, json};

/// Custom field of the function's configuration item holding its API URL.
pub const API_URL_FIELD: &str = "api_url";
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
    /// No configuration item has the function ARN as system id.
    #[error("No lambda CI found")]
    NoLambdaCi,
    /// The configuration item has no `api_url` custom field.
    #[error("No api_url found")]
    NoApiUrl,
    /// The `api_url` custom field is empty.
    #[error("No api_url value found")]
    NoApiUrlValue,
    /// No app instance of the offering for the customer.
    #[error("No instances of {reference} for {customer}")]
    NoInstance {
        /// The offering reference.
        reference: String,
        /// The customer account.
        customer: String,
    },
    /// No request with the configured request id.
    #[error("Request {0} not found")]
    RequestNotFound(String),
}

#[derive(Debug, Deserialize)]
struct CustomField {
    id: String,
    #[serde(default)]
    value: Value,
}

#[derive(Debug, Deserialize)]
struct Nodes<T> {
    nodes: Vec<T>,
}

/// The app instance of a customer, as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Node id.
    pub id: String,
    /// Whether the provider suspended it.
    pub suspended: bool,
    /// The suspension comment, if any.
    pub suspension_comment: Option<String>,
    /// Custom field `form_url`, when set to a non-empty value.
    pub form_url: Option<String>,
    /// Custom field `request_id`, when set (numbers are rendered as text).
    pub request_id: Option<String>,
}

fn field_text(fields: &[CustomField], id: &str) -> Option<String> {
    let value = &fields.iter().find(|f| f.id == id)?.value;
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

const CI_QUERY: &str = "query LambdaCi($systemID: String) { configurationItems(first: 1, filter: {systemID: {values: [$systemID]}}) { nodes { id customFields { id value } } } }";

/// The function's API URL: custom field `api_url` of the configuration item whose `systemID` is
/// the function ARN.
pub async fn lambda_api_url(
    provider: &FourMeClient,
    function_arn: &str,
) -> Result<String, LookupError> {
    #[derive(Deserialize)]
    struct Ci {
        #[serde(rename = "customFields", default)]
        custom_fields: Option<Vec<CustomField>>,
    }
    #[derive(Deserialize)]
    struct Data {
        #[serde(rename = "configurationItems")]
        configuration_items: Nodes<Ci>,
    }
    let data: Data = provider
        .query(CI_QUERY, &json!({ "systemID": function_arn }))
        .await?;
    let ci = data
        .configuration_items
        .nodes
        .into_iter()
        .next()
        .ok_or(LookupError::NoLambdaCi)?;
    let fields = ci.custom_fields.unwrap_or_default();
    let field = fields
        .iter()
        .find(|f| f.id == API_URL_FIELD)
        .ok_or(LookupError::NoApiUrl)?;
    match &field.value {
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(LookupError::NoApiUrlValue),
    }
}

const INSTANCE_QUERY: &str = "query Instance($customerAccount: String!, $reference: String) { appInstances(first: 1, filter: {customerAccount: {values: [$customerAccount]}, appOfferingReference: {values: [$reference]}}) { nodes { id appOffering { id } suspended suspensionComment customFields { id value } } } }";

/// The app instance of offering `reference` in `customer` (provider client).
pub async fn instance(
    provider: &FourMeClient,
    reference: &str,
    customer: &str,
) -> Result<Instance, LookupError> {
    #[derive(Deserialize)]
    struct Node {
        id: String,
        #[serde(default)]
        suspended: bool,
        #[serde(rename = "suspensionComment", default)]
        suspension_comment: Option<String>,
        #[serde(rename = "customFields", default)]
        custom_fields: Option<Vec<CustomField>>,
    }
    #[derive(Deserialize)]
    struct Data {
        #[serde(rename = "appInstances")]
        app_instances: Nodes<Node>,
    }
    let data: Data = provider
        .query(
            INSTANCE_QUERY,
            &json!({ "customerAccount": customer, "reference": reference }),
        )
        .await?;
    let node =
        data.app_instances
            .nodes
            .into_iter()
            .next()
            .ok_or_else(|| LookupError::NoInstance {
                reference: reference.to_owned(),
                customer: customer.to_owned(),
            })?;
    let fields = node.custom_fields.unwrap_or_default();
    Ok(Instance {
        form_url: field_text(&fields, FORM_URL_FIELD),
        request_id: field_text(&fields, REQUEST_ID_FIELD),
        id: node.id,
        suspended: node.suspended,
        suspension_comment: node.suspension_comment,
    })
}

/// [`instance`], tried once more after `wait` when it fails (the instance may not be visible
/// yet right after installation, spec §4.8 `retrieveInstanceWithRetry`).
pub async fn instance_with_retry(
    provider: &FourMeClient,
    reference: &str,
    customer: &str,
    wait: Duration,
) -> Result<Instance, LookupError> {
    match instance(provider, reference, customer).await {
        Ok(found) => Ok(found),
        Err(err) => {
            tracing::info!(customer, error = %err, "Too quick after app offering installation?");
            tokio::time::sleep(wait).await;
            instance(provider, reference, customer).await
        }
    }
}

const INSTANCE_UPDATE: &str = "mutation InstanceUpdate($input: AppInstanceUpdateInput!) { appInstanceUpdate(input: $input) { errors { path message } appInstance { id } } }";

/// Suspends instance `id` with `comment` (shown to the customer).
pub async fn suspend(provider: &FourMeClient, id: &str, comment: &str) -> Result<(), FourMeError> {
    let input = json!({ "input": { "id": id, "suspended": true, "suspensionComment": comment } });
    provider
        .mutation::<_, Value>(INSTANCE_UPDATE, &input)
        .await
        .map(drop)
}

/// Lifts the suspension of instance `id`.
pub async fn unsuspend(provider: &FourMeClient, id: &str) -> Result<(), FourMeError> {
    let input = json!({ "input": { "id": id, "suspended": false } });
    provider
        .mutation::<_, Value>(INSTANCE_UPDATE, &input)
        .await
        .map(drop)
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
