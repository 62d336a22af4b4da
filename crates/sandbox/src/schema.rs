//! The GraphQL schema (derive-based, so unknown operations, fields and arguments are validation
//! errors) and its resolvers over the generic record store.

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, Enum, Error, ID, InputObject, Json, MergedObject, Object, Result,
    Schema, SimpleObject,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::state::{Record, State};
use crate::{MAX_PAGE_SIZE, Shared};

mod apps;
mod catalogue;
mod misc;
mod webhook_types;

pub(crate) use apps::*;
pub(crate) use catalogue::*;
pub(crate) use misc::*;
pub(crate) use webhook_types::*;

/// Per-request data: the authenticated account.
pub(crate) struct RequestCtx {
    pub account: String,
}

/// The sandbox schema type.
pub(crate) type SandboxSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Builds the schema with the shared state as data.
pub(crate) fn build(shared: Arc<Shared>) -> SandboxSchema {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
    .data(shared)
    .finish()
}

/// The schema in SDL (no data needed).
pub(crate) fn sdl() -> String {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
    .finish()
    .sdl()
}

pub(crate) fn shared<'a>(ctx: &Context<'a>) -> Result<&'a Arc<Shared>> {
    ctx.data::<Arc<Shared>>()
}

pub(crate) fn account<'a>(ctx: &Context<'a>) -> Result<&'a str> {
    Ok(ctx.data::<RequestCtx>()?.account.as_str())
}

/// A `ISO8601Timestamp` scalar (kept as the string sent).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Iso8601Timestamp(pub String);
async_graphql::scalar!(Iso8601Timestamp, "ISO8601Timestamp");

/// A `ISO8601Date` scalar (kept as the string sent).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Iso8601Date(pub String);
async_graphql::scalar!(Iso8601Date, "ISO8601Date");

// ---------------------------------------------------------------------------------------------
// Paging

/// Relay page info.
#[derive(SimpleObject, Clone, Debug)]
pub struct PageInfo {
    /// More nodes after this page.
    pub has_next_page: bool,
    /// Nodes before this page.
    pub has_previous_page: bool,
    /// Cursor of the first node.
    pub start_cursor: Option<String>,
    /// Cursor of the last node (pass as `after` for the next page).
    pub end_cursor: Option<String>,
}

fn cursor(index: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("cursor:{}", index + 1))
}

fn decode_cursor(value: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("cursor:")?.parse::<usize>().ok()
}

/// Cuts one page out of `items`.
pub(crate) fn paginate<T>(
    items: Vec<T>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<(Vec<T>, PageInfo, i32)> {
    let first = first.unwrap_or(MAX_PAGE_SIZE);
    if !(0..=MAX_PAGE_SIZE).contains(&first) {
        return Err(Error::new(format!(
            "Argument 'first' must be between 0 and {MAX_PAGE_SIZE}"
        )));
    }
    let start = match after {
        None => 0,
        Some(c) => decode_cursor(&c).ok_or_else(|| Error::new("Invalid cursor for 'after'"))?,
    };
    let total = items.len();
    let take = usize::try_from(first).unwrap_or(0);
    let page: Vec<T> = items.into_iter().skip(start).take(take).collect();
    let end = start + page.len();
    let info = PageInfo {
        has_next_page: end < total,
        has_previous_page: start > 0,
        start_cursor: (!page.is_empty()).then(|| cursor(start)),
        end_cursor: (!page.is_empty()).then(|| cursor(end - 1)),
    };
    Ok((page, info, i32::try_from(total).unwrap_or(i32::MAX)))
}

macro_rules! connection {
    ($conn:ident, $node:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(SimpleObject)]
        pub struct $conn {
            /// The nodes of this page.
            pub nodes: Vec<$node>,
            /// Paging information.
            pub page_info: PageInfo,
            /// Number of nodes matching the filter.
            pub total_count: i32,
        }

        impl $conn {
            #[allow(dead_code)]
            pub(crate) fn page(
                records: Vec<Record>,
                first: Option<i32>,
                after: Option<String>,
            ) -> Result<$conn> {
                let (nodes, page_info, total_count) = paginate(records, first, after)?;
                Ok($conn {
                    nodes: nodes.into_iter().map(<$node>::from).collect(),
                    page_info,
                    total_count,
                })
            }
        }
    };
}
pub(crate) use connection;

