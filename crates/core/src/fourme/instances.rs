//! App instances as the provider sees them (docs/original.md#app-instances) and the function's own API URL from its
//! configuration item: the lookups every integration's installation handler makes.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{FourMeClient, FourMeError};

/// Custom field of the function's configuration item holding its API URL.
pub const API_URL_FIELD: &str = "api_url";

/// Why a lookup failed; messages are the original's where it had one.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
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
}

/// An app instance with all its custom fields.
#[derive(Debug, Clone, PartialEq)]
pub struct AppInstance {
    /// Node id.
    pub id: String,
    /// The customer account id.
    pub customer_account: Option<String>,
    /// Whether the provider suspended it.
    pub suspended: bool,
    /// Whether it is disabled (in the provider account, or by the customer).
    pub disabled: bool,
    /// The suspension comment, if any.
    pub suspension_comment: Option<String>,
    /// Custom fields by id.
    pub custom_fields: Map<String, Value>,
}

impl AppInstance {
    /// Custom field `id` as trimmed non-empty text (numbers rendered as text).
    pub fn text(&self, id: &str) -> Option<String> {
        let text = match self.custom_fields.get(id)? {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return None,
        };
        (!text.is_empty()).then_some(text)
    }
}

#[derive(Deserialize)]
struct CustomField {
    id: String,
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize)]
struct Nodes<T> {
    nodes: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstanceNode {
    id: String,
    #[serde(default)]
    customer_account: Option<IdOnly>,
    #[serde(default)]
    suspended: bool,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    enabled_by_customer: Option<bool>,
    #[serde(default)]
    suspension_comment: Option<String>,
    #[serde(default)]
    custom_fields: Option<Vec<CustomField>>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

impl From<InstanceNode> for AppInstance {
    fn from(node: InstanceNode) -> Self {
        AppInstance {
            id: node.id,
            customer_account: node.customer_account.map(|a| a.id),
            suspended: node.suspended,
            disabled: node.disabled || node.enabled_by_customer == Some(false),
            suspension_comment: node.suspension_comment,
            custom_fields: node
                .custom_fields
                .unwrap_or_default()
                .into_iter()
                .map(|f| (f.id, f.value))
                .collect(),
        }
    }
}

const CI_QUERY: &str = "query LambdaCi($systemID: String) { configurationItems(first: 1, filter: {systemID: {values: [$systemID]}}) { nodes { id customFields { id value } } } }";

/// The function's API URL: custom field `api_url` of the configuration item whose `systemID` is
/// the function ARN (provider client).
pub async fn lambda_api_url(
    provider: &FourMeClient,
    function_arn: &str,
) -> Result<String, InstanceError> {
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
        .ok_or(InstanceError::NoLambdaCi)?;
    let fields = ci.custom_fields.unwrap_or_default();
    let field = fields
        .iter()
        .find(|f| f.id == API_URL_FIELD)
        .ok_or(InstanceError::NoApiUrl)?;
    match &field.value {
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(InstanceError::NoApiUrlValue),
    }
}

const INSTANCE_STATE_QUERY: &str = "query InstanceState($id: ID!) { node(id: $id) { ... on AppInstance { id appOffering { reference } customerAccount { id } createdAt disabled enabledByCustomer suspended } } }";

/// Where an app instance is in its life, as the provider reads it by node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    /// The offering reference.
    pub offering: String,
    /// The customer account id.
    pub account: String,
    /// Disabled (in the provider account, or before the customer confirmed the configuration).
    pub disabled: bool,
    /// Whether the customer has the instance enabled.
    pub enabled_by_customer: bool,
    /// Suspended by the provider.
    pub suspended: bool,
    /// When the instance was created (`createdAt`, ISO 8601).
    pub created_at: Option<String>,
}

impl InstanceState {
    /// Whether the instance runs: enabled on both sides and not suspended.
    pub fn is_active(&self) -> bool {
        !self.disabled && self.enabled_by_customer && !self.suspended
    }
}

/// The app instance with node id `node_id` (provider client); `None` when 4me knows no such
/// instance (deleted, or another account's).
pub async fn app_instance_state(
    provider: &FourMeClient,
    node_id: &str,
) -> Result<Option<InstanceState>, InstanceError> {
    #[derive(Deserialize)]
    struct Reference {
        reference: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Node {
        app_offering: Option<Reference>,
        customer_account: Option<IdOnly>,
        disabled: Option<bool>,
        enabled_by_customer: Option<bool>,
        suspended: Option<bool>,
        created_at: Option<String>,
    }
    #[derive(Deserialize)]
    struct Data {
        node: Option<Node>,
    }
    let data: Data = provider
        .query(INSTANCE_STATE_QUERY, &json!({ "id": node_id }))
        .await?;
    Ok(data.node.and_then(|node| {
        Some(InstanceState {
            offering: node.app_offering?.reference,
            account: node.customer_account?.id,
            disabled: node.disabled.unwrap_or(false),
            enabled_by_customer: node.enabled_by_customer.unwrap_or(true),
            suspended: node.suspended.unwrap_or(false),
            created_at: node.created_at,
        })
    }))
}

const INSTANCE_QUERY: &str = "query Instance($customerAccount: String!, $reference: String) { appInstances(first: 1, filter: {customerAccount: {values: [$customerAccount]}, appOfferingReference: {values: [$reference]}}) { nodes { id customerAccount { id } suspended disabled enabledByCustomer suspensionComment customFields { id value } } } }";

/// The app instance of offering `reference` in `customer` (provider client).
pub async fn find_app_instance(
    provider: &FourMeClient,
    reference: &str,
    customer: &str,
) -> Result<AppInstance, InstanceError> {
    #[derive(Deserialize)]
    struct Data {
        #[serde(rename = "appInstances")]
        app_instances: Nodes<InstanceNode>,
    }
    let data: Data = provider
        .query(
            INSTANCE_QUERY,
            &json!({ "customerAccount": customer, "reference": reference }),
        )
        .await?;
    data.app_instances
        .nodes
        .into_iter()
        .next()
        .map(AppInstance::from)
        .ok_or_else(|| InstanceError::NoInstance {
            reference: reference.to_owned(),
            customer: customer.to_owned(),
        })
}

/// [`find_app_instance`], tried once more after `wait` when it fails: right after an
/// installation the instance may not be visible yet (docs/original.md#app-instances `retrieveInstanceWithRetry`).
pub async fn find_app_instance_with_retry(
    provider: &FourMeClient,
    reference: &str,
    customer: &str,
    wait: std::time::Duration,
) -> Result<AppInstance, InstanceError> {
    match find_app_instance(provider, reference, customer).await {
        Ok(found) => Ok(found),
        Err(error) => {
            tracing::info!(customer, error = %error, "Too quick after app offering installation?");
            tokio::time::sleep(wait).await;
            find_app_instance(provider, reference, customer).await
        }
    }
}

const INSTANCE_UPDATE: &str = "mutation InstanceUpdate($input: AppInstanceUpdateInput!) { appInstanceUpdate(input: $input) { errors { path message } appInstance { id } } }";

/// An `appInstanceUpdate` input: only the attributes set are sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceUpdate {
    /// New suspension state.
    pub suspended: Option<bool>,
    /// New suspension comment.
    pub suspension_comment: Option<String>,
    /// Custom fields to set (`null` clears), in this order.
    pub custom_fields: Vec<(String, Value)>,
}

impl InstanceUpdate {
    /// Suspends the instance with `comment` (shown to the customer).
    pub fn suspend(comment: impl Into<String>) -> Self {
        InstanceUpdate {
            suspended: Some(true),
            suspension_comment: Some(comment.into()),
            ..InstanceUpdate::default()
        }
    }

    /// Lifts the suspension.
    pub fn unsuspend() -> Self {
        InstanceUpdate {
            suspended: Some(false),
            ..InstanceUpdate::default()
        }
    }
}

/// Applies `update` to app instance `id` (provider client).
pub async fn update_app_instance(
    provider: &FourMeClient,
    id: &str,
    update: &InstanceUpdate,
) -> Result<(), FourMeError> {
    let mut input = Map::new();
    input.insert("id".into(), json!(id));
    if let Some(s) = update.suspended {
        input.insert("suspended".into(), json!(s));
    }
    if let Some(c) = &update.suspension_comment {
        input.insert("suspensionComment".into(), json!(c));
    }
    if !update.custom_fields.is_empty() {
        let fields: Vec<Value> = update
            .custom_fields
            .iter()
            .map(|(id, value)| json!({"id": id, "value": value}))
            .collect();
        input.insert("customFields".into(), Value::Array(fields));
    }
    provider
        .mutation::<_, Value>(INSTANCE_UPDATE, &json!({ "input": input }))
        .await
        .map(drop)
}
