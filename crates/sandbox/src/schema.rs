//! The GraphQL schema (derive-based, so unknown operations, fields and arguments are validation
//! errors) and its resolvers over the generic record store.

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, Enum, Error, ID, InputObject, Json, MergedObject, Object, Result,
    Schema, SimpleObject,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

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

/// 4me's `Decimal`: a number, sent as a JSON number or a numeric string.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Decimal(pub f64);

#[async_graphql::Scalar(name = "Decimal")]
impl async_graphql::ScalarType for Decimal {
    fn parse(value: async_graphql::Value) -> async_graphql::InputValueResult<Self> {
        let parsed = match &value {
            async_graphql::Value::Number(n) => n.as_f64(),
            async_graphql::Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        parsed
            .filter(|f| f.is_finite())
            .map(Decimal)
            .ok_or_else(|| async_graphql::InputValueError::expected_type(value))
    }

    fn to_value(&self) -> async_graphql::Value {
        serde_json::Number::from_f64(self.0)
            .map_or(async_graphql::Value::Null, async_graphql::Value::Number)
    }
}

/// A value of a filter. 4me's filters take lists of values whose item type depends on the
/// filtered attribute (strings, ids, enum values); the schema snapshot names them all
/// `FilterValue`, and so does the sandbox: a string, enum, number or boolean literal.
#[derive(Clone, Debug, Serialize)]
pub struct FilterValue(pub String);

#[async_graphql::Scalar(name = "FilterValue")]
impl async_graphql::ScalarType for FilterValue {
    fn parse(value: async_graphql::Value) -> async_graphql::InputValueResult<Self> {
        match value {
            async_graphql::Value::String(s) => Ok(FilterValue(s)),
            async_graphql::Value::Enum(name) => Ok(FilterValue(name.to_string())),
            async_graphql::Value::Number(n) => Ok(FilterValue(n.to_string())),
            async_graphql::Value::Boolean(b) => Ok(FilterValue(b.to_string())),
            other => Err(async_graphql::InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> async_graphql::Value {
        async_graphql::Value::String(self.0.clone())
    }
}

/// Filter on an attribute by a list of accepted values (4me's `ValuesFilter`).
#[derive(InputObject, Clone, Debug)]
pub struct ValuesFilter {
    /// Accepted values (`null` matches an empty field).
    pub values: Option<Vec<Option<FilterValue>>>,
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

impl ValuesFilter {
    pub(crate) fn matches(&self, actual: Option<&str>) -> bool {
        filter_matches(&self.values, self.negate, actual)
    }
}

/// `Some(filter)` must match; `None` matches everything.
pub(crate) fn opt_str(filter: &Option<ValuesFilter>, record: &Record, key: &str) -> bool {
    filter
        .as_ref()
        .is_none_or(|f| f.matches(record.str(key).as_deref()))
}

// ---------------------------------------------------------------------------------------------
// Mutation payload helpers

/// A validation error of a mutation (in the payload, not a GraphQL error).
#[derive(SimpleObject, Clone, Debug)]
pub struct ValidationError {
    /// Path of the offending input attribute.
    pub path: Option<Vec<String>>,
    /// Human-readable message.
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(path: &[&str], message: impl Into<String>) -> ValidationError {
        ValidationError {
            path: Some(path.iter().map(|s| (*s).to_owned()).collect()),
            message: message.into(),
        }
    }
}

/// A mutation payload as 4me names them (`<Type>CreatePayload`, `<Type>UpdatePayload`): the
/// client mutation id, the validation errors and the record (null when there are errors).
macro_rules! payload {
    ($name:ident, $field:ident: $ty:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(async_graphql::SimpleObject)]
        pub struct $name {
            /// Client mutation id.
            pub client_mutation_id: Option<String>,
            /// Validation errors.
            pub errors: Vec<$crate::schema::ValidationError>,
            /// The record (null when there are errors).
            pub $field: Option<$ty>,
        }

        impl $name {
            #[allow(dead_code)]
            pub(crate) fn failed(
                client_mutation_id: Option<String>,
                errors: Vec<$crate::schema::ValidationError>,
            ) -> Self {
                Self {
                    client_mutation_id,
                    errors,
                    $field: None,
                }
            }
        }
    };
}
pub(crate) use payload;

/// The input and payload of a 4me delete mutation (`<Type>DeleteMutationInput`,
/// `<Type>DeleteMutationPayload`).
macro_rules! delete_mutation_types {
    ($input:ident, $payload:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(async_graphql::InputObject, Clone, Debug)]
        pub struct $input {
            /// Client mutation id.
            pub client_mutation_id: Option<String>,
            /// Node id of the record to delete.
            pub id: String,
        }

        #[doc = $doc]
        #[derive(async_graphql::SimpleObject)]
        pub struct $payload {
            /// Client mutation id.
            pub client_mutation_id: Option<String>,
            /// Validation errors.
            pub errors: Vec<$crate::schema::ValidationError>,
            /// Whether the record was deleted.
            pub success: Option<bool>,
        }

        impl From<(Option<String>, Vec<$crate::schema::ValidationError>)> for $payload {
            fn from(
                (client_mutation_id, errors): (
                    Option<String>,
                    Vec<$crate::schema::ValidationError>,
                ),
            ) -> Self {
                Self {
                    client_mutation_id,
                    success: Some(errors.is_empty()),
                    errors,
                }
            }
        }
    };
}
pub(crate) use delete_mutation_types;

/// Deletes record `id` of `kind` in the caller's account: no errors, or why not.
pub(crate) fn delete_record(
    ctx: &Context<'_>,
    kind: &str,
    id: &str,
) -> Result<Vec<ValidationError>> {
    let account = account(ctx)?;
    let mut state = shared(ctx)?.lock();
    let Some(node) = state.find(kind, account, id).map(|r| r.id.clone()) else {
        return Ok(vec![ValidationError::new(
            &["id"],
            format!("{kind} not found"),
        )]);
    };
    state.records.remove(&node);
    state.policy_keys.remove(&node);
    Ok(Vec::new())
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
pub(crate) fn blank(value: Option<&str>) -> bool {
    value.is_none_or(|s| s.trim().is_empty())
}

/// Checks that an optional reference points to an existing record of `kind`.
pub(crate) fn check_ref(
    state: &State,
    errors: &mut Vec<ValidationError>,
    account: &str,
    kind: &str,
    attribute: &str,
    id: &Option<String>,
) {
    if let Some(id) = id
        && state.find(kind, account, id.as_str()).is_none()
    {
        errors.push(ValidationError::new(
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
    pub id: ID,
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
                        id: ID(v.get("id")?.as_str()?.to_owned()),
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
#[graphql(name = "Query")]
pub struct QueryRoot(CoreQuery, AppsQuery, WebhookQuery, MiscQuery);

/// Mutation root.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
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
        if let Some(filter) = &filter {
            filter.check_enum_values()?;
        }
        let account = account(ctx)?;
        let records = shared(ctx)?
            .lock()
            .all_matching("ConfigurationItem", account, |r| {
                filter.as_ref().is_none_or(|f| f.matches(r))
            });
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
        let records = shared(ctx)?.lock().all_matching("Product", account, |r| {
            filter.as_ref().is_none_or(|f| f.matches(r))
        });
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
    ) -> Result<ConfigurationItemCreatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        if blank(input.name.as_deref()) {
            errors.push(ValidationError::new(&["name"], "Name can't be blank"));
        }
        check_ref(
            &state,
            &mut errors,
            account,
            "Product",
            "productId",
            &Some(input.product_id.clone()),
        );
        if !errors.is_empty() {
            return Ok(ConfigurationItemCreatePayload::failed(
                input.client_mutation_id,
                errors,
            ));
        }
        let mut fields = to_fields(&input);
        fields
            .entry("status")
            .or_insert(Value::String("in_production".into()));
        if let Some(rule_set) = state
            .find("Product", account, &input.product_id)
            .and_then(|p| p.fields.get("ruleSet").cloned())
        {
            fields.entry("ruleSet").or_insert(rule_set);
        }
        let id = state.insert(&shared.domain, "ConfigurationItem", account, fields);
        let record = state.records.get(&id).cloned();
        Ok(ConfigurationItemCreatePayload {
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
    ) -> Result<ConfigurationItemUpdatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        if input.name.is_some() && blank(input.name.as_deref()) {
            errors.push(ValidationError::new(&["name"], "Name can't be blank"));
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
            errors.push(ValidationError::new(
                &["id"],
                "Configuration item not found",
            ));
        }
        if !errors.is_empty() {
            return Ok(ConfigurationItemUpdatePayload::failed(
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
        state.index_source(input.id.as_str());
        Ok(ConfigurationItemUpdatePayload {
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
    ) -> Result<ProductCreatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        if blank(Some(&input.name)) {
            return Ok(ProductCreatePayload {
                client_mutation_id: input.client_mutation_id,
                errors: vec![ValidationError::new(&["name"], "Name can't be blank")],
                product: None,
            });
        }
        let mut fields = to_fields(&input);
        // In 4me a product's rule set is its category's. The sandbox has no category records:
        // a category named after a rule set (`software`, `server`, ...) has that rule set, any
        // other is a physical asset.
        let rule_set = serde_json::from_value::<ProductCategoryRuleSet>(json!(input.category))
            .map_or(json!("physical_asset"), |r| json!(r));
        fields.insert("ruleSet".into(), rule_set);
        let id = state.insert(&shared.domain, "Product", account, fields);
        let record = state.records.get(&id).cloned();
        Ok(ProductCreatePayload {
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
    ) -> Result<ProductUpdatePayload> {
        let shared = shared(ctx)?;
        let account = account(ctx)?;
        let mut state = shared.lock();
        let mut errors = Vec::new();
        if input.name.is_some() && blank(input.name.as_deref()) {
            errors.push(ValidationError::new(&["name"], "Name can't be blank"));
        }
        let update = to_fields(&input);
        let record = match state.find_mut("Product", account, input.id.as_str()) {
            Some(r) if errors.is_empty() => {
                merge_fields(&mut r.fields, update);
                Some(r.clone())
            }
            Some(_) => None,
            None => {
                errors.push(ValidationError::new(&["id"], "Product not found"));
                None
            }
        };
        state.index_source(input.id.as_str());
        Ok(ProductUpdatePayload {
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
    LicenseCertificate,
    LogicalAssetWithFinancialData,
    LogicalAssetWithoutFinancialData,
    PhysicalAsset,
    Server,
    Software,
    SoftwareDistributionPackage,
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
    LentOut,
    BrokenDown,
    ToBeRemoved,
    Removed,
    LostOrStolen,
    Archived,
    UndergoingMaintenance,
}