// ---------------------------------------------------------------------------------------------
// Filters

/// Filter on a string field.
#[derive(InputObject, Clone, Debug)]
pub struct StringFilter {
    /// Accepted values (`null` matches an empty field).
    pub values: Option<Vec<Option<String>>>,
    /// Invert the filter.
    pub negate: Option<bool>,
}

/// Filter on an id field.
#[derive(InputObject, Clone, Debug)]
pub struct IdFilter {
    /// Accepted ids.
    pub values: Option<Vec<Option<ID>>>,
    /// Invert the filter.
    pub negate: Option<bool>,
}

/// Matches `actual` against optional accepted values (serialized to strings) with negation.
pub(crate) fn filter_matches<T: Serialize>(
    values: &Option<Vec<Option<T>>>,
    negate: Option<bool>,
    actual: Option<&str>,
) -> bool {
    let Some(values) = values else {
        return true;
    };
    let hit = values.iter().any(|v| {
        let wanted = v
            .as_ref()
            .and_then(|v| serde_json::to_value(v).ok())
            .and_then(|v| match v {
                Value::String(s) => Some(s),
                Value::Bool(b) => Some(b.to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        match (wanted, actual) {
            (None, None) => true,
            (Some(w), Some(a)) => w == a,
            (None, Some(a)) => a.is_empty(),
            (Some(_), None) => false,
        }
    });
    hit != negate.unwrap_or(false)
}

impl StringFilter {
    pub(crate) fn matches(&self, actual: Option<&str>) -> bool {
        filter_matches(&self.values, self.negate, actual)
    }
}

impl IdFilter {
    pub(crate) fn matches(&self, actual: Option<&str>) -> bool {
        filter_matches(&self.values, self.negate, actual)
    }
}

/// `Some(filter)` must match; `None` matches everything.
pub(crate) fn opt_str(filter: &Option<StringFilter>, record: &Record, key: &str) -> bool {
    filter
        .as_ref()
        .is_none_or(|f| f.matches(record.str(key).as_deref()))
}

// ---------------------------------------------------------------------------------------------
// Mutation payload helpers

/// A validation error of a mutation (in the payload, not a GraphQL error).
#[derive(SimpleObject, Clone, Debug)]
pub struct MutationError {
    /// Path of the offending input attribute.
    pub path: Option<Vec<String>>,
    /// Human-readable message.
    pub message: String,
}

impl MutationError {
    pub(crate) fn new(path: &[&str], message: impl Into<String>) -> MutationError {
        MutationError {
            path: Some(path.iter().map(|s| (*s).to_owned()).collect()),
            message: message.into(),
        }
    }
}

/// Serializes an input object into record fields, dropping nulls, `id` and `clientMutationId`.
pub(crate) fn to_fields<T: Serialize>(input: &T) -> Map<String, Value> {
    match serde_json::to_value(input) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .filter(|(k, v)| !v.is_null() && k != "id" && k != "clientMutationId")
            .collect(),
        _ => Map::new(),
    }
}

/// Merges `update` into `fields`; `customFields` are merged by custom field id.
pub(crate) fn merge_fields(fields: &mut Map<String, Value>, update: Map<String, Value>) {
    for (key, value) in update {
        if key == "customFields" {
            let mut current: Vec<Value> = fields
                .get("customFields")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for new in value.as_array().cloned().unwrap_or_default() {
                let id = new.get("id").cloned();
                match current.iter_mut().find(|c| c.get("id") == id.as_ref()) {
                    Some(slot) => *slot = new,
                    None => current.push(new),
                }
            }
            fields.insert(key, Value::Array(current));
        } else {
            fields.insert(key, value);
        }
    }
}

/// Blank string check for required names.
pub(crate) fn blank(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(|s| s.trim().is_empty())
}

/// Checks that an optional reference points to an existing record of `kind`.
pub(crate) fn check_ref(
    state: &State,
    errors: &mut Vec<MutationError>,
    account: &str,
    kind: &str,
    attribute: &str,
    id: &Option<ID>,
) {
    if let Some(id) = id
        && state.find(kind, account, id.as_str()).is_none()
    {
        errors.push(MutationError::new(
            &[attribute],
            format!("{kind} with id '{}' not found", id.as_str()),
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Shared object types

/// A custom field value.
#[derive(SimpleObject, Clone, Debug, Serialize, Deserialize)]
pub struct CustomField {
    /// Custom field id (as in the UI extension).
    pub id: String,
    /// Value (any JSON).
    pub value: Json<Value>,
}

/// A custom field value to set.
#[derive(InputObject, Clone, Debug, Serialize)]
pub struct CustomFieldInput {
    /// Custom field id.
    pub id: String,
    /// Value (any JSON).
    pub value: Option<Json<Value>>,
}

pub(crate) fn custom_fields(record: &Record) -> Vec<CustomField> {
    record
        .fields
        .get("customFields")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|v| {
                    Some(CustomField {
                        id: v.get("id")?.as_str()?.to_owned(),
                        value: Json(v.get("value").cloned().unwrap_or(Value::Null)),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Roots

/// Query root.
#[derive(MergedObject, Default)]
pub struct QueryRoot(CoreQuery, AppsQuery, WebhookQuery, MiscQuery);

/// Mutation root.
#[derive(MergedObject, Default)]
pub struct MutationRoot(CoreMutation, AppsMutation, WebhookMutation, MiscMutation);

/// Queries on configuration items and products.
#[derive(Default)]
pub struct CoreQuery;

/// Mutations on configuration items and products.
#[derive(Default)]
pub struct CoreMutation;

#[Object]
impl CoreQuery {
    /// Configuration items of the account.
    async fn configuration_items(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<ConfigurationItemFilter>,
        view: Option<ConfigurationItemView>,
    ) -> Result<ConfigurationItemConnection> {
        let _ = view;
        let account = account(ctx)?;
        let records = shared(ctx)?.lock().all("ConfigurationItem", account);
        let records = records
            .into_iter()
            .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r)))
            .collect();
        ConfigurationItemConnection::page(records, first, after)
    }

    /// Products of the account.
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<ProductFilter>,
    ) -> Result<ProductConnection> {
        let account = account(ctx)?;
        let records = shared(ctx)?.lock().all("Product", account);
        let records = records
            .into_iter()
            .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r)))
            .collect();
        ProductConnection::page(records, first, after)
    }
}

#[Object]
impl CoreMutation {
    /// Creates a configuration item.
    async fn configuration_item_create(
        &self,
        ctx: &Context<'_>,
        input: ConfigurationItemCreateInput,
    ) -> Result<ConfigurationItemPayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        if blank(&input.name) {
            errors.push(MutationError::new(&["name"], "Name can't be blank"));
        }
        check_ref(
            &state,
            &mut errors,
            account,
            "Product",
            "productId",
            &input.product_id,
        );
        if !errors.is_empty() {
            return Ok(ConfigurationItemPayload::failed(
                input.client_mutation_id,
                errors,
            ));
        }
        let mut fields = to_fields(&input);
        fields
            .entry("status")
            .or_insert(Value::String("in_production".into()));
        if let Some(rule_set) = input
            .product_id
            .as_ref()
            .and_then(|p| state.find("Product", account, p.as_str()))
            .and_then(|p| p.fields.get("ruleSet").cloned())
        {
            fields.entry("ruleSet").or_insert(rule_set);
        }
        let id = state.insert(&shared.domain, "ConfigurationItem", account, fields);
        let record = state.records.get(&id).cloned();
        Ok(ConfigurationItemPayload {
            client_mutation_id: input.client_mutation_id,
            errors: Vec::new(),
            configuration_item: record.map(ConfigurationItem::from),
        })
    }

    /// Updates a configuration item.
    async fn configuration_item_update(
        &self,
        ctx: &Context<'_>,
        input: ConfigurationItemUpdateInput,
    ) -> Result<ConfigurationItemPayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        if input.name.is_some() && blank(&input.name) {
            errors.push(MutationError::new(&["name"], "Name can't be blank"));
        }
        check_ref(
            &state,
            &mut errors,
            account,
            "Product",
            "productId",
            &input.product_id,
        );
        if state
            .find("ConfigurationItem", account, input.id.as_str())
            .is_none()
        {
            errors.push(MutationError::new(&["id"], "Configuration item not found"));
        }
        if !errors.is_empty() {
            return Ok(ConfigurationItemPayload::failed(
                input.client_mutation_id,
                errors,
            ));
        }
        let update = to_fields(&input);
        let record = state
            .find_mut("ConfigurationItem", account, input.id.as_str())
            .map(|r| {
                merge_fields(&mut r.fields, update);
                r.clone()
            });
        Ok(ConfigurationItemPayload {
            client_mutation_id: input.client_mutation_id,
            errors: Vec::new(),
            configuration_item: record.map(ConfigurationItem::from),
        })
    }

    /// Creates a product.
    async fn product_create(
        &self,
        ctx: &Context<'_>,
        input: ProductCreateInput,
    ) -> Result<ProductPayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        if blank(&input.name) {
            return Ok(ProductPayload {
                client_mutation_id: input.client_mutation_id,
                errors: vec![MutationError::new(&["name"], "Name can't be blank")],
                product: None,
            });
        }
        let mut fields = to_fields(&input);
        fields
            .entry("ruleSet")
            .or_insert(Value::String("physical_asset".into()));
        let id = state.insert(&shared.domain, "Product", account, fields);
        let record = state.records.get(&id).cloned();
        Ok(ProductPayload {
            client_mutation_id: input.client_mutation_id,
            errors: Vec::new(),
            product: record.map(Product::from),
        })
    }

    /// Updates a product.
    async fn product_update(
        &self,
        ctx: &Context<'_>,
        input: ProductUpdateInput,
    ) -> Result<ProductPayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        if input.name.is_some() && blank(&input.name) {
            errors.push(MutationError::new(&["name"], "Name can't be blank"));
        }
        let update = to_fields(&input);
        let record = match state.find_mut("Product", account, input.id.as_str()) {
            Some(r) if errors.is_empty() => {
                merge_fields(&mut r.fields, update);
                Some(r.clone())
            }
            Some(_) => None,
            None => {
                errors.push(MutationError::new(&["id"], "Product not found"));
                None
            }
        };
        Ok(ProductPayload {
            client_mutation_id: input.client_mutation_id,
            errors,
            product: record.map(Product::from),
        })
    }

    /// Uploads discovered configuration items; the result is produced asynchronously.
    async fn discovered_configuration_items(
        &self,
        ctx: &Context<'_>,
        input: DiscoveredConfigurationItemsInput,
    ) -> Result<DiscoveredConfigurationItemsPayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        Ok(discovered::process(shared, account, input))
    }
}

mod discovered;
pub(crate) use discovered::*;

/// Rule set of a product category.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(rename_items = "snake_case")]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ProductCategoryRuleSet {
    PhysicalAsset,
    Software,
    LicenseCertificate,
    SoftwareAsAService,
    Service,
    Other,
}

/// Status of a configuration item.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(rename_items = "snake_case")]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum CiStatus {
    Ordered,
    InStock,
    BeingBuilt,
    BeingRepaired,
    BeingTested,
    InProduction,
    Installed,
    StandbyForContinuity,
    Reserved,
    Lent,
    BrokenDown,
    ToBeRemoved,
    Removed,
    LostOrStolen,
    Archived,
    UndergoingMaintenance,
}
